"""What rules read besides metrics: the sun, time, changes, harvest; live equals backtest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge_agents.control import LocalState, lamp_level
from protocol.catalogue import CHARGE_CONTROLLER_STATUS_BITS
from protocol.localtime import local_days
from protocol.solar import clear_sky_irradiance, hours_until_sunrise, solar_elevation
from protocol.sun import solar_elevation as agent_elevation
from protocol.topics import DeviceClass
from rules.context import DeviceMemory, DevicePlace, day_ratios, derive, peer_harvest
from rules.core import Change, ConditionState, intervals, step
from rules.model import parse_rules
from rules.names import names_for

SEFROU = (33.83, -4.84)
LIGHT = DevicePlace(
    "sl-1",
    DeviceClass.STREETLIGHT,
    *SEFROU,
    "Africa/Casablanca",
    {"lamp_w": 60.0, "panel_wp": 200.0, "battery_wh": 1300.0},
)


def test_solar_elevation_matches_the_agents_sun() -> None:
    moments = [datetime(2026, 1, 12, tzinfo=UTC) + timedelta(minutes=37 * i) for i in range(200)]
    ours = solar_elevation(np.array([m.timestamp() for m in moments]), *SEFROU)
    theirs = [agent_elevation(m, *SEFROU) for m in moments]
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_hours_until_sunrise_lands_on_the_switching_elevation() -> None:
    evening = datetime(2026, 6, 21, 21, tzinfo=UTC)
    hours = float(hours_until_sunrise(np.array([evening.timestamp()]), *SEFROU)[0])
    sunrise = evening + timedelta(hours=hours)
    assert 6 < hours < 9
    assert agent_elevation(sunrise - timedelta(minutes=2), *SEFROU) < -1.0
    assert agent_elevation(sunrise + timedelta(minutes=2), *SEFROU) > -1.0
    noon = datetime(2026, 6, 21, 12, tzinfo=UTC).timestamp()
    assert hours_until_sunrise(np.array([noon]), *SEFROU)[0] == 0.0


def test_clear_sky_irradiance_is_zero_at_night_and_near_1000_at_high_sun() -> None:
    values = clear_sky_irradiance(np.array([-10.0, 0.0, 30.0, 80.0]))
    assert values[0] == values[1] == 0.0
    assert 400 < values[2] < 600
    assert 950 < values[3] < 1100


def test_names_per_class() -> None:
    light = names_for(DeviceClass.STREETLIGHT)
    assert {"rate_battery_soc", "status_low_voltage_disconnect", "harvest_ratio"} <= light
    assert "fault_pixel" in names_for(DeviceClass.SIGNAGE)
    assert "harvest_ratio" not in names_for(DeviceClass.BUILDING)


def _day_of_light(days: int, soiling: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    start = datetime(2026, 1, 10, tzinfo=UTC).timestamp()
    unix = (start + np.arange(days * 288) * 300.0).astype(np.float64)
    elevation = solar_elevation(unix, *SEFROU)
    pv = soiling * 200.0 * clear_sky_irradiance(elevation) / 1000.0
    soc = 80.0 - (np.arange(len(unix)) % 50)
    return unix, {
        "pv_power": pv,
        "battery_soc": soc,
        "lamp_power": np.where(elevation < -1, 60.0, 0.0),
        "controller_status": np.where(np.arange(len(unix)) % 7 == 0, 256.0, 0.0),
    }


def test_harvest_ratio_is_the_best_recent_complete_day() -> None:
    unix, metrics = _day_of_light(4, soiling=0.5)
    env = derive(LIGHT, unix, metrics)
    first_day = env["harvest_ratio"][:200]
    assert np.isnan(first_day).all(), "no complete day yet"
    assert env["harvest_ratio"][-1] == pytest.approx(0.5)
    assert env["status_low_voltage_disconnect"][0] == 1.0
    assert env["status_low_voltage_disconnect"][1] == 0.0


def test_rate_is_per_hour_since_the_previous_reading() -> None:
    unix, metrics = _day_of_light(1, soiling=1.0)
    env = derive(LIGHT, unix, metrics)
    assert np.isnan(env["rate_battery_soc"][0])
    assert env["rate_battery_soc"][1] == pytest.approx(-12.0)  # -1 % in 5 minutes


def test_streaming_memory_derives_what_the_backtest_derives() -> None:
    unix, metrics = _day_of_light(5, soiling=0.7)
    whole = derive(LIGHT, unix, metrics)
    memory = DeviceMemory(LIGHT)
    for index in range(0, len(unix)):
        live = memory.derive(float(unix[index]), {k: float(v[index]) for k, v in metrics.items()})
        if index % 97 and index != len(unix) - 1:
            continue
        for name, values in whole.items():
            np.testing.assert_allclose(
                live[name], values[index : index + 1], rtol=1e-9, equal_nan=True, err_msg=name
            )


def test_local_hour_and_weekday_follow_the_zone_all_year() -> None:
    """Morocco's offset changes around Ramadan: the local time must follow it."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(hours=7 * i, minutes=13) for i in range(1_300)]
    unix = np.array([m.timestamp() for m in moments])
    env = derive(LIGHT, unix, {"pv_power": np.zeros(len(unix))})
    zone = ZoneInfo("Africa/Casablanca")
    local = [m.astimezone(zone) for m in moments]
    np.testing.assert_allclose(env["local_hour"], [t.hour + t.minute / 60 for t in local])
    np.testing.assert_array_equal(env["weekday"], [t.weekday() for t in local])
    assert len({t.utcoffset() for t in local}) == 2, "the year has both offsets"


