"""The ingest service: MQTT in, PostgreSQL out, acknowledgements only after the commit.

Threads: paho's network thread receives messages into a bounded queue; the service's own
thread takes batches from it, stores each in one transaction and then acknowledges every
message of the batch (paho's manual acknowledgement). The broker keeps at most
``receive_maximum`` unacknowledged messages in flight to us (MQTT 5 Receive Maximum), which
bounds memory however fast devices publish and however long the database is away: while it is
down nothing is acknowledged, the broker holds the rest, and the writer retries with backoff.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.metrics import IngestMetrics
from ingest.pipeline import Classified, Inbound, classify
from protocol.decoding import DEFAULT_WINDOW, AcceptanceWindow, RejectReason
from protocol.topics import DEVICE_TO_PLATFORM, subscription
from storage.registry import Registration, load_registry
from storage.writer import BatchWriter, DeadLetter, StorageBatch, WriteResult

log = logging.getLogger("smartcity.ingest")

SESSION_EXPIRY_S = 7 * 24 * 3600
"""The broker keeps our subscriptions and queued messages this long while we are away."""
_TRANSIENT_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)
_CHANNELS = frozenset(channel.value for channel in DEVICE_TO_PLATFORM)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    client_id: str = "smartcity-ingest"
    share_group: str | None = None
    """Subscribe through ``$share/<group>/`` so several ingest processes split the stream."""
    batch_max_messages: int = 2_000
    batch_max_seconds: float = 0.5
    receive_maximum: int = 4_000
    registry_refresh_s: float = 30.0
    maintenance_interval_s: float = 60.0
    window: AcceptanceWindow = DEFAULT_WINDOW
    max_backoff_s: float = 15.0


class IngestService:
    def __init__(
        self,
        config: IngestConfig,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.metrics = metrics or IngestMetrics()
        self._clock = clock
        # Unbounded in type, bounded in fact: the broker never has more than
        # receive_maximum unacknowledged messages in flight to us on one connection.
        self._inbox: deque[Inbound] = deque()
        self._arrived = threading.Event()
        self._connection_number = 0
        self._writer: BatchWriter | None = None
        self._registry: Mapping[str, Registration] = {}
        self._registry_loaded_at = float("-inf")
        self._registry_as_of = datetime.min.replace(tzinfo=UTC)
        self._maintained_at = time.monotonic()
        self._stop = threading.Event()
        self.ready = threading.Event()
        """Set once the database is reachable and the broker subscription is in place."""
        self._received_by_channel = {
            channel: self.metrics.received.labels(channel) for channel in (*_CHANNELS, "other")
        }
        self._client = self._make_client()

    # -- MQTT side (paho's network thread) -------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection", extra={"reason": str(reason_code)})
            return
        self._connection_number += 1
        self.metrics.broker_connected.set(1)
        log.info(
            "connected to broker",
            extra={"session_present": flags.session_present, "host": self.config.mqtt_host},
        )
        prefix = f"$share/{self.config.share_group}/" if self.config.share_group else ""
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe([(prefix + subscription(c), options) for c in DEVICE_TO_PLATFORM])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("broker refused subscriptions", extra={"reasons": refused})
        elif self._writer is not None:
            self.ready.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.metrics.broker_connected.set(0)
        if not self._stop.is_set():
            log.warning("disconnected from broker", extra={"reason": str(reason_code)})

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        topic = message._topic.decode("utf-8", errors="replace")
        channel = topic.rsplit("/", 1)[-1]
        counter = self._received_by_channel.get(channel) or self._received_by_channel["other"]
        counter.inc()
        self._inbox.append(
            Inbound(
                topic, bytes(message.payload), self._clock(), message.mid, self._connection_number
            )
        )
        if not self._arrived.is_set():
            self._arrived.set()

    # -- the writer (the caller's thread) --------------------------------------------------

    def run(self) -> None:
        """Run until :meth:`stop` is called; store and acknowledge everything received."""
        self._connect_database()
        if self._stop.is_set():
            return
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = self.config.receive_maximum
        self._client.connect_async(
            self.config.mqtt_host,
            self.config.mqtt_port,
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                if batch:
                    self._store_and_acknowledge(batch)
                self._housekeeping()
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            if self._writer is not None:
                self._writer.connection.close()
            log.info("ingest stopped")

    def stop(self) -> None:
        self._stop.set()

    def _next_batch(self) -> list[Inbound]:
        """Up to batch_max_messages, waiting at most batch_max_seconds after the first."""
        batch: list[Inbound] = []
        limit = self.config.batch_max_messages
        deadline = time.monotonic() + 0.2  # until the first message: then check for stop
        while len(batch) < limit:
            # Clear before looking, so a message appended after the look sets it again.
            self._arrived.clear()
            while self._inbox and len(batch) < limit:
                if not batch:
                    deadline = time.monotonic() + self.config.batch_max_seconds
                batch.append(self._inbox.popleft())
            remaining = deadline - time.monotonic()
            if len(batch) >= limit or remaining <= 0:
                break
            self._arrived.wait(remaining)
        self.metrics.queue_depth.set(len(self._inbox))
        return batch

    def _store_and_acknowledge(self, messages: list[Inbound]) -> None:
        started = time.monotonic()
        if not self._store(messages):
            return  # stopping while the database is away: the broker keeps them
        self._acknowledge(messages)
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        self.metrics.batch_messages.observe(len(messages))
        oldest = min(message.received_at for message in messages)
        self.metrics.lag_seconds.set((self._clock() - oldest).total_seconds())

    def _acknowledge(self, messages: Sequence[Inbound]) -> None:
        current = self._connection_number
        for message in messages:
            # A message from an earlier connection is redelivered on this one; acking its old
            # packet id here could acknowledge a different message.
            if message.mid and message.connection == current:
                self._client.ack(message.mid, 1)
                self.metrics.acknowledged.inc()

    def _store(self, messages: Sequence[Inbound]) -> bool:
        """Store messages durably; False only if asked to stop before the database came back."""
        classified = self._classify(messages)
        try:
            result = self._write(classified.batch)
        except _DATA_ERRORS as error:
            return self._isolate_poison(messages, error)
        if result is None:
            return False
        self._count(classified, result)
        return True

    def _write(self, batch: StorageBatch) -> WriteResult | None:
        """Write one batch, retrying with backoff through database outages; None if stopped
        first. The database refusing the data itself (DataError, IntegrityError) is raised."""
        attempt = 0
        while True:
            writer = self._writer or self._connect_database()
            if writer is None:
                return None
            try:
                with self.metrics.write_seconds.time():
                    return writer.write(batch)
            except _DATA_ERRORS:
                raise
            except psycopg.Error as error:
                attempt += 1
                self._database_failed(error, attempt)
                if self._stop.wait(self._backoff(attempt)):
                    return None

    def _classify(self, messages: Sequence[Inbound]) -> Classified:
        classified = classify(messages, self._registry, self.config.window)
        # A device provisioned after our last look at the registry is not unknown: look again,
        # at most once per batch, and only if the registry is older than the messages.
        newest = max(message.received_at for message in messages)
        stale = classified.unknown_devices and self._registry_as_of < newest
        if stale and self._refresh_registry(min_age_s=0):
            classified = classify(messages, self._registry, self.config.window)
        return classified

    def _isolate_poison(self, messages: Sequence[Inbound], error: psycopg.Error) -> bool:
        """The database refused this batch's data: store message by message, dead-letter the
        ones it refuses, so one poison message never blocks the stream."""
        if len(messages) > 1:
            log.warning("database refused a batch; isolating", extra={"error": str(error)})
            return all(self._store([message]) for message in messages)
        message = messages[0]
        log.error(
            "database refused a message; dead-lettered",
            extra={"topic": message.topic, "error": str(error)},
        )
        batch = StorageBatch(
            dead_letters=[
                DeadLetter(
                    message.received_at,
                    message.topic,
                    None,
                    RejectReason.STORAGE_REJECTED.value,
                    f"the database refused it: {error}",
                    message.payload,
                )
            ]
        )
        result = self._write(batch)
        if result is None:
            return False
        self.metrics.rejected.labels(RejectReason.STORAGE_REJECTED.value).inc()
        self.metrics.stored.labels("dead_letters").inc(result.dead_letters_stored)
        return True

    def _count(self, classified: Classified, result: WriteResult) -> None:
        metrics = self.metrics
        metrics.database_up.set(1)
        metrics.stored.labels("telemetry").inc(result.telemetry_stored)
        metrics.stored.labels("device_events").inc(result.events_stored)
        metrics.stored.labels("device_states").inc(result.states_stored)
        metrics.stored.labels("command_acks").inc(result.command_acks_stored)
        metrics.stored.labels("dead_letters").inc(result.dead_letters_stored)
        metrics.duplicates.inc(result.telemetry_duplicates)
        for reason, count in classified.rejections.items():
            metrics.rejected.labels(reason).inc(count)

    def _database_failed(self, error: psycopg.Error, attempt: int) -> None:
        self.metrics.database_up.set(0)
        self.metrics.write_retries.inc()
        transient = isinstance(error, _TRANSIENT_ERRORS)
        log.log(
            logging.WARNING if transient else logging.ERROR,
            "database write failed; keeping the batch unacknowledged and retrying",
            extra={"error": str(error).strip(), "attempt": attempt, "transient": transient},
        )
        if self._writer is not None and (transient or self._writer.connection.closed):
            self._writer.connection.close()
            self._writer = None

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self.config.max_backoff_s, 0.25 * 2 ** min(attempt, 10))
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography

    def _connect_database(self) -> BatchWriter | None:
        """Connect (retrying with backoff until it works or we are stopped)."""
        attempt = 0
        while not self._stop.is_set():
            try:
                connection = psycopg.connect(
                    self.config.database_url,
                    autocommit=True,
                    connect_timeout=5,
                    application_name=self.config.client_id,
                )
                self._writer = BatchWriter(connection)
                self._registry = load_registry(connection)
                self._registry_loaded_at = time.monotonic()
                self._registry_as_of = self._clock()
            except psycopg.Error as error:
                attempt += 1
                self.metrics.database_up.set(0)
                log.warning(
                    "database unreachable; retrying",
                    extra={"error": str(error).strip(), "attempt": attempt},
                )
                self._stop.wait(self._backoff(attempt))
                continue
            self.metrics.database_up.set(1)
            log.info("connected to database", extra={"devices": len(self._registry)})
            return self._writer
        return None

    def _refresh_registry(self, min_age_s: float) -> bool:
        if self._writer is None or time.monotonic() - self._registry_loaded_at < min_age_s:
            return False
        as_of = self._clock()
        try:
            self._registry = load_registry(self._writer.connection)
        except psycopg.Error as error:
            log.warning("could not reload the registry", extra={"error": str(error).strip()})
            return False
        self._registry_loaded_at = time.monotonic()
        self._registry_as_of = as_of
        return True

    def _housekeeping(self) -> None:
        self._refresh_registry(min_age_s=self.config.registry_refresh_s)
        if time.monotonic() - self._maintained_at < self.config.maintenance_interval_s:
            return
        self._maintained_at = time.monotonic()
        if self._writer is None:
            return
        try:
            report: Any = self._writer.maintain()
        except psycopg.Error as error:
            log.warning("maintenance failed", extra={"error": str(error).strip()})
            return
        log.info("maintenance done", extra={"report": report})
