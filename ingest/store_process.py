"""The storing side of ingest, run in a process of its own.

It receives batches of raw messages from the MQTT side over a pipe, decodes and classifies
them, writes each batch in one transaction (retrying with backoff while the database is away)
and answers with what it stored; only then does the MQTT side acknowledge the batch. Running
here, decoding and database work use the second core instead of competing with the MQTT
session for one interpreter lock.

Messages over the pipe, MQTT side to here: ``(batch_id, [(topic, payload, received_at)...])``
or ``None`` to stop. Here to the MQTT side: :class:`BatchStored`, :class:`DatabaseState`.
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent

import psycopg

from ingest.config import IngestConfig
from ingest.maintenance import Maintainer
from ingest.pipeline import Classified, Inbound, classify
from protocol.decoding import RejectReason
from runtime import logs
from storage.registry import Registration, load_registry
from storage.writer import BatchWriter, DeadLetter, StorageBatch, WriteResult

log = logging.getLogger("smartcity.ingest.store")

_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)
_TRANSIENT_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)

RawMessage = tuple[str, bytes, datetime]
"""(topic, payload, received_at)"""


@dataclass(frozen=True, slots=True)
class BatchStored:
    batch_id: int
    telemetry_rows: int
    duplicate_rows: int
    events: int
    states: int
    command_acks: int
    dead_letters: int
    rejections: dict[str, int] = field(default_factory=dict)
    write_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class DatabaseState:
    up: bool
    failed_attempt: int = 0
    """After a failed write: how many times this batch has failed so far."""


class Stopped(Exception):  # noqa: N818 - a signal to unwind, not an error
    """Asked to stop while waiting for the database."""


class Storer:
    """Decodes and stores batches; owns the database connection and the device registry."""

    def __init__(self, config: IngestConfig, report: Connection, stop: ProcessEvent) -> None:
        self.config = config
        self._report = report
        self._stop = stop
        self._writer: BatchWriter | None = None
        self._registry: Mapping[str, Registration] = {}
        self._registry_loaded_at = float("-inf")
        self._registry_as_of = datetime.min.replace(tzinfo=UTC)

    def store(self, batch_id: int, raw: Sequence[RawMessage]) -> BatchStored:
        """Store one batch durably; raise :class:`Stopped` if asked to stop first."""
        messages = [Inbound(topic, payload, received_at) for topic, payload, received_at in raw]
        return self._store(batch_id, messages)

    def _store(self, batch_id: int, messages: Sequence[Inbound]) -> BatchStored:
        try:
            classified = self._classify(messages)
        except (Stopped, psycopg.Error):
            raise
        except Exception as error:
            log.exception("classifying a batch failed; isolating the message")
            return self._isolate_poison(batch_id, messages, error)
        started = time.perf_counter()
        try:
            result = self._write(classified.batch)
        except _DATA_ERRORS as error:
            return self._isolate_poison(batch_id, messages, error)
        except Stopped:
            raise
        except Exception as error:
            log.exception("storing a batch failed unexpectedly; isolating the message")
            return self._isolate_poison(batch_id, messages, error)
        return _stored(batch_id, classified, result, time.perf_counter() - started)

    def ensure_connected(self) -> BatchWriter:
        return self._writer or self._connect()

    def _classify(self, messages: Sequence[Inbound]) -> Classified:
        self.ensure_connected()  # the registry comes with the connection
        classified = classify(messages, self._registry, self.config.window)
        # A device provisioned after our last look at the registry is not unknown: look again,
        # at most once per batch, and only if the registry is older than the messages.
        newest = max(message.received_at for message in messages)
        stale = classified.unknown_devices and self._registry_as_of < newest
        if stale and self._refresh_registry(min_age_s=0):
            classified = classify(messages, self._registry, self.config.window)
        return classified

    def _write(self, batch: StorageBatch) -> WriteResult:
        """Write one batch, retrying through database outages. The database refusing the
        data itself (DataError, IntegrityError) is raised for the caller to isolate."""
        attempt = 0
        while True:
            writer = self.ensure_connected()
            try:
                result = writer.write(batch)
            except _DATA_ERRORS:
                raise
            except psycopg.Error as error:
                attempt += 1
                self._failed(error, attempt)
                self._wait(self._backoff(attempt))
                continue
            if attempt:
                self._report.send(DatabaseState(up=True))
            return result

    def _isolate_poison(
        self, batch_id: int, messages: Sequence[Inbound], error: Exception
    ) -> BatchStored:
        """The database refused this batch's data, or storing it met a bug: store message by
        message and dead-letter the ones that fail, so one poison message never blocks the
        stream."""
        if len(messages) > 1:
            log.warning("a batch failed; isolating", extra={"error": str(error)})
            parts = [self._store(batch_id, [message]) for message in messages]
            return _combine(batch_id, parts)
        if isinstance(error, psycopg.Error):
            reason, detail = RejectReason.STORAGE_REJECTED, f"the database refused it: {error}"
        else:
            reason, detail = RejectReason.INTERNAL_ERROR, f"{type(error).__name__}: {error}"
        return self._dead_letter(batch_id, messages[0], reason, detail)

    def _dead_letter(
        self, batch_id: int, message: Inbound, reason: RejectReason, detail: str
    ) -> BatchStored:
        log.error("message dead-lettered", extra={"topic": message.topic, "detail": detail})
        letter = DeadLetter(
            message.received_at, message.topic, None, reason.value, detail[:2000], message.payload
        )
        result = self._write(StorageBatch(dead_letters=[letter]))
        return BatchStored(batch_id, 0, 0, 0, 0, 0, result.dead_letters_stored, {reason.value: 1})

    def _failed(self, error: psycopg.Error, attempt: int) -> None:
        transient = isinstance(error, _TRANSIENT_ERRORS)
        log.log(
            logging.WARNING if transient else logging.ERROR,
            "database write failed; keeping the batch unacknowledged and retrying",
            extra={"error": str(error).strip(), "attempt": attempt, "transient": transient},
        )
        self._report.send(DatabaseState(up=False, failed_attempt=attempt))
        # A fresh connection for the retry: the old one may be broken, read-only after a
        # failover, or in a state we cannot see.
        if self._writer is not None:
            self._writer.connection.close()
            self._writer = None

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self.config.max_backoff_s, 0.25 * 2 ** min(attempt, 10))
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography

    def _wait(self, seconds: float) -> None:
        """Sleep between retries; raise :class:`Stopped` if asked to stop or orphaned (the MQTT
        side killed: nobody would acknowledge what we store)."""
        parent = multiprocessing.parent_process()
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(remaining, 1.0)):
                raise Stopped
            if parent is not None and not parent.is_alive():
                raise Stopped

    def _connect(self) -> BatchWriter:
        """Connect, retrying with backoff until it works; raise :class:`Stopped` if asked."""
        attempt = 0
        while True:
            try:
                writer, registry = self._open()
            except psycopg.Error as error:
                attempt += 1
                log.warning(
                    "database unreachable; retrying",
                    extra={"error": str(error).strip(), "attempt": attempt},
                )
                self._report.send(DatabaseState(up=False, failed_attempt=attempt))
                self._wait(self._backoff(attempt))
                continue
            self._writer, self._registry = writer, registry
            self._registry_loaded_at = time.monotonic()
            self._registry_as_of = datetime.now(UTC)
            log.info("connected to database", extra={"devices": len(self._registry)})
            self._report.send(DatabaseState(up=True))
            return self._writer

    def _open(self) -> tuple[BatchWriter, Mapping[str, Registration]]:
        # Keepalives and a user timeout notice a dead server or network in about 30 s; the
        # statement timeout ends a statement stuck on a lock. Either way the batch is retried.
        connection = psycopg.connect(
            self.config.database_url,
            autocommit=True,
            connect_timeout=5,
            application_name=self.config.client_id,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=30_000,
            options=f"-c statement_timeout={int(self.config.statement_timeout_s * 1000)}",
        )
        try:
            return BatchWriter(connection), load_registry(connection)
        except psycopg.Error:
            connection.close()
            raise

    def _refresh_registry(self, min_age_s: float) -> bool:
        if self._writer is None or time.monotonic() - self._registry_loaded_at < min_age_s:
            return False
        as_of = datetime.now(UTC)
        try:
            self._registry = load_registry(self._writer.connection)
        except psycopg.Error as error:
            log.warning("could not reload the registry", extra={"error": str(error).strip()})
            return False
        self._registry_loaded_at = time.monotonic()
        self._registry_as_of = as_of
        return True

    def housekeeping(self) -> None:
        """Between batches: reload the registry now and then."""
        self._refresh_registry(min_age_s=self.config.registry_refresh_s)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.connection.close()


def _stored(
    batch_id: int, classified: Classified, result: WriteResult, write_seconds: float
) -> BatchStored:
    return BatchStored(
        batch_id,
        telemetry_rows=result.telemetry_stored,
        duplicate_rows=result.telemetry_duplicates,
        events=result.events_stored,
        states=result.states_stored,
        command_acks=result.command_acks_stored,
        dead_letters=result.dead_letters_stored,
        rejections=_rejections(classified, result),
        write_seconds=write_seconds,
    )


def _rejections(classified: Classified, result: WriteResult) -> dict[str, int]:
    """Messages refused by reason: by the pipeline, and acknowledgements by the writer."""
    rejections = dict(classified.rejections)
    if result.unknown_command_acks:
        rejections[RejectReason.UNKNOWN_COMMAND.value] = result.unknown_command_acks
    return rejections


def _combine(batch_id: int, parts: Sequence[BatchStored]) -> BatchStored:
    rejections: dict[str, int] = {}
    for part in parts:
        for reason, count in part.rejections.items():
            rejections[reason] = rejections.get(reason, 0) + count
    return BatchStored(
        batch_id,
        telemetry_rows=sum(p.telemetry_rows for p in parts),
        duplicate_rows=sum(p.duplicate_rows for p in parts),
        events=sum(p.events for p in parts),
        states=sum(p.states for p in parts),
        command_acks=sum(p.command_acks for p in parts),
        dead_letters=sum(p.dead_letters for p in parts),
        rejections=rejections,
        write_seconds=sum(p.write_seconds for p in parts),
    )


def run(config: IngestConfig, pipe: Connection, stop: ProcessEvent) -> None:
    """Entry point of the storing process: serve batches until told to stop."""
    # Ctrl-C reaches the whole process group: the MQTT side decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if config.log_level:
        logs.configure(config.log_level, json_lines=config.log_json)
    storer = Storer(config, pipe, stop)
    maintainer = Maintainer(
        config.database_url, config.maintenance_interval_s, config.statement_timeout_s
    )
    maintainer.start()
    try:
        storer.ensure_connected()
        while not stop.is_set():
            if not pipe.poll(0.2):
                storer.housekeeping()
                continue
            request = pipe.recv()
            if request is None:
                break
            batch_id, raw = request
            pipe.send(storer.store(batch_id, raw))
            storer.housekeeping()  # it checks its own clock: also runs under sustained load
    except (Stopped, EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        maintainer.stop()
        storer.close()
