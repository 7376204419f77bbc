"""Site inventories: a city's devices, places and coordinates, as data.

A site file (``sites/sefrou.yaml``, format in ``docs/sites.md``) declares device models and
their ratings, then lists devices one by one, or compactly: a run of streetlights along a
street (two ends or a polyline), or a building with its zones (one building sensor device per
zone). :func:`parse_site` expands and validates it; errors name the file, the entry and its
line, and say what to change.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from protocol.errors import ProtocolError
from protocol.topics import IDENTIFIER_PATTERN, DeviceClass
from protocol.yamlfile import YamlLocator, read_yaml, short_repr

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN.pattern)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Point = tuple[Latitude, Longitude]

PlaceKind = Literal["road", "square", "garden", "entrance"]
"""Where a streetlight run stands: lighting control dims squares and roads differently."""
BuildingKind = Literal[
    "town_hall",
    "cultural_centre",
    "library",
    "multipurpose_hall",
    "slaughterhouse",
    "road_station",
    "sports_hall",
    "district_annex",
]
"""Kinds of municipal building: the heating and cooling strategy depends on the kind."""

_EARTH_RADIUS_M = 6_371_000.0


class SiteFileError(ProtocolError):
    """A site file that cannot be read or does not describe a valid site."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def check_time_zone(value: str) -> str:
    """``value`` if it names an IANA time zone, else a ValueError saying what to give."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Africa" is a folder of zones
        raise ValueError(f"unknown time zone {value!r}; use an IANA name") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(check_time_zone)]


class SiteHeader(_Strict):
    id: Identifier
    name: str
    timezone: TimeZoneName
    latitude: Latitude
    longitude: Longitude
    altitude: float = Field(default=0.0, ge=-500, le=9_000)
    """Height above sea level [m]: thinner air lets more sunshine through."""


class _Rating(_Strict):
    _id: str = PrivateAttr("")

    @property
    def id(self) -> str:
        """The model id, its key in the site file's ``models``."""
        return self._id


class StreetlightModel(_Rating):
    """Rating of a solar streetlight model: panel, battery and lamp."""

    device_class: Literal["streetlight"] = Field("streetlight", alias="class")
    panel_wp: float = Field(gt=0)
    """Solar panel peak power at standard test conditions [Wp]."""
    battery_ah: float = Field(gt=0)
    """Battery capacity [Ah]."""
    battery_voltage: float = Field(12.8, gt=0)
    """Battery nominal voltage [V] (12.8 V: a 4-cell LiFePO4 pack)."""
    lamp_w: float = Field(gt=0)
    """LED lamp power at 100 % dimming level [W]."""
    description: str = ""

    @property
    def battery_wh(self) -> float:
        """Battery energy capacity [Wh]: battery_ah * battery_voltage."""
        return self.battery_ah * self.battery_voltage


class SignageModel(_Rating):
    """Rating of an electronic signage panel model."""

    device_class: Literal["signage"] = Field("signage", alias="class")
    pixels: int = Field(gt=0)
    """Number of LED pixels of the display [-]."""
    max_power_w: float = Field(gt=0)
    """Power drawn with every pixel lit at full brightness [W]."""
    description: str = ""


Rating = StreetlightModel | SignageModel
"""The resolved rating of a device's model; buildings have none."""
_ModelEntry = Annotated[Rating, Field(discriminator="device_class")]


class DeviceEntry(_Strict):
    id: Identifier
    device_class: DeviceClass = Field(alias="class")
    name: str = ""
    model: str = ""
    """A model id from ``models`` (streetlights and signs); free text for building sensors."""
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    street_group: str | None = None
    cabinet: str | None = None
    building: str | None = None
    zone: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class StreetlightRun(_Strict):
    """Evenly spaced solar streetlights along a street: between two ends or along a path."""

    id_prefix: Identifier
    street_group: Identifier
    name: str
    count: int = Field(ge=1, le=5_000)
    start: Point | None = None
    end: Point | None = None
    path: list[Point] | None = Field(None, min_length=2)
    """A polyline [[lat, lon], ...]: lights are spread evenly along its length."""
    model: str = ""
    cabinet: str | None = None
    cabinets: list[str] | None = Field(None, min_length=1)
    """Several cabinets: the lights are split, in order, into near-equal consecutive blocks."""
    place_kind: PlaceKind = "road"

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        ends = (self.start is not None) + (self.end is not None)
        if self.path is not None and ends:
            raise ValueError("give either start and end, or path, not both")
        if self.path is None and ends != 2:
            raise ValueError("give both start and end, or a path")
        if self.cabinet is not None and self.cabinets is not None:
            raise ValueError("give either cabinet or cabinets, not both")
        if self.cabinets is not None and len(self.cabinets) > self.count:
            raise ValueError(f"{len(self.cabinets)} cabinets for {self.count} lights: too many")
        if self.count > 1 and _length_m(self.points) == 0:
            raise ValueError(f"{self.count} lights on a street of zero length: move its ends")
        return self

    @property
    def points(self) -> list[tuple[float, float]]:
        if self.path is not None:
            return list(self.path)
        if self.start is None or self.end is None:
            return []  # refused by the validator
        return [self.start, self.end]


