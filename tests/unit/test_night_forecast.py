"""Tonight's battery foretold from a light's own readings (rules/night_forecast.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from alerts.lifecycle import Scope
from control import lighting_service
from control.lighting_policy import DEFAULT_LIGHTING
from protocol.catalogue import CHARGE_CONTROLLER_STATUS_BITS
from protocol.solar import clear_sky_irradiance, hours_until_sunset, night_hours, solar_elevation
from protocol.topics import DeviceClass
from rules.context import DeviceMemory, DevicePlace, derive, light_place
from rules.evaluator import Evaluator, FleetDevice
from rules.model import parse_rules
from rules.night_forecast import (
    CHARGE_PATH_EFFICIENCY,
    DISCHARGE_EFFICIENCY,
    NAMES,
    PLAN_ELEVATION_DEG,
    ForecastMemory,
)
from tests.unit.engine_restart import through_and_restarted

SEFROU = (33.83, -4.84)
RATED_WH = 1_300.0
LAMP_W = 60.0
STEP_S = 300.0


def place(battery_wh: float = RATED_WH) -> DevicePlace:
    return DevicePlace(
        "sl-1",
        DeviceClass.STREETLIGHT,
        *SEFROU,
        "Africa/Casablanca",
        {"lamp_w": LAMP_W, "panel_wp": 200.0, "battery_wh": battery_wh},
    )


def simulated_light(
    days: int,
    capacity_wh: float,
    clearness: float,
    level: float = 50.0,
    worn_from_day: tuple[float, float] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A light whose battery of ``capacity_wh`` charges from a panel under a sky of
    ``clearness`` and feeds a lamp at ``level`` % while the sun is below -1 deg, as the
    simulator's physics does (losses included), every 5 minutes from a January midnight;
    ``worn_from_day``: (day, capacity) from which (a fraction: within the day) the battery
    holds only that much."""
    start = datetime(2027, 1, 10, tzinfo=UTC).timestamp()
    unix = start + STEP_S * np.arange(days * 288, dtype=np.float64)
    elevation = solar_elevation(unix, *SEFROU)
    pv = clearness * 200.0 * clear_sky_irradiance(elevation) / 1_000.0
    lit = elevation < -1.0
    lamp = np.where(lit, LAMP_W * level / 100.0, 0.0)
    soc = np.empty(len(unix))
    charge = 40.0
    for index in range(len(unix)):
        hours = STEP_S / 3_600.0
        change = pv[index] * CHARGE_PATH_EFFICIENCY - lamp[index] / DISCHARGE_EFFICIENCY
        capacity = capacity_wh
        if worn_from_day is not None and index >= round(worn_from_day[0] * 288):
            capacity = worn_from_day[1]
        charge = float(np.clip(charge + change * hours / capacity * 100.0, 0.0, 100.0))
        soc[index] = charge
    return unix, {
        "pv_power": pv,
        "battery_soc": soc,
        "lamp_power": lamp,
        "lamp_on": lit.astype(float),
        "dimming_level": np.where(lit, level, 0.0),
    }


def test_the_capacity_is_learnt_from_the_nights_discharge() -> None:
    """A battery worn to 30 % of its rating shows it after one night; until then, unknown."""
    unix, metrics = simulated_light(3, capacity_wh=0.3 * RATED_WH, clearness=0.7, level=20.0)
    env = derive(place(), unix, metrics)
    assert np.isnan(env["learnt_battery_wh"][0])
    assert env["learnt_battery_wh"][-1] == pytest.approx(0.3 * RATED_WH, rel=0.02)


def test_a_battery_that_has_just_worn_out_shows_it_the_next_day() -> None:
    """Worn from the third day on: the afternoon after its first worn night, the learnt
    capacity is the worn one, not a blend with the healthy nights before."""
    unix, metrics = simulated_light(
        4, capacity_wh=RATED_WH, clearness=0.7, level=20.0, worn_from_day=(2, 0.3 * RATED_WH)
    )
    env = derive(place(), unix, metrics)
    afternoon_after = 3 * 288 + 14 * 12  # the fourth day, 14:00 UTC
    assert env["learnt_battery_wh"][2 * 288 - 1] == pytest.approx(RATED_WH, rel=0.02)
    assert env["learnt_battery_wh"][afternoon_after] == pytest.approx(0.3 * RATED_WH, rel=0.05)


