"""Routes: alerts (list, one with its history, acknowledge, assign, comment, repaired, close);
silences are in :mod:`api.routes.silences`.

Every change locks the alert's row and applies a pure function of :mod:`alerts.lifecycle`
through :func:`alerts.store.change_alert`, exactly as the engine and ``smartcity alerts`` do, so
a person's action and the engine's never overwrite each other; each is also written to the
audit log in the same transaction.

Who sees what: technicians, energy managers and admins read every alert; a crew reads only the
alerts belonging to its street groups and buildings (see :mod:`api.alert_queries`). An alert
outside a crew's places is answered **404, exactly as if it did not exist**, so a crew learns
nothing about other zones. Energy managers read but may not act (403).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Final, Literal

import psycopg
from fastapi import Depends, Path, Query
from pydantic import BaseModel, Field, StringConstraints

from alerts import lifecycle, store
from alerts.catalogue import BUILT_IN_KINDS
from alerts.lifecycle import LifecycleError, Outcome, Status
from alerts.store import add_comment, assign
from alerts.wording import map_link
from api.accounts import find_user
from api.alert_queries import (
    AlertQuery,
    AlertView,
    Position,
    comments_of,
    find_alert,
    find_alerts,
    notifications_of,
)
from api.audit import record_action
from api.deps import Caller, Db, Moment, Now, require
from api.fault_guides import LANGUAGES, FaultGuide, fault_guides
from api.problems import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnprocessableError,
    guarded_router,
    problem_responses,
)
from api.roles import Permission, Places, Principal, Role, role_names, roles_with
from protocol.payloads import Severity

router = guarded_router("alerts")

MAX_PAGE: Final = 500
_ID_MAX: Final = 2**63 - 1
_NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
_USERNAME: Final = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_LATITUDE: Final = r"-?(90(\.0{1,12})?|[1-8]?\d(\.\d{1,12})?)"
_LONGITUDE: Final = r"-?(180(\.0{1,12})?|(1[0-7]\d|[1-9]?\d)(\.\d{1,12})?)"
_NEAR: Final = f"^{_LATITUDE},{_LONGITUDE}$"
"""``latitude,longitude`` in degrees, in range: the schema says all there is to check."""

Language = Literal["en", "fr", "ar"]
StatusFilter = Literal["firing", "acknowledged", "resolved", "closed", "open", "all"]
Name = Annotated[str, StringConstraints(pattern=_NAME)]
Note = Annotated[str, StringConstraints(max_length=2000)]
AlertId = Annotated[int, Path(ge=1, le=_ID_MAX, description="The alert's number.")]


# ----------------------------------------------------------------------------- models


class Guide(BaseModel):
    """What to check on site for the alert's rule, from the fault catalogue (docs/faults.md)."""

    language: Language = Field(description="The language of the text (English when missing).")
    meaning: str
    check_intro: str = Field(description='Words before the steps, such as "In daylight:".')
    steps: list[str]
    bring: str = Field(description="What to bring.")

    @classmethod
    def of(cls, guide: FaultGuide) -> Guide:
        return cls(
            language=guide.language,
            meaning=guide.meaning,
            check_intro=guide.check_intro,
            steps=list(guide.steps),
            bring=guide.bring,
        )


class AlertOut(BaseModel):
    alert_id: int
    rule_id: str
    title: str = Field(description="In English, as the rule fired it.")
    titles: dict[Language, str] = Field(description="The title in en, fr and ar.")
    severity: Severity
    status: Status
    subject: str = Field(description="A device id, or `street:S`, `cabinet:C`, `site:X`.")
    device_id: str | None
    device_name: str | None
    device_class: str | None
    street_groups: list[str] = Field(description="The street groups the alert belongs to.")
    buildings: list[str] = Field(description="The buildings the alert belongs to.")
    latitude: float | None = Field(description="The device's, or its group's centroid.")
    longitude: float | None
    map_url: str | None = Field(description="An OpenStreetMap link to the place.")
    distance_m: float | None = Field(description="From `near`, when given [m].")
    started_at: datetime = Field(description="When the condition began.")
    fired_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    repaired_at: datetime | None
    repaired_by: str | None
    closed_at: datetime | None
    assigned_to: str | None
    assigned_at: datetime | None
    muted_by: str | None = Field(description="`silence:ID`, `maintenance:ID`, `suppressed:ID`.")
    cause: str | None

    @classmethod
    def of(cls, view: AlertView) -> AlertOut:
        return cls(**_fields(view))


