"""The ingest service: MQTT in, PostgreSQL out, acknowledgements only after the commit.

Two processes. This one holds the MQTT session: paho's network thread appends messages to an
inbox; the service thread cuts the inbox into batches and sends each to the storing process
(:mod:`ingest.store_process`), which decodes it and commits it; a reply thread acknowledges
every message of a batch once its commit is reported (paho's manual acknowledgement). Memory
is bounded however fast devices publish and however long the database is away: the broker
keeps at most ``effective_receive_maximum`` unacknowledged messages in flight to us (the MQTT 5
Receive Maximum, capped so that ``max_held_bytes`` holds that many payloads of the largest size
allowed), and past ``max_held_bytes`` (redeliveries after a reconnection) we stop reading the
socket until the storing process catches up. While the database is down nothing is
acknowledged and the broker holds the rest.

If the storing process dies, a new one is started and every batch not yet acknowledged is sent
to it again; writes are idempotent, so nothing is stored twice.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest import store_process
from ingest.config import IngestConfig
from ingest.metrics import IngestMetrics
from ingest.store_process import BatchStored, DatabaseState
from protocol.topics import DEVICE_TO_PLATFORM, subscription
from runtime.mqtt_session import MqttSession, Received, SessionConfig

__all__ = ["IngestConfig", "IngestService"]

log = logging.getLogger("smartcity.ingest")

_CHANNELS = frozenset(channel.value for channel in DEVICE_TO_PLATFORM)
_BATCH_POLL_S = 0.005
_DRAIN_TIMEOUT_S = 10.0
_ACK_HANDOVER_S = 0.005
_spawn = multiprocessing.get_context("spawn")


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
        self._inbox: deque[Received] = deque()
        self._arrived = threading.Event()
        self._stop = threading.Event()
        self._database_up = threading.Event()
        self.ready = threading.Event()
        """Set once the database is reachable and the broker subscription is in place."""
        # Batches sent to the storing process and not yet acknowledged, oldest first.
        self._pending: dict[int, list[Received]] = {}
        self._pending_lock = threading.Lock()
        self._send_lock = threading.Lock()
        """One writer at a time on the pipe: a large message is written in several pieces."""
        self._restarts_in_a_row = 0
        self._next_batch_id = 0
        self._pending_messages = 0
        self._pipe: Connection | None = None
        self._process: BaseProcess | None = None
        self._process_stop = _spawn.Event()
        self._held_bytes = 0
        self._held_bytes_changed = threading.Condition()
        self._received_by_channel = {
            channel: self.metrics.received.labels(channel) for channel in (*_CHANNELS, "other")
        }
        self._session = self._make_session()

    @property
    def storing_process_pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    # -- MQTT side (paho's network thread) -------------------------------------------------

    def _make_session(self) -> MqttSession:
        config = self.config
        prefix = f"$share/{config.share_group}/" if config.share_group else ""
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        return MqttSession(
            SessionConfig(
                config.mqtt_host,
                config.mqtt_port,
                config.client_id,
                config.mqtt_account,
                receive_maximum=config.effective_receive_maximum,
            ),
            logger=log,
            subscriptions=[(prefix + subscription(c), options) for c in DEVICE_TO_PLATFORM],
            on_message=self._on_message,
            on_connection_change=self._connection_changed,
            on_subscribed=self._update_ready,
            clock=self._clock,
        )

    def _on_message(self, message: Received) -> None:
        channel = message.topic.rsplit("/", 1)[-1]
        counter = self._received_by_channel.get(channel) or self._received_by_channel["other"]
        counter.inc()
        size = len(message.payload)
        with self._held_bytes_changed:
            # Backpressure: stop reading (the broker keeps the rest) while too much is held.
            while self._held_bytes >= self.config.max_held_bytes and not self._stop.is_set():
                self._held_bytes_changed.wait(0.5)
            self._held_bytes += size
        self._inbox.append(message)
        if not self._arrived.is_set():
            self._arrived.set()

    def _connection_changed(self, connected: bool) -> None:
        self.metrics.broker_connected.set(1 if connected else 0)
        if not connected:
            self.metrics.ready.set(0)

    def _update_ready(self) -> None:
        if self._session.subscribed.is_set() and self._database_up.is_set():
            self.ready.set()
            self.metrics.ready.set(1)

    # -- the service thread: batches out --------------------------------------------------

    def run(self) -> None:
        """Run until :meth:`stop` is called; store and acknowledge everything received.

        The broker session starts only once the database is reachable: until then the broker
        keeps the messages, where they are safer than in our memory.
        """
        self._start_storing_process()
        while not self._database_up.wait(0.2):
            if self._stop.is_set():
                self._stop_storing_process()
                return
        self._session.start()
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                if batch:
                    self._send(batch)
            self._drain()
        finally:
            self._session.stop()
            self._stop_storing_process()
            log.info("ingest stopped")

    def stop(self) -> None:
        self._stop.set()
        if not self._database_up.is_set():
            # Nothing more will be stored: end the storing process's retries now, which also
            # unblocks a send waiting on a full pipe.
            self._process_stop.set()
        with self._held_bytes_changed:
            self._held_bytes_changed.notify_all()

    @property
    def held_bytes(self) -> int:
        """Payload bytes received and not yet acknowledged."""
        return self._held_bytes

    def _next_batch(self) -> list[Received]:
        """Up to batch_max_messages, waiting at most batch_max_seconds after the first.

        This thread wakes for the first message of a batch only; then it looks again every
        few milliseconds. Waking for every message would hand the interpreter lock back and
        forth with the network thread thousands of times a second.
        """
        inbox = self._inbox
        if not inbox:
            self._arrived.clear()  # before looking again: an append after this sets it
            if not inbox and not self._arrived.wait(0.2):
                return []
        limit = self.config.batch_max_messages
        window = self.config.effective_receive_maximum
        deadline = time.monotonic() + self.config.batch_max_seconds
        while (
            len(inbox) < limit
            # When the broker's window is full, nothing more comes until we acknowledge.
            and len(inbox) + self._pending_messages < window
            and time.monotonic() < deadline
            and not self._stop.is_set()
        ):
            time.sleep(_BATCH_POLL_S)
        batch = [inbox.popleft() for _ in range(min(limit, len(inbox)))]
        self.metrics.queue_depth.set(len(inbox))
        self.metrics.held_bytes.set(self._held_bytes)
        return batch

    def _send(self, batch: list[Received]) -> None:
        with self._pending_lock:
            batch_id = self._next_batch_id
            self._next_batch_id += 1
            self._pending[batch_id] = batch
            self._pending_messages += len(batch)
            pipe = self._pipe
        if pipe is None:
            return  # the storing process is being replaced; it will get this batch then
        self._send_batch(pipe, batch_id, batch)

    def _send_batch(self, pipe: Connection, batch_id: int, batch: list[Received]) -> None:
        # If the storing process died, the reply thread notices and resends what is pending.
        with self._send_lock, contextlib.suppress(BrokenPipeError, EOFError, OSError):
            pipe.send((batch_id, [(m.topic, m.payload, m.received_at) for m in batch]))

    def _drain(self) -> None:
        """On stop: give the storing process a little time to commit what it was sent."""
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        while self._pending and self._database_up.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._pending_lock:
            count = sum(len(batch) for batch in self._pending.values())
        if count:
            log.warning(
                "stopping with messages not stored; the broker will deliver them again",
                extra={"messages": count},
            )

    # -- the storing process and its replies ----------------------------------------------

    def _start_storing_process(self) -> None:
        here, there = _spawn.Pipe(duplex=True)
        process = _spawn.Process(
            target=store_process.run,
            args=(self.config, there, self._process_stop),
            name=f"{self.config.client_id}-store",
            daemon=True,
        )
        process.start()
        there.close()
        # The reader first: the new process answers while we are still resending to it.
        threading.Thread(
            target=self._read_replies, args=(here, process), name="ingest-replies", daemon=True
        ).start()
        with self._pending_lock:
            self._pipe, self._process = here, process
            resend = list(self._pending.items())
        for batch_id, batch in resend:
            self._send_batch(here, batch_id, batch)

    def _read_replies(self, pipe: Connection, process: BaseProcess) -> None:
        started = time.monotonic()
        while True:
            try:
                if not pipe.poll(self.config.watchdog_s):
                    if self._pending and process.is_alive():
                        log.error(
                            "the storing process has been silent with batches waiting; "
                            "presuming it hung and replacing it",
                            extra={"silent_s": self.config.watchdog_s},
                        )
                        process.terminate()
                    continue
                reply = pipe.recv()
            except (EOFError, OSError):
                break
            if isinstance(reply, BatchStored):
                self._stored(reply)
            elif isinstance(reply, DatabaseState):
                self._database_state(reply)
        if self._stop.is_set():
            return
        process.join(5)
        # A process that dies again and again (a bug met by the same batch) is restarted
        # ever more slowly, not in a hot loop.
        lived_s = time.monotonic() - started
        self._restarts_in_a_row = 0 if lived_s > 60 else self._restarts_in_a_row + 1
        delay_s = min(30.0, 2.0**self._restarts_in_a_row - 1)
        log.error(
            "the storing process died; starting a new one and sending it the unacknowledged "
            "batches again",
            extra={"exitcode": process.exitcode, "delay_s": delay_s},
        )
        with self._pending_lock:
            self._pipe = None
        self._database_up.clear()
        if self._stop.wait(delay_s):
            return
        self._start_storing_process()

    def _database_state(self, state: DatabaseState) -> None:
        self.metrics.database_up.set(1 if state.up else 0)
        if state.up:
            self._database_up.set()
            self._update_ready()
        else:
            self._database_up.clear()
            self.metrics.ready.set(0)
            self.metrics.write_retries.inc()

    def _stored(self, stored: BatchStored) -> None:
        with self._pending_lock:
            batch = self._pending.pop(stored.batch_id, None)
            if batch is not None:
                self._pending_messages -= len(batch)
        if batch is None:
            return  # a batch resent after a restart, already acknowledged
        with self._held_bytes_changed:
            self._held_bytes -= sum(len(message.payload) for message in batch)
            self.metrics.held_bytes.set(self._held_bytes)
            self._held_bytes_changed.notify_all()
        # The network thread sends them as it handles the next message (cheap: it holds the
        # interpreter lock anyway). If it is idle (the broker waits for these very
        # acknowledgements), this thread sends what is left after a moment.
        self._session.acknowledge(batch, hand_over_s=_ACK_HANDOVER_S)
        metrics = self.metrics
        metrics.acknowledged.inc(len(batch))
        metrics.database_up.set(1)
        metrics.stored.labels("telemetry").inc(stored.telemetry_rows)
        metrics.stored.labels("device_events").inc(stored.events)
        metrics.stored.labels("device_states").inc(stored.states)
        metrics.stored.labels("command_acks").inc(stored.command_acks)
        metrics.stored.labels("dead_letters").inc(stored.dead_letters)
        metrics.duplicates.inc(stored.duplicate_rows)
        for reason, count in stored.rejections.items():
            metrics.rejected.labels(reason).inc(count)
        metrics.write_seconds.observe(stored.write_seconds)
        metrics.batch_messages.observe(len(batch))
        oldest = min(message.received_at for message in batch)
        lag = (self._clock() - oldest).total_seconds()
        metrics.batch_seconds.observe(lag)
        metrics.lag_seconds.set(lag)

    def _stop_storing_process(self) -> None:
        self._process_stop.set()
        with self._pending_lock:
            pipe, process = self._pipe, self._process
            self._pipe = None
        if pipe is not None:
            with self._send_lock, contextlib.suppress(BrokenPipeError, OSError):
                pipe.send(None)
        if process is not None:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)
        if pipe is not None:
            pipe.close()
