"""Versioned documents in the database: every version kept, one active, every change audited.

Two kinds of document are kept this way: the energy strategies (``strategies``,
``strategy_events``, ``active_strategy``) and the rule sets (``rule_sets``,
``rule_set_events``, ``active_rule_set``, see :mod:`rules.rule_set_store`). A :class:`Kind`
names a kind's three tables and the check its bodies must pass; the functions below take one,
so saving, listing, showing, activating, rolling back and the trail exist once.

A document is saved as the YAML it was written in (versions 1, 2, ... per name; saving a body
identical to the latest version of its name gives that version back and records nothing), and
only after it checked. One version is active at a time: the single row of the kind's active
table, changed only in the same transaction as the event row that says who changed it, when
and why, and which version was active before.

Rollback is an undo: it re-activates the version that was active before the current one was
activated, and rolling back again goes one step further back (the activations, minus those
rolled back, form a stack replayed from the audit trail). Rolling back the first activation
leaves no version active: the packaged document (the rule file, the packaged strategy) is in
force again, and the trail's ``rolled_back`` row names no version. Changes take one advisory
lock per kind, so two people activating at once are serialised and the trail stays a true
account.

The strategies' kind is in :mod:`control.strategy_store`, the rule sets' in
:mod:`rules.rule_set_store`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import dict_row


class VersionStoreError(ValueError):
    """A change to stored versions that cannot be made; the message says why."""


class UnknownVersionError(VersionStoreError, LookupError):
    """No stored document of that name, or no such version of it."""


class VersionConflictError(VersionStoreError):
    """A change the current state does not allow: activating the version already active,
    rolling back with nothing to roll back to."""


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of versioned document: its tables and what its bodies must pass to be saved."""

    noun: str
    """How messages name one ("strategy", "rule set")."""
    versions_table: str
    events_table: str
    active_table: str
    lock: int
    """The advisory lock its changes take."""
    check: Callable[[str, str], object]
    """``check(body, name)`` raises a :class:`ValueError` naming the line of a
    mistake when ``body`` cannot be saved as ``name``; what it returns is not used."""


class Action(StrEnum):
    SAVED = "saved"
    ACTIVATED = "activated"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What is known of a stored version besides its content."""

    name: str
    version: int
    digest: str
    """sha256 of the body, hexadecimal."""
    author: str
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Summary:
    name: str
    latest: int
    versions: int
    updated_at: datetime
    """When the latest version was saved."""
    active_version: int | None
    """The version of this name in force, if one is."""


@dataclass(frozen=True, slots=True)
class ActiveVersion:
    name: str
    version: int
    activated_at: datetime
    activated_by: str


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the audit trail: ``actor`` did ``action`` to ``name`` ``version``."""

    id: int
    at: datetime
    actor: str
    action: Action
    name: str | None
    """None for a rollback to the packaged document (no version active)."""
    version: int | None
    reason: str
    previous_name: str | None
    """Saved: the name again (the version it follows); activated or rolled back: the one that
    was active before. None for a first version or a first activation."""
    previous_version: int | None


def digest_of(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _required(value: str, what: str) -> str:
    if not value or not value.strip():
        raise VersionStoreError(f"{what} is required and must not be empty")
    return value.strip()


def _lock(connection: psycopg.Connection, kind: Kind) -> None:
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (kind.lock,))


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _record(  # noqa: PLR0917 - one value per column of the trail
    connection: psycopg.Connection,
    kind: Kind,
    actor: str,
    action: Action,
    name: str | None,
    version: int | None,
    reason: str,
    previous: tuple[str, int] | None,
) -> None:
    connection.execute(
        sql.SQL(
            "INSERT INTO {}"
            " (at, actor, action, name, version, reason, previous_name, previous_version)"
            " VALUES (now(), %s, %s, %s, %s, %s, %s, %s)"
        ).format(_table(kind.events_table)),
        (actor, action.value, name, version, reason, *(previous or (None, None))),
    )


