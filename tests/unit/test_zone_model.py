"""A zone's learnt heat balance (rules/zone_model.py): it learns a healthy zone, sees a sensor
drifting either way, is not fooled by a neighbour's fault, and runs the same live and in batch.

The zones here are a small first-order model written for the test (a thermostat that holds
its *reading* at the setpoint, a night setback, outdoor air swinging over the day), not the
simulator: the point is the learning, on data whose truth is known.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from alerts.lifecycle import Scope
from protocol.topics import DeviceClass
from rules.context import DevicePlace
from rules.evaluator import Evaluator, FleetDevice
from rules.model import parse_rules
from rules.zone_model import (
    COMPLETE_SHARE,
    DARK_ELEVATION_DEG,
    KNOWN_RANGE,
    KNOWN_SLACK_KW,
    LEARN_GATE_K,
    LEARNING_HOURS,
    MEMORY_HOURS,
    MIN_LOSS_RATE,
    RECENT_HOURS,
    Neighbour,
    ZoneHistory,
    ZoneModel,
    expected_temperatures,
)
from tests.unit.engine_restart import through_and_restarted

Floats = np.ndarray
START_S = 1_799_020_800.0  # 2027-01-03 00:00 UTC
DAYS = 8
STEP_S = 60.0
DRIFT_K_PER_HOUR = 0.25


@dataclass
class Zone:
    """One synthetic zone's parameters and faults."""

    loss_per_h: float = 0.075
    """UA / C [1/h]."""
    heat_k_per_h_per_kw: float = 0.2
    exchange_per_h: float = 0.03
    """Per neighbour [1/h]."""
    max_kw: float = 12.0
    setback_c: float = 15.0
    drift_from_h: float | None = None
    drift_sign: float = 1.0
    heater_fails_from_h: float | None = None
    readings: dict[str, list[float]] = field(default_factory=dict)


def _outdoor(hours: Floats) -> Floats:
    return 6.0 - 5.0 * np.cos(2 * np.pi * (hours % 24 - 3) / 24)


def _sun(hours: Floats) -> Floats:
    """A crude sun: up from 07:00 to 17:00 UTC."""
    local = hours % 24
    return np.where((local > 7) & (local < 17), 30.0, -20.0)


def _simulate(
    zones: list[Zone], seed: int = 1, days: int = DAYS
) -> tuple[Floats, list[dict[str, Floats]]]:
    """Every zone of one building, a reading a minute for ``days`` days."""
    rng = np.random.default_rng(seed)
    steps = int(days * 24 * 3_600 / STEP_S)
    unix_s = START_S + STEP_S * np.arange(steps)
    hours = (unix_s - START_S) / 3_600
    outdoor = _outdoor(hours)
    sun = _sun(hours)
    true = np.full(len(zones), 18.0)
    columns: list[dict[str, list[float]]] = [
        {name: [] for name in ("air_temperature", "outdoor_temperature", "power", "heating_active")}
        for _ in zones
    ]
    for step in range(steps):
        hour = hours[step]
        day = 6 <= hour % 24 < 18
        setpoint = np.array([20.0 if day else zone.setback_c for zone in zones])
        reported = true.copy()
        for index, zone in enumerate(zones):
            if zone.drift_from_h is not None and hour >= zone.drift_from_h:
                offset = min(8.0, DRIFT_K_PER_HOUR * (hour - zone.drift_from_h))
                reported[index] += zone.drift_sign * offset
        demand = np.clip((setpoint - reported) * 6.0, 0.0, None)
        power = np.array([min(d, zone.max_kw) for d, zone in zip(demand, zones, strict=True)])
        gained = power.copy()
        for index, zone in enumerate(zones):
            if zone.heater_fails_from_h is not None and hour >= zone.heater_fails_from_h:
                gained[index] = 0.0
                power[index] = 0.0  # the meter sees what the radiators give
        change = np.zeros(len(zones))
        for index, zone in enumerate(zones):
            others = [true[j] for j in range(len(zones)) if j != index]
            exchange = sum(zone.exchange_per_h * (other - true[index]) for other in others)
            sunny = 0.4 if sun[step] > 0 else 0.0
            change[index] = (
                zone.loss_per_h * (outdoor[step] - true[index])
                + zone.heat_k_per_h_per_kw * gained[index]
                + exchange
                + sunny
            )
        for index, column in enumerate(columns):
            column["air_temperature"].append(reported[index] + 0.03 * rng.standard_normal())
            column["outdoor_temperature"].append(outdoor[step] + 0.05 * rng.standard_normal())
            column["power"].append(power[index])
            column["heating_active"].append(1.0 if power[index] > 0 else 0.0)
        true = true + change * STEP_S / 3_600
    envs = []
    for column in columns:
        env = {name: np.array(values) for name, values in column.items()}
        env.update(
            cooling_active=np.zeros(steps),
            occupancy=np.zeros(steps),
            window_open=np.zeros(steps),
            sun_elevation=sun,
        )
        envs.append(env)
    return unix_s, envs


