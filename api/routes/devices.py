"""Routes: the device registry (readers), provisioning and changes (admin).

Provisioning makes the device's MQTT credentials and shows the password once: the database
keeps only its hash, in the format of Mosquitto's password file (``api/secrets.py``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Self

from fastapi import Path, Query, status
from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator

from api import device_queries as queries
from api.audit import record_action
from api.deps import Admin, Db, Now, Reader, State
from api.problems import (
    ConflictError,
    NotFoundError,
    UnprocessableError,
    guarded_router,
    problem_responses,
)
from broker_config.accounts import mosquitto_hash, new_device_password
from protocol.topics import IDENTIFIER_PATTERN, DeviceClass
from storage.registry import store_credentials

router = guarded_router("devices")

MAX_PAGE: Final = 500
MAX_METADATA_BYTES: Final = 16_384

EXAMPLE_DEVICE: Final = "sl-example-001"
"""The device id the schema's examples use: no site has it, so a client that replays the
examples against a live platform (a fuzzer) decommissions or re-keys no real device."""
Identifier = Annotated[
    str, StringConstraints(pattern=IDENTIFIER_PATTERN.pattern), Field(examples=[EXAMPLE_DEVICE])
]
DeviceIdPath = Annotated[str, Path(pattern=IDENTIFIER_PATTERN.pattern, examples=[EXAMPLE_DEVICE])]
PlaceQuery = Annotated[
    str | None, Query(min_length=1, max_length=100, pattern=queries.STORABLE_TEXT)
]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


def _check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata of a bounded size, without ``ratings`` (the model's, set by the platform)."""
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata must stay under {MAX_METADATA_BYTES} bytes of JSON")
    return {key: value for key, value in metadata.items() if key != "ratings"}


Metadata = Annotated[
    dict[str, Any],
    Field(
        max_length=50,
        description="Free JSON (place_kind, building_kind, area_m2...); `ratings` is the "
        "model's and is set by the platform.",
    ),
    AfterValidator(_check_metadata),
]


class DeviceOut(BaseModel):
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
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    decommissioned_at: datetime | None
    status: queries.DeviceStatus = Field(
        description="From the device's latest state message: online, offline, or never-seen."
    )
    status_since: datetime | None = Field(description="When the device last changed status.")
    status_reason: str | None = Field(description="Why it went offline (lost, shutdown...).")

    @classmethod
    def of(cls, record: queries.DeviceRecord) -> Self:
        return cls.model_validate(record, from_attributes=True)


class DeviceDetail(DeviceOut):
    firmware: str | None
    last_seen_at: datetime | None = Field(
        description="Its newest telemetry sample, event or state change."
    )
    open_alerts: int = Field(description="Its alerts firing or acknowledged.")
    has_credentials: bool = Field(description="Whether it has MQTT credentials made here.")

    @classmethod
    def with_activity(cls, record: queries.DeviceRecord, activity: queries.DeviceActivity) -> Self:
        base = DeviceOut.of(record).model_dump()
        return cls(
            **base,
            firmware=record.firmware,
            last_seen_at=activity.last_seen_at,
            open_alerts=activity.open_alerts,
            has_credentials=activity.has_credentials,
        )


class DevicePage(BaseModel):
    items: list[DeviceOut]
    total: int = Field(description="Devices matching the filters, all pages.")
    limit: int
    offset: int


class NewDevice(BaseModel):
    id: Identifier
    device_class: DeviceClass
    site_id: Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN.pattern)]
    name: str = Field("", max_length=200, pattern=queries.STORABLE_TEXT)
    model: str = Field(
        "",
        max_length=100,
        pattern=queries.STORABLE_TEXT,
        description="Streetlights and signs: a model some device of the class already has "
        "(its ratings come from the site file); buildings: free text.",
    )
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    street_group: Identifier | None = None
    cabinet: Identifier | None = None
    building: Identifier | None = None
    zone: Identifier | None = None
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _building_zone(self) -> Self:
        if self.device_class is DeviceClass.BUILDING and (
            self.building is None or self.zone is None
        ):
            raise ValueError("a building device needs its building and its zone")
        return self


class DeviceChange(BaseModel):
    """Fields left out stay as they are; null clears a place or a coordinate."""

    name: str | None = Field(None, max_length=200, pattern=queries.STORABLE_TEXT)
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    street_group: Identifier | None = None
    cabinet: Identifier | None = None
    building: Identifier | None = None
    zone: Identifier | None = None
    metadata: Metadata | None = Field(None, description="Replaces the metadata (ratings kept).")