class AlertPage(BaseModel):
    alerts: list[AlertOut]
    total: int = Field(description="How many alerts the filters select in all.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="The offset of the next page; none at the end.")


class TransitionOut(BaseModel):
    at: datetime
    from_status: Status | None
    to_status: Status
    actor: str
    note: str


class CommentOut(BaseModel):
    comment_id: int
    at: datetime
    author: str
    body: str


class NotificationOut(BaseModel):
    at: datetime
    kind: str | None = Field(description="firing, reminder, escalation, resolved, reopened.")
    route: str
    url: str | None = Field(description="Secrets hidden; not shown to crews.")
    language: str
    attempt: int
    ok: bool
    error: str


class AlertDetail(AlertOut):
    what_to_check: dict[Language, Guide] = Field(
        description="By language (en, fr, ar); English text where a language is missing; "
        "empty for a rule the catalogue does not describe."
    )
    transitions: list[TransitionOut]
    comments: list[CommentOut]
    notifications: list[NotificationOut]


class Acknowledgement(BaseModel):
    note: Note = ""


class Repair(BaseModel):
    note: Note = Field("", description="What was done; required from a crew.")


class Closing(BaseModel):
    note: Note = ""


class NewComment(BaseModel):
    body: str = Field(min_length=1, max_length=2000, pattern=r"\S", description="Not blank.")


class Assignment(BaseModel):
    username: Annotated[str, StringConstraints(pattern=_USERNAME)] | None = Field(
        description="Who works on it; null to unassign.", examples=["crew-north"]
    )


# ----------------------------------------------------------------------------- helpers


def _titles(rule_id: str, title: str) -> dict[Language, str]:
    """The title in each language: the catalogue's, or that of a kind raised by code (root
    cause, control services, citizens' reports); the stored (English) title where none is
    known."""
    guide = fault_guides().get(rule_id)
    known: dict[str, str] = {}
    if guide is not None and guide.titles:
        known = dict(guide.titles)
    elif rule_id in BUILT_IN_KINDS:
        known = dict(BUILT_IN_KINDS[rule_id].titles)
    english = title or known.get("en") or rule_id
    return {
        "en": english,
        "fr": known.get("fr") or english,
        "ar": known.get("ar") or english,
    }


def _fields(view: AlertView) -> dict[str, object]:
    located = view.latitude is not None and view.longitude is not None
    return {
        "alert_id": view.alert_id,
        "rule_id": view.rule_id,
        "title": view.title,
        "titles": _titles(view.rule_id, view.title),
        "severity": view.severity,
        "status": view.status,
        "subject": view.subject,
        "device_id": view.device_id,
        "device_name": view.device_name,
        "device_class": view.device_class,
        "street_groups": view.street_groups,
        "buildings": view.buildings,
        "latitude": view.latitude,
        "longitude": view.longitude,
        "map_url": map_link(view.latitude, view.longitude) if located else None,  # type: ignore[arg-type]
        "distance_m": round(view.distance_m, 1) if view.distance_m is not None else None,
        "started_at": view.started_at,
        "fired_at": view.fired_at,
        "acknowledged_at": view.acknowledged_at,
        "acknowledged_by": view.acknowledged_by,
        "resolved_at": view.resolved_at,
        "repaired_at": view.repaired_at,
        "repaired_by": view.repaired_by,
        "closed_at": view.closed_at,
        "assigned_to": view.assigned_to,
        "assigned_at": view.assigned_at,
        "muted_by": view.muted_by,
        "cause": view.cause,
    }


def _guides(rule_id: str) -> dict[Language, Guide]:
    guide = fault_guides().get(rule_id)
    if guide is None:
        return {}
    found: dict[Language, Guide] = {}
    for language in LANGUAGES:
        text = guide.in_language(language)
        if text is not None:
            found[language] = Guide.of(text)
    return found


def _scope(caller: Principal) -> Places | None:
    """The places whose alerts the caller sees; None: every alert."""
    return None if caller.sees_every_alert else caller.places


def _alert_reader(caller: Caller) -> Principal:
    if not (caller.may(Permission.READ) or caller.may(Permission.READ_OWN_ALERTS)):
        raise ForbiddenError(
            f"a {caller.role.value.replace('_', ' ')} may not read alerts; it needs the role "
            f"{role_names(roles_with(Permission.READ) + roles_with(Permission.READ_OWN_ALERTS))}"
        )
    return caller


AlertReader = Annotated[Principal, Depends(_alert_reader)]


def _visible(connection: psycopg.Connection, caller: Principal, alert_id: int) -> AlertView:
    """The alert if the caller may see it; 404 otherwise, the same whether it exists or not."""
    view = find_alert(connection, alert_id, _scope(caller))
    if view is None:
        if caller.sees_every_alert:
            raise NotFoundError(f"there is no alert {alert_id}")
        raise NotFoundError(f"there is no alert {alert_id} in your street groups and buildings")
    return view


def _detail(connection: psycopg.Connection, caller: Principal, alert_id: int) -> AlertDetail:
    view = _visible(connection, caller, alert_id)
    crew = not caller.sees_every_alert
    return AlertDetail(
        **_fields(view),
        what_to_check=_guides(view.rule_id),
        transitions=[
            TransitionOut(
                at=t.at,
                from_status=t.from_status,
                to_status=t.to_status,
                actor=t.actor,
                note=t.note,
            )
            for t in store.transitions_of(connection, alert_id)
        ],
        comments=[
            CommentOut(comment_id=c.comment_id, at=c.at, author=c.author, body=c.body)
            for c in comments_of(connection, alert_id)
        ],
        notifications=[
            NotificationOut(
                at=n.at,
                kind=n.kind,
                route=n.route,
                url=None if crew else n.url,
                language=n.language,
                attempt=n.attempt,
                ok=n.ok,
                error=n.error,
            )
            for n in notifications_of(connection, alert_id)
        ],
    )


def _change(
    connection: psycopg.Connection,
    caller: Principal,
    alert_id: int,
    at: datetime,
    *,
    action: str,
    change: Callable[[lifecycle.Alert], Outcome],
    note: str,
) -> AlertDetail:
    """Apply a lifecycle ``change`` under the alert's row lock, and audit it."""
    _visible(connection, caller, alert_id)
    try:
        store.change_alert(connection, alert_id, change)
    except LifecycleError as error:
        raise ConflictError(str(error)) from error
    except LookupError as error:
        raise NotFoundError(str(error)) from error
    record_action(connection, caller, f"alert.{action}", f"alert:{alert_id}", at, note=note)
    return _detail(connection, caller, alert_id)


def as_utc(moment: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _position(near: str | None) -> Position | None:
    if near is None:
        return None
    latitude, longitude = (float(part) for part in near.split(","))
    try:
        return Position(latitude, longitude)
    except ValueError as error:
        raise UnprocessableError(f"near: {error}") from error


def _statuses(wanted: list[StatusFilter] | None) -> tuple[Status, ...]:
    chosen = set(wanted or ["open"])
    if "all" in chosen:
        return ()
    if "open" in chosen:
        chosen |= {s.value for s in lifecycle.OPEN_STATUSES}
    return tuple(Status(s) for s in sorted(chosen - {"open"}))


# ----------------------------------------------------------------------------- alerts


@router.get("/alerts", summary="Alerts, filtered; a crew's only of its places")
def get_alerts(  # noqa: PLR0917 - each filter is a query parameter
    caller: AlertReader,
    connection: Db,
    status: Annotated[
        list[StatusFilter] | None,
        Query(
            max_length=6,
            description="Repeatable; `open` (the default) is firing and "
            "acknowledged; `all` is every status.",
        ),
    ] = None,
    severity: Annotated[list[Severity] | None, Query(max_length=3)] = None,
    rule_id: Annotated[list[Name] | None, Query(max_length=50)] = None,
    subject: Annotated[
        list[Name] | None,
        Query(max_length=100, description="A device id or a group subject (`street:S`)."),
    ] = None,
    street_group: Annotated[list[Name] | None, Query(max_length=50)] = None,
    building: Annotated[list[Name] | None, Query(max_length=50)] = None,
    assigned_to: Annotated[list[Name] | None, Query(max_length=50)] = None,
    fired_since: Annotated[
        Moment | None, Query(description="Fired at or after (no zone: UTC).")
    ] = None,
    fired_until: Annotated[Moment | None, Query(description="Fired before.")] = None,
    near: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=_NEAR,
            description="`latitude,longitude`: gives each alert's distance from there.",
            examples=["33.8300,-4.8150"],
        ),
    ] = None,
    sort: Annotated[
        Literal["newest", "severity"],
        Query(description="`severity`: critical first, then nearest (with `near`), newest."),
    ] = "newest",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AlertPage:
    """Alerts, newest first (or by severity and distance for a crew on the move).

    A crew sees only the alerts of its street groups and buildings, whatever the filters."""
    since, until = as_utc(fired_since), as_utc(fired_until)  # since >= until: nothing, no error
    query = AlertQuery(
        statuses=_statuses(status),
        severities=tuple(severity or ()),
        rule_ids=tuple(rule_id or ()),
        subjects=tuple(subject or ()),
        street_groups=tuple(street_group or ()),
        buildings=tuple(building or ()),
        assigned_to=tuple(assigned_to or ()),
        fired_since=since,
        fired_until=until,
        scope=_scope(caller),
        near=_position(near),
        order=sort,
        limit=limit,
        offset=offset,
    )
    views, total = find_alerts(connection, query)
    following = offset + len(views)
    return AlertPage(
        alerts=[AlertOut.of(view) for view in views],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=following if following < total else None,
    )


@router.get(
    "/alerts/{alert_id}",
    responses=problem_responses(404),
    summary="One alert: its history, comments, notifications and what to check",
)
def get_alert(alert_id: AlertId, caller: AlertReader, connection: Db) -> AlertDetail:
    return _detail(connection, caller, alert_id)


@router.post(
    "/alerts/{alert_id}/acknowledge",
    responses=problem_responses(404, 409),
    summary="Acknowledge a firing alert: someone is on it",
)
def post_acknowledge(
    alert_id: AlertId,
    body: Acknowledgement,
    caller: Annotated[Principal, Depends(require(Permission.ACKNOWLEDGE))],
    connection: Db,
    at: Now,
) -> AlertDetail:
    """Reminders and escalation stop. Only a firing alert can be acknowledged (409 else)."""
    note = body.note.strip()
    return _change(
        connection, caller, alert_id, at, action="acknowledge", note=note,
        change=lambda alert: lifecycle.acknowledge(alert, at, caller.username, note),
    )  # fmt: skip


@router.post(
    "/alerts/{alert_id}/repaired",
    responses=problem_responses(404, 409),
    summary="Mark an alert repaired (resolved until telemetry confirms it)",
)
def post_repaired(
    alert_id: AlertId,
    body: Repair,
    caller: Annotated[Principal, Depends(require(Permission.REPAIR))],
    connection: Db,
    at: Now,
) -> AlertDetail:
    """The alert is resolved, awaiting verification: the engine closes it when the rule's
    clear condition next holds, and reopens it if the fault shows again. A crew must say what
    it did in ``note``."""
    note = body.note.strip()
    if not note and caller.role is Role.CREW:
        raise UnprocessableError("say what was done in `note` (e.g. 'LED driver replaced')")
    return _change(
        connection, caller, alert_id, at, action="repaired", note=note,
        change=lambda alert: lifecycle.mark_repaired(alert, at, caller.username, note),
    )  # fmt: skip


@router.post(
    "/alerts/{alert_id}/close",
    responses=problem_responses(404, 409),
    summary="Close an alert (false alarm, duplicate, work done and checked)",
)
def post_close(
    alert_id: AlertId,
    body: Closing,
    caller: Annotated[Principal, Depends(require(Permission.CLOSE))],
    connection: Db,
    at: Now,
) -> AlertDetail:
    note = body.note.strip()
    return _change(
        connection, caller, alert_id, at, action="close", note=note,
        change=lambda alert: lifecycle.close(alert, at, caller.username, note),
    )  # fmt: skip


def _check_assignee(connection: psycopg.Connection, username: str, view: AlertView) -> None:
    user = find_user(connection, username)
    if user is None or user.disabled_at is not None:
        raise UnprocessableError(f"no active user {username!r}: give the name of a user")
    assignee = Principal(
        user.username,
        Role(user.role),
        Places(frozenset(user.street_groups), frozenset(user.buildings)),
    )
    if not assignee.may(Permission.REPAIR):
        raise UnprocessableError(
            f"{username} is an {user.role.replace('_', ' ')}, who does not work on alerts: "
            f"give a {role_names(roles_with(Permission.REPAIR))}"
        )
    if not assignee.may_work_on(view.places):
        raise UnprocessableError(
            f"{username} works on other places and would not see this alert: give a crew of "
            f"{', '.join(sorted(view.places.street_groups | view.places.buildings)) or 'no crew'}"
            " or a technician"
        )


@router.post(
    "/alerts/{alert_id}/assign",
    responses=problem_responses(404, 409),
    summary="Give an alert to someone (or to nobody)",
)
def post_assign(
    alert_id: AlertId,
    body: Assignment,
    caller: Annotated[Principal, Depends(require(Permission.ASSIGN))],
    connection: Db,
    at: Now,
) -> AlertDetail:
    """The assignee must be a technician, an admin, or a crew of the alert's places."""
    view = _visible(connection, caller, alert_id)
    if body.username is not None:
        _check_assignee(connection, body.username, view)
    if not assign(connection, alert_id, body.username, at):
        raise ConflictError(f"alert {alert_id} is closed: there is nothing left to assign")
    record_action(
        connection, caller, "alert.assign", f"alert:{alert_id}", at, assigned_to=body.username
    )
    return _detail(connection, caller, alert_id)


@router.post(
    "/alerts/{alert_id}/comments",
    status_code=HTTPStatus.CREATED,
    responses=problem_responses(404),
    summary="Add a comment to an alert",
)
def post_comment(
    alert_id: AlertId,
    body: NewComment,
    caller: Annotated[Principal, Depends(require(Permission.COMMENT))],
    connection: Db,
    at: Now,
) -> CommentOut:
    _visible(connection, caller, alert_id)
    comment = add_comment(connection, alert_id, caller.username, body.body.strip() or body.body, at)
    record_action(
        connection, caller, "alert.comment", f"alert:{alert_id}", at,
        comment_id=comment.comment_id,
    )  # fmt: skip
    return CommentOut(
        comment_id=comment.comment_id, at=comment.at, author=comment.author, body=comment.body
    )
