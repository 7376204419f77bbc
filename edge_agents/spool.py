"""Store-and-forward spool: what an agent could not deliver yet, kept on disk in SQLite.

Messages wait here, oldest first, until the broker acknowledges them; they are replayed in the
order they were spooled. The spool is bounded by bytes and by age. When it is full the oldest
messages are dropped to make room (telemetry: the newest data matters most for operating the
city, and a gap is visible through sequence numbers); expired messages are dropped too. Every
drop is counted, and the counts survive restarts so the agent can report them.

A broker acknowledges a QoS 1 message once it holds it in memory, and writes it to disk only
every few seconds (Mosquitto's ``autosave_interval``). A broker crash in between loses what it
had acknowledged and not yet delivered. So an acknowledged message is not forgotten at once: it
moves to a *replay window* and is kept until messages acknowledged ``replay_window`` later
push it out. :meth:`Spool.requeue_acknowledged`, called at every (re)connection, marks the
window to be sent again, ahead of the queue; the platform stores each message once whatever
number of times it arrives. The window is measured from the newest acknowledgement, not from
now: an idle device keeps its last messages however long the outage, because the broker's
last save before a crash may have been before them. A message sent again keeps the time of its
first acknowledgement, so a link that drops every few seconds does not keep the window from
ageing. The window lies outside the spool's bound (it is never dropped to make room for new
messages, and never counted as a loss) and has a bound of its own, a quarter of the spool's:
past it, its oldest messages are forgotten first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

DEFAULT_REPLAY_WINDOW: Final = timedelta(seconds=10)
"""More than three times the 3 s between the starts of two saves of the platform's Mosquitto
(``autosave_interval 2``: Mosquitto 2.0 saves once more than 2 whole seconds have passed),
the longest a crash can reach back (docs/chaos.md, broker crashes)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spooled (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    spooled_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS acknowledged (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    spooled_at REAL NOT NULL,
    acknowledged_at REAL NOT NULL,
    resend INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS acknowledged_by_time ON acknowledged (acknowledged_at, id);
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

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        max_age: timedelta,
        replay_window: timedelta = DEFAULT_REPLAY_WINDOW,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if replay_window < timedelta(0):
            raise ValueError("replay_window cannot be negative")
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.replay_window = replay_window
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        # WAL and synchronous=NORMAL: a power cut loses at most the last few appends, never
        # corrupts the file; FULL would fsync every sample on an SD card.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._bytes = self._stored_bytes()
        self._window_bytes = self._stored_bytes("acknowledged")

    @property
    def max_window_bytes(self) -> int:
        return self.max_bytes // 4

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
        """Up to ``limit`` messages to send, in the order they were spooled: the replay window
        marked for sending again first, since it was spooled before the rest."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, spooled_at FROM acknowledged WHERE resend = 1"
            " UNION ALL SELECT id, topic, payload, qos, spooled_at FROM spooled"
            " ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            SpooledMessage(id_, topic, bytes(payload), qos, datetime.fromtimestamp(at, UTC))
            for id_, topic, payload, qos, at in rows
        ]

    def remove(self, ids: Sequence[int]) -> None:
        """Forget messages for good (the broker refused them: sending again would not help)."""
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        with self._transaction():
            self._take_out(ids)
            self._forget_window(f"id IN ({marks})", tuple(ids))

    def acknowledge(self, ids: Sequence[int], at: datetime) -> None:
        """The broker has acknowledged these messages (at ``at``, on the wall clock): keep them
        in the replay window, and forget what the window has passed."""
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        with self._transaction():
            self._db.execute(  # sent again from the window: it keeps its first acknowledgement
                f"UPDATE acknowledged SET resend = 0 WHERE id IN ({marks})",  # noqa: S608
                tuple(ids),
            )
            self._db.execute(
                "INSERT INTO acknowledged (id, topic, payload, qos, spooled_at, acknowledged_at)"  # noqa: S608
                " SELECT id, topic, payload, qos, spooled_at, ? FROM spooled"
                f" WHERE id IN ({marks})",
                (at.timestamp(), *ids),
            )
            self._window_bytes += self._take_out(ids)
            self._forget_window(
                "acknowledged_at <= ? AND resend = 0", ((at - self.replay_window).timestamp(),)
            )
            if self._window_bytes > self.max_window_bytes:  # keep the newest that fit
                self._forget_window(
                    "id IN (SELECT id FROM (SELECT id, sum(length(payload)) OVER"
                    " (ORDER BY acknowledged_at DESC, id DESC) AS newer FROM acknowledged)"
                    " WHERE newer > ?)",
                    (self.max_window_bytes,),
                )

    def requeue_acknowledged(self, now: datetime) -> int:
        """Mark the replay window to be sent again (see the module's docstring); return how
        many messages. Those older than the spool keeps are forgotten instead: they were
        delivered once, so that is no loss to count."""
        with self._transaction():
            self._forget_window("spooled_at < ?", ((now - self.max_age).timestamp(),))
            marked = self._db.execute("UPDATE acknowledged SET resend = 1 WHERE resend = 0")
        return marked.rowcount

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

    def _take_out(self, ids: Sequence[int]) -> int:
        """Delete these messages from the queue; return their payload bytes."""
        marks = ",".join("?" * len(ids))
        row = self._db.execute(
            f"SELECT coalesce(sum(length(payload)), 0) FROM spooled WHERE id IN ({marks})",  # noqa: S608 - only placeholders
            tuple(ids),
        ).fetchone()
        self._db.execute(f"DELETE FROM spooled WHERE id IN ({marks})", tuple(ids))  # noqa: S608
        self._bytes -= int(row[0])
        return int(row[0])

    def _forget_window(self, condition: str, parameters: tuple[object, ...]) -> None:
        """Delete the replay window's messages that meet ``condition`` (an SQL literal)."""
        row = self._db.execute(
            f"SELECT coalesce(sum(length(payload)), 0) FROM acknowledged WHERE {condition}",  # noqa: S608 - our literals
            parameters,
        ).fetchone()
        self._db.execute(f"DELETE FROM acknowledged WHERE {condition}", parameters)  # noqa: S608
        self._window_bytes -= int(row[0])

    def _stored_bytes(self, table: str = "spooled") -> int:
        row = self._db.execute(
            f"SELECT coalesce(sum(length(payload)), 0) FROM {table}"  # noqa: S608 - our literal
        ).fetchone()
        return int(row[0])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._bytes = self._stored_bytes()
            self._window_bytes = self._stored_bytes("acknowledged")
            raise
        self._db.execute("COMMIT")