def _offsets(unix_s: Floats, envs: list[dict[str, Floats]]) -> list[Floats]:
    histories = [ZoneHistory(unix_s, env) for env in envs]
    expected = expected_temperatures(histories, alone=len(envs) == 1)
    return [env["air_temperature"] - value for env, value in zip(envs, expected, strict=True)]


def _at_hour(unix_s: Floats, hour: float) -> int:
    return int(np.searchsorted(unix_s, START_S + hour * 3_600))


@pytest.fixture(scope="module")
def healthy() -> tuple[Floats, list[dict[str, Floats]]]:
    return _simulate([Zone(), Zone(loss_per_h=0.06, heat_k_per_h_per_kw=0.15)])


def test_a_healthy_zone_reads_what_its_balance_says(
    healthy: tuple[Floats, list[dict[str, Floats]]],
) -> None:
    unix_s, envs = healthy
    for offset in _offsets(unix_s, envs):
        assert np.isnan(offset[: _at_hour(unix_s, 12)]).all(), "not trusted before it learnt"
        learnt = offset[_at_hour(unix_s, 72) :]
        assert not np.isnan(learnt).any()
        assert np.abs(learnt).max() < 1.0


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_drifting_sensor_stands_off_its_balance_by_the_next_dark_hours(sign: float) -> None:
    """A drift starting at 09:00 on the fifth day shows that evening, either way."""
    unix_s, envs = _simulate(
        [Zone(drift_from_h=4 * 24 + 9, drift_sign=sign), Zone(loss_per_h=0.06, setback_c=17.0)]
    )
    drifting, neighbour = _offsets(unix_s, envs)
    before = drifting[_at_hour(unix_s, 72) : _at_hour(unix_s, 4 * 24 + 9)]
    assert np.abs(before).max() < 1.0
    night = drifting[_at_hour(unix_s, 5 * 24) : _at_hour(unix_s, 5 * 24 + 3)]
    assert (sign * night > 4.0).all(), "more than 4 K off by midnight"
    assert np.abs(neighbour[_at_hour(unix_s, 72) :]).max() < LEARN_GATE_K, "the neighbour"


def test_a_neighbours_heating_failure_does_not_make_a_zone_look_drifted() -> None:
    """The failed zone cools by many kelvin; its healthy neighbour loses more heat to it,
    heats more, and its balance accounts for it through the neighbours' temperature."""
    unix_s, envs = _simulate([Zone(heater_fails_from_h=4 * 24 + 9), Zone(exchange_per_h=0.06)])
    failed, healthy_zone = _offsets(unix_s, envs)
    cold = envs[0]["air_temperature"][_at_hour(unix_s, 6 * 24)]
    assert cold < 12.0, "the failed zone really is cold"
    assert np.abs(healthy_zone[_at_hour(unix_s, 72) :]).max() < LEARN_GATE_K
    # The failed zone's own balance holds too: its meter shows the heat it gets.
    assert np.nanmax(np.abs(failed[_at_hour(unix_s, 72) :])) < 2.0


def test_without_a_meter_a_zone_is_not_judged(
    healthy: tuple[Floats, list[dict[str, Floats]]],
) -> None:
    unix_s, envs = healthy
    blind = {name: values for name, values in envs[0].items() if name != "power"}
    (offset,) = _offsets(unix_s, [blind])
    assert np.isnan(offset).all()


