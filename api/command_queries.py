"""Commands sent through the API and what came of them (tables ``commands``, migration 0005,
and ``command_acks``, written by ingest from the devices' ``.../cmd_ack`` messages).

A command's outcome is read, never stored by the API: the device's acknowledgement when one
arrived (``applied`` preferred, then the latest: a resend that was applied after a first
delivery expired counts as applied), else the outcome its sender recorded (``failed`` when the
broker did not take it; the control services record theirs), else ``unanswered`` once it
expired, else ``pending``. An answer arriving after the expiry still replaces ``unanswered``.

A group command is one command per device. Its id names the batch and its size
(``grp-<16 hex>-n<count>``) and each device's command id is the group id plus ``-<index>``,
so the group's commands are found by primary key without a table of groups.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import msgspec
import psycopg
from psycopg.rows import dict_row

from protocol.commands import ACTIONS, Params
from protocol.topics import DeviceClass

Outcome = Literal["pending", "applied", "rejected", "expired", "failed", "unanswered"]
OUTCOMES: Final[tuple[Outcome, ...]] = (
    "pending",
    "applied",
    "rejected",
    "expired",
    "failed",
    "unanswered",
)
MAX_GROUP_SIZE: Final = 5_000
"""Devices one group command may reach (the id format allows up to 99,999)."""
GROUP_ID_PATTERN: Final = re.compile(r"^grp-[0-9a-f]{16}-n([1-9][0-9]{0,4})$")
_MEMBER_PATTERN: Final = re.compile(r"^(grp-[0-9a-f]{16}-n[1-9][0-9]{0,4})-([0-9]{1,5})$")
API_SOURCE_PREFIX: Final = "api:"


class InvalidCommandError(ValueError):
    """A command the protocol refuses for the device class; the message says why."""


def check_params(device_class: DeviceClass, action: str, params: Mapping[str, Any]) -> Params:
    """The parameters of ``action`` for a device of ``device_class`` (protocol/commands.py),
    as the agent will check them; :class:`InvalidCommandError` saying why not."""
    known = ACTIONS[device_class]
    params_type = known.get(action)
    if params_type is None:
        raise InvalidCommandError(
            f"a {device_class} knows no action {action!r}; its actions: {', '.join(sorted(known))}"
        )
    try:
        return msgspec.convert(dict(params), params_type)
    except (msgspec.ValidationError, ValueError, TypeError) as error:
        raise InvalidCommandError(f"invalid params for {action}: {error}") from error


def source_of(username: str) -> str:
    """The ``source`` of the commands a user sends through the API."""
    return f"{API_SOURCE_PREFIX}{username}"


def new_command_id() -> str:
    return f"cmd-{secrets.token_hex(8)}"


def new_group_id(size: int) -> str:
    if not 1 <= size <= MAX_GROUP_SIZE:
        raise ValueError(f"a group command reaches 1 to {MAX_GROUP_SIZE} devices, not {size}")
    return f"grp-{secrets.token_hex(8)}-n{size}"


def member_id(group_id: str, index: int) -> str:
    return f"{group_id}-{index}"


def member_ids(group_id: str) -> list[str] | None:
    """The ids of a group command's device commands; None if ``group_id`` is not a group's."""
    match = GROUP_ID_PATTERN.fullmatch(group_id)
    if match is None:
        return None
    return [member_id(group_id, index) for index in range(int(match.group(1)))]


def group_of(command_id: str) -> str | None:
    """The group command a device command belongs to, if any."""
    match = _MEMBER_PATTERN.fullmatch(command_id)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class CommandRecord:
    id: str
    device_id: str
    action: str
    params: dict[str, Any]
    source: str
    reason: str
    issued_at: datetime
    expires_at: datetime
    attempts: int
    outcome: Outcome
    outcome_at: datetime | None
    outcome_reason: str
    acknowledged_at: datetime | None
    """When the platform received the device's acknowledgement."""

    @property
    def group_id(self) -> str | None:
        return group_of(self.id)