def test_no_more_harvest_is_expected_from_a_controller_that_cannot_charge() -> None:
    unix, metrics = simulated_light(2, capacity_wh=RATED_WH, clearness=0.7)
    mosfet = float(1 << CHARGE_CONTROLLER_STATUS_BITS.index("charge_mosfet_fault"))
    noon = 288 + 12 * 12
    healthy = derive(place(), unix, metrics)
    broken = derive(place(), unix, {**metrics, "controller_status": np.full(len(unix), mosfet)})
    assert healthy["dusk_battery_soc"][noon] > metrics["battery_soc"][noon] + 1.0
    assert broken["dusk_battery_soc"][noon] == pytest.approx(metrics["battery_soc"][noon])


def test_a_healthy_battery_is_learnt_at_its_rating() -> None:
    unix, metrics = simulated_light(3, capacity_wh=RATED_WH, clearness=0.7)
    env = derive(place(), unix, metrics)
    assert env["learnt_battery_wh"][-1] == pytest.approx(RATED_WH, rel=0.02)
    assert env["dusk_usable_energy_wh"][-1] == pytest.approx(
        env["dusk_estimated_usable_energy_wh"][-1], rel=0.02
    )


def test_dusk_charge_adds_the_rest_of_the_days_harvest_at_todays_clearness() -> None:
    """At noon, the charge expected at dusk is the charge now plus what the afternoon brings
    at the morning's clearness; by dusk it is the charge itself."""
    unix, metrics = simulated_light(2, capacity_wh=RATED_WH, clearness=0.5)
    env = derive(place(), unix, metrics)
    local_noon = 288 + 11 * 12  # the second day, 12:00 local (UTC+1)
    dusk = 288 + int(np.flatnonzero(metrics["lamp_on"][288 + 144 :] > 0)[0]) + 144
    noon_forecast = env["dusk_battery_soc"][local_noon]
    assert noon_forecast > metrics["battery_soc"][local_noon] + 1.0
    # the light's own charge just before dusk, where the afternoon did bring that harvest
    assert noon_forecast == pytest.approx(min(100.0, metrics["battery_soc"][dusk - 1]), abs=1.5)
    assert env["dusk_battery_soc"][dusk] == pytest.approx(metrics["battery_soc"][dusk])


def test_the_coming_night_is_long_in_winter_and_short_in_summer() -> None:
    winter = datetime(2026, 12, 21, 12, tzinfo=UTC).timestamp()
    summer = datetime(2026, 6, 21, 12, tzinfo=UTC).timestamp()
    hours = night_hours(np.array([winter, summer]), *SEFROU)
    assert 13.5 < hours[0] < 14.3
    assert 9.3 < hours[1] < 10.0


def test_last_nights_mean_level_while_lit() -> None:
    unix, metrics = simulated_light(2, capacity_wh=RATED_WH, clearness=0.7, level=35.0)
    env = derive(place(), unix, metrics)
    assert np.isnan(env["last_night_mean_level"][0])
    assert env["last_night_mean_level"][-1] == pytest.approx(35.0)


def test_the_streaming_engine_forecasts_what_the_backtest_forecasts() -> None:
    unix, metrics = simulated_light(5, capacity_wh=0.5 * RATED_WH, clearness=0.6)
    whole = derive(place(), unix, metrics)
    memory = DeviceMemory(place())
    for index in range(len(unix)):
        live = memory.derive(float(unix[index]), {k: float(v[index]) for k, v in metrics.items()})
        if index % 53 and index != len(unix) - 1:
            continue
        for name in NAMES:
            np.testing.assert_allclose(
                live[name], whole[name][index : index + 1], rtol=1e-9, equal_nan=True, err_msg=name
            )


def test_a_light_without_readings_has_an_empty_forecast() -> None:
    env = derive(place(), np.empty(0), {"battery_soc": np.empty(0)})
    for name in NAMES:
        assert env[name].shape == (0,), name


