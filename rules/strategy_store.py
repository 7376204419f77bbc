"""Energy strategies in the database: every version kept, one active, every change audited.

A strategy is saved as the YAML it was written in (``strategies``, versions 1, 2, ... per
name; saving a body identical to the latest version of its name gives that version back and
records nothing). One version is active at a time: the single row of ``active_strategy``,
changed only in the same transaction as the ``strategy_events`` row that says who changed
it, when and why, and which version was active before.

Rollback is an undo: it re-activates the version that was active before the current one was
activated, and rolling back again goes one step further back (the activations, minus those
rolled back, form a stack replayed from the audit trail). Changes take one advisory lock, so
two people activating at once are serialised and the trail stays a true account.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from rules.errors import RuleError
from rules.strategy import PACKAGED_STRATEGY, Strategy, load_strategy, parse_strategy

_LOCK: Final = 7_263_005
"""Advisory lock taken by every change (the migration lock is 7263001)."""


class StrategyStoreError(RuleError):
    """A change to the stored strategies that cannot be made; the message says why."""


class UnknownStrategyError(StrategyStoreError, LookupError):
    """No stored strategy of that name, or no such version of it."""


class Action(StrEnum):
    SAVED = "saved"
    ACTIVATED = "activated"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True, slots=True)
class StrategyVersion:
    """What is known of a stored version besides its content."""

    name: str
    version: int
    digest: str
    """sha256 of the body, hexadecimal."""
    author: str
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StrategySummary:
    name: str
    latest: int
    versions: int
    updated_at: datetime
    """When the latest version was saved."""
    active_version: int | None
    """The version of this name in force, if one is."""


@dataclass(frozen=True, slots=True)
class ActiveStrategy:
    strategy: Strategy
    version: int
    activated_at: datetime
    activated_by: str

    @property
    def name(self) -> str:
        return self.strategy.name


@dataclass(frozen=True, slots=True)
class StrategyEvent:
    """One line of the audit trail: ``actor`` did ``action`` to ``name`` ``version``."""

    id: int
    at: datetime
    actor: str
    action: Action
    name: str
    version: int
    reason: str
    previous_name: str | None
    """Saved: the name again (the version it follows); activated or rolled back: the one that
    was active before. None for a first version or a first activation."""
    previous_version: int | None


def digest_of(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _required(value: str, what: str) -> str:
    if not value or not value.strip():
        raise StrategyStoreError(f"{what} is required and must not be empty")
    return value.strip()


def _lock(connection: psycopg.Connection) -> None:
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))


def _record(  # noqa: PLR0917 - one value per column of the trail
    connection: psycopg.Connection,
    actor: str,
    action: Action,
    name: str,
    version: int,
    reason: str,
    previous: tuple[str, int] | None,
) -> None:
    connection.execute(
        "INSERT INTO strategy_events"
        " (at, actor, action, name, version, reason, previous_name, previous_version)"
        " VALUES (now(), %s, %s, %s, %s, %s, %s, %s)",
        (actor, action.value, name, version, reason, *(previous or (None, None))),
    )


def save_strategy_version(
    connection: psycopg.Connection, strategy: Strategy, author: str, reason: str
) -> tuple[StrategyVersion, bool]:
    """Store ``strategy`` as its name's next version; True when a new version was made.

    The body is parsed again first (a :class:`~rules.strategy.StrategyFileError` names the
    line of a mistake), so only a usable strategy is ever stored. A body identical to the
    latest version of its name is not stored again: that version is returned with False,
    and no event is recorded.
    """
    author, reason = _required(author, "an author"), _required(reason, "a reason")
    parsed = parse_strategy(strategy.text, f"strategy {strategy.name!r}")
    if parsed.name != strategy.name:
        raise StrategyStoreError(
            f"the strategy is named {strategy.name!r} but its text says {parsed.name!r}"
        )
    body, digest = strategy.text, digest_of(strategy.text)
    with connection.transaction():
        _lock(connection)
        latest = _version_row(connection, parsed.name, None)
        if latest is not None and latest.digest == digest:
            return latest, False
        number = 1 if latest is None else latest.version + 1
        with connection.cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                "INSERT INTO strategies (name, version, body, digest, author, reason)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
                " RETURNING name, version, digest, author, reason, created_at",
                (parsed.name, number, body, digest, author, reason),
            )
            row = cursor.fetchone()
        if row is None:
            raise psycopg.DataError("INSERT ... RETURNING gave no row")
        before = None if latest is None else (latest.name, latest.version)
        _record(connection, author, Action.SAVED, parsed.name, number, reason, before)
    return StrategyVersion(**row), True


def save_strategy(
    connection: psycopg.Connection, strategy: Strategy, author: str, reason: str
) -> int:
    """Store ``strategy``; its version number (the existing one if the body is unchanged)."""
    saved, _ = save_strategy_version(connection, strategy, author, reason)
    return saved.version


def _version_row(
    connection: psycopg.Connection, name: str, version: int | None
) -> StrategyVersion | None:
    query = (
        "SELECT name, version, digest, author, reason, created_at FROM strategies WHERE name = %s"
    )
    if version is None:
        row = _one(connection, query + " ORDER BY version DESC LIMIT 1", (name,))
    else:
        row = _one(connection, query + " AND version = %s", (name, version))
    return None if row is None else StrategyVersion(**row)


def _one(
    connection: psycopg.Connection, query: str, params: tuple[Any, ...]
) -> dict[str, Any] | None:
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, params)
        return cursor.fetchone()


def _unknown(connection: psycopg.Connection, name: str, version: int | None) -> StrategyStoreError:
    latest = _version_row(connection, name, None)
    if latest is None:
        known = [row[0] for row in connection.execute("SELECT DISTINCT name FROM strategies")]
        hint = f"stored: {', '.join(sorted(known))}" if known else "none is stored yet"
        return UnknownStrategyError(f"there is no strategy named {name!r} ({hint})")
    return UnknownStrategyError(
        f"strategy {name!r} has no version {version} (versions 1 to {latest.version})"
    )


def strategy_version(
    connection: psycopg.Connection, name: str, version: int | None = None
) -> tuple[Strategy, StrategyVersion]:
    """A stored version (the latest when ``version`` is None), parsed, with its metadata."""
    found = _version_row(connection, name, version)
    if found is None:
        raise _unknown(connection, name, version)
    body = _body(connection, name, found.version)
    return parse_strategy(body, f"{name} version {found.version}"), found


def _body(connection: psycopg.Connection, name: str, version: int) -> str:
    row = connection.execute(
        "SELECT body FROM strategies WHERE name = %s AND version = %s", (name, version)
    ).fetchone()
    if row is None:
        raise UnknownStrategyError(f"strategy {name!r} has no version {version}")
    return str(row[0])


def list_strategies(connection: psycopg.Connection) -> list[StrategySummary]:
    """Every stored name with its latest version and, if in force, its active version."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            "SELECT s.name, max(s.version) AS latest, count(*) AS versions,"
            " max(s.created_at) AS updated_at, a.version AS active_version"
            " FROM strategies s LEFT JOIN active_strategy a ON a.name = s.name"
            " GROUP BY s.name, a.version ORDER BY s.name"
        )
        return [StrategySummary(**row) for row in cursor.fetchall()]