_SELECT: Final = """
    SELECT c.id, c.device_id, c.action, c.params, c.source, c.reason, c.issued_at, c.expires_at,
        c.attempts,
        CASE WHEN a.outcome IS NOT NULL THEN a.outcome
             WHEN c.outcome IS NOT NULL THEN c.outcome
             WHEN c.expires_at <= %(now)s THEN 'unanswered'
             ELSE 'pending' END AS outcome,
        CASE WHEN a.outcome IS NOT NULL THEN a.ts
             WHEN c.outcome IS NOT NULL THEN c.outcome_at
             WHEN c.expires_at <= %(now)s THEN c.expires_at END AS outcome_at,
        CASE WHEN a.outcome IS NOT NULL THEN a.reason
             WHEN c.outcome IS NOT NULL THEN c.outcome_reason
             WHEN c.expires_at <= %(now)s THEN 'no acknowledgement before it expired'
             ELSE '' END AS outcome_reason,
        a.received_at AS acknowledged_at
    FROM commands c
    LEFT JOIN LATERAL (
        SELECT outcome, ts, reason, received_at FROM command_acks k
        WHERE k.device_id = c.device_id AND k.command_id = c.id
        ORDER BY k.outcome = 'applied' DESC, k.ts DESC LIMIT 1
    ) a ON true
"""


@dataclass(frozen=True, slots=True)
class CommandFilter:
    device_ids: Sequence[str] | None = None
    """None: every device."""
    source: str | None = None
    outcome: Outcome | None = None
    since: datetime | None = None
    """Commands issued at or after."""


def list_commands(
    connection: psycopg.Connection[Any],
    chosen: CommandFilter,
    now: datetime,
    *,
    limit: int,
    offset: int,
) -> tuple[list[CommandRecord], int]:
    """One page of the commands ``chosen`` selects, newest first, and how many in all."""
    inner = (
        _SELECT + " WHERE (%(devices)s::text[] IS NULL OR c.device_id = ANY(%(devices)s))"
        " AND (%(source)s::text IS NULL OR c.source = %(source)s)"
        " AND (%(since)s::timestamptz IS NULL OR c.issued_at >= %(since)s)"
    )
    where = " WHERE %(outcome)s::text IS NULL OR outcome = %(outcome)s"
    params = {
        "now": now,
        "devices": list(chosen.device_ids) if chosen.device_ids is not None else None,
        "source": chosen.source,
        "since": chosen.since,
        "outcome": chosen.outcome,
        "limit": limit,
        "offset": offset,
    }
    with connection.cursor(row_factory=dict_row) as cursor:
        counted = cursor.execute(
            f"SELECT count(*) FROM ({inner}) x{where}",  # noqa: S608 - fixed text, no input
            params,
        ).fetchone()
        rows = cursor.execute(
            f"SELECT * FROM ({inner}) x{where}"  # noqa: S608 - fixed text, no input
            " ORDER BY issued_at DESC, id LIMIT %(limit)s OFFSET %(offset)s",
            params,
        ).fetchall()
    total = int(counted["count"]) if counted else 0
    return [CommandRecord(**row) for row in rows], total


def find_commands(
    connection: psycopg.Connection[Any], command_ids: Sequence[str], now: datetime
) -> list[CommandRecord]:
    """The commands of ``command_ids`` that exist, in that order."""
    with connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            _SELECT + " WHERE c.id = ANY(%(ids)s)", {"ids": list(command_ids), "now": now}
        ).fetchall()
    found = {row["id"]: CommandRecord(**row) for row in rows}
    return [found[command_id] for command_id in command_ids if command_id in found]


@dataclass(frozen=True, slots=True)
class Ack:
    ts: datetime
    outcome: str
    reason: str
    received_at: datetime


def acks_of(connection: psycopg.Connection[Any], device_id: str, command_id: str) -> list[Ack]:
    """Every acknowledgement of a command (one per delivery the device answered)."""
    rows = connection.execute(
        "SELECT ts, outcome, reason, received_at FROM command_acks"
        " WHERE device_id = %s AND command_id = %s ORDER BY ts",
        (device_id, command_id),
    ).fetchall()
    return [Ack(*row) for row in rows]


def group_label(
    connection: psycopg.Connection[Any], group_id: str, issued_at: datetime
) -> str | None:
    """The group a group command was sent to, as its audit record says."""
    row = connection.execute(
        "SELECT detail->>'group' FROM audit_log WHERE at = %s AND target = %s"
        " AND action = 'command.send_group' LIMIT 1",
        (issued_at, group_id),
    ).fetchone()
    return None if row is None else row[0]


def count_outcomes(records: Sequence[CommandRecord]) -> dict[Outcome, int]:
    """How many commands have each outcome (every outcome present, zeros included)."""
    counts: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
    for record in records:
        counts[record.outcome] += 1
    return counts
