"""Store-and-forward spool: what an agent could not deliver yet, kept on disk in SQLite.

Messages wait here, oldest first, until the broker acknowledges them; they are replayed in the
order they were spooled. The spool is bounded by bytes and by age. When it is full the oldest
messages are dropped to make room (telemetry: the newest data matters most for operating the
city, and a gap is visible through sequence numbers); expired messages are dropped too. Every
drop is counted, and the counts survive restarts so the agent can report them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spooled (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    spooled_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters VALUES ('dropped_overflow', 0), ('dropped_expired', 0);
"""


class SpoolError(RuntimeError):
    """The spool cannot take a message (for instance one larger than the whole spool)."""


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    spooled_at: datetime


@dataclass(frozen=True, slots=True)
class SpoolStats:
    messages: int
    bytes: int
    dropped_overflow: int
    """Messages dropped, oldest first, to make room for newer ones."""
    dropped_expired: int
    """Messages dropped because they were older than the spool keeps."""


class Spool:
    """A bounded, persistent FIFO of MQTT messages. Not thread-safe: one agent loop owns it."""

    def __init__(self, path: Path, max_bytes: int, max_age: timedelta) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.max_age = max_age
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        # WAL and synchronous=NORMAL: a power cut loses at most the last few appends, never
        # corrupts the file; FULL would fsync every sample on an SD card.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._bytes = self._stored_bytes()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def append(self, topic: str, payload: bytes, qos: int, now: datetime) -> None:
        """Keep a message for later delivery, dropping the oldest ones if there is no room."""
        if len(payload) > self.max_bytes:
            raise SpoolError(
                f"a {len(payload)}-byte message cannot fit a {self.max_bytes}-byte spool"
            )
        with self._transaction():
            self._drop_oldest_until_free(len(payload))
            self._db.execute(
                "INSERT INTO spooled (topic, payload, qos, spooled_at) VALUES (?, ?, ?, ?)",
                (topic, payload, qos, now.timestamp()),
            )
            self._bytes += len(payload)

    def oldest(self, limit: int) -> list[SpooledMessage]:
        """Up to ``limit`` messages in the order they were spooled."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, spooled_at FROM spooled ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            SpooledMessage(id_, topic, bytes(payload), qos, datetime.fromtimestamp(at, UTC))
            for id_, topic, payload, qos, at in rows
        ]

    def remove(self, ids: Sequence[int]) -> None:
        """Forget messages the broker has acknowledged."""
        if not ids:
            return
        with self._transaction():
            marks = ",".join("?" * len(ids))
            row = self._db.execute(
                f"SELECT coalesce(sum(length(payload)), 0) FROM spooled WHERE id IN ({marks})",  # noqa: S608 - only placeholders
                tuple(ids),
            ).fetchone()
            self._db.execute(f"DELETE FROM spooled WHERE id IN ({marks})", tuple(ids))  # noqa: S608
            self._bytes -= int(row[0])

    def expire(self, now: datetime) -> int:
        """Drop messages older than ``max_age``; return how many."""
        cutoff = (now - self.max_age).timestamp()
        with self._transaction():
            row = self._db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM spooled"
                " WHERE spooled_at < ?",
                (cutoff,),
            ).fetchone()
            count, size = int(row[0]), int(row[1])
            if count:
                self._db.execute("DELETE FROM spooled WHERE spooled_at < ?", (cutoff,))
                self._count("dropped_expired", count)
                self._bytes -= size
        return count

    def next_sequence(self, name: str) -> int:
        """The next number of the named sequence (0, 1, 2...), kept across restarts."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO counters VALUES (?, 0) ON CONFLICT (name) DO UPDATE"
                " SET value = value + 1",
                (f"seq:{name}",),
            )
            (value,) = self._db.execute(
                "SELECT value FROM counters WHERE name = ?", (f"seq:{name}",)
            ).fetchone()
        return int(value)

    def stats(self) -> SpoolStats:
        counters = dict(
            self._db.execute(
                "SELECT name, value FROM counters WHERE name LIKE 'dropped_%'"
            ).fetchall()
        )
        (messages,) = self._db.execute("SELECT count(*) FROM spooled").fetchone()
        return SpoolStats(
            int(messages), self._bytes, counters["dropped_overflow"], counters["dropped_expired"]
        )

    def _drop_oldest_until_free(self, needed: int) -> None:
        dropped = 0
        while self._bytes + needed > self.max_bytes:
            row = self._db.execute(
                "SELECT id, length(payload) FROM spooled ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                break
            self._db.execute("DELETE FROM spooled WHERE id = ?", (row[0],))
            self._bytes -= int(row[1])
            dropped += 1
        if dropped:
            self._count("dropped_overflow", dropped)

    def _count(self, name: str, amount: int) -> None:
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (amount, name))

    def _stored_bytes(self) -> int:
        row = self._db.execute("SELECT coalesce(sum(length(payload)), 0) FROM spooled").fetchone()
        return int(row[0])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._bytes = self._stored_bytes()
            raise
        self._db.execute("COMMIT")