def _zone_from_id(value: object) -> object:
    return {"id": value} if isinstance(value, str) else value


class ZoneEntry(_Strict):
    id: Identifier
    area_m2: float = Field(100.0, gt=0)
    """Floor area [m2]."""
    heating: bool = True
    cooling: bool = True


class BuildingEntry(_Strict):
    id: Identifier
    name: str
    kind: BuildingKind
    latitude: Latitude
    longitude: Longitude
    zones: list[Annotated[ZoneEntry, BeforeValidator(_zone_from_id)]] = Field(min_length=1)
    """Zone ids, or mappings {id, area_m2, heating, cooling}."""
    model: str = ""
    """The zone sensors' model, free text (buildings have no rating)."""
    motorised_windows: bool = False
    """The zones have windows the platform can open for night ventilation."""
    external_blinds: bool = False
    """The zones have external blinds the platform can lower."""


class SiteFile(_Strict):
    site: SiteHeader
    models: dict[Identifier, _ModelEntry] = Field(default_factory=dict)
    devices: list[DeviceEntry] = Field(default_factory=list)
    streetlight_runs: list[StreetlightRun] = Field(default_factory=list)
    buildings: list[BuildingEntry] = Field(default_factory=list)

    @field_validator("models")
    @classmethod
    def _name_models(cls, models: dict[str, Rating]) -> dict[str, Rating]:
        for model_id, model in models.items():
            model._id = model_id  # the id is the key: set once, on load
        return models


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    device_class: DeviceClass
    name: str
    model: str
    """The model id (streetlights and signs), or free text (building sensors)."""
    latitude: float | None
    longitude: float | None
    street_group: str | None = None
    cabinet: str | None = None
    building: str | None = None
    zone: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    rating: Rating | None = None
    """The rating of ``model``; None for building sensors and for files without models."""


@dataclass(frozen=True, slots=True)
class SiteInventory:
    site: SiteHeader
    devices: tuple[Device, ...]
    models: Mapping[str, Rating] = field(default_factory=dict)

    def by_class(self, device_class: DeviceClass) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.device_class is device_class)

    def only(self, *device_ids: str) -> SiteInventory:
        """The same site with only the named devices; SiteFileError for an unknown one."""
        known = {d.id: d for d in self.devices}
        missing = [i for i in device_ids if i not in known]
        if missing:
            raise SiteFileError(f"site {self.site.id} has no device {', '.join(missing)}")
        return SiteInventory(self.site, tuple(known[i] for i in device_ids), self.models)


def load_site(path: Path) -> SiteInventory:
    """Read and expand a site file; raise :class:`SiteFileError` naming the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SiteFileError(f"{path}: cannot read the site file: {error.strerror}") from error
    return parse_site(text, source=str(path))


def parse_site(text: str, source: str = "<site>") -> SiteInventory:
    """Validate and expand the text of a site file; ``source`` names it in errors."""
    root, document = read_yaml(text, source, SiteFileError)
    where = YamlLocator(source, root, SiteFileError)
    try:
        site_file = SiteFile.model_validate(document)
    except ValidationError as error:
        raise where.validation_error(error, _message) from None
    models = site_file.models
    placed: list[tuple[Device, tuple[str | int, ...]]] = []
    for index, entry in enumerate(site_file.devices):
        loc: tuple[str | int, ...] = ("devices", index)
        placed.append((_device(entry, _rating(entry, loc, models, where)), loc))
    for index, run in enumerate(site_file.streetlight_runs):
        loc = ("streetlight_runs", index)
        rating = _rating(run, loc, models, where)
        placed.extend((device, loc) for device in _expand_run(run, rating))
    for index, building in enumerate(site_file.buildings):
        loc = ("buildings", index)
        placed.extend((device, loc) for device in _expand_building(building))
    first_seen: dict[str, tuple[str | int, ...]] = {}
    for device, loc in placed:
        if not IDENTIFIER_PATTERN.fullmatch(device.id):
            raise where.error(
                loc,
                f"expanded device id {device.id!r} is not a valid identifier "
                "(at most 64 lower-case letters, digits and inner hyphens): shorten its parts",
            )
        if device.id in first_seen:
            raise where.error(
                loc,
                f"device id {device.id!r} appears twice (first in "
                f"{where.path(first_seen[device.id])}): rename one",
            )
        first_seen[device.id] = loc
    return SiteInventory(site_file.site, tuple(device for device, _ in placed), models)


def _rating(
    entry: DeviceEntry | StreetlightRun,
    loc: tuple[str | int, ...],
    models: Mapping[str, Rating],
    where: YamlLocator,
) -> Rating | None:
    """The rating of an entry's model; a SiteFileError if it is missing, unknown or wrong."""
    if isinstance(entry, DeviceEntry):
        device_class, label = entry.device_class, f"device {entry.id!r}"
    else:
        device_class, label = DeviceClass.STREETLIGHT, f"run {entry.id_prefix!r}"
    if device_class is DeviceClass.BUILDING:
        return None
    fitting = sorted(
        key for key, model in models.items() if model.device_class == device_class.value
    )
    known = f"known {device_class} models: {', '.join(fitting) or '(none)'}"
    if not entry.model:
        if not models:
            return None  # a file without models (tests, benchmarks): devices have no rating
        raise where.error(loc, f"{label} has no model; give one ({known})")
    rating = models.get(entry.model)
    if rating is None:
        raise where.error((*loc, "model"), f"{label}: unknown model {entry.model!r}; {known}")
    if rating.device_class != device_class.value:
        raise where.error(
            (*loc, "model"),
            f"{label}: model {entry.model!r} is a {rating.device_class} model, "
            f"not a {device_class} one; {known}",
        )
    return rating


