"""Site inventories: a city's devices, places and coordinates, as data.

A site file (``sites/sefrou.yaml``) lists devices one by one, or compactly: a run of
streetlights along a street between two points, or a building with its zones (one building
sensor device per zone). :func:`parse_site` expands and validates it; errors name the place in
the file and say what to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from protocol.errors import ProtocolError
from protocol.topics import IDENTIFIER_PATTERN, DeviceClass

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN.pattern)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class SiteFileError(ProtocolError):
    """A site file that cannot be read or does not describe a valid site."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteHeader(_Strict):
    id: Identifier
    name: str
    timezone: str
    latitude: Latitude
    longitude: Longitude

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name") from None
        return value


class DeviceEntry(_Strict):
    id: Identifier
    device_class: DeviceClass = Field(alias="class")
    name: str = ""
    model: str = ""
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    street_group: str | None = None
    cabinet: str | None = None
    building: str | None = None
    zone: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class StreetlightRun(_Strict):
    """Evenly spaced solar streetlights along a straight stretch of street."""

    id_prefix: Identifier
    street_group: Identifier
    name: str
    count: int = Field(ge=1, le=5_000)
    start: tuple[Latitude, Longitude]
    end: tuple[Latitude, Longitude]
    model: str = ""
    cabinet: str | None = None
    place_kind: str = "road"
    """road, square, garden...: lighting control dims squares and roads differently."""


class BuildingEntry(_Strict):
    id: Identifier
    name: str
    kind: str
    """town_hall, cultural_centre, library, slaughterhouse, road_station..."""
    latitude: Latitude
    longitude: Longitude
    zones: list[Identifier] = Field(min_length=1)
    model: str = ""


class SiteFile(_Strict):
    site: SiteHeader
    devices: list[DeviceEntry] = Field(default_factory=list)
    streetlight_runs: list[StreetlightRun] = Field(default_factory=list)
    buildings: list[BuildingEntry] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    device_class: DeviceClass
    name: str
    model: str
    latitude: float | None
    longitude: float | None
    street_group: str | None = None
    cabinet: str | None = None
    building: str | None = None
    zone: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SiteInventory:
    site: SiteHeader
    devices: tuple[Device, ...]

    def by_class(self, device_class: DeviceClass) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.device_class is device_class)


def load_site(path: Path) -> SiteInventory:
    """Read and expand a site file; raise :class:`SiteFileError` naming the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SiteFileError(f"{path}: cannot read the site file: {error.strerror}") from error
    return parse_site(text, source=str(path))


def parse_site(text: str, source: str = "<site>") -> SiteInventory:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise SiteFileError(f"{where}: not valid YAML: {error}") from error
    try:
        site_file = SiteFile.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '(top)'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise SiteFileError(f"{source}: {problems}") from None
    devices = [*(_device(entry) for entry in site_file.devices)]
    for run in site_file.streetlight_runs:
        devices.extend(_expand_run(run))
    for building in site_file.buildings:
        devices.extend(_expand_building(building))
    seen: set[str] = set()
    for device in devices:
        if not IDENTIFIER_PATTERN.fullmatch(device.id):
            raise SiteFileError(
                f"{source}: expanded device id {device.id!r} is not a valid identifier "
                "(at most 64 lower-case letters, digits and inner hyphens): shorten its parts"
            )
        if device.id in seen:
            raise SiteFileError(f"{source}: device id {device.id!r} appears twice")
        seen.add(device.id)
    return SiteInventory(site_file.site, tuple(devices))


def _device(entry: DeviceEntry) -> Device:
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
    )


def _expand_run(run: StreetlightRun) -> list[Device]:
    width = max(3, int(math.log10(run.count)) + 1)
    devices = []
    for index in range(run.count):
        fraction = index / (run.count - 1) if run.count > 1 else 0.0
        latitude = run.start[0] + (run.end[0] - run.start[0]) * fraction
        longitude = run.start[1] + (run.end[1] - run.start[1]) * fraction
        devices.append(
            Device(
                f"{run.id_prefix}-{index + 1:0{width}d}",
                DeviceClass.STREETLIGHT,
                f"{run.name} #{index + 1}",
                run.model,
                round(latitude, 6),
                round(longitude, 6),
                street_group=run.street_group,
                cabinet=run.cabinet,
                metadata={"place_kind": run.place_kind},
            )
        )
    return devices


def _expand_building(building: BuildingEntry) -> list[Device]:
    return [
        Device(
            f"{building.id}-{zone}",
            DeviceClass.BUILDING,
            f"{building.name}: {zone}",
            building.model,
            building.latitude,
            building.longitude,
            building=building.id,
            zone=zone,
            metadata={"building_kind": building.kind, "building_name": building.name},
        )
        for zone in building.zones
    ]