def test_a_rate_of_change_rule_fires_alike_live_and_in_a_backtest() -> None:
    """SOC falls 2 % every 5 minutes (24 %/h) from the 10th reading to the 20th."""
    rule = parse_rules(
        "rules:\n  - {id: drain, class: streetlight, title: {en: D},"
        " when: rate_battery_soc < -10, for: 10m, clear: rate_battery_soc > -1}\n"
    ).rules[0]
    unix = (datetime(2026, 1, 12, tzinfo=UTC).timestamp() + np.arange(30) * 300.0).astype(
        np.float64
    )
    soc = np.array([80.0 - 2.0 * min(max(i - 9, 0), 11) for i in range(30)])
    found = intervals(rule, unix, derive(LIGHT, unix, {"battery_soc": soc}))
    assert [(i.fired, i.resolved) for i in found] == [(12, 21)]
    memory, state, live = DeviceMemory(LIGHT), ConditionState(), []
    for index in range(30):
        env = memory.derive(float(unix[index]), {"battery_soc": float(soc[index])})
        state, change = step(rule, state, float(unix[index]), env)
        if change is not None:
            live.append((index, change))
    assert live == [(12, Change.FIRED), (21, Change.RESOLVED)]


def test_scheduled_lamp_level_follows_the_agents_program() -> None:
    zone = ZoneInfo("Africa/Casablanca")
    moments = [datetime(2026, 1, 12, tzinfo=UTC) + timedelta(minutes=17 * i) for i in range(300)]
    unix = np.array([m.timestamp() for m in moments])
    env = derive(LIGHT, unix, {})
    expected = [
        lamp_level(LocalState(), m, agent_elevation(m, *SEFROU), zone, autonomous=True)
        for m in moments
    ]
    np.testing.assert_allclose(env["scheduled_lamp_level"], expected)
    assert {0.0, 100.0, 60.0, 90.0} <= set(env["scheduled_lamp_level"])


def test_a_cloudy_day_lowers_the_street_alike_and_a_dirty_panel_its_own_only() -> None:
    """peer_harvest_ratio: yesterday's harvest ratio over the median of the street's."""
    unix, clean = _day_of_light(3, soiling=1.0)
    _, cloudy = _day_of_light(3, soiling=0.25)  # every light of the street, on a grey run
    _, dirty = _day_of_light(3, soiling=0.45)
    street = [day_ratios(LIGHT, unix, clean), day_ratios(LIGHT, unix, clean)]
    days = local_days(unix, LIGHT.timezone)
    healthy = peer_harvest(days, day_ratios(LIGHT, unix, clean), street)
    soiled = peer_harvest(days, day_ratios(LIGHT, unix, dirty), street)
    grey = [day_ratios(LIGHT, unix, cloudy), day_ratios(LIGHT, unix, cloudy)]
    grey_day = peer_harvest(days, day_ratios(LIGHT, unix, cloudy), grey)
    last = len(unix) - 1
    assert np.isnan(healthy["peer_harvest_ratio"][0]), "no yesterday on the first day"
    assert healthy["peer_harvest_ratio"][last] == pytest.approx(1.0)
    assert grey_day["peer_harvest_ratio"][last] == pytest.approx(1.0)
    assert soiled["peer_harvest_ratio"][last] == pytest.approx(0.45)
    alone = peer_harvest(days, day_ratios(LIGHT, unix, dirty), [])
    assert np.isnan(alone["peer_harvest_ratio"]).all(), "no peers: unknown"


def test_a_day_of_a_controller_that_does_not_charge_is_left_out_of_the_harvest() -> None:
    unix, metrics = _day_of_light(3, soiling=1.0)
    days = local_days(unix, LIGHT.timezone)
    broken = dict(metrics)
    broken["pv_power"] = np.where(days == days[-1] - 1, 0.0, metrics["pv_power"])
    mosfet = float(1 << CHARGE_CONTROLLER_STATUS_BITS.index("charge_mosfet_fault"))
    broken["controller_status"] = np.where(days == days[-1] - 1, mosfet, 0.0)
    ratios = day_ratios(LIGHT, unix, broken)
    assert "harvest_ratio" not in ratios[int(days[-1]) - 1]
    assert ratios[int(days[-1]) - 2]["harvest_ratio"] == pytest.approx(1.0)


def test_the_streaming_memory_keeps_the_day_ratios_the_backtest_computes() -> None:
    unix, metrics = _day_of_light(4, soiling=0.6)
    metrics["controller_status"] = np.zeros(len(unix))
    memory = DeviceMemory(LIGHT)
    for index in range(len(unix)):
        memory.derive(float(unix[index]), {k: float(v[index]) for k, v in metrics.items()})
    batch = day_ratios(LIGHT, unix, metrics)
    for day, ratios in memory.day_ratios().items():
        for name, value in ratios.items():
            assert value == pytest.approx(batch[day][name], rel=1e-12), (day, name)


def test_a_day_without_its_own_harvest_is_skipped_for_the_day_before() -> None:
    """A day its controller did not charge leaves no ratio: the light is compared with its
    street on the latest day it has one, not judged by clear sky in a grey week."""
    street = {5: {"harvest_ratio": 0.3}, 6: {"harvest_ratio": 0.9}}
    own = {5: {"harvest_ratio": 0.3}}  # day 6: its controller did not charge
    found = peer_harvest(np.array([7, 7]), own, [street, street])
    assert found["peer_harvest_ratio"].tolist() == [1.0, 1.0]
    assert np.isnan(peer_harvest(np.array([9]), own, [street])["peer_harvest_ratio"][0]), (
        "nothing within the last 3 days"
    )