def test_a_lamp_stuck_on_by_day_is_counted_until_dusk() -> None:
    """A lamp lit at noon (its relay stuck) drains the battery until sunset as well."""
    unix, metrics = simulated_light(2, capacity_wh=RATED_WH, clearness=0.7)
    noon = 288 + 12 * 12
    stuck_from = 288 + 8 * 12  # stuck on since 08:00: last night's discharge is as before
    lamp = metrics["lamp_power"].copy()
    lamp[stuck_from:] = LAMP_W
    stuck = {**metrics, "lamp_power": lamp}
    healthy = derive(place(), unix, metrics)["dusk_battery_soc"][noon]
    burning = derive(place(), unix, stuck)["dusk_battery_soc"][noon]
    hours = float(hours_until_sunset(unix[noon : noon + 1], *SEFROU)[0])
    assert 4.5 < hours < 6.5, "Sefrou in January: sunset about 17:30 UTC"
    drawn = LAMP_W * hours / DISCHARGE_EFFICIENCY / RATED_WH * 100.0
    assert healthy < 100.0
    assert burning == pytest.approx(healthy - drawn, abs=0.1)


def test_a_battery_worn_since_last_night_shows_it_within_the_night() -> None:
    unix, metrics = simulated_light(
        2, capacity_wh=RATED_WH, clearness=0.7, level=60.0, worn_from_day=(1.5, 0.3 * RATED_WH)
    )
    env = derive(place(), unix, metrics)
    evening = 288 + 21 * 12  # the second day, 21:00 UTC: hours into the worn night
    assert env["learnt_battery_wh"][evening] == pytest.approx(RATED_WH, rel=0.02)
    assert env["tonight_battery_wh"][evening] == pytest.approx(0.3 * RATED_WH, rel=0.05)
    left = (metrics["battery_soc"][evening] - 10) / 100 * env["tonight_battery_wh"][evening]
    assert env["tonight_usable_energy_wh"][evening] == pytest.approx(max(left, 0.0))


def test_the_forecast_stops_where_the_lighting_service_plans() -> None:
    assert (
        DEFAULT_LIGHTING.gate_elevation_deg + lighting_service.PLAN_ABOVE_GATE_DEG
    ) == PLAN_ELEVATION_DEG


def test_the_engine_saves_a_lights_forecast_and_carries_on_after_a_restart() -> None:
    """The evaluator's saved state holds the forecast's sums (the nights' discharge, today's
    harvest so far, the last hours): an engine restarted half-way through a day knows what
    one that ran through knows, and derives the same forecast from then on."""
    unix, metrics = simulated_light(4, capacity_wh=0.5 * RATED_WH, clearness=0.6)
    fleet = {"sl-1": FleetDevice(place(), Scope("sl-1", street_group="main"))}
    rules = parse_rules(
        "rules: [{id: dark, class: streetlight, title: {en: T},"
        " when: 'dusk_usable_energy_wh < 0.5 * lamp_w * coming_night_hours'}]"
    )

    half = 3 * 288 + 150  # 12:30 on the fourth day: mid-harvest
    through, restarted = through_and_restarted(
        lambda: Evaluator(rules, fleet), unix, {"sl-1": metrics}, half
    )
    kept, fresh = through.memories["sl-1"].forecast, restarted.memories["sl-1"].forecast
    assert kept is not None
    assert fresh is not None
    assert len(kept.night_sums) >= 2
    assert fresh.night_sums == kept.night_sums
    assert fresh.today == kept.today
    assert fresh.recent == kept.recent


@pytest.mark.parametrize(
    "saved",
    [None, "nonsense", {}, {"today": [1, 2]}, {"today": [1, 2, "x"], "night_sums": {}}],
)
def test_a_saved_forecast_that_is_not_one_is_learnt_afresh(saved: object) -> None:
    fresh = ForecastMemory.from_json(light_place(place()), saved)
    assert (fresh.last_unix_s, fresh.night_sums, len(fresh.recent)) == (None, {}, 0)