def save_version(  # noqa: PLR0917 - the document and who saves it why
    connection: psycopg.Connection,
    kind: Kind,
    name: str,
    body: str,
    author: str,
    reason: str,
) -> tuple[StoredVersion, bool]:
    """Store ``body`` as ``name``'s next version; True when a new version was made.

    The body is checked first (the kind's error names the line of a mistake), so only a
    usable document is ever stored. A body identical to the latest version of its name is not
    stored again: that version is returned with False, and no event is recorded.
    """
    author, reason = _required(author, "an author"), _required(reason, "a reason")
    name = _required(name, "a name")
    kind.check(body, name)
    digest = digest_of(body)
    with connection.transaction():
        _lock(connection, kind)
        latest = _version_row(connection, kind, name, None)
        if latest is not None and latest.digest == digest:
            return latest, False
        number = 1 if latest is None else latest.version + 1
        with connection.cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                sql.SQL(
                    "INSERT INTO {} (name, version, body, digest, author, reason)"
                    " VALUES (%s, %s, %s, %s, %s, %s)"
                    " RETURNING name, version, digest, author, reason, created_at"
                ).format(_table(kind.versions_table)),
                (name, number, body, digest, author, reason),
            )
            row = cursor.fetchone()
        if row is None:
            raise psycopg.DataError("INSERT ... RETURNING gave no row")
        before = None if latest is None else (latest.name, latest.version)
        _record(connection, kind, author, Action.SAVED, name, number, reason, before)
    return StoredVersion(**row), True


_METADATA: Final = "SELECT name, version, digest, author, reason, created_at FROM {}"


def _version_row(
    connection: psycopg.Connection, kind: Kind, name: str, version: int | None
) -> StoredVersion | None:
    query = sql.SQL(_METADATA + " WHERE name = %s").format(_table(kind.versions_table))
    if version is None:
        row = _one(connection, query + sql.SQL(" ORDER BY version DESC LIMIT 1"), (name,))
    else:
        row = _one(connection, query + sql.SQL(" AND version = %s"), (name, version))
    return None if row is None else StoredVersion(**row)


def _one(
    connection: psycopg.Connection, query: sql.Composed, params: tuple[Any, ...]
) -> dict[str, Any] | None:
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, params)
        return cursor.fetchone()


def _unknown(
    connection: psycopg.Connection, kind: Kind, name: str, version: int | None
) -> UnknownVersionError:
    latest = _version_row(connection, kind, name, None)
    if latest is None:
        known = [
            row[0]
            for row in connection.execute(
                sql.SQL("SELECT DISTINCT name FROM {}").format(_table(kind.versions_table))
            )
        ]
        hint = f"stored: {', '.join(sorted(known))}" if known else "none is stored yet"
        return UnknownVersionError(f"there is no {kind.noun} named {name!r} ({hint})")
    return UnknownVersionError(
        f"{kind.noun} {name!r} has no version {version} (versions 1 to {latest.version})"
    )


def stored_version(
    connection: psycopg.Connection, kind: Kind, name: str, version: int | None = None
) -> tuple[str, StoredVersion]:
    """A stored version's body (the latest when ``version`` is None) and its metadata."""
    found = _version_row(connection, kind, name, version)
    if found is None:
        raise _unknown(connection, kind, name, version)
    row = connection.execute(
        sql.SQL("SELECT body FROM {} WHERE name = %s AND version = %s").format(
            _table(kind.versions_table)
        ),
        (name, found.version),
    ).fetchone()
    if row is None:
        raise UnknownVersionError(f"{kind.noun} {name!r} has no version {found.version}")
    return str(row[0]), found


def versions_of(connection: psycopg.Connection, kind: Kind, name: str) -> list[StoredVersion]:
    """Every stored version of ``name``, oldest first; UnknownVersionError when none is."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            sql.SQL(_METADATA + " WHERE name = %s ORDER BY version").format(
                _table(kind.versions_table)
            ),
            (name,),
        )
        found = [StoredVersion(**row) for row in cursor.fetchall()]
    if not found:
        raise _unknown(connection, kind, name, None)
    return found


def summaries(connection: psycopg.Connection, kind: Kind) -> list[Summary]:
    """Every stored name with its latest version and, if in force, its active version."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            sql.SQL(
                "SELECT s.name, max(s.version) AS latest, count(*) AS versions,"
                " max(s.created_at) AS updated_at, a.version AS active_version"
                " FROM {} s LEFT JOIN {} a ON a.name = s.name"
                " GROUP BY s.name, a.version ORDER BY s.name"
            ).format(_table(kind.versions_table), _table(kind.active_table))
        )
        return [Summary(**row) for row in cursor.fetchall()]


