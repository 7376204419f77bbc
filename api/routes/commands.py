"""Routes: commands to a device or a group, and what came of each.

Sending (energy managers and admins): the action and its parameters are checked against
protocol/commands.py for the device's class (422 with the reason), each command is recorded in
``commands`` (source ``api:<user>``) and committed, then published QoS 1 on the device's
command topic. While the API has no broker session the request is refused (503) and nothing
is recorded. A command the broker has not confirmed within 5 s stays pending and the request
is answered 503: paho still holds it and may deliver it until it expires (the broker drops it
then, by its MQTT message expiry, and the agent refuses it), so the caller follows it rather
than sending it again. Reading (every role that reads): outcomes follow the devices'
acknowledgements (:mod:`api.command_queries`); ``GET /commands/{id}?wait=N`` waits for them.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import Depends, Path, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, StringConstraints

from api import command_queries as queries
from api import device_queries as devices
from api.audit import record_action
from api.deps import AwareMoment, Db, Now, Reader, State, now, require
from api.problems import (
    ConflictError,
    NotFoundError,
    UnavailableError,
    UnprocessableError,
    guarded_router,
    problem_responses,
)
from api.roles import Permission, Principal
from control.commanding import Sent
from control.service import command_payload, insert_commands
from protocol.topics import IDENTIFIER_PATTERN, Channel, DeviceClass, DeviceTopic

router = guarded_router("commands")

Commander = Annotated[Principal, Depends(require(Permission.COMMAND))]
MAX_WAIT_S: Final = 30.0
POLL_S: Final = 0.2
MAX_PAGE: Final = 500
DEFAULT_EXPIRY_S: Final = 120
NOT_ACCEPTED: Final = (
    "the broker has not confirmed it within 5 s; it may still reach the device until it"
    " expires: follow it with GET /api/v1/commands/{id} before sending it again"
)

ActionName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
PlaceName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=devices.STORABLE_TEXT)
]
PlaceQuery = Annotated[
    str | None, Query(min_length=1, max_length=100, pattern=devices.STORABLE_TEXT)
]
CommandIdPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["cmd-0123456789abcdef"])
]


class CommandIn(BaseModel):
    action: ActionName = Field(examples=["set_dimming"])
    params: dict[str, Any] = Field(
        default_factory=dict,
        max_length=50,
        examples=[{"level": 40, "hold_s": 3600}],
        description="The action's parameters (docs/protocol.md); checked for the class.",
    )
    expires_in_s: int = Field(
        DEFAULT_EXPIRY_S,
        ge=10,
        le=3_600,
        description="A device receiving it later refuses it as expired; unanswered by then, "
        "it counts as unanswered.",
    )
    reason: str = Field(
        "",
        max_length=500,
        pattern=devices.STORABLE_TEXT,
        description="Why it is sent (kept with it).",
    )


class GroupCommandIn(CommandIn):
    """One command per device of the group: a street group, cabinet or building (``site``
    and ``device_class`` narrow it), or a device class within a site."""

    site: PlaceName | None = None
    street_group: PlaceName | None = None
    cabinet: PlaceName | None = None
    building: PlaceName | None = None
    device_class: DeviceClass | None = None


class AckOut(BaseModel):
    ts: datetime = Field(description="The device's time of its answer.")
    outcome: str
    reason: str
    received_at: datetime


class CommandOut(BaseModel):
    kind: Literal["device"] = "device"
    id: str
    group_id: str | None = Field(description="The group command it is part of, if any.")
    device_id: str
    action: str
    params: dict[str, Any]
    source: str = Field(description="Who sent it: api:<user>, hvac-control...")
    reason: str
    issued_at: datetime
    expires_at: datetime
    attempts: int
    outcome: queries.Outcome = Field(
        description="The device's answer, or failed (not taken by the broker), unanswered "
        "(expired without answer) or pending."
    )
    outcome_at: datetime | None
    outcome_reason: str
    acknowledged_at: datetime | None = Field(description="When its answer reached the platform.")

    @classmethod
    def of(cls, record: queries.CommandRecord) -> CommandOut:
        return cls(
            id=record.id,
            group_id=record.group_id,
            device_id=record.device_id,
            action=record.action,
            params=record.params,
            source=record.source,
            reason=record.reason,
            issued_at=record.issued_at,
            expires_at=record.expires_at,
            attempts=record.attempts,
            outcome=record.outcome,
            outcome_at=record.outcome_at,
            outcome_reason=record.outcome_reason,
            acknowledged_at=record.acknowledged_at,
        )


class CommandDetail(CommandOut):
    acks: list[AckOut] = Field(description="Every answer of the device, oldest first.")


class OutcomeCounts(BaseModel):
    pending: int
    applied: int
    rejected: int
    expired: int
    failed: int
    unanswered: int


class GroupCommandOut(BaseModel):
    kind: Literal["group"] = "group"
    group_id: str
    group: str | None = Field(description="The group it was sent to (street_group=...).")
    action: str
    params: dict[str, Any]
    source: str
    reason: str
    issued_at: datetime
    expires_at: datetime
    devices: int
    summary: OutcomeCounts
    answered: bool = Field(description="No command of the group is pending any more.")
    commands: list[CommandOut]


class CommandPage(BaseModel):
    items: list[CommandOut]
    total: int
    limit: int
    offset: int


# ----------------------------------------------------------------------------- sending


def _checked(device_class: DeviceClass, command: CommandIn) -> Any:
    try:
        return queries.check_params(device_class, command.action, command.params)
    except queries.InvalidCommandError as error:
        raise UnprocessableError(str(error)) from error


def _require_broker(state: State) -> None:
    publisher = state.publisher
    if publisher is None or not publisher.connected:
        raise UnavailableError(
            "the API has no connection to the MQTT broker; nothing was sent or recorded. "
            "Try again once the broker is up."
        )


def _send(
    connection: Db, state: State, batch: list[tuple[Sent, DeviceTopic]], source: str, at: datetime
) -> int:
    """Record ``batch`` (committed first: an answer never precedes its command's record) and
    publish it, each message expiring with its command; how many the broker confirmed (the
    others stay pending: they may still be delivered until they expire)."""
    insert_commands(connection, [sent for sent, _ in batch], source)
    connection.commit()
    publisher = state.publisher
    assert publisher is not None  # noqa: S101 - checked by _require_broker
    accepted = publisher.publish_many(
        [(str(topic), command_payload(sent), _seconds_left(sent, at)) for sent, topic in batch]
    )
    return sum(accepted)


def _seconds_left(sent: Sent, at: datetime) -> int:
    return max(1, int((sent.expires_at - at).total_seconds()))


def _sent(command_id: str, device_id: str, command: CommandIn, params: Any, at: datetime) -> Sent:
    expires = at + timedelta(seconds=command.expires_in_s)
    return Sent(command_id, device_id, command.action, params, at, expires, at, why=command.reason)


@router.post(
    "/devices/{device_id}/commands",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(404, 409, 503),
    summary="Send a command to a device",
)
def post_device_command(
    *,
    device_id: Annotated[str, Path(pattern=IDENTIFIER_PATTERN.pattern)],
    command: CommandIn,
    caller: Commander,
    connection: Db,
    state: State,
    at: Now,
) -> CommandDetail:
    """The command is pending until the device answers; follow it with
    ``GET /commands/{id}?wait=10``."""
    record = devices.find_device(connection, device_id)
    if record is None:
        raise NotFoundError(f"no device {device_id!r}: see GET /api/v1/devices")
    if record.decommissioned_at is not None:
        raise ConflictError(f"device {device_id!r} is decommissioned: it takes no commands")
    device_class = DeviceClass(record.device_class)
    params = _checked(device_class, command)
    _require_broker(state)
    sent = _sent(queries.new_command_id(), device_id, command, params, at)
    topic = DeviceTopic(record.site_id, device_class, device_id, Channel.COMMAND)
    record_action(
        connection, caller, "command.send", device_id, at,
        command_id=sent.id, command_action=command.action,
    )  # fmt: skip
    if not _send(connection, state, [(sent, topic)], queries.source_of(caller.username), at):
        raise UnavailableError(f"command {sent.id}: {NOT_ACCEPTED.format(id=sent.id)}")
    return _detail(connection, sent.id, at)


@router.post(
    "/groups/commands",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(404, 503),
    summary="Send a command to every device of a group (one command each)",
)
def post_group_command(
    command: GroupCommandIn, caller: Commander, connection: Db, state: State, at: Now
) -> GroupCommandOut:
    """Follow it with ``GET /commands/{group_id}?wait=10``: a summary of the outcomes and
    each device's command."""
    selector = devices.GroupSelector(
        command.site, command.street_group, command.cabinet, command.building,
        command.device_class,
    )  # fmt: skip
    problem = selector.problem()
    if problem is not None:
        raise UnprocessableError(problem)
    members = devices.group_members(connection, selector)
    if not members:
        raise NotFoundError(f"no device in service in {selector.label()}: see GET /api/v1/groups")
    if len(members) > queries.MAX_GROUP_SIZE:
        raise UnprocessableError(
            f"{len(members)} devices in {selector.label()}, more than {queries.MAX_GROUP_SIZE}: "
            "choose a smaller group"
        )
    try:
        device_class = devices.single_class(members)
    except devices.MixedGroupError as error:
        raise UnprocessableError(str(error)) from error
    params = _checked(device_class, command)
    _require_broker(state)
    group_id = queries.new_group_id(len(members))
    batch = [
        (
            _sent(queries.member_id(group_id, index), member.device_id, command, params, at),
            DeviceTopic(member.site_id, device_class, member.device_id, Channel.COMMAND),
        )
        for index, member in enumerate(members)
    ]
    record_action(
        connection, caller, "command.send_group", group_id, at,
        group=selector.label(), command_action=command.action, devices=len(members),
    )  # fmt: skip
    if not _send(connection, state, batch, queries.source_of(caller.username), at):
        raise UnavailableError(
            f"group command {group_id}, none of its {len(members)} commands: "
            + NOT_ACCEPTED.format(id=group_id)
        )
    return _group(connection, group_id, at)


# ----------------------------------------------------------------------------- reading


def _detail(connection: Db, command_id: str, at: datetime) -> CommandDetail:
    found = queries.find_commands(connection, [command_id], at)
    if not found:
        raise NotFoundError(f"no command {command_id!r}")
    record = found[0]
    acks = queries.acks_of(connection, record.device_id, record.id)
    return CommandDetail(
        **CommandOut.of(record).model_dump(),
        acks=[
            AckOut(ts=a.ts, outcome=a.outcome, reason=a.reason, received_at=a.received_at)
            for a in acks
        ],
    )


def _group(connection: Db, group_id: str, at: datetime) -> GroupCommandOut:
    ids = queries.member_ids(group_id)
    records = queries.find_commands(connection, ids or [], at)
    if not records:
        raise NotFoundError(f"no group command {group_id!r}")
    first = records[0]
    counts = queries.count_outcomes(records)
    return GroupCommandOut(
        group_id=group_id,
        group=queries.group_label(connection, group_id, first.issued_at),
        action=first.action,
        params=first.params,
        source=first.source,
        reason=first.reason,
        issued_at=first.issued_at,
        expires_at=max(r.expires_at for r in records),
        devices=len(records),
        summary=OutcomeCounts(**counts),
        answered=counts["pending"] == 0,
        commands=[CommandOut.of(r) for r in records],
    )


@router.get("/commands", summary="Commands sent to devices, newest first, filtered")
def get_commands(
    *,
    _: Reader,
    connection: Db,
    at: Now,
    device_id: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN.pattern)] = None,
    site: PlaceQuery = None,
    street_group: PlaceQuery = None,
    cabinet: PlaceQuery = None,
    building: PlaceQuery = None,
    device_class: DeviceClass | None = None,
    source: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            pattern=devices.STORABLE_TEXT,
            description="api:<user>, hvac-control...",
        ),
    ] = None,
    outcome: queries.Outcome | None = None,
    since: Annotated[
        AwareMoment | None, Query(description="Issued at or after (with its time zone).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CommandPage:
    """Every sender's commands (the API's and the control services'); a group narrows them
    to its devices, decommissioned ones included."""
    device_ids: list[str] | None = None
    selector = devices.GroupSelector(site, street_group, cabinet, building, device_class)
    if selector != devices.GroupSelector():
        members = devices.group_members(
            connection, selector, in_service_after=datetime.min.replace(tzinfo=UTC)
        )
        device_ids = [m.device_id for m in members]
    if device_id is not None:
        device_ids = [device_id] if device_ids is None or device_id in device_ids else []
    chosen = queries.CommandFilter(device_ids, source, outcome, since)
    records, total = queries.list_commands(connection, chosen, at, limit=limit, offset=offset)
    return CommandPage(
        items=[CommandOut.of(r) for r in records], total=total, limit=limit, offset=offset
    )


@router.get(
    "/commands/{command_id}",
    responses=problem_responses(404),
    summary="A command and its acknowledgements, or a group command's summary",
)
async def get_command(
    command_id: CommandIdPath,
    _: Reader,
    state: State,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT_S, description="Wait up to this long [s] for the answers."),
    ] = 0,
) -> CommandDetail | GroupCommandOut:
    """With ``wait``, answers as soon as the command (every command of a group) is no longer
    pending, or when the wait is over. Waiting holds no thread and no database connection:
    each look is a short query."""
    deadline = time.monotonic() + wait
    while True:
        found = await run_in_threadpool(_look, state, command_id)
        pending = (
            not found.answered if isinstance(found, GroupCommandOut) else found.outcome == "pending"
        )
        remaining = deadline - time.monotonic()
        if not pending or remaining <= 0:
            return found
        await asyncio.sleep(min(POLL_S, remaining))


def _look(state: State, command_id: str) -> CommandDetail | GroupCommandOut:
    at = now(state)
    with state.pool.connection() as connection:
        if queries.member_ids(command_id) is not None:
            return _group(connection, command_id, at)
        return _detail(connection, command_id, at)
