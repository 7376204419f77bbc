"""Routes: the latest values of a device, and bucketed ranges of a device or a group.

Ranges read the rollups when their buckets are whole hours or days (the response says which
``source`` was read); see :mod:`api.telemetry_queries`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, Field, StringConstraints

from api import device_queries as devices
from api import telemetry_queries as telemetry
from api.deps import AwareMoment, Db, Now, Reader
from api.problems import NotFoundError, UnprocessableError, guarded_router, problem_responses
from protocol.catalogue import CATALOGUE, ValueKind
from protocol.topics import IDENTIFIER_PATTERN, DeviceClass

router = guarded_router("telemetry")

BucketName = Literal[
    "auto", "1m", "5m", "10m", "15m", "30m", "1h", "2h", "3h", "6h", "12h", "1d", "7d"
]
MetricName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
PlaceQuery = Annotated[
    str | None, Query(min_length=1, max_length=100, pattern=devices.STORABLE_TEXT)
]


class LatestValueOut(BaseModel):
    metric: str
    ts: datetime = Field(description="When the device took the value.")
    value: float
    unit: str
    kind: ValueKind
    description: str


class DeviceLatest(BaseModel):
    device_id: str
    device_class: DeviceClass
    values: list[LatestValueOut] = Field(description="Every metric it reported, by name.")


class PointOut(BaseModel):
    t: datetime = Field(description="The bucket's start (UTC grid).")
    value: float | None
    devices: int = Field(description="Devices with a sample of the metric in the bucket.")


class SeriesOut(BaseModel):
    metric: str
    unit: str
    device_id: str | None = Field(description="Set in per-device series; null: the whole target.")
    points: list[PointOut] = Field(description="Buckets without a sample are left out.")


class TelemetryRange(BaseModel):
    device_class: DeviceClass
    device_id: str | None = Field(description="The device asked for; null for a group.")
    group: str | None = Field(
        description="The group asked for (street_group=...); null for a device."
    )
    devices: int = Field(description="Devices of the target.")
    bucket: str
    bucket_seconds: int
    source: telemetry.Source = Field(
        description="What was read: raw samples, or the hourly or daily rollups."
    )
    aggregate: telemetry.Aggregate
    across: telemetry.Across | None = Field(
        description="How devices' values were combined per bucket (groups only)."
    )
    start: datetime = Field(description="The range's start, floored to the bucket grid.")
    end: datetime = Field(description="Its end (exclusive), ceiled to the bucket grid.")
    series: list[SeriesOut]


@router.get(
    "/devices/{device_id}/telemetry/latest",
    responses=problem_responses(404),
    summary="The newest value of every metric a device reported",
)
def get_latest(
    device_id: Annotated[str, Path(pattern=IDENTIFIER_PATTERN.pattern)],
    _: Reader,
    connection: Db,
) -> DeviceLatest:
    record = devices.find_device(connection, device_id)
    if record is None:
        raise NotFoundError(f"no device {device_id!r}: see GET /api/v1/devices")
    device_class = DeviceClass(record.device_class)
    catalogue = CATALOGUE[device_class].metrics
    values = [
        LatestValueOut(
            metric=found.metric,
            ts=found.ts,
            value=found.value,
            unit=catalogue[found.metric].unit,
            kind=catalogue[found.metric].kind,
            description=catalogue[found.metric].description,
        )
        for found in telemetry.latest_values(connection, device_class, device_id)
    ]
    return DeviceLatest(device_id=device_id, device_class=device_class, values=values)


@router.get(
    "/telemetry",
    responses=problem_responses(404),
    summary="A bucketed range of one device or a group; long ranges read the rollups",
)
def get_range(
    *,
    _: Reader,
    connection: Db,
    now: Now,
    metric: Annotated[
        list[MetricName],
        Query(
            min_length=1,
            max_length=telemetry.MAX_METRICS,
            description="Repeat for several: metric=battery_soc&metric=lamp_power.",
        ),
    ],
    start: Annotated[AwareMoment, Query(alias="from", description="With its time zone.")],
    end: Annotated[
        AwareMoment | None, Query(alias="to", description="Exclusive; default: now.")
    ] = None,
    device_id: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN.pattern)] = None,
    site: PlaceQuery = None,
    street_group: PlaceQuery = None,
    cabinet: PlaceQuery = None,
    building: PlaceQuery = None,
    device_class: DeviceClass | None = None,
    bucket: Annotated[
        BucketName,
        Query(description="auto: the finest bucket giving at most 1,000 points."),
    ] = "auto",
    aggregate: telemetry.Aggregate = telemetry.Aggregate.AVG,
    across: Annotated[
        telemetry.Across | None,
        Query(description="Groups: how devices combine; default follows the aggregate."),
    ] = None,
    per_device: Annotated[
        bool, Query(description="Groups: one series per device as well (at most 100 devices).")
    ] = False,
) -> TelemetryRange:
    """Give ``device_id``, or a group: ``street_group``, ``cabinet`` or ``building``
    (``site`` and ``device_class`` narrow it), or a ``device_class`` with its ``site``.

    Buckets are UTC. Each bucket of a device holds the ``aggregate`` of its samples; for a
    group, the devices' values are combined with ``across`` (avg of averages, sum of sums...),
    with the number of devices reporting."""
    try:
        plan = telemetry.plan_range(start, end if end is not None else now, bucket)
    except telemetry.RangeError as error:
        raise UnprocessableError(str(error)) from error
    selector = devices.GroupSelector(site, street_group, cabinet, building, device_class)
    device_ids, chosen_class, group = _target(connection, device_id, selector, plan)
    try:
        metrics = [m.name for m in telemetry.check_metrics(chosen_class, metric)]
        telemetry.check_size(plan, len(metrics), len(device_ids) if per_device else 0)
    except telemetry.RangeError as error:
        raise UnprocessableError(str(error)) from error
    combine = (across or telemetry.DEFAULT_ACROSS[aggregate]) if group else None
    found = telemetry.read_series(
        connection, chosen_class, device_ids, metrics, plan,
        aggregate=aggregate, across=combine or telemetry.Across.AVG,
    )  # fmt: skip
    if per_device and group:
        found += telemetry.read_device_series(
            connection, chosen_class, device_ids, metrics, plan, aggregate=aggregate
        )
    units = CATALOGUE[chosen_class].metrics
    return TelemetryRange(
        device_class=chosen_class,
        device_id=device_id,
        group=group,
        devices=len(device_ids),
        bucket=plan.bucket,
        bucket_seconds=plan.bucket_s,
        source=plan.source,
        aggregate=aggregate,
        across=combine,
        start=plan.start,
        end=plan.end,
        series=[
            SeriesOut(
                metric=s.metric,
                unit=units[s.metric].unit,
                device_id=s.device_id,
                points=[PointOut(t=p.bucket, value=p.value, devices=p.devices) for p in s.points],
            )
            for s in found
        ],
    )


def _target(
    connection: Db,
    device_id: str | None,
    selector: devices.GroupSelector,
    plan: telemetry.RangePlan,
) -> tuple[list[str], DeviceClass, str | None]:
    """The devices, their class, and the group's label (None for one device)."""
    if device_id is not None:
        if selector != devices.GroupSelector():
            raise UnprocessableError("give either device_id or a group, not both")
        record = devices.find_device(connection, device_id)
        if record is None:
            raise NotFoundError(f"no device {device_id!r}: see GET /api/v1/devices")
        return [device_id], DeviceClass(record.device_class), None
    problem = selector.problem()
    if problem is not None:
        raise UnprocessableError(f"give device_id, or {problem}")
    members = devices.group_members(connection, selector, in_service_after=plan.start)
    if not members:
        raise NotFoundError(
            f"no device in {selector.label()}: see GET /api/v1/groups for the groups"
        )
    try:
        chosen = devices.single_class(members)
    except devices.MixedGroupError as error:
        raise UnprocessableError(str(error)) from error
    return [m.device_id for m in members], chosen, selector.label()
