"""The device registry as the API reads and changes it: ``devices``, the latest
``device_states`` row of each device, ``device_credentials`` (migrations 0001 and 0008).

Devices provisioned here are written with the same columns and the same ``metadata`` shape as
:func:`storage.registry.upsert_site` writes from a site file (the model's ``ratings`` inside
``metadata``), so ingest (which looks at the registry again when an unknown device speaks) and
the rules engine take them as they take the others. A site file provisioned again later
overwrites the devices it lists, including changes made here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from protocol.topics import Channel, DeviceClass, DeviceTopic

DeviceStatus = Literal["online", "offline", "never-seen"]
STORABLE_TEXT: Final = r"^[^\x00]*$"
"""Text PostgreSQL can store (no NUL character): the pattern of free-text fields and filters."""
PLACE_FIELDS: Final = ("street_group", "cabinet", "building", "zone")
EDITABLE_FIELDS: Final = ("name", "latitude", "longitude", *PLACE_FIELDS, "metadata")
RATED_CLASSES: Final = frozenset({DeviceClass.STREETLIGHT, DeviceClass.SIGNAGE})
"""Classes whose model is a rated model of a site file (buildings' is free text)."""

_COLUMNS: Final = (
    "d.device_id, d.site_id, d.device_class, d.name, d.model, d.latitude, d.longitude,"
    " d.street_group, d.cabinet, d.building, d.zone, d.metadata, d.created_at, d.updated_at,"
    " d.decommissioned_at, coalesce(s.status, 'never-seen') AS status, s.ts AS status_since,"
    " s.reason AS status_reason, s.firmware"
)
# The latest state change of each device; ties (same instant) go to the later arrival.
_LATEST_STATE: Final = (
    "LEFT JOIN LATERAL (SELECT status, ts, reason, firmware FROM device_states"
    " WHERE device_id = d.device_id ORDER BY ts DESC, received_at DESC LIMIT 1) s ON true"
)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device of the registry with its latest state change."""

    device_id: str
    site_id: str
    device_class: str
    name: str
    model: str
    latitude: float | None
    longitude: float | None
    street_group: str | None
    cabinet: str | None
    building: str | None
    zone: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    decommissioned_at: datetime | None
    status: DeviceStatus
    status_since: datetime | None
    status_reason: str | None
    firmware: str | None


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """What ``GET /devices`` narrows the registry to; None: no condition."""

    device_class: str | None = None
    site: str | None = None
    street_group: str | None = None
    cabinet: str | None = None
    building: str | None = None
    zone: str | None = None
    model: str | None = None
    status: DeviceStatus | None = None
    search: str | None = None
    """Part of the id or the name, case-insensitive."""
    include_decommissioned: bool = False


def like_pattern(text: str) -> str:
    """``text`` as an ILIKE pattern matching it anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filter_clause(chosen: DeviceFilter) -> tuple[sql.Composable, dict[str, Any]]:
    conditions: list[sql.Composable] = []
    params: dict[str, Any] = {}
    columns = {
        "device_class": chosen.device_class,
        "site_id": chosen.site,
        "street_group": chosen.street_group,
        "cabinet": chosen.cabinet,
        "building": chosen.building,
        "zone": chosen.zone,
        "model": chosen.model,
    }
    for column, value in columns.items():
        if value is not None:
            conditions.append(
                sql.SQL("d.{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
            )
            params[column] = value
    if chosen.status is not None:
        conditions.append(sql.SQL("coalesce(s.status, 'never-seen') = %(status)s"))
        params["status"] = chosen.status
    if chosen.search:
        conditions.append(sql.SQL("(d.device_id ILIKE %(pattern)s OR d.name ILIKE %(pattern)s)"))
        params["pattern"] = like_pattern(chosen.search)
    if not chosen.include_decommissioned:
        conditions.append(sql.SQL("d.decommissioned_at IS NULL"))
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
    return where, params


def list_devices(
    connection: psycopg.Connection[Any], chosen: DeviceFilter, *, limit: int, offset: int
) -> tuple[list[DeviceRecord], int]:
    """One page of the devices ``chosen`` selects, by id, and how many it selects in all."""
    where, params = _filter_clause(chosen)
    count_query = sql.SQL("SELECT count(*) FROM devices d {} WHERE {}").format(
        sql.SQL(_LATEST_STATE), where
    )
    page_query = sql.SQL(
        "SELECT {} FROM devices d {} WHERE {} ORDER BY d.device_id LIMIT %(limit)s"
        " OFFSET %(offset)s"
    ).format(sql.SQL(_COLUMNS), sql.SQL(_LATEST_STATE), where)
    with connection.cursor(row_factory=dict_row) as cursor:
        counted = cursor.execute(count_query, params).fetchone()
        rows = cursor.execute(page_query, {**params, "limit": limit, "offset": offset}).fetchall()
    total = int(counted["count"]) if counted else 0
    return [DeviceRecord(**row) for row in rows], total


def find_device(connection: psycopg.Connection[Any], device_id: str) -> DeviceRecord | None:
    """A device by id, decommissioned or not."""
    query = sql.SQL("SELECT {} FROM devices d {} WHERE d.device_id = %s").format(
        sql.SQL(_COLUMNS), sql.SQL(_LATEST_STATE)
    )
    with connection.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(query, (device_id,)).fetchone()
    return DeviceRecord(**row) if row else None


@dataclass(frozen=True, slots=True)
class DeviceActivity:
    """What the detail of a device adds to its registry row."""

    last_seen_at: datetime | None
    """Its newest telemetry sample, event or state change."""
    open_alerts: int
    has_credentials: bool


def device_activity(connection: psycopg.Connection[Any], device: DeviceRecord) -> DeviceActivity:
    telemetry = sql.Identifier(f"telemetry_{DeviceClass(device.device_class).value}")
    # ORDER BY ts DESC LIMIT 1 reads one index entry per day partition at most, newest first.
    query = sql.SQL(
        "SELECT greatest("
        " (SELECT ts FROM {} WHERE device_id = %(id)s ORDER BY ts DESC LIMIT 1),"
        " (SELECT ts FROM device_events WHERE device_id = %(id)s ORDER BY ts DESC LIMIT 1),"
        " (SELECT ts FROM device_states WHERE device_id = %(id)s ORDER BY ts DESC LIMIT 1)),"
        " (SELECT count(*) FROM alerts WHERE subject = %(id)s"
        "  AND status IN ('firing', 'acknowledged')),"
        " EXISTS (SELECT 1 FROM device_credentials WHERE device_id = %(id)s)"
    ).format(telemetry)
    row = connection.execute(query, {"id": device.device_id}).fetchone()
    assert row is not None  # noqa: S101 - a SELECT without FROM gives one row
    return DeviceActivity(row[0], int(row[1]), bool(row[2]))


# ----------------------------------------------------------------------------- groups


@dataclass(frozen=True, slots=True)
class PlaceCount:
    site_id: str
    name: str
    devices: int
    device_classes: list[str]
    street_groups: list[str] = field(default_factory=list)
    """Cabinets: the street groups they feed."""
    cabinets: list[str] = field(default_factory=list)
    """Street groups: their cabinets."""


@dataclass(frozen=True, slots=True)
class ZoneCount:
    name: str
    devices: int
    device_ids: list[str]


@dataclass(frozen=True, slots=True)
class BuildingCount:
    site_id: str
    name: str
    display_name: str
    devices: int
    zones: list[ZoneCount]


@dataclass(frozen=True, slots=True)
class ClassCount:
    site_id: str
    device_class: str
    devices: int


@dataclass(frozen=True, slots=True)
class Groups:
    street_groups: list[PlaceCount]
    cabinets: list[PlaceCount]
    buildings: list[BuildingCount]
    classes: list[ClassCount]


def list_groups(connection: psycopg.Connection[Any], site: str | None = None) -> Groups:
    """The places devices in service are grouped by, with how many devices each holds."""
    in_service = sql.SQL(
        "decommissioned_at IS NULL AND (%(site)s::text IS NULL OR site_id = %(site)s)"
    )
    params = {"site": site}
    with connection.cursor(row_factory=dict_row) as cursor:
        street_groups = cursor.execute(
            sql.SQL(
                "SELECT site_id, street_group AS name, count(*) AS devices,"
                " array_agg(DISTINCT device_class) AS device_classes,"
                " coalesce(array_agg(DISTINCT cabinet) FILTER (WHERE cabinet IS NOT NULL),"
                " '{{}}') AS cabinets"
                " FROM devices WHERE street_group IS NOT NULL AND {}"
                " GROUP BY site_id, street_group ORDER BY site_id, street_group"
            ).format(in_service),
            params,
        ).fetchall()
        cabinets = cursor.execute(
            sql.SQL(
                "SELECT site_id, cabinet AS name, count(*) AS devices,"
                " array_agg(DISTINCT device_class) AS device_classes,"
                " coalesce(array_agg(DISTINCT street_group) FILTER"
                " (WHERE street_group IS NOT NULL), '{{}}') AS street_groups"
                " FROM devices WHERE cabinet IS NOT NULL AND {}"
                " GROUP BY site_id, cabinet ORDER BY site_id, cabinet"
            ).format(in_service),
            params,
        ).fetchall()
        zones = cursor.execute(
            sql.SQL(
                "SELECT site_id, building, coalesce(zone, '') AS zone,"
                " max(metadata->>'building_name') AS display_name, count(*) AS devices,"
                " array_agg(device_id ORDER BY device_id) AS device_ids"
                " FROM devices WHERE building IS NOT NULL AND {}"
                " GROUP BY site_id, building, zone ORDER BY site_id, building, zone"
            ).format(in_service),
            params,
        ).fetchall()
        classes = cursor.execute(
            sql.SQL(
                "SELECT site_id, device_class, count(*) AS devices FROM devices WHERE {}"
                " GROUP BY site_id, device_class ORDER BY site_id, device_class"
            ).format(in_service),
            params,
        ).fetchall()
    return Groups(
        [PlaceCount(**row) for row in street_groups],
        [PlaceCount(**row) for row in cabinets],
        _buildings(zones),
        [ClassCount(**row) for row in classes],
    )


def _buildings(zone_rows: Sequence[Mapping[str, Any]]) -> list[BuildingCount]:
    by_building: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in zone_rows:
        by_building.setdefault((row["site_id"], row["building"]), []).append(row)
    return [
        BuildingCount(
            site_id=site_id,
            name=building,
            display_name=next((r["display_name"] for r in rows if r["display_name"]), building),
            devices=sum(int(r["devices"]) for r in rows),
            zones=[ZoneCount(r["zone"], int(r["devices"]), list(r["device_ids"])) for r in rows],
        )
        for (site_id, building), rows in by_building.items()
    ]


@dataclass(frozen=True, slots=True)
class GroupSelector:
    """Devices by place: a street group, cabinet or building (several narrow each other), or
    a device class within a site; ``device_class`` also narrows a place to one class."""

    site: str | None = None
    street_group: str | None = None
    cabinet: str | None = None
    building: str | None = None
    device_class: DeviceClass | None = None

    def problem(self) -> str | None:
        """Why this selects no group, or None when it is a group."""
        places = (self.street_group, self.cabinet, self.building)
        if any(place is not None for place in places):
            return None
        if self.device_class is not None and self.site is not None:
            return None
        return (
            "name a group: street_group, cabinet or building (optionally with site and "
            "device_class), or a device_class with its site"
        )

    def label(self) -> str:
        """The group in words, for the audit log and responses (``street_group=menzel``)."""
        parts = {
            "site": self.site,
            "street_group": self.street_group,
            "cabinet": self.cabinet,
            "building": self.building,
            "device_class": self.device_class.value if self.device_class else None,
        }
        return ",".join(f"{name}={value}" for name, value in parts.items() if value is not None)


@dataclass(frozen=True, slots=True)
class Member:
    device_id: str
    site_id: str
    device_class: DeviceClass


def group_members(
    connection: psycopg.Connection[Any],
    selector: GroupSelector,
    *,
    in_service_after: datetime | None = None,
) -> list[Member]:
    """The devices of a group, by id: those in service, or with ``in_service_after`` also
    those decommissioned after that time (their history still belongs to the group)."""
    rows = connection.execute(
        """
        SELECT device_id, site_id, device_class FROM devices
        WHERE (%(site)s::text IS NULL OR site_id = %(site)s)
          AND (%(street_group)s::text IS NULL OR street_group = %(street_group)s)
          AND (%(cabinet)s::text IS NULL OR cabinet = %(cabinet)s)
          AND (%(building)s::text IS NULL OR building = %(building)s)
          AND (%(device_class)s::text IS NULL OR device_class = %(device_class)s)
          AND (decommissioned_at IS NULL OR decommissioned_at > %(after)s)
        ORDER BY device_id
        """,
        {
            "site": selector.site,
            "street_group": selector.street_group,
            "cabinet": selector.cabinet,
            "building": selector.building,
            "device_class": selector.device_class.value if selector.device_class else None,
            "after": in_service_after if in_service_after is not None else "infinity",
        },
    ).fetchall()
    return [Member(device_id, site_id, DeviceClass(cls)) for device_id, site_id, cls in rows]


class MixedGroupError(ValueError):
    """A group of devices of several classes where one class is needed."""


def single_class(members: Sequence[Member]) -> DeviceClass:
    """The one class of a group's devices; :class:`MixedGroupError` saying what to add."""
    classes = sorted({member.device_class.value for member in members})
    if len(classes) != 1:
        raise MixedGroupError(
            f"the group holds devices of several classes ({', '.join(classes)}): "
            "add device_class to choose one"
        )
    return DeviceClass(classes[0])


# ----------------------------------------------------------------------------- changes


def site_exists(connection: psycopg.Connection[Any], site_id: str) -> bool:
    return (
        connection.execute("SELECT 1 FROM sites WHERE site_id = %s", (site_id,)).fetchone()
        is not None
    )


def known_sites(connection: psycopg.Connection[Any]) -> list[str]:
    return [row[0] for row in connection.execute("SELECT site_id FROM sites ORDER BY 1")]


def model_ratings(
    connection: psycopg.Connection[Any], device_class: DeviceClass, model: str
) -> dict[str, Any] | None:
    """The ratings of a rated model some device of ``device_class`` already has (they come
    from its site file); None when no device has that model."""
    row = connection.execute(
        "SELECT metadata->'ratings' FROM devices WHERE device_class = %s AND model = %s"
        " ORDER BY decommissioned_at IS NULL DESC, updated_at DESC LIMIT 1",
        (device_class.value, model),
    ).fetchone()
    if row is None:
        return None
    return dict(row[0]) if isinstance(row[0], dict) else {}


def known_models(connection: psycopg.Connection[Any], device_class: DeviceClass) -> list[str]:
    rows = connection.execute(
        "SELECT DISTINCT model FROM devices WHERE device_class = %s AND model <> '' ORDER BY 1",
        (device_class.value,),
    )
    return [row[0] for row in rows]


@dataclass(frozen=True, slots=True)
class NewDevice:
    device_id: str
    site_id: str
    device_class: DeviceClass
    name: str
    model: str
    latitude: float | None
    longitude: float | None
    street_group: str | None
    cabinet: str | None
    building: str | None
    zone: str | None
    metadata: Mapping[str, Any]


def insert_device(
    connection: psycopg.Connection[Any], device: NewDevice, ratings: Mapping[str, Any], at: datetime
) -> bool:
    """Add a device as :func:`storage.registry.upsert_site` would (ratings in ``metadata``);
    False when its id is taken (in service or decommissioned)."""
    cursor = connection.execute(
        """
        INSERT INTO devices (device_id, site_id, device_class, name, model, latitude, longitude,
            street_group, cabinet, building, zone, metadata, created_at, updated_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (device_id) DO NOTHING
        """,
        (
            device.device_id,
            device.site_id,
            device.device_class.value,
            device.name,
            device.model,
            device.latitude,
            device.longitude,
            device.street_group,
            device.cabinet,
            device.building,
            device.zone,
            Jsonb({**device.metadata, "ratings": dict(ratings)}),
            at,
            at,
        ),
    )
    return cursor.rowcount == 1


def update_device(
    connection: psycopg.Connection[Any],
    device: DeviceRecord,
    changes: Mapping[str, Any],
    at: datetime,
) -> None:
    """Change the editable fields in ``changes`` (:data:`EDITABLE_FIELDS`); a new
    ``metadata`` replaces the old one but keeps the model's ratings."""
    columns: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in EDITABLE_FIELDS:
            raise ValueError(f"{name!r} is not an editable field of a device")
        if name == "metadata":
            columns[name] = Jsonb({**value, "ratings": device.metadata.get("ratings", {})})
        else:
            columns[name] = value
    if not columns:
        return
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in columns
    )
    connection.execute(
        sql.SQL("UPDATE devices SET {}, updated_at = %(at)s WHERE device_id = %(id)s").format(
            assignments
        ),
        {**columns, "at": at, "id": device.device_id},
    )


def decommission_device(connection: psycopg.Connection[Any], device_id: str, at: datetime) -> None:
    """Take a device out of service: ingest refuses it from its next look at the registry, its
    MQTT credentials go; its history stays."""
    connection.execute(
        "UPDATE devices SET decommissioned_at = %s, updated_at = %s WHERE device_id = %s",
        (at, at, device_id),
    )
    connection.execute("DELETE FROM device_credentials WHERE device_id = %s", (device_id,))


def topic_prefix(site_id: str, device_class: DeviceClass, device_id: str) -> str:
    """What a device's topics start with (protocol/topics.py): ``.../telemetry``, ``.../cmd``..."""
    topic = DeviceTopic(site_id, device_class, device_id, Channel.TELEMETRY)
    return str(topic).rpartition("/")[0]


def unknown_places(
    connection: psycopg.Connection,
    device_ids: Sequence[str],
    street_groups: Sequence[str],
    buildings: Sequence[str],
    site_id: str | None = None,
) -> list[str]:
    """The devices, street groups and buildings named that no device in the registry has (of
    ``site_id`` only, when given), each as ``street group 'x'``."""
    row = connection.execute(
        """
        SELECT
            ARRAY(SELECT x FROM unnest(%(devices)s::text[]) x
                  WHERE NOT EXISTS (SELECT 1 FROM devices WHERE device_id = x)),
            ARRAY(SELECT x FROM unnest(%(groups)s::text[]) x
                  WHERE NOT EXISTS (SELECT 1 FROM devices WHERE street_group = x
                                    AND (%(site)s::text IS NULL OR site_id = %(site)s))),
            ARRAY(SELECT x FROM unnest(%(buildings)s::text[]) x
                  WHERE NOT EXISTS (SELECT 1 FROM devices WHERE building = x
                                    AND (%(site)s::text IS NULL OR site_id = %(site)s)))
        """,
        {
            "devices": list(device_ids),
            "groups": list(street_groups),
            "buildings": list(buildings),
            "site": site_id,
        },
    ).fetchone()
    if row is None:
        return []
    devices, groups, places = row
    return (
        [f"device {name!r}" for name in devices]
        + [f"street group {name!r}" for name in groups]
        + [f"building {name!r}" for name in places]
    )


@dataclass(frozen=True, slots=True)
class PlaceNames:
    """The names the registry gives street groups and buildings (none where it has none)."""

    street_groups: dict[str, str] = field(default_factory=dict)
    buildings: dict[str, str] = field(default_factory=dict)


def place_names(
    connection: psycopg.Connection[Any], street_groups: Sequence[str], buildings: Sequence[str]
) -> PlaceNames:
    """The names of ``street_groups`` and ``buildings``. A building's is the name its site file
    gives it (``metadata.building_name``); a street group's is its streetlights' run name
    (``Route El Menzel, north carriageway #12`` without the number), or what the names of
    several runs share (``Avenue Mohammed V`` for its north and south sides)."""
    groups = connection.execute(
        "SELECT street_group, array_agg(DISTINCT regexp_replace(name, ' #[0-9]+$', ''))"
        " FROM devices WHERE street_group = ANY(%s) AND device_class = 'streetlight'"
        " AND decommissioned_at IS NULL GROUP BY street_group",
        (list(street_groups),),
    ).fetchall()
    places = connection.execute(
        "SELECT building, max(metadata->>'building_name') FROM devices"
        " WHERE building = ANY(%s) AND decommissioned_at IS NULL GROUP BY building",
        (list(buildings),),
    ).fetchall()
    names = {group: _shared_name(runs) for group, runs in groups}
    return PlaceNames(
        {group: name for group, name in names.items() if name},
        {building: name for building, name in places if name},
    )


def _shared_name(names: Sequence[str]) -> str:
    """The leading comma-separated parts every name of ``names`` has
    (``Qanater Khayriya garden`` for ``..., perimeter`` and ``..., central alley``)."""
    shared = names[0].split(", ")
    for name in names[1:]:
        parts = name.split(", ")
        common = 0
        while common < min(len(shared), len(parts)) and shared[common] == parts[common]:
            common += 1
        shared = shared[:common]
    return ", ".join(shared).strip()
