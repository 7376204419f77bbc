"""Fault injection: which device fails how, from when to when, and the truth of it.

Faults come from a file (scheduled) or from a seeded random draw, or both. Every injected
fault is ground truth: the simulator writes it to a CSV file and to the database
(``fault_ground_truth``), so fault detection can be scored against what really happened.

A fault file::

    faults:
      - {device: sl-menzel-n-001, fault: lamp_failure, start: "+30m", duration: 6h}
      - {device: town-hall-archives, fault: window_open,
         start: "2026-01-15T08:00:00Z", end: "2026-01-15T17:00:00Z"}
    random:
      seed: 7            # optional; the simulation's seed otherwise
      per_device_year: 2 # faults per device per year, spread over the types of its class

Times are ISO 8601 with a zone, or offsets from the simulation's start (``+30m``, ``+2h``,
``+1d``); a fault without an end lasts until the simulation stops.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol import durations
from protocol.faults import FAULT_CLASSES, FaultType
from protocol.sites import Device
from protocol.yamlfile import read_yaml
from simulators.errors import SimulatorError

FAR_FUTURE: Final = datetime.max.replace(tzinfo=UTC)


class FaultError(SimulatorError):
    """A fault file or fault specification that cannot be used."""


TYPICAL_DURATION: Final[dict[FaultType, timedelta]] = {
    FaultType.COMMUNICATION_LOSS: timedelta(hours=3),
    FaultType.POWER_LOSS: timedelta(hours=6),
    FaultType.DOOR_OPEN: timedelta(hours=2),
    FaultType.WINDOW_OPEN: timedelta(hours=8),
    FaultType.OVER_TEMPERATURE: timedelta(days=2),
    FaultType.SUPPLY_FAILURE: timedelta(hours=12),
}
"""Mean duration of a random fault; the others last until repaired (about two weeks)."""
UNTIL_REPAIRED: Final = timedelta(days=14)
NEEDS: Final[dict[FaultType, tuple[str, ...]]] = {
    FaultType.STUCK_VALVE: ("heating",),
    FaultType.HEATING_FAILURE: ("heating",),
    FaultType.SHORT_CYCLING: ("heating",),
    FaultType.SIMULTANEOUS_HEATING_COOLING: ("heating", "cooling"),
}
"""The equipment a zone must have (its site file's ``heating`` and ``cooling``) for a fault:
a zone without radiators has no valve to stick."""


def why_not(fault: FaultType, device: Device) -> str | None:
    """Why ``fault`` cannot strike ``device``; None if it can."""
    if device.device_class not in FAULT_CLASSES[fault]:
        return f"{fault} cannot strike a {device.device_class} ({device.id})"
    missing = [kit for kit in NEEDS.get(fault, ()) if not device.metadata.get(kit, True)]
    if missing:
        return f"{fault} cannot strike {device.id}: it has no {' and no '.join(missing)}"
    return None


@dataclass(frozen=True, slots=True, order=True)
class FaultEvent:
    start: datetime
    device_id: str
    fault: FaultType
    end: datetime = FAR_FUTURE

    def active(self, at: datetime) -> bool:
        return self.start <= at < self.end


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str
    fault: FaultType
    start: str
    end: str | None = None
    duration: str | None = None


class _Random(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int | None = None
    per_device_year: float = Field(ge=0, le=365)


class _FaultFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    faults: list[_Entry] = Field(default_factory=list)
    random: _Random | None = None


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """A fault file, read: fixed events and the random draw's parameters."""

    events: tuple[FaultEvent, ...]
    random_per_device_year: float = 0.0
    random_seed: int | None = None


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``1.5d`` -> a timedelta; raise :class:`FaultError`."""
    try:
        return durations.parse_duration(text)
    except ValueError as error:
        raise FaultError(str(error)) from None


def _moment(text: str, simulation_start: datetime) -> datetime:
    if text.strip().startswith("+"):
        return simulation_start + parse_duration(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FaultError(f"{text!r} is neither an ISO time nor an offset like +2h") from None
    if moment.tzinfo is None:
        raise FaultError(f"{text!r} has no time zone: add Z or +01:00")
    return moment


def load_fault_plan(path: Path, devices: Sequence[Device], simulation_start: datetime) -> FaultPlan:
    """Read a fault file; raise :class:`FaultError` naming the entry and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise FaultError(f"{path}: cannot read the fault file: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise FaultError(f"{path}: not UTF-8 text: {error}") from error
    # read_yaml: deep nesting and self-referencing aliases are refused, not a crash.
    _, document = read_yaml(text, str(path), FaultError)
    try:
        parsed = _FaultFile.model_validate(document or {})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
        raise FaultError(f"{path}: {problems}") from None
    by_id = {device.id: device for device in devices}
    events = []
    for index, entry in enumerate(parsed.faults):
        where = f"{path}: faults[{index}]"
        device = by_id.get(entry.device)
        if device is None:
            raise FaultError(f"{where}: unknown device {entry.device!r}")
        impossible = why_not(entry.fault, device)
        if impossible is not None:
            raise FaultError(f"{where}: {impossible}")
        try:
            start, end = _span(entry, simulation_start)
        except FaultError as error:
            raise FaultError(f"{where}: {error}") from None
        if end <= start:
            raise FaultError(f"{where}: the fault ends before it starts")
        events.append(FaultEvent(start, entry.device, entry.fault, end))
    rate = parsed.random.per_device_year if parsed.random else 0.0
    seed = parsed.random.seed if parsed.random else None
    return FaultPlan(tuple(sorted(events)), rate, seed)


def _span(entry: _Entry, simulation_start: datetime) -> tuple[datetime, datetime]:
    start = _moment(entry.start, simulation_start)
    if entry.end is not None and entry.duration is not None:
        raise FaultError("give end or duration, not both")
    if entry.end is not None:
        return start, _moment(entry.end, simulation_start)
    if entry.duration is not None:
        return start, start + parse_duration(entry.duration)
    return start, FAR_FUTURE


def random_faults(
    devices: Sequence[Device],
    start: datetime,
    end: datetime,
    per_device_year: float,
    rng: np.random.Generator,
) -> list[FaultEvent]:
    """Faults striking at random (Poisson) between ``start`` and ``end``, reproducible by seed;
    only those the device can have (:func:`why_not`)."""
    span_s = (end - start).total_seconds()
    events = []
    for device in devices:
        kinds = [fault for fault in FAULT_CLASSES if why_not(fault, device) is None]
        count = int(rng.poisson(per_device_year * span_s / (365 * 86_400)))
        for _ in range(count):
            fault = kinds[int(rng.integers(len(kinds)))]
            began = start + timedelta(seconds=float(rng.uniform(0, span_s)))
            mean = TYPICAL_DURATION.get(fault, UNTIL_REPAIRED).total_seconds()
            lasted = timedelta(seconds=max(600.0, float(rng.exponential(mean))))
            events.append(FaultEvent(began, device.id, fault, min(began + lasted, end)))
    return sorted(events)


GROUND_TRUTH_COLUMNS: Final = ("device_id", "fault", "start", "end")


def write_ground_truth(path: Path, events: Iterable[FaultEvent]) -> None:
    """Write the injected faults as CSV (an open-ended fault has an empty end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(GROUND_TRUTH_COLUMNS)
        for event in sorted(events):
            ended = "" if event.end == FAR_FUTURE else event.end.isoformat()
            writer.writerow((event.device_id, event.fault, event.start.isoformat(), ended))


def read_ground_truth(path: Path) -> list[FaultEvent]:
    with path.open(newline="", encoding="utf-8") as file:
        return [
            FaultEvent(
                datetime.fromisoformat(row["start"]),
                row["device_id"],
                FaultType(row["fault"]),
                datetime.fromisoformat(row["end"]) if row["end"] else FAR_FUTURE,
            )
            for row in csv.DictReader(file)
        ]