class MqttCredentials(BaseModel):
    username: str = Field(description="The device id.")
    password: str = Field(description="Shown this once; the platform keeps only its hash.")
    broker_host: str = Field(description="The name or address devices reach the broker at.")
    broker_port: int | None = Field(
        description="The broker's listener that takes this password (plain MQTT; on the"
        " broker's machine: `smartcity broker --device-port`); null when none is configured."
    )
    broker_tls_port: int | None = Field(
        description="The broker's TLS listener: it takes a client certificate, not this"
        " password (`smartcity provision --credentials` issues one); null when none is"
        " configured."
    )
    topic_prefix: str = Field(
        description="The device publishes `<prefix>/telemetry`, `event`, `state` and "
        "`cmd_ack`, and subscribes to `<prefix>/cmd`.",
        examples=[f"sc/sefrou/streetlight/{EXAMPLE_DEVICE}"],
    )


class ProvisionedDevice(BaseModel):
    device: DeviceDetail
    credentials: MqttCredentials


class PlaceOut(BaseModel):
    site_id: str
    name: str
    devices: int
    device_classes: list[DeviceClass]


class StreetGroupOut(PlaceOut):
    cabinets: list[str]


class CabinetOut(PlaceOut):
    street_groups: list[str]


class ZoneOut(BaseModel):
    name: str
    devices: int
    device_ids: list[str]


class BuildingOut(BaseModel):
    site_id: str
    name: str
    display_name: str
    devices: int
    zones: list[ZoneOut]


class ClassOut(BaseModel):
    site_id: str
    device_class: DeviceClass
    devices: int


class GroupsOut(BaseModel):
    street_groups: list[StreetGroupOut]
    cabinets: list[CabinetOut]
    buildings: list[BuildingOut]
    classes: list[ClassOut]


def _detail(connection: Db, record: queries.DeviceRecord) -> DeviceDetail:
    return DeviceDetail.with_activity(record, queries.device_activity(connection, record))


def _existing(connection: Db, device_id: str) -> queries.DeviceRecord:
    record = queries.find_device(connection, device_id)
    if record is None:
        raise NotFoundError(f"no device {device_id!r}: see GET /api/v1/devices")
    return record


def _in_service(connection: Db, device_id: str) -> queries.DeviceRecord:
    record = _existing(connection, device_id)
    if record.decommissioned_at is not None:
        raise ConflictError(
            f"device {device_id!r} was decommissioned at {record.decommissioned_at.isoformat()};"
            " provision a new device instead"
        )
    return record


def _new_credentials(
    connection: Db, state: State, record: queries.DeviceRecord, created_by: str, at: datetime
) -> MqttCredentials:
    password = new_device_password()
    store_credentials(connection, record.device_id, mosquitto_hash(password), created_by, at)
    return MqttCredentials(
        username=record.device_id,
        password=password,
        broker_host=state.config.device_broker.host,
        broker_port=state.config.device_broker.password_port,
        broker_tls_port=state.config.device_broker.tls_port,
        topic_prefix=queries.topic_prefix(
            record.site_id, DeviceClass(record.device_class), record.device_id
        ),
    )


@router.get("/devices", summary="Devices of the registry, filtered, one page")
def get_devices(
    *,
    _: Reader,
    connection: Db,
    device_class: DeviceClass | None = None,
    site: PlaceQuery = None,
    street_group: PlaceQuery = None,
    cabinet: PlaceQuery = None,
    building: PlaceQuery = None,
    zone: PlaceQuery = None,
    model: PlaceQuery = None,
    device_status: Annotated[
        Literal["online", "offline", "never-seen"] | None,
        Query(alias="status", description="From the latest state message."),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            pattern=queries.STORABLE_TEXT,
            description="Part of the id or name.",
        ),
    ] = None,
    include_decommissioned: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DevicePage:
    chosen = queries.DeviceFilter(
        device_class=device_class.value if device_class else None,
        site=site,
        street_group=street_group,
        cabinet=cabinet,
        building=building,
        zone=zone,
        model=model,
        status=device_status,
        search=q,
        include_decommissioned=include_decommissioned,
    )
    records, total = queries.list_devices(connection, chosen, limit=limit, offset=offset)
    return DevicePage(
        items=[DeviceOut.of(r) for r in records], total=total, limit=limit, offset=offset
    )


@router.get(
    "/devices/{device_id}",
    responses=problem_responses(404),
    summary="One device: registry, status, last seen, open alerts",
)
def get_device(device_id: DeviceIdPath, _: Reader, connection: Db) -> DeviceDetail:
    return _detail(connection, _existing(connection, device_id))


@router.get("/groups", summary="Street groups, cabinets, buildings and zones, with device counts")
def get_groups(
    _: Reader,
    connection: Db,
    site: Annotated[
        str | None, Query(min_length=1, max_length=64, pattern=queries.STORABLE_TEXT)
    ] = None,
) -> GroupsOut:
    return GroupsOut.model_validate(queries.list_groups(connection, site), from_attributes=True)


