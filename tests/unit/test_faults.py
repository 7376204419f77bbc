"""Fault files and random faults: clear errors for bad files, reproducible draws, true truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from protocol.faults import FAULT_CLASSES, FaultType
from protocol.sites import parse_site
from simulators.faults import (
    FAR_FUTURE,
    FaultError,
    FaultEvent,
    FaultPlan,
    load_fault_plan,
    random_faults,
    read_ground_truth,
    write_ground_truth,
)
from tests.simulation_helpers import small_site

START = datetime(2026, 1, 12, 12, tzinfo=UTC)
DEVICES = small_site().devices


def plan(tmp_path: Path, text: str) -> FaultPlan:
    path = tmp_path / "faults.yaml"
    path.write_text(text)
    return load_fault_plan(path, DEVICES, START)


def test_a_fault_file_gives_events_at_absolute_or_relative_times(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        "faults:\n"
        "  - {device: sl-main-001, fault: lamp_failure, start: '+30m', duration: 6h}\n"
        "  - {device: hall-archives, fault: window_open, start: '2026-01-13T08:00:00Z',"
        " end: '2026-01-13T17:00:00+00:00'}\n"
        "  - {device: sign-a, fault: door_open, start: '+1d'}\n"
        "random: {per_device_year: 2, seed: 7}\n"
    )
    loaded = load_fault_plan(path, DEVICES, START)
    by_device = {event.device_id: event for event in loaded.events}
    lamp, window, door = (by_device[d] for d in ("sl-main-001", "hall-archives", "sign-a"))
    assert (lamp.start, lamp.end) == (START + timedelta(minutes=30), START + timedelta(hours=6.5))
    assert window.end - window.start == timedelta(hours=9)
    assert door.end == FAR_FUTURE
    assert (loaded.random_per_device_year, loaded.random_seed) == (2, 7)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "faults: [{device: nowhere, fault: lamp_failure, start: '+1h'}]",
            "unknown device 'nowhere'",
        ),
        (
            "faults: [{device: sign-a, fault: lamp_failure, start: '+1h'}]",
            "cannot strike a signage",
        ),
        ("faults: [{device: sign-a, fault: melting, start: '+1h'}]", "faults.0.fault"),
        ("faults: [{device: sign-a, fault: door_open, start: tomorrow}]", "neither an ISO time"),
        ("faults: [{device: sign-a, fault: door_open, start: '2026-01-13T08:00'}]", "no time zone"),
        (
            "faults: [{device: sign-a, fault: door_open, start: '+1h', duration: 2 hours}]",
            "not a duration",
        ),
        (
            "faults: [{device: sign-a, fault: door_open, start: '+1h', end: '+2h', duration: 1h}]",
            "give end or duration, not both",
        ),
        (
            "faults: [{device: sign-a, fault: door_open, start: '+2h', end: '+1h'}]",
            "ends before it starts",
        ),
        ("faults: [{device: sign-a, fault: door_open, start: '+1h', colour: red}]", "colour"),
        ("random: {per_device_year: -1}", "per_device_year"),
        ("faults: [", "not valid YAML"),
    ],
)
def test_a_bad_fault_file_is_refused_naming_the_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(FaultError, match=message):
        plan(tmp_path, text)


def test_a_missing_fault_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FaultError, match="cannot read the fault file"):
        load_fault_plan(tmp_path / "nowhere.yaml", DEVICES, START)


def test_random_faults_are_reproducible_and_fit_their_devices() -> None:
    end = START + timedelta(days=365)
    first = random_faults(DEVICES, START, end, 4.0, np.random.default_rng(3))
    assert first == random_faults(DEVICES, START, end, 4.0, np.random.default_rng(3))
    assert first != random_faults(DEVICES, START, end, 4.0, np.random.default_rng(4))
    classes = {d.id: d.device_class for d in DEVICES}
    for event in first:
        assert classes[event.device_id] in FAULT_CLASSES[event.fault]
        assert START <= event.start < event.end <= end
    assert 0.5 * 4 * len(DEVICES) < len(first) < 1.5 * 4 * len(DEVICES)


def test_ground_truth_survives_its_csv_file(tmp_path: Path) -> None:
    events = random_faults(
        DEVICES, START, START + timedelta(days=60), 6.0, np.random.default_rng(1)
    )
    events.append(FaultEvent(START, "sign-b", FaultType.PIXEL_FAILURES))  # open-ended
    path = tmp_path / "truth" / "ground_truth.csv"
    write_ground_truth(path, events)
    assert read_ground_truth(path) == sorted(events)


ZONES_WITHOUT = """
site: {id: s, name: S, timezone: Africa/Casablanca, latitude: 33.83, longitude: -4.84}
buildings:
  - {id: abattoir, name: Abattoir, kind: slaughterhouse, latitude: 33.83, longitude: -4.84,
     zones: [{id: cold-room, heating: false}, {id: changing, cooling: false}]}
"""


@pytest.mark.parametrize(
    ("device", "fault", "missing"),
    [
        ("abattoir-cold-room", "stuck_valve", "no heating"),
        ("abattoir-cold-room", "heating_failure", "no heating"),
        ("abattoir-cold-room", "short_cycling", "no heating"),
        ("abattoir-changing", "simultaneous_heating_cooling", "no cooling"),
    ],
)
def test_a_fault_the_zones_equipment_cannot_have_is_refused(
    tmp_path: Path, device: str, fault: str, missing: str
) -> None:
    """A zone without radiators has no valve to stick, one without air conditioning cannot
    heat and cool at once: the file is refused, and random draws never pick them."""
    devices = parse_site(ZONES_WITHOUT, source="<zones>").devices
    path = tmp_path / "faults.yaml"
    path.write_text(f"faults: [{{device: {device}, fault: {fault}, start: '+1h'}}]")
    with pytest.raises(FaultError, match=f"{device}: it has {missing}"):
        load_fault_plan(path, devices, START)
    drawn = random_faults(
        devices, START, START + timedelta(days=365), 365, np.random.default_rng(1)
    )
    assert (device, FaultType(fault)) not in {(e.device_id, e.fault) for e in drawn}
    assert {e.fault for e in drawn if e.device_id == device} - {FaultType(fault)}, "others"
