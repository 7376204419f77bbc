"""Write a batch of decoded messages in one transaction, idempotently.

Telemetry goes in with binary COPY into a per-class staging table, then one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per class: COPY's speed, and a redelivered
message changes nothing. Events, states, command acknowledgements and dead letters are few
and go in with pipelined ``executemany``, also ``ON CONFLICT DO NOTHING``.

A command acknowledgement is stored only if it answers a command recorded in ``commands`` for
that device (the platform records a command before it sends it); any other is a dead letter,
``unknown_command``, checked in the same transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final

import psycopg
from psycopg import sql

from protocol.catalogue import CATALOGUE
from protocol.decoding import CommandAck, Event, RejectReason, State
from protocol.topics import DeviceClass

SampleRows = dict[tuple[str, datetime], dict[str, float]]
"""Samples of one device class: (device_id, ts) -> metric -> value."""
TelemetryRow = tuple[object, ...]
"""(ts, device_id, value of each metric of the class in catalogue order, None if absent)"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: datetime
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.topic.encode() + b"\0" + self.payload).digest()


@dataclass(frozen=True, slots=True)
class ReceivedAck:
    """A command acknowledgement and the message that brought it (a dead letter keeps it)."""

    ack: CommandAck
    received_at: datetime
    topic: str
    payload: bytes

    def unknown(self) -> DeadLetter:
        """The dead letter of an acknowledgement that answers no command sent."""
        device_id, command_id = self.ack.topic.device_id, self.ack.command_id
        return DeadLetter(
            self.received_at,
            self.topic,
            device_id,
            RejectReason.UNKNOWN_COMMAND.value,
            f"no command {command_id!r} was sent to device {device_id!r}: an acknowledgement"
            " answers a command the platform recorded (table commands)",
            self.payload,
        )


@dataclass(slots=True)
class StorageBatch:
    """Everything one transaction stores."""

    telemetry: dict[DeviceClass, list[TelemetryRow]] = field(default_factory=dict)
    """Rows as made by :func:`telemetry_rows`, one per (device, time)."""
    events: list[tuple[Event, datetime]] = field(default_factory=list)
    states: list[tuple[State, datetime]] = field(default_factory=list)
    command_acks: list[ReceivedAck] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def telemetry_row_count(self) -> int:
        return sum(len(rows) for rows in self.telemetry.values())


@dataclass(frozen=True, slots=True)
class WriteResult:
    telemetry_offered: int
    telemetry_stored: int
    events_stored: int
    states_stored: int
    command_acks_stored: int
    dead_letters_stored: int
    unknown_command_acks: int = 0
    """Acknowledgements of no command sent: dead letters (counted in dead_letters_stored)."""

    @property
    def telemetry_duplicates(self) -> int:
        return self.telemetry_offered - self.telemetry_stored


@dataclass(frozen=True, slots=True)
class _TelemetryTable:
    """How one device class's samples are copied and merged: one column per metric."""

    table: sql.Identifier
    staging: sql.Identifier
    metrics: tuple[str, ...]

    @classmethod
    def of(cls, device_class: DeviceClass) -> _TelemetryTable:
        return cls(
            sql.Identifier(f"telemetry_{device_class}"),
            sql.Identifier(f"staging_{device_class}"),
            tuple(CATALOGUE[device_class].metrics),
        )

    def rows(self, samples: SampleRows) -> list[TelemetryRow]:
        metrics = self.metrics
        return [
            (ts, device_id, *map(values.get, metrics))
            for (device_id, ts), values in samples.items()
        ]

    def copy_statement(self, into: sql.Identifier) -> sql.Composed:
        columns = sql.SQL(", ").join(map(sql.Identifier, ("ts", "device_id", *self.metrics)))
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(into, columns)

    @property
    def copy_types(self) -> list[str]:
        return ["timestamptz", "text", *["float8"] * len(self.metrics)]

    def merge_statement(self) -> sql.Composed:
        """Insert staged samples; complete stored ones with metrics they lacked, never
        overwrite a stored value (a redelivery brings the same values, and changes nothing)."""
        columns = [sql.Identifier(name) for name in ("ts", "device_id", *self.metrics)]
        metrics = [sql.Identifier(name) for name in self.metrics]
        return sql.SQL(
            "INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM {staging} "
            "ON CONFLICT (device_id, ts) DO UPDATE SET {fill} WHERE {missing}"
        ).format(
            table=self.table,
            columns=sql.SQL(", ").join(columns),
            staging=self.staging,
            fill=sql.SQL(", ").join(
                sql.SQL("{m} = coalesce(t.{m}, EXCLUDED.{m})").format(m=m) for m in metrics
            ),
            missing=sql.SQL(" OR ").join(
                sql.SQL("(t.{m} IS NULL AND EXCLUDED.{m} IS NOT NULL)").format(m=m) for m in metrics
            ),
        )


_TABLES: Final = {device_class: _TelemetryTable.of(device_class) for device_class in DeviceClass}


def telemetry_rows(device_class: DeviceClass, samples: SampleRows) -> list[TelemetryRow]:
    """The rows the writer copies for ``samples`` of one class."""
    return _TABLES[device_class].rows(samples)