@router.post(
    "/devices",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(409),
    summary="Provision a device; its MQTT password is shown once",
)
def post_device(
    new: NewDevice, caller: Admin, connection: Db, state: State, at: Now
) -> ProvisionedDevice:
    """Adds the device to the registry (ingest accepts its messages from then on) and makes
    its MQTT credentials: the user name is the device id, the password is in this response
    only."""
    if not queries.site_exists(connection, new.site_id):
        known = ", ".join(queries.known_sites(connection)) or "(none)"
        raise UnprocessableError(
            f"unknown site {new.site_id!r}; known sites: {known} (a new site comes from its "
            "site file: smartcity provision SITE_FILE)"
        )
    ratings = _ratings(connection, new.device_class, new.model)
    _refuse_unknown_places(connection, new.site_id, new.street_group, new.building)
    device = queries.NewDevice(
        device_id=new.id,
        site_id=new.site_id,
        device_class=new.device_class,
        name=new.name,
        model=new.model,
        latitude=new.latitude,
        longitude=new.longitude,
        street_group=new.street_group,
        cabinet=new.cabinet,
        building=new.building,
        zone=new.zone,
        metadata=new.metadata,
    )
    if not queries.insert_device(connection, device, ratings, at):
        existing = _existing(connection, new.id)
        gone = " (decommissioned)" if existing.decommissioned_at else ""
        raise ConflictError(f"device {new.id!r} already exists{gone}: choose another id")
    record = _existing(connection, new.id)
    credentials = _new_credentials(connection, state, record, caller.username, at)
    record_action(
        connection, caller, "device.provision", new.id, at,
        site=new.site_id, device_class=new.device_class.value, model=new.model,
    )  # fmt: skip
    return ProvisionedDevice(device=_detail(connection, record), credentials=credentials)


def _refuse_unknown_places(
    connection: Db, site_id: str, street_group: str | None, building: str | None
) -> None:
    """422 for a street group or building the site's registry lacks: a device there would be
    in no crew's places, so nobody would see its alerts."""
    unknown = queries.unknown_places(
        connection,
        [],
        [street_group] if street_group else [],
        [building] if building else [],
        site_id,
    )
    if unknown:
        raise UnprocessableError(
            f"site {site_id} has no {' and no '.join(unknown)}: check the name (GET /groups"
            " lists them); a new street or building comes with the site file (smartcity"
            " provision SITE_FILE)"
        )


def _ratings(connection: Db, device_class: DeviceClass, model: str) -> dict[str, Any]:
    """The ratings of a streetlight's or sign's model (422 if unknown); {} for buildings."""
    if device_class not in queries.RATED_CLASSES:
        return {}
    ratings = queries.model_ratings(connection, device_class, model) if model else None
    if ratings is None:
        known = ", ".join(queries.known_models(connection, device_class)) or "(none)"
        what = (
            f"unknown {device_class} model {model!r}"
            if model
            else f"a {device_class} needs a model"
        )
        raise UnprocessableError(
            f"{what}; known models: {known} (a new model comes with its site file)"
        )
    return ratings


@router.post(
    "/devices/{device_id}/credentials",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(404, 409),
    summary="Make new MQTT credentials for a device (shown once; the old ones stop working)",
)
def post_credentials(
    device_id: DeviceIdPath, caller: Admin, connection: Db, state: State, at: Now
) -> MqttCredentials:
    record = _in_service(connection, device_id)
    credentials = _new_credentials(connection, state, record, caller.username, at)
    record_action(connection, caller, "device.credentials", device_id, at)
    return credentials


@router.patch(
    "/devices/{device_id}",
    responses=problem_responses(404, 409),
    summary="Change a device's name, location, places or metadata",
)
def patch_device(
    device_id: DeviceIdPath, change: DeviceChange, caller: Admin, connection: Db, at: Now
) -> DeviceDetail:
    record = _in_service(connection, device_id)
    changes = change.model_dump(exclude_unset=True)
    if changes.get("name", "") is None:
        changes["name"] = ""
    if "metadata" in changes and changes["metadata"] is None:
        changes["metadata"] = {}
    _refuse_unknown_places(
        connection, record.site_id, changes.get("street_group"), changes.get("building")
    )
    if record.device_class == DeviceClass.BUILDING:
        cleared = [name for name in ("building", "zone") if name in changes and not changes[name]]
        if cleared:
            raise UnprocessableError(
                f"a building device keeps its building and zone: {', '.join(cleared)} "
                "cannot be cleared"
            )
    queries.update_device(connection, record, changes, at)
    record_action(connection, caller, "device.change", device_id, at, fields=sorted(changes))
    return _detail(connection, _existing(connection, device_id))


@router.delete(
    "/devices/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 409),
    summary="Decommission a device (its history is kept)",
)
def delete_device(device_id: DeviceIdPath, caller: Admin, connection: Db, at: Now) -> None:
    """The device leaves service: ingest refuses its messages from its next look at the
    registry, its MQTT credentials are deleted; telemetry, events and alerts stay."""
    _in_service(connection, device_id)
    queries.decommission_device(connection, device_id, at)
    record_action(connection, caller, "device.decommission", device_id, at)