def active_version(connection: psycopg.Connection, kind: Kind) -> ActiveVersion | None:
    """The version in force, or None when none was ever activated."""
    row = _one(
        connection,
        sql.SQL("SELECT name, version, activated_at, activated_by FROM {} WHERE id").format(
            _table(kind.active_table)
        ),
        (),
    )
    return None if row is None else ActiveVersion(**row)


def _set_active(
    connection: psycopg.Connection, kind: Kind, name: str, version: int, actor: str
) -> None:
    connection.execute(
        sql.SQL(
            "INSERT INTO {} (id, name, version, activated_at, activated_by)"
            " VALUES (true, %s, %s, now(), %s)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version,"
            " activated_at = excluded.activated_at, activated_by = excluded.activated_by"
        ).format(_table(kind.active_table)),
        (name, version, actor),
    )


def activate_version(  # noqa: PLR0917 - what, which, who and why
    connection: psycopg.Connection,
    kind: Kind,
    name: str,
    version: int,
    actor: str,
    reason: str,
) -> tuple[str, int] | None:
    """Put ``name`` ``version`` in force; the (name, version) it replaces, if any."""
    actor, reason = _required(actor, "an actor"), _required(reason, "a reason")
    with connection.transaction():
        _lock(connection, kind)
        if _version_row(connection, kind, name, version) is None:
            raise _unknown(connection, kind, name, version)
        current = active_version(connection, kind)
        previous = None if current is None else (current.name, current.version)
        if previous == (name, version):
            raise VersionConflictError(f"{name} version {version} is already active")
        _set_active(connection, kind, name, version, actor)
        _record(connection, kind, actor, Action.ACTIVATED, name, version, reason, previous)
    return previous


def _activation_stack(connection: psycopg.Connection, kind: Kind) -> list[tuple[str, int]]:
    """The activations not rolled back, oldest first; the last one is in force."""
    stack: list[tuple[str, int]] = []
    rows = connection.execute(
        sql.SQL(
            "SELECT action, name, version FROM {}"
            " WHERE action IN ('activated', 'rolled_back') ORDER BY id"
        ).format(_table(kind.events_table))
    )
    for action, name, version in rows:
        if action == Action.ACTIVATED:
            stack.append((name, version))
        elif stack:
            stack.pop()
    return stack


def rollback_version(
    connection: psycopg.Connection, kind: Kind, actor: str, reason: str
) -> tuple[tuple[str, int] | None, tuple[str, int]]:
    """Re-activate the version active before the current one; (now active, replaced). Now
    active is None when the current one was the first activation: no version is active any
    more, and the packaged document is in force again."""
    actor, reason = _required(actor, "an actor"), _required(reason, "a reason")
    with connection.transaction():
        _lock(connection, kind)
        current = active_version(connection, kind)
        if current is None:
            raise VersionConflictError(
                f"nothing to roll back: no {kind.noun} is active (the packaged one is in force)"
            )
        replaced = (current.name, current.version)
        stack = _activation_stack(connection, kind)
        if not stack or stack[-1] != replaced:
            raise VersionConflictError(
                f"the trail does not say how {replaced[0]} version {replaced[1]} came in force;"
                " activate a version instead"
            )
        if len(stack) == 1:  # back to the packaged document
            connection.execute(sql.SQL("DELETE FROM {}").format(_table(kind.active_table)))
            _record(connection, kind, actor, Action.ROLLED_BACK, None, None, reason, replaced)
            return None, replaced
        target = stack[-2]
        _set_active(connection, kind, *target, actor)
        _record(connection, kind, actor, Action.ROLLED_BACK, *target, reason, replaced)
    return target, replaced


def events(
    connection: psycopg.Connection,
    kind: Kind,
    name: str | None = None,
    limit: int | None = None,
) -> list[Event]:
    """The audit trail, newest first; with ``name``, the events that name it (including the
    activations that replaced it)."""
    query = sql.SQL(
        "SELECT id, at, actor, action, name, version, reason, previous_name, previous_version"
        " FROM {}"
    ).format(_table(kind.events_table))
    params: list[Any] = []
    if name is not None:
        query += sql.SQL(" WHERE name = %s OR previous_name = %s")
        params += [name, name]
    query += sql.SQL(" ORDER BY id DESC")
    if limit is not None:
        query += sql.SQL(" LIMIT %s")
        params.append(limit)
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, params)
        return [Event(**{**row, "action": Action(row["action"])}) for row in cursor]