def _active_row(connection: psycopg.Connection) -> dict[str, Any] | None:
    return _one(
        connection,
        "SELECT name, version, activated_at, activated_by FROM active_strategy WHERE id",
        (),
    )


def active_strategy(connection: psycopg.Connection) -> ActiveStrategy | None:
    """The strategy in force, or None when none was ever activated."""
    row = _active_row(connection)
    if row is None:
        return None
    strategy, _ = strategy_version(connection, row["name"], row["version"])
    return ActiveStrategy(strategy, row["version"], row["activated_at"], row["activated_by"])


def strategy_in_force(connection: psycopg.Connection) -> tuple[Strategy, str]:
    """The active strategy, else the packaged default, with words saying which."""
    active = active_strategy(connection)
    if active is not None:
        return active.strategy, f"{active.name} version {active.version} (active)"
    packaged = load_strategy(PACKAGED_STRATEGY)
    return packaged, f"{packaged.name} (packaged default: none activated)"


def _set_active(connection: psycopg.Connection, name: str, version: int, actor: str) -> None:
    connection.execute(
        "INSERT INTO active_strategy (id, name, version, activated_at, activated_by)"
        " VALUES (true, %s, %s, now(), %s)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version,"
        " activated_at = excluded.activated_at, activated_by = excluded.activated_by",
        (name, version, actor),
    )


def activate(
    connection: psycopg.Connection, name: str, version: int, actor: str, reason: str
) -> tuple[str, int] | None:
    """Put ``name`` ``version`` in force; the (name, version) it replaces, if any."""
    actor, reason = _required(actor, "an actor"), _required(reason, "a reason")
    with connection.transaction():
        _lock(connection)
        if _version_row(connection, name, version) is None:
            raise _unknown(connection, name, version)
        current = _active_row(connection)
        previous = None if current is None else (current["name"], current["version"])
        if previous == (name, version):
            raise StrategyStoreError(f"{name} version {version} is already active")
        _set_active(connection, name, version, actor)
        _record(connection, actor, Action.ACTIVATED, name, version, reason, previous)
    return previous


def _activation_stack(connection: psycopg.Connection) -> list[tuple[str, int]]:
    """The activations not rolled back, oldest first; the last one is in force."""
    stack: list[tuple[str, int]] = []
    rows = connection.execute(
        "SELECT action, name, version FROM strategy_events"
        " WHERE action IN ('activated', 'rolled_back') ORDER BY id"
    )
    for action, name, version in rows:
        if action == Action.ACTIVATED:
            stack.append((name, version))
        elif stack:
            stack.pop()
    return stack


def rollback(
    connection: psycopg.Connection, actor: str, reason: str
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Re-activate the version active before the current one; (now active, replaced)."""
    actor, reason = _required(actor, "an actor"), _required(reason, "a reason")
    with connection.transaction():
        _lock(connection)
        current = _active_row(connection)
        if current is None:
            raise StrategyStoreError("nothing to roll back: no strategy was ever activated")
        replaced = (current["name"], current["version"])
        stack = _activation_stack(connection)
        if len(stack) < 2 or stack[-1] != replaced:
            raise StrategyStoreError(
                f"nothing to roll back to: {replaced[0]} version {replaced[1]} is in force "
                "and no earlier activation remains (activate a version instead)"
            )
        target = stack[-2]
        _set_active(connection, *target, actor)
        _record(connection, actor, Action.ROLLED_BACK, *target, reason, replaced)
    return target, replaced


def history(
    connection: psycopg.Connection, name: str | None = None, limit: int | None = None
) -> list[StrategyEvent]:
    """The audit trail, newest first; with ``name``, the events that name it (including the
    activations that replaced it)."""
    query = (
        "SELECT id, at, actor, action, name, version, reason, previous_name, previous_version"
        " FROM strategy_events"
    )
    params: list[Any] = []
    if name is not None:
        query += " WHERE name = %s OR previous_name = %s"
        params += [name, name]
    query += " ORDER BY id DESC"
    if limit is not None:
        query += " LIMIT %s"
        params.append(limit)
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, params)
        return [StrategyEvent(**{**row, "action": Action(row["action"])}) for row in cursor]
