"""Routes: silences and maintenance windows, which mute the matching alerts for a while
(their notifications; the alerts are still recorded)."""

from __future__ import annotations

from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Annotated, Final

import psycopg
from fastapi import Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic.config import JsonDict

from alerts import store
from alerts.lifecycle import Silence
from api.alert_queries import StoredSilence, find_silence, find_silences
from api.audit import record_action
from api.deps import Db, Moment, Now, Reader, require
from api.device_queries import unknown_places
from api.problems import UnprocessableError, guarded_router
from api.roles import Permission, Principal
from api.routes.alerts import Name, as_utc
from protocol.durations import parse_duration

router = guarded_router("alerts")

MAX_SILENCE: Final = timedelta(days=366)


_SILENCE_SCHEMA: Final[JsonDict] = {
    # What the validator below checks, said in the schema too, so clients (and fuzzers) know.
    "allOf": [
        {
            "anyOf": [
                {"required": [name], "properties": {name: {"minItems": 1}}}
                for name in ("rule_ids", "device_ids", "street_groups", "buildings")
            ]
        },
        {
            "oneOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("ends_at", "duration")
            ]
        },
    ]
}


class NewSilence(BaseModel):
    """Mutes the alerts matching *every* list given (at least one), between two times."""

    model_config = ConfigDict(json_schema_extra=_SILENCE_SCHEMA)

    rule_ids: list[Name] = Field(default_factory=list, max_length=100)
    device_ids: list[Name] = Field(default_factory=list, max_length=1000)
    street_groups: list[Name] = Field(default_factory=list, max_length=100)
    buildings: list[Name] = Field(default_factory=list, max_length=100)
    starts_at: Moment | None = Field(None, description="Default: now. No zone: UTC.")
    ends_at: Moment | None = Field(None, description="Give this or `duration`.")
    duration: str | None = Field(
        None, pattern=r"^[1-9]\d{0,5}(\.\d{1,3})?[smhd]$", examples=["4h", "30m", "7d"]
    )
    maintenance: StrictBool = Field(False, description="Planned work rather than a plain silence.")
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _complete(self) -> NewSilence:
        if not (self.rule_ids or self.device_ids or self.street_groups or self.buildings):
            raise ValueError(
                "say what to silence: give rule_ids, device_ids, street_groups or buildings"
            )
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError("give either ends_at or duration (e.g. '4h'), not both or neither")
        return self


class SilenceOut(BaseModel):
    silence_id: int
    starts_at: datetime
    ends_at: datetime
    in_force: bool = Field(description="Whether it mutes alerts now.")
    maintenance: bool
    rule_ids: list[str]
    device_ids: list[str]
    street_groups: list[str]
    buildings: list[str]
    reason: str
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, silence: StoredSilence, at: datetime) -> SilenceOut:
        return cls(
            silence_id=silence.silence_id,
            starts_at=silence.starts_at,
            ends_at=silence.ends_at,
            in_force=silence.starts_at <= at < silence.ends_at,
            maintenance=silence.maintenance,
            rule_ids=silence.rule_ids,
            device_ids=silence.device_ids,
            street_groups=silence.street_groups,
            buildings=silence.buildings,
            reason=silence.reason,
            created_by=silence.created_by,
            created_at=silence.created_at,
        )


def _window(new: NewSilence, at: datetime) -> tuple[datetime, datetime]:
    starts = as_utc(new.starts_at) or at
    try:
        ends = as_utc(new.ends_at) or starts + parse_duration(new.duration or "")
    except (ValueError, OverflowError) as error:
        raise UnprocessableError(f"duration: {error}; e.g. 30m, 4h or 7d") from error
    if ends <= starts:
        raise UnprocessableError("ends_at must be after starts_at")
    if ends - starts > MAX_SILENCE:
        raise UnprocessableError(
            f"a silence lasts at most {MAX_SILENCE.days} days: give a shorter one"
        )
    if ends <= at:
        raise UnprocessableError("the silence would be over already: give a later end")
    return starts, ends


@router.post(
    "/silences",
    status_code=HTTPStatus.CREATED,
    summary="Silence alerts, or declare maintenance, for a while",
)
def post_silence(
    new: NewSilence,
    caller: Annotated[Principal, Depends(require(Permission.SILENCE))],
    connection: Db,
    at: Now,
) -> SilenceOut:
    """Matching alerts are still recorded, but send no notification while it lasts."""
    starts, ends = _window(new, at)
    unknown = unknown_places(connection, new.device_ids, new.street_groups, new.buildings)
    if unknown:
        raise UnprocessableError(f"the registry has no {', '.join(unknown[:5])}: check the names")
    silence = Silence(
        0, starts, ends, new.maintenance, tuple(new.rule_ids), tuple(new.device_ids),
        tuple(new.street_groups), tuple(new.buildings), new.reason.strip(),
    )  # fmt: skip
    silence_id = store.add_silence(connection, silence, caller.username)
    record_action(
        connection, caller, "silence.create", f"silence:{silence_id}", at,
        maintenance=new.maintenance, reason=silence.reason,
    )  # fmt: skip
    stored = find_silence(connection, silence_id)
    if stored is None:
        raise psycopg.DataError(f"silence {silence_id} was not stored")
    return SilenceOut.of(stored, at)


@router.get("/silences", summary="Silences and maintenance windows")
def get_silences(
    _: Reader,
    connection: Db,
    at: Now,
    include_past: Annotated[
        bool, Query(description="Also those over; by default those in force or to come.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[SilenceOut]:
    found = find_silences(connection, at, include_past=include_past, limit=limit)
    return [SilenceOut.of(silence, at) for silence in found]
