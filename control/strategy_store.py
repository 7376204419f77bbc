"""The energy strategies as versioned documents (:mod:`storage.versions`): the strategy kind and
the functions named after it (:func:`save_strategy`, :func:`activate`, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import psycopg

from control.strategy import (
    PACKAGED_STRATEGY,
    Strategy,
    StrategyFileError,
    load_strategy,
    parse_strategy,
)
from storage.versions import (
    Event,
    Kind,
    StoredVersion,
    Summary,
    VersionStoreError,
    activate_version,
    active_version,
    events,
    rollback_version,
    save_version,
    stored_version,
    summaries,
)

STRATEGY_LOCK: Final = 7_263_005
"""Advisory lock taken by every change of a strategy (the migration lock is 7263001)."""


def read_strategy(body: str, source: str) -> Strategy:
    """:func:`~control.strategy.parse_strategy` for text from anyone (the API): a number too
    large for a duration is a mistake in the text too, not a crash."""
    try:
        return parse_strategy(body, source)
    except ArithmeticError as error:  # timedelta overflows (protocol.durations)
        raise StrategyFileError(
            f"{source}: a value is too large ({error}): check the durations"
        ) from error


def check_strategy(body: str, name: str) -> Strategy:
    """The strategy ``body`` saved as ``name``: it parses, and its text gives that name."""
    parsed = read_strategy(body, f"strategy {name!r}")
    if parsed.name != name:
        raise VersionStoreError(f"the strategy is named {name!r} but its text says {parsed.name!r}")
    return parsed


STRATEGIES: Final = Kind(
    noun="strategy",
    versions_table="strategies",
    events_table="strategy_events",
    active_table="active_strategy",
    lock=STRATEGY_LOCK,
    check=check_strategy,
)


@dataclass(frozen=True, slots=True)
class ActiveStrategy:
    strategy: Strategy
    version: int
    activated_at: datetime
    activated_by: str

    @property
    def name(self) -> str:
        return self.strategy.name


def save_strategy_version(
    connection: psycopg.Connection, strategy: Strategy, author: str, reason: str
) -> tuple[StoredVersion, bool]:
    """Store ``strategy`` as its name's next version; True when a new version was made (see
    :func:`save_version`)."""
    return save_version(connection, STRATEGIES, strategy.name, strategy.text, author, reason)


def save_strategy(
    connection: psycopg.Connection, strategy: Strategy, author: str, reason: str
) -> int:
    """Store ``strategy``; its version number (the existing one if the body is unchanged)."""
    saved, _ = save_strategy_version(connection, strategy, author, reason)
    return saved.version


def strategy_version(
    connection: psycopg.Connection, name: str, version: int | None = None
) -> tuple[Strategy, StoredVersion]:
    """A stored version (the latest when ``version`` is None), parsed, with its metadata."""
    body, found = stored_version(connection, STRATEGIES, name, version)
    return parse_strategy(body, f"{name} version {found.version}"), found


def list_strategies(connection: psycopg.Connection) -> list[Summary]:
    """Every stored name with its latest version and, if in force, its active version."""
    return summaries(connection, STRATEGIES)


def active_strategy(connection: psycopg.Connection) -> ActiveStrategy | None:
    """The strategy in force, or None when none was ever activated."""
    active = active_version(connection, STRATEGIES)
    if active is None:
        return None
    strategy, _ = strategy_version(connection, active.name, active.version)
    return ActiveStrategy(strategy, active.version, active.activated_at, active.activated_by)


def strategy_in_force(connection: psycopg.Connection) -> tuple[Strategy, str]:
    """The active strategy, else the packaged default, with words saying which."""
    active = active_strategy(connection)
    if active is not None:
        return active.strategy, f"{active.name} version {active.version} (active)"
    packaged = load_strategy(PACKAGED_STRATEGY)
    return packaged, f"{packaged.name} (packaged default: none activated)"


def activate(
    connection: psycopg.Connection, name: str, version: int, actor: str, reason: str
) -> tuple[str, int] | None:
    """Put strategy ``name`` ``version`` in force; the (name, version) it replaces, if any."""
    return activate_version(connection, STRATEGIES, name, version, actor, reason)


def rollback(
    connection: psycopg.Connection, actor: str, reason: str
) -> tuple[tuple[str, int] | None, tuple[str, int]]:
    """Re-activate the strategy active before the current one; (now active, replaced). Now
    active is None when the packaged strategy is back in force."""
    return rollback_version(connection, STRATEGIES, actor, reason)


def history(
    connection: psycopg.Connection, name: str | None = None, limit: int | None = None
) -> list[Event]:
    """The strategies' audit trail, newest first (see :func:`events`)."""
    return events(connection, STRATEGIES, name, limit)
