"""The SQL behind the alert routes: list and filter alerts, place them, scope them to a crew.

An alert *belongs* to places (street groups and buildings), which is what a crew's scope is
matched against:

- an alert on a device: the device's street group and building;
- ``street:S``: the street group S;
- ``cabinet:C``: the street groups of the devices wired to cabinet C;
- ``site:X`` (the whole site's link is down), or anything else: no place, so no crew's.

Its position is the device's; for ``street:`` and ``cabinet:`` subjects the centroid of their
devices in service; none for a site. State changes do not live here: they go through
:mod:`alerts.store` and :mod:`alerts.lifecycle`, like the engine's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from alerts.lifecycle import OPEN_STATUSES, Status
from alerts.store import Comment
from api.roles import Places

EARTH_RADIUS_M: Final = 6_371_008.8
"""The mean Earth radius [m], for great-circle distances (haversine)."""

Order = Literal["newest", "severity"]

_PLACED: Final = sql.SQL(
    """
    FROM alerts a
    LEFT JOIN devices d ON d.device_id = a.subject
    CROSS JOIN LATERAL (
        SELECT
            CASE
                WHEN d.device_id IS NOT NULL THEN array_remove(ARRAY[d.street_group], NULL)
                WHEN starts_with(a.subject, 'street:') THEN ARRAY[substr(a.subject, 8)]
                WHEN starts_with(a.subject, 'cabinet:') THEN coalesce(g.street_groups, '{}')
                ELSE '{}'::text[]
            END AS street_groups,
            CASE
                WHEN d.device_id IS NOT NULL THEN array_remove(ARRAY[d.building], NULL)
                ELSE '{}'::text[]
            END AS buildings,
            coalesce(d.latitude, g.latitude) AS latitude,
            coalesce(d.longitude, g.longitude) AS longitude
        FROM (
            SELECT array_agg(DISTINCT m.street_group ORDER BY m.street_group)
                       FILTER (WHERE m.street_group IS NOT NULL) AS street_groups,
                   avg(m.latitude) AS latitude,
                   avg(m.longitude) AS longitude
            FROM devices m
            WHERE d.device_id IS NULL AND m.decommissioned_at IS NULL AND (
                (starts_with(a.subject, 'street:') AND m.street_group = substr(a.subject, 8))
                OR (starts_with(a.subject, 'cabinet:') AND m.cabinet = substr(a.subject, 9))
            )
        ) g
    ) p
    """
)
_COLUMNS: Final = sql.SQL(
    """
    SELECT a.alert_id, a.rule_id, a.title, a.severity, a.status, a.subject,
           d.device_id, d.name AS device_name, d.device_class,
           p.street_groups, p.buildings, p.latitude, p.longitude,
           a.started_at, a.fired_at, a.acknowledged_at, a.acknowledged_by, a.resolved_at,
           a.repaired_at, a.repaired_by, a.closed_at, a.assigned_to, a.assigned_at,
           a.muted_by, a.cause
    """
)
_DISTANCE: Final = sql.SQL(
    """
    2 * {radius} * asin(least(1, sqrt(
        power(sin(radians(p.latitude - %(near_latitude)s) / 2), 2)
        + cos(radians(%(near_latitude)s)) * cos(radians(p.latitude))
          * power(sin(radians(p.longitude - %(near_longitude)s) / 2), 2)
    )))
    """
).format(radius=sql.Literal(EARTH_RADIUS_M))
_SEVERITY_RANK: Final = sql.SQL(
    "CASE a.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"
)


@dataclass(frozen=True, slots=True)
class Position:
    """A point on Earth [degrees, WGS 84]."""

    latitude: float
    longitude: float

    def __post_init__(self) -> None:
        if not (-90 <= self.latitude <= 90 and -180 <= self.longitude <= 180):
            raise ValueError(
                f"{self.latitude},{self.longitude} is not a position: give a latitude within"
                " -90..90 and a longitude within -180..180, e.g. 33.83,-4.84"
            )


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Which alerts, in which order. Empty tuples filter nothing."""

    statuses: tuple[Status, ...] = tuple(sorted(OPEN_STATUSES))
    """Empty: every status."""
    severities: tuple[str, ...] = ()
    rule_ids: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    street_groups: tuple[str, ...] = ()
    buildings: tuple[str, ...] = ()
    assigned_to: tuple[str, ...] = ()
    fired_since: datetime | None = None
    fired_until: datetime | None = None
    scope: Places | None = None
    """A crew's places: only the alerts belonging to one of them. None: every alert."""
    near: Position | None = None
    order: Order = "newest"
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert with where it stands: its device, places and position."""

    alert_id: int
    rule_id: str
    title: str
    severity: str
    status: str
    subject: str
    device_id: str | None
    device_name: str | None
    device_class: str | None
    street_groups: list[str]
    buildings: list[str]
    latitude: float | None
    longitude: float | None
    started_at: datetime
    fired_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    repaired_at: datetime | None
    repaired_by: str | None
    closed_at: datetime | None
    assigned_to: str | None
    assigned_at: datetime | None
    muted_by: str | None
    cause: str | None
    distance_m: float | None = None

    @property
    def places(self) -> Places:
        return Places(frozenset(self.street_groups), frozenset(self.buildings))


@dataclass(frozen=True, slots=True)
class NotificationAttempt:
    """One attempt to send a notification about an alert (its URL's secrets are hidden)."""

    at: datetime
    kind: str | None
    route: str
    url: str
    language: str
    attempt: int
    ok: bool
    error: str


@dataclass(frozen=True, slots=True)
class StoredSilence:
    silence_id: int
    starts_at: datetime
    ends_at: datetime
    maintenance: bool
    rule_ids: list[str]
    device_ids: list[str]
    street_groups: list[str]
    buildings: list[str]
    reason: str
    created_by: str
    created_at: datetime


@dataclass
class _Where:
    conditions: list[sql.Composable] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def add(self, condition: str, **parameters: Any) -> None:
        self.conditions.append(sql.SQL(condition))  # fixed text, never input
        self.parameters.update(parameters)

    def clause(self) -> sql.Composable:
        if not self.conditions:
            return sql.SQL("")
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(self.conditions)


def _where(query: AlertQuery) -> _Where:
    where = _Where()
    if query.statuses:
        where.add("a.status = ANY(%(statuses)s)", statuses=[s.value for s in query.statuses])
    filters = (
        ("a.severity", "severities", query.severities),
        ("a.rule_id", "rule_ids", query.rule_ids),
        ("a.subject", "subjects", query.subjects),
        ("a.assigned_to", "assigned_to", query.assigned_to),
    )
    for column, name, values in filters:
        if values:
            where.add(f"{column} = ANY(%({name})s)", **{name: list(values)})
    if query.street_groups:
        where.add("p.street_groups && %(street_groups)s", street_groups=list(query.street_groups))
    if query.buildings:
        where.add("p.buildings && %(buildings)s", buildings=list(query.buildings))
    if query.fired_since is not None:
        where.add("a.fired_at >= %(fired_since)s", fired_since=query.fired_since)
    if query.fired_until is not None:
        where.add("a.fired_at < %(fired_until)s", fired_until=query.fired_until)
    if query.scope is not None:
        _add_scope(where, query.scope)
    return where


def _add_scope(where: _Where, scope: Places) -> None:
    where.add(
        "(p.street_groups && %(scope_groups)s::text[]"
        " OR p.buildings && %(scope_buildings)s::text[])",
        scope_groups=sorted(scope.street_groups),
        scope_buildings=sorted(scope.buildings),
    )


def _order(query: AlertQuery) -> sql.Composable:
    newest = sql.SQL("a.fired_at DESC, a.alert_id DESC")
    if query.order == "newest":
        return newest
    nearest = sql.SQL("distance_m ASC NULLS LAST, ") if query.near else sql.SQL("")
    return _SEVERITY_RANK + sql.SQL(", ") + nearest + newest


def find_alerts(connection: psycopg.Connection, query: AlertQuery) -> tuple[list[AlertView], int]:
    """One page of the alerts ``query`` selects, and how many it selects in all."""
    where = _where(query)
    parameters = dict(where.parameters, limit=query.limit, offset=query.offset)
    distance: sql.Composable = sql.SQL(", NULL::float8 AS distance_m")
    if query.near is not None:
        distance = sql.SQL(", ") + _DISTANCE + sql.SQL(" AS distance_m")
        parameters |= {
            "near_latitude": query.near.latitude,
            "near_longitude": query.near.longitude,
        }
    page = sql.Composed(
        [
            _COLUMNS,
            distance,
            _PLACED,
            where.clause(),
            sql.SQL(" ORDER BY "),
            _order(query),
            sql.SQL(" LIMIT %(limit)s OFFSET %(offset)s"),
        ]
    )
    count = sql.Composed([sql.SQL("SELECT count(*)"), _PLACED, where.clause()])
    with connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(page, parameters).fetchall()
        total = cursor.execute(count, where.parameters).fetchone()
    return [AlertView(**row) for row in rows], int(total["count"]) if total else 0


def find_alert(
    connection: psycopg.Connection, alert_id: int, scope: Places | None = None
) -> AlertView | None:
    """The alert, placed; None when there is none, or when it is not of ``scope``'s places."""
    where = _Where()
    where.add("a.alert_id = %(alert_id)s", alert_id=alert_id)
    if scope is not None:
        _add_scope(where, scope)
    query = sql.Composed(
        [_COLUMNS, sql.SQL(", NULL::float8 AS distance_m"), _PLACED, where.clause()]
    )
    with connection.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(query, where.parameters).fetchone()
    return AlertView(**row) if row else None


def comments_of(connection: psycopg.Connection, alert_id: int) -> list[Comment]:
    rows = connection.execute(
        "SELECT comment_id, at, author, body FROM alert_comments WHERE alert_id = %s"
        " ORDER BY at, comment_id",
        (alert_id,),
    ).fetchall()
    return [Comment(*row) for row in rows]


def notifications_of(connection: psycopg.Connection, alert_id: int) -> list[NotificationAttempt]:
    rows = connection.execute(
        "SELECT t.at, n.kind, t.route, t.url, t.language, t.attempt, t.ok, t.error"
        " FROM notification_attempts t LEFT JOIN notifications n USING (notification_id)"
        " WHERE t.alert_id = %s ORDER BY t.at, t.attempt_id",
        (alert_id,),
    ).fetchall()
    return [NotificationAttempt(*row) for row in rows]


def find_silences(
    connection: psycopg.Connection, at: datetime, *, include_past: bool, limit: int
) -> list[StoredSilence]:
    """Silences in force at ``at`` or to come (and the ended ones with ``include_past``),
    those ending last first."""
    where = sql.SQL("") if include_past else sql.SQL(" WHERE ends_at > %(at)s")
    query = sql.Composed(
        [
            sql.SQL(
                "SELECT silence_id, starts_at, ends_at, maintenance, rule_ids, device_ids,"
                " street_groups, buildings, reason, created_by, created_at FROM silences"
            ),
            where,
            sql.SQL(" ORDER BY ends_at DESC, silence_id DESC LIMIT %(limit)s"),
        ]
    )
    with connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query, {"at": at, "limit": limit}).fetchall()
    return [StoredSilence(**row) for row in rows]


def find_silence(connection: psycopg.Connection, silence_id: int) -> StoredSilence | None:
    with connection.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            "SELECT silence_id, starts_at, ends_at, maintenance, rule_ids, device_ids,"
            " street_groups, buildings, reason, created_by, created_at FROM silences"
            " WHERE silence_id = %s",
            (silence_id,),
        ).fetchone()
    return StoredSilence(**row) if row else None
