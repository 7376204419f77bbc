"""A zone's radiators against their own learnt output (rules/radiator.py)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from rules.radiator import (
    LEARN_FLOOR,
    MEMORY_READINGS,
    MIN_EXCESS_K,
    MIN_VALVE,
    TRUSTED_READINGS,
    RadiatorMemory,
    radiator_kw,
    radiator_names,
)

RATED_KW = 14.0


def _zone(count: int, fails_from: int | None = None, seed: int = 3) -> dict[str, np.ndarray]:
    """A zone heating with a modulating valve and warming water; its radiators give 3 % of
    their output from ``fails_from`` on (an air lock)."""
    rng = np.random.default_rng(seed)
    valve = np.clip(rng.uniform(0, 100, count), 0, 100)
    room = 18 + rng.normal(0, 1, count)
    supply = room + rng.uniform(0, 50, count)
    share = np.ones(count)
    if fails_from is not None:
        share[fails_from:] = 0.03
    power = RATED_KW * share * valve / 100 * (np.maximum(supply - room, 0) / 50) ** 1.3
    heating = (valve > 0).astype(float)
    return {
        "power": power * rng.normal(1, 0.02, count),
        "valve_position": valve,
        "supply_water_temperature": supply,
        "air_temperature": room,
        "heating_active": heating,
        "cooling_active": np.zeros(count),
    }


def test_a_healthy_zone_shows_its_radiators_rating() -> None:
    env = _zone(500)
    names = radiator_names(env, 500)
    shown = names["radiator_kw"][~np.isnan(names["radiator_kw"])]
    assert len(shown) > 200
    assert np.median(shown) == pytest.approx(RATED_KW, rel=0.02)
    learnt = names["learnt_radiator_kw"]
    assert np.isnan(learnt[:TRUSTED_READINGS]).all(), "not trusted at first"
    assert abs(learnt[-1] - RATED_KW) < 0.05 * RATED_KW


def test_only_readings_that_can_show_it_count() -> None:
    env = {
        "power": np.array([5.0, 5.0, 5.0, 5.0]),
        "valve_position": np.array([MIN_VALVE - 1, 50.0, 50.0, 50.0]),
        "supply_water_temperature": np.array([60.0, 20.0 + MIN_EXCESS_K - 1, 60.0, 60.0]),
        "air_temperature": np.array([20.0, 20.0, 20.0, 20.0]),
        "heating_active": np.array([1.0, 1.0, 1.0, 1.0]),
        "cooling_active": np.array([0.0, 0.0, 1.0, 0.0]),
    }
    rating = radiator_kw(env, 4)
    assert np.isnan(rating[:3]).all(), "valve nearly shut, water lukewarm, cooling too"
    assert rating[3] == 5.0 / (0.5 * (40 / 50) ** 1.3)


def test_a_failed_radiator_stands_far_below_and_does_not_teach_the_mean() -> None:
    env = _zone(1_000, fails_from=600)
    names = radiator_names(env, 1_000)
    now, learnt = names["radiator_kw"], names["learnt_radiator_kw"]
    after = slice(600, None)
    shown = ~np.isnan(now[after])
    assert (now[after][shown] < 0.25 * learnt[after][shown]).all()
    assert abs(learnt[-1] - RATED_KW) < 0.05 * RATED_KW, "the failure was not learnt"


def test_the_engine_one_reading_at_a_time_gives_the_batch_values() -> None:
    env = _zone(800, fails_from=500)
    batch = radiator_names(env, 800)
    memory = RadiatorMemory()
    for at in range(800):
        live = memory.derive({name: column[at : at + 1] for name, column in env.items()})
        for name, values in live.items():
            expected = batch[name][at]
            got = float(values[0])
            assert (math.isnan(got) and math.isnan(expected)) or got == expected, (name, at)


def test_docs_state_the_figures() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")
    rows = " ".join(line for line in doc.splitlines() if "radiator_kw` | kW |" in line)
    words = re.sub(r"\s+", " ", rows)
    assert f"at least {MIN_VALVE:g} % open" in words
    assert f"at least {MIN_EXCESS_K:g} K above the room" in words
    assert f"over about {MEMORY_READINGS} of them, NaN until {TRUSTED_READINGS}" in words
    assert f"below {LEARN_FLOOR:g} of it is not learnt from" in words


@pytest.mark.parametrize("saved", [["x", 3], [14.0], "14", [float("nan"), 40], [14.0, -1], None])
def test_a_saved_rating_that_is_not_one_is_learnt_afresh(saved: object) -> None:
    """A damaged saved state does not stop the engine: the zone learns its radiators again."""
    assert RadiatorMemory.from_json(saved) is None
    assert RadiatorMemory.from_json([14.0, 40]) == RadiatorMemory(14.0, 40)
