"""The agent's local control: lamps, signs and zone thermostats, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pvlib
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agents.control import (
    LocalState,
    apply_command,
    lamp_level,
    scheduled_level,
    sign_brightness_for_ambient,
    zone_outputs,
)
from protocol.commands import DEFAULT_SCHEDULE, FROST_PROTECTION_C, HvacMode, SetDimming, SetHvac
from protocol.sun import solar_elevation
from simulators.sky import SEFROU

CASABLANCA = ZoneInfo("Africa/Casablanca")
NOW = datetime(2026, 1, 12, 20, tzinfo=UTC)


def test_the_agents_sun_agrees_with_pvlib_within_half_a_degree() -> None:
    times = pd.date_range("2026-01-01", "2026-12-31", freq="97min", tz="UTC")
    position = pvlib.solarposition.get_solarposition(times, SEFROU.latitude, SEFROU.longitude)
    reference = position["elevation"].to_numpy()  # geometric, without refraction, like ours
    ours = np.array(
        [solar_elevation(t.to_pydatetime(), SEFROU.latitude, SEFROU.longitude) for t in times]
    )
    assert np.max(np.abs(ours - reference)) < 0.5


def test_the_night_profile_dims_in_the_small_hours() -> None:
    assert scheduled_level(DEFAULT_SCHEDULE, time(19, 0)) == 100
    assert scheduled_level(DEFAULT_SCHEDULE, time(1, 30)) == 60
    assert scheduled_level(DEFAULT_SCHEDULE, time(6, 0)) == 90
    assert scheduled_level(DEFAULT_SCHEDULE, time(3, 0)) == 60


def test_a_lamp_is_off_in_daylight_and_follows_the_schedule_in_the_dark() -> None:
    state = LocalState()
    assert lamp_level(state, NOW, sun_elevation=20.0, zone=CASABLANCA, autonomous=False) == 0
    assert lamp_level(state, NOW, sun_elevation=-10.0, zone=CASABLANCA, autonomous=False) == 100


def test_a_dimming_override_holds_then_lapses() -> None:
    state = apply_command(LocalState(), SetDimming(level=30, hold_s=600), NOW)
    assert lamp_level(state, NOW, -10.0, CASABLANCA, autonomous=False) == 30
    later = NOW + timedelta(seconds=601)
    assert lamp_level(state, later, -10.0, CASABLANCA, autonomous=False) == 100
    assert lamp_level(state, NOW, -10.0, CASABLANCA, autonomous=True) == 100, (
        "a device on its own drops the platform's overrides"
    )


def test_sign_brightness_follows_ambient_light() -> None:
    levels = [sign_brightness_for_ambient(lux) for lux in np.logspace(-1, 5.2, 100)]
    assert levels == sorted(levels)
    assert levels[0] == 15
    assert levels[-1] == 100


def test_frost_protection_heats_even_when_told_off() -> None:
    state = apply_command(LocalState(), SetHvac(mode=HvacMode.OFF, hold_s=86_400), NOW)
    _, warm = zone_outputs(state, NOW, temperature=15.0, autonomous=False)
    assert not warm.heating
    _, cold = zone_outputs(state, NOW, temperature=FROST_PROTECTION_C - 1.0, autonomous=False)
    assert cold.heating
    assert cold.valve_position > 0


def test_the_thermostat_keeps_its_state_inside_the_deadband() -> None:
    heat = apply_command(LocalState(), SetHvac(mode=HvacMode.HEAT, heating_setpoint=20.0), NOW)
    heat, on = zone_outputs(heat, NOW, 19.0, autonomous=False)
    assert on.heating
    heat, still = zone_outputs(heat, NOW, 20.3, autonomous=False)
    assert still.heating, "inside the deadband the plant keeps running"
    _, off = zone_outputs(heat, NOW, 20.6, autonomous=False)
    assert not off.heating


@given(
    temperatures=st.lists(st.floats(min_value=-10, max_value=45), min_size=1, max_size=50),
    mode=st.sampled_from(list(HvacMode)),
)
def test_a_zone_is_never_heated_and_cooled_at_once(
    temperatures: list[float], mode: HvacMode
) -> None:
    state = apply_command(
        LocalState(), SetHvac(mode=mode, heating_setpoint=19, cooling_setpoint=25), NOW
    )
    for temperature in temperatures:
        state, outputs = zone_outputs(state, NOW, temperature, autonomous=False)
        assert not (outputs.heating and outputs.cooling)
        if temperature < FROST_PROTECTION_C - 0.5:
            assert outputs.heating


def test_contradictory_setpoints_are_refused() -> None:
    with pytest.raises(ValueError, match="never heated and cooled at once"):
        SetHvac(mode=HvacMode.AUTO, heating_setpoint=24, cooling_setpoint=22)


VENTILATE = SetHvac(mode=HvacMode.COOL, cooling_setpoint=35.0, ventilate_to=22.0, shade=True)


def test_night_ventilation_opens_the_windows_only_to_cooler_air_and_shuts_them_at_its_target() -> (
    None
):
    state = apply_command(LocalState(), VENTILATE, NOW)
    state, warm_night = zone_outputs(state, NOW, 28.0, autonomous=False, outdoor=25.5)
    assert warm_night.vents_open, "2.5 K cooler outside"
    state, still = zone_outputs(state, NOW, 27.0, autonomous=False, outdoor=25.8)
    assert still.vents_open, "open until the air outside is less than 1 K cooler"
    state, shut = zone_outputs(state, NOW, 27.0, autonomous=False, outdoor=26.2)
    assert not shut.vents_open
    state, reopened = zone_outputs(state, NOW, 27.0, autonomous=False, outdoor=25.5)
    assert not reopened.vents_open, "it takes 2 K cooler to open them again"
    state, cool_night = zone_outputs(state, NOW, 23.0, autonomous=False, outdoor=15.0)
    assert cool_night.vents_open
    state, down = zone_outputs(state, NOW, 22.0, autonomous=False, outdoor=15.0)
    assert not down.vents_open, "shut at ventilate_to"
    _, near = zone_outputs(state, NOW, 22.3, autonomous=False, outdoor=15.0)
    assert not near.vents_open, "reopened only a deadband above ventilate_to"


def test_the_windows_stay_shut_without_ventilate_to_an_outdoor_reading_or_the_platform() -> None:
    hot_room, cool_night = 30.0, 15.0
    plain = apply_command(LocalState(), SetHvac(mode=HvacMode.COOL), NOW)
    _, told_nothing = zone_outputs(plain, NOW, hot_room, autonomous=False, outdoor=cool_night)
    assert not told_nothing.vents_open
    assert not told_nothing.blinds_down
    state = apply_command(LocalState(), VENTILATE, NOW)
    _, no_sensor = zone_outputs(state, NOW, hot_room, autonomous=False)
    assert not no_sensor.vents_open, "no outdoor reading, no way to tell the air is cooler"
    state, told = zone_outputs(state, NOW, hot_room, autonomous=False, outdoor=cool_night)
    assert told.vents_open
    assert told.blinds_down
    lapsed = NOW + timedelta(seconds=VENTILATE.hold_s)
    _, after = zone_outputs(state, lapsed, hot_room, autonomous=False, outdoor=cool_night)
    assert not after.vents_open, "the hold lapsed: the zone's own program keeps them shut"
    assert not after.blinds_down
    _, alone = zone_outputs(state, NOW, hot_room, autonomous=True, outdoor=cool_night)
    assert not alone.vents_open, "a device on its own drops the platform's overrides"


def test_the_windows_shut_when_frost_protection_heats_and_a_heating_mode_refuses_them() -> None:
    state = apply_command(
        LocalState(),
        SetHvac(mode=HvacMode.OFF, ventilate_to=10.0, hold_s=86_400),
        NOW,
    )
    state, vented = zone_outputs(state, NOW, 21.0, autonomous=False, outdoor=0.0)
    assert vented.vents_open
    _, frost = zone_outputs(state, NOW, FROST_PROTECTION_C - 1.0, autonomous=False, outdoor=0.0)
    assert frost.heating
    assert not frost.vents_open
    for mode in (HvacMode.HEAT, HvacMode.AUTO):
        with pytest.raises(ValueError, match="ventilate_to needs mode cool or off"):
            SetHvac(mode=mode, heating_setpoint=20.0, ventilate_to=15.0)