def _device(entry: DeviceEntry, rating: Rating | None) -> Device:
    return Device(
        entry.id,
        entry.device_class,
        entry.name,
        entry.model,
        entry.latitude,
        entry.longitude,
        entry.street_group,
        entry.cabinet,
        entry.building,
        entry.zone,
        entry.metadata,
        rating,
    )


def _expand_run(run: StreetlightRun, rating: Rating | None) -> list[Device]:
    width = max(3, int(math.log10(run.count)) + 1)
    devices = []
    for index, (latitude, longitude) in enumerate(_spread(run.points, run.count)):
        if run.cabinets is not None:
            cabinet: str | None = run.cabinets[index * len(run.cabinets) // run.count]
        else:
            cabinet = run.cabinet
        devices.append(
            Device(
                f"{run.id_prefix}-{index + 1:0{width}d}",
                DeviceClass.STREETLIGHT,
                f"{run.name} #{index + 1}",
                run.model,
                round(latitude, 6),
                round(longitude, 6),
                street_group=run.street_group,
                cabinet=cabinet,
                metadata={"place_kind": run.place_kind},
                rating=rating,
            )
        )
    return devices


def _segment_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Length of a short segment [m] (equirectangular: exact enough within a city)."""
    mean_latitude = math.radians((a[0] + b[0]) / 2)
    north = math.radians(b[0] - a[0])
    east = math.radians(b[1] - a[1]) * math.cos(mean_latitude)
    return _EARTH_RADIUS_M * math.hypot(north, east)


def _length_m(points: Sequence[tuple[float, float]]) -> float:
    """Length of a polyline [m]."""
    return sum(_segment_m(a, b) for a, b in itertools.pairwise(points))


def _spread(points: Sequence[tuple[float, float]], count: int) -> Iterator[tuple[float, float]]:
    """``count`` points evenly spaced along a polyline, both ends included."""
    segments = [_segment_m(a, b) for a, b in itertools.pairwise(points)]
    total = sum(segments)
    segment, walked = 0, 0.0
    for index in range(count):
        target = total * index / (count - 1) if count > 1 else 0.0
        while segment < len(segments) - 1 and walked + segments[segment] < target:
            walked += segments[segment]
            segment += 1
        length = segments[segment]
        fraction = min(1.0, (target - walked) / length) if length > 0 else 0.0
        if count > 1 and index == count - 1:
            fraction = 1.0  # the last light stands exactly at the end, whatever the rounding
        (lat_a, lon_a), (lat_b, lon_b) = points[segment], points[segment + 1]
        yield lat_a + (lat_b - lat_a) * fraction, lon_a + (lon_b - lon_a) * fraction


def _expand_building(building: BuildingEntry) -> list[Device]:
    return [
        Device(
            f"{building.id}-{zone.id}",
            DeviceClass.BUILDING,
            f"{building.name}: {zone.id}",
            building.model,
            building.latitude,
            building.longitude,
            building=building.id,
            zone=zone.id,
            metadata={
                "building_kind": building.kind,
                "building_name": building.name,
                "area_m2": zone.area_m2,
                "heating": zone.heating,
                "cooling": zone.cooling,
                "motorised_windows": building.motorised_windows,
                "external_blinds": building.external_blinds,
            },
        )
        for zone in building.zones
    ]


def _message(problem: ErrorDetails) -> str:
    """Pydantic's message, made to say what to change where it can."""
    kind, value = problem["type"], problem.get("input")
    if kind == "string_pattern_mismatch":
        return (
            f"{value!r} is not a valid id: use 1-64 lower-case letters, digits and inner "
            "hyphens (for example 'sl-0001')"
        )
    if kind == "extra_forbidden":
        return "unknown field: check its spelling (the fields are listed in docs/sites.md)"
    if kind in {"literal_error", "enum"}:
        return f"{problem['msg']}, not {value!r}"
    if kind == "union_tag_not_found":
        return "no class: give class: streetlight or class: signage"
    if kind == "union_tag_invalid":
        tag = problem.get("ctx", {}).get("tag")
        return f"unknown class {tag!r}: give class: streetlight or class: signage"
    if kind == "model_type":
        return f"Input should be a valid dictionary (key: value pairs), not {short_repr(value)}"
    if kind == "value_error":
        return str(problem.get("ctx", {}).get("error", problem["msg"]))
    return problem["msg"]