class BatchWriter:
    """Owns one connection; :meth:`write` stores a batch atomically and commits."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self._connection = connection
        self._partitioned_days: set[tuple[DeviceClass, date]] = set()
        self._merging: set[DeviceClass] = set()
        with connection.transaction():
            for layout in _TABLES.values():
                connection.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS"
                    ).format(layout.staging, layout.table)
                )

    @property
    def connection(self) -> psycopg.Connection:
        return self._connection

    def write(self, batch: StorageBatch) -> WriteResult:
        connection = self._connection
        telemetry_stored = 0
        new_days: set[tuple[DeviceClass, date]] = set()
        with connection.transaction(), connection.cursor() as cursor:
            for device_class, rows in batch.telemetry.items():
                if not rows:
                    continue
                new_days |= self._ensure_partitions(cursor, device_class, rows)
                telemetry_stored += self._insert_telemetry(cursor, device_class, rows)
            events = _insert_many(
                cursor,
                "INSERT INTO device_events (ts, device_id, kind, seq, severity, message, data,"
                " received_at) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)"
                " ON CONFLICT DO NOTHING",
                [
                    (
                        e.ts,
                        e.topic.device_id,
                        e.kind,
                        e.seq,
                        e.severity.value,
                        e.message,
                        e.data_json.decode(),
                        received_at,
                    )
                    for e, received_at in batch.events
                ],
            )
            states = _insert_many(
                cursor,
                "INSERT INTO device_states (ts, device_id, status, reason, boot_id, firmware,"
                " received_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [
                    (
                        s.ts,
                        s.topic.device_id,
                        s.status.value,
                        s.reason,
                        s.boot_id,
                        s.firmware,
                        received_at,
                    )
                    for s, received_at in batch.states
                ],
            )
            sent = _commands_sent(cursor, batch.command_acks)
            answers = [r for r in batch.command_acks if _command_of(r) in sent]
            unknown = [r.unknown() for r in batch.command_acks if _command_of(r) not in sent]
            acks = _insert_many(
                cursor,
                "INSERT INTO command_acks (device_id, command_id, ts, outcome, reason,"
                " received_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [
                    (
                        r.ack.topic.device_id,
                        r.ack.command_id,
                        r.ack.ts,
                        r.ack.outcome.value,
                        r.ack.reason,
                        r.received_at,
                    )
                    for r in answers
                ],
            )
            dead = _insert_many(
                cursor,
                "INSERT INTO dead_letters (digest, received_at, topic, device_id, reason,"
                " detail, payload) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (digest) DO NOTHING",
                [
                    (d.digest, d.received_at, d.topic, d.device_id, d.reason, d.detail, d.payload)
                    for d in [*batch.dead_letters, *unknown]
                ],
            )
        # Only now: a partition created in a transaction that rolled back does not exist.
        self._partitioned_days |= new_days
        return WriteResult(
            batch.telemetry_row_count(), telemetry_stored, events, states, acks, dead, len(unknown)
        )

    def _insert_telemetry(
        self, cursor: psycopg.Cursor, device_class: DeviceClass, rows: list[TelemetryRow]
    ) -> int:
        """Insert samples, skipping values already stored; return how many rows changed.

        Fast path: COPY straight into the table, as fast as the database goes. Samples already
        stored only come with redeliveries (after a crash or a reconnection) or when a device
        splits one instant over two messages; then the primary key refuses the COPY, its
        savepoint is rolled back, and the batch is merged through the staging table. After a
        conflict the next batches of that class merge directly until one has no duplicate.
        """
        layout = _TABLES[device_class]
        if device_class not in self._merging:
            try:
                with self._connection.transaction():
                    _copy_rows(cursor, layout, layout.table, rows)
            except psycopg.errors.UniqueViolation:
                self._merging.add(device_class)
            else:
                return len(rows)
        _copy_rows(cursor, layout, layout.staging, rows)
        cursor.execute(layout.merge_statement())
        stored = max(cursor.rowcount, 0)
        if stored == len(rows):
            self._merging.discard(device_class)
        return stored

    def _ensure_partitions(
        self, cursor: psycopg.Cursor, device_class: DeviceClass, rows: list[TelemetryRow]
    ) -> set[tuple[DeviceClass, date]]:
        """Make sure the days of ``rows`` have partitions; return the days newly checked."""
        timestamps: list[datetime] = [row[0] for row in rows]  # type: ignore[misc]
        first, last = min(timestamps), max(timestamps)
        first_day, last_day = first.astimezone(UTC).date(), last.astimezone(UTC).date()
        days = {
            (device_class, first_day + timedelta(days=offset))
            for offset in range((last_day - first_day).days + 1)
        } - self._partitioned_days
        if days:
            cursor.execute(
                "SELECT ensure_telemetry_partitions(%s, %s, %s)",
                (device_class.value, first, last),
            )
        return days


def _copy_rows(
    cursor: psycopg.Cursor,
    layout: _TelemetryTable,
    into: sql.Identifier,
    rows: list[TelemetryRow],
) -> None:
    with cursor.copy(layout.copy_statement(into)) as copy:
        copy.set_types(layout.copy_types)
        for row in rows:
            copy.write_row(row)


def _command_of(received: ReceivedAck) -> tuple[str, str]:
    return received.ack.topic.device_id, received.ack.command_id


def _commands_sent(cursor: psycopg.Cursor, received: list[ReceivedAck]) -> set[tuple[str, str]]:
    """The (device, command id) of ``received`` that name a command recorded in ``commands``."""
    if not received:
        return set()
    cursor.execute(
        "SELECT device_id, id FROM commands WHERE id = ANY(%s)",
        ([r.ack.command_id for r in received],),
    )
    return {(device_id, command_id) for device_id, command_id in cursor.fetchall()}


def _insert_many(cursor: psycopg.Cursor, sql: str, rows: list[tuple[object, ...]]) -> int:
    if not rows:
        return 0
    cursor.executemany(sql, rows, returning=False)
    return max(cursor.rowcount, 0)
