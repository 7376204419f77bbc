"""Lights gone dark, and "will go dark" judged against them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from control.lighting_policy import DEFAULT_LIGHTING
from rules.darkness import (
    DIM_SHARE,
    GO_DARK_RULE,
    MINIMUM_LEVEL,
    DarkNight,
    dark_moments,
    night_of,
    score_go_dark,
)
from rules.scoring import AlertInterval

DUSK = datetime(2027, 1, 10, 17, 30, tzinfo=UTC)
STEP_S = 300.0


def light(asked: list[float], cut: list[float]) -> list[DarkNight]:
    unix_s = DUSK.timestamp() + STEP_S * np.arange(len(asked), dtype=np.float64)
    env = {
        "scheduled_lamp_level": np.array(asked, dtype=float),
        "status_low_voltage_disconnect": np.array(cut, dtype=float),
    }
    return dark_moments("sl-1", unix_s, env, "UTC")


def test_a_light_cut_while_asked_for_went_dark_at_the_first_such_reading() -> None:
    found = light([100, 100, 100, 100, 0], [0, 0, 1, 1, 1])
    assert [night.at for night in found] == [DUSK + timedelta(minutes=10)]


def test_a_light_lit_well_below_the_minimum_level_went_dark_but_not_one_still_switching_on() -> (
    None
):
    """A plan that had to go below 90 % of the policy's minimum leaves the street dark; a
    hair under the minimum does not, nor the reading at dusk before the agent switched on
    (off, level 0)."""
    unix_s = DUSK.timestamp() + STEP_S * np.arange(5, dtype=np.float64)
    level = DIM_SHARE * MINIMUM_LEVEL
    env = {
        "scheduled_lamp_level": np.full(5, 100.0),
        "status_low_voltage_disconnect": np.zeros(5),
        "lamp_on": np.array([0.0, 1.0, 1.0, 1.0, 1.0]),
        "dimming_level": np.array([0.0, MINIMUM_LEVEL, MINIMUM_LEVEL - 0.1, level, level - 0.1]),
    }
    found = dark_moments("sl-1", unix_s, env, "UTC")
    assert [night.at for night in found] == [DUSK + timedelta(minutes=20)]


def test_the_minimum_level_is_the_lighting_policys() -> None:
    assert DEFAULT_LIGHTING.minimum_level == MINIMUM_LEVEL


def test_a_light_cut_by_day_did_not_go_dark() -> None:
    assert light([0, 0, 0], [1, 1, 1]) == []


def test_a_night_runs_from_noon_to_noon() -> None:
    times = np.array(
        [datetime(2027, 1, 10, h, tzinfo=UTC).timestamp() for h in (11, 13, 23)]
        + [datetime(2027, 1, 11, 6, tzinfo=UTC).timestamp()]
    )
    nights = night_of(times, "UTC")
    assert nights[0] == nights[1] - 1
    assert nights[1] == nights[2] == nights[3]


def predict(hours_before: float, device: str = "sl-1") -> AlertInterval:
    at = DUSK + timedelta(hours=6) - timedelta(hours=hours_before)
    return AlertInterval(GO_DARK_RULE, device, at, None)


def test_precision_and_recall_at_the_lead() -> None:
    dark_at = DUSK + timedelta(hours=6)
    night = int(night_of(np.array([dark_at.timestamp()]), "UTC")[0])
    dark = [
        DarkNight("sl-1", night, dark_at),
        DarkNight("sl-2", night, dark_at),
        DarkNight("sl-3", night, dark_at),
    ]
    predictions = [predict(5, "sl-1"), predict(2, "sl-2"), predict(5, "sl-4")]
    result = score_go_dark(
        predictions,
        dark,
        {},
        (DUSK - timedelta(days=1), DUSK + timedelta(days=1)),
    )
    assert (result.predictions, result.right) == (3, 2), "sl-4 never went dark"
    assert (result.dark_nights, result.foretold) == (3, 1), "sl-2 only 2 h ahead, sl-3 not at all"
    assert result.lead_p50 == timedelta(hours=5)
    assert result.to_json()["recall"] == 1 / 3