def test_the_engine_one_reading_at_a_time_gives_the_batch_values_exactly() -> None:
    """The streaming model, fed the building's readings in time order with its neighbours'
    records, is :func:`expected_temperatures` to the last bit; saved and restored half-way
    (as the engine saves its state), it carries on the same."""
    unix_s, envs = _simulate([Zone(drift_from_h=5 * 24 + 2, drift_sign=-1.0), Zone(), Zone()])
    batch = expected_temperatures([ZoneHistory(unix_s, env) for env in envs], alone=False)
    models = [ZoneModel() for _ in envs]

    def neighbours_of(index: int) -> Callable[[int], list[Neighbour]]:
        def neighbours(hour: int) -> list[Neighbour]:
            return [
                kept
                for other, model in enumerate(models)
                if other != index and (kept := model.kept.get(hour)) is not None
            ]

        return neighbours

    half = len(unix_s) // 2
    for position, moment in enumerate(unix_s):
        if position == half:
            models = [ZoneModel.from_json(json.loads(json.dumps(m.to_json()))) for m in models]
        for index, env in enumerate(envs):
            row = {name: values[position : position + 1] for name, values in env.items()}
            offset = models[index].reading(float(moment), row, neighbours_of(index))
            live = float(row["air_temperature"][0] - offset)
            expected = batch[index][position]
            assert (math.isnan(live) and math.isnan(expected)) or live == expected, (
                index,
                position,
            )


def test_a_saved_model_that_is_not_one_starts_afresh() -> None:
    assert ZoneModel.from_json({"lhs": "nonsense"}).learnt == 0
    assert ZoneModel.from_json({}).learnt == 0


def test_docs_state_the_models_figures() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if line.startswith("| `expected_air_temperature`"))
    words = re.sub(r"\s+", " ", row)
    assert f"{COMPLETE_SHARE * 100:g} % of its readings (48)" in words
    assert f"below {DARK_ELEVATION_DEG:g} deg" in words
    assert f"time constant of {MEMORY_HOURS:g} used hours" in words
    assert f"at least {MIN_LOSS_RATE:g} per hour" in words
    assert f"median of its latest {RECENT_HOURS}" in words
    assert f"learnt from {LEARNING_HOURS} used hours" in words
    assert f"further than {LEARN_GATE_K:g} K" in words
    assert f"offset exceeds {LEARN_GATE_K:g} K" in words
    assert (
        f"exceeds {KNOWN_RANGE:g} times the most learnt from, plus {KNOWN_SLACK_KW:g} kW" in words
    )


def test_the_engine_saves_a_zones_balance_and_carries_on_after_a_restart() -> None:
    """The evaluator's saved state holds the learnt balance: an engine restarted half-way
    gives the same ``expected_air_temperature`` as one that ran through."""
    unix_s, envs = _simulate([Zone(), Zone(loss_per_h=0.06, setback_c=17.0)], days=3)
    names = ("z1", "z2")
    fleet = {
        name: FleetDevice(
            DevicePlace(name, DeviceClass.BUILDING, 33.83, -4.84, "Africa/Casablanca"),
            Scope(name, building="hall"),
        )
        for name in names
    }
    rules = parse_rules(
        "rules: [{id: drift, class: building, title: {en: T},"
        " when: 'abs(air_temperature - expected_air_temperature) > 4'}]"
    )

    through, restarted = through_and_restarted(
        lambda: Evaluator(rules, fleet),
        unix_s,
        dict(zip(names, envs, strict=True)),
        len(unix_s) // 2,
    )
    for name in names:
        kept, fresh = through.memories[name].zone_model, restarted.memories[name].zone_model
        assert kept is not None
        assert fresh is not None
        assert kept.learnt == fresh.learnt > LEARNING_HOURS
        assert kept.offset == fresh.offset


def test_hours_of_the_zones_own_night_ventilation_are_not_learnt_from(
    healthy: tuple[Floats, list[dict[str, Floats]]],
) -> None:
    """Motorised windows open (``vents_open``) spoil an hour as a window left open does: with
    them open all along, nothing is learnt and the balance says nothing."""
    unix_s, envs = healthy
    shut = [dict(env, vents_open=np.zeros(unix_s.size)) for env in envs]
    aired = [dict(env, vents_open=np.ones(unix_s.size)) for env in envs]
    assert all(np.isfinite(offsets[-1]) for offsets in _offsets(unix_s, shut))
    assert all(np.isnan(offsets[-1]) for offsets in _offsets(unix_s, aired))
