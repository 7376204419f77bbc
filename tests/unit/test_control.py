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
