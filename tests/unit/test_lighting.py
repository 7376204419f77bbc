"""Lighting control's pure core: profiles by place, dusk and dawn, SoC-aware dimming, signs."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from control.lighting import (
    NightPlan,
    NightWindow,
    PlanReason,
    night_window,
    plan_night,
    sign_brightness,
)
from control.lighting_policy import DEFAULT_LIGHTING, DEFAULT_PROFILES, LightingPolicy
from edge_agents import control
from protocol.commands import DEFAULT_SCHEDULE, SetSchedule
from protocol.solar import usable_energy_wh
from protocol.sun import solar_elevation

SEFROU = ZoneInfo("Africa/Casablanca")
LATITUDE, LONGITUDE = 33.83, -4.84
DECEMBER_NOON = datetime(2026, 12, 15, 12, 0, tzinfo=SEFROU)
JUNE_NOON = datetime(2026, 6, 15, 12, 0, tzinfo=SEFROU)
FULL_BATTERY_WH = 1_300.0 * 0.9  # a 60 W light's pack charged full, above the disconnect


def december_night(policy: LightingPolicy = DEFAULT_LIGHTING) -> NightWindow:
    return night_window(policy, DECEMBER_NOON, LATITUDE, LONGITUDE)


def plan(
    place_kind: str,
    usable: float | list[float],
    *,
    policy: LightingPolicy = DEFAULT_LIGHTING,
    harvest: float = 450.0,
    lamp_w: float = 60.0,
    night: NightWindow | None = None,
) -> NightPlan:
    return plan_night(
        policy,
        place_kind,
        night=night or december_night(policy),
        zone=SEFROU,
        usable_energy_wh=usable,
        lamp_w=lamp_w,
        expected_harvest_wh_per_day=harvest,
    )


def level_at(schedule: SetSchedule, hour: int, minute: int = 0) -> float:
    return control.scheduled_level(schedule, time(hour, minute))


# ----------------------------------------------------------------------------- dusk and dawn


def test_the_night_runs_from_the_sun_crossing_the_dusk_elevation_to_the_dawn_one() -> None:
    night = december_night()
    assert solar_elevation(night.dusk, LATITUDE, LONGITUDE) < -1.0
    assert solar_elevation(night.dusk - timedelta(minutes=1), LATITUDE, LONGITUDE) >= -1.0
    assert solar_elevation(night.dawn, LATITUDE, LONGITUDE) >= -1.0
    assert solar_elevation(night.dawn - timedelta(minutes=1), LATITUDE, LONGITUDE) < -1.0
    # Sefrou in mid-December: dusk near 17:15 and dawn near 07:15 local (UTC+0 since
    # September 2026), 14 hours of night.
    assert night.dusk.astimezone(SEFROU).hour == 17
    assert night.dawn.astimezone(SEFROU).hour == 7
    assert 13.8 < night.hours < 14.3
    assert night_window(DEFAULT_LIGHTING, JUNE_NOON, LATITUDE, LONGITUDE).hours < 10.0


def test_asked_at_night_the_window_is_the_rest_of_the_night() -> None:
    midnight = datetime(2026, 12, 16, 0, 0, tzinfo=SEFROU)
    night = night_window(DEFAULT_LIGHTING, midnight, LATITUDE, LONGITUDE)
    assert night.dusk == midnight
    assert night.dawn == december_night().dawn


def test_asked_in_the_small_hours_the_window_ends_at_this_mornings_dawn() -> None:
    policy = LightingPolicy(dusk_elevation_deg=0.0, dawn_elevation_deg=-3.0)
    three_am = datetime(2026, 12, 16, 3, 0, tzinfo=SEFROU)
    night = night_window(policy, three_am, LATITUDE, LONGITUDE)
    assert night.dusk == three_am
    assert night.dawn == december_night(policy).dawn
    assert 4.0 < night.hours < 5.5


def test_a_higher_dusk_elevation_lights_earlier_and_a_lower_dawn_one_switches_off_earlier() -> None:
    policy = LightingPolicy(dusk_elevation_deg=0.0, dawn_elevation_deg=-3.0)
    night = december_night(policy)
    default = december_night()
    assert night.dusk < default.dusk
    assert night.dawn < default.dawn


def test_a_dawn_below_dusk_is_a_zero_step_at_tonights_dawn_under_the_dusk_gate() -> None:
    """The agent knows one switching elevation: the schedule gates at dusk's, the higher, and
    switches off at tonight's dawn clock time. Checked through the agent's own code."""
    policy = LightingPolicy(dusk_elevation_deg=0.0, dawn_elevation_deg=-3.0)
    night = december_night(policy)
    schedule = plan("road", FULL_BATTERY_WH, policy=policy, night=night).schedule(0)
    assert schedule.dark_below_elevation == 0.0
    state = control.LocalState(schedule=schedule)

    def lamp(moment: datetime) -> float:
        elevation = solar_elevation(moment, LATITUDE, LONGITUDE)
        return control.lamp_level(state, moment, elevation, SEFROU, autonomous=True)

    assert lamp(night.dusk) == 100.0
    assert lamp(night.dusk - timedelta(minutes=2)) == 0.0
    assert lamp(night.dawn - timedelta(minutes=2)) == 80.0
    # After dawn (-3 deg) the sun is still below the gate (0 deg), yet the lamp is off.
    after_dawn = night.dawn + timedelta(minutes=2)
    assert solar_elevation(after_dawn, LATITUDE, LONGITUDE) < 0.0
    assert lamp(after_dawn) == 0.0


def test_a_dusk_below_dawn_holds_the_lamp_off_until_tonights_dusk() -> None:
    policy = LightingPolicy(dusk_elevation_deg=-3.0, dawn_elevation_deg=0.0)
    night = december_night(policy)
    schedule = plan("road", FULL_BATTERY_WH, policy=policy, night=night).schedule(0)
    assert schedule.dark_below_elevation == 0.0
    dusk = night.dusk.astimezone(SEFROU)
    assert level_at(schedule, dusk.hour, dusk.minute) == 100.0
    before = dusk - timedelta(minutes=5)
    assert level_at(schedule, before.hour, before.minute) == 0.0


def test_equal_dusk_and_dawn_send_the_profile_untrimmed() -> None:
    schedule = plan("road", FULL_BATTERY_WH).schedule(0)
    assert schedule.dark_below_elevation == -1.0
    assert [(step.start, step.level) for step in schedule.steps] == [
        ("00:00", 50.0),
        ("05:30", 80.0),
        ("12:00", 100.0),
        ("22:00", 70.0),
    ]


# ----------------------------------------------------------------------------- profiles


def test_a_full_battery_gets_each_place_its_profile_unscaled() -> None:
    for kind, profile in DEFAULT_PROFILES.items():
        result = plan(kind, FULL_BATTERY_WH, lamp_w=30.0)
        assert result.reasons == (PlanReason.FULL,)
        assert result.scale[0] == 1.0
        schedule = result.schedule(0)
        for step in profile:
            hour, minute = int(step.start[:2]), int(step.start[3:])
            assert level_at(schedule, hour, minute) == step.level, (kind, step)


def test_squares_stay_brighter_in_the_evening_and_roads_dim_late() -> None:
    square = plan("square", FULL_BATTERY_WH).schedule(0)
    road = plan("road", FULL_BATTERY_WH).schedule(0)
    assert level_at(square, 23, 30) > level_at(road, 23, 30)
    assert level_at(road, 1) < level_at(road, 20)
    assert level_at(road, 1) < level_at(road, 6)  # brighter again for the morning


def test_an_unknown_place_kind_runs_the_agents_default_program() -> None:
    schedule = plan("harbour", FULL_BATTERY_WH, lamp_w=30.0).schedule(0)
    for hour in range(24):
        assert level_at(schedule, hour) == level_at(DEFAULT_SCHEDULE, hour)


def test_the_minute_table_is_what_the_agent_runs() -> None:
    result = plan("square", [FULL_BATTERY_WH, 500.0, 150.0])
    table = result.levels_by_minute()
    for light in range(3):
        schedule = result.schedule(light)
        for minute in range(0, 1_440, 7):
            assert table[light, minute] == pytest.approx(
                level_at(schedule, minute // 60, minute % 60), abs=0.05
            )


def test_a_schedule_is_a_valid_set_schedule_command() -> None:
    schedule = plan("garden", 400.0).schedule(0)
    assert msgspec.convert(msgspec.to_builtins(schedule), SetSchedule) == schedule


# ----------------------------------------------------------------------------- battery care


def test_a_low_battery_scales_the_levels_down_to_keep_the_reserve() -> None:
    result = plan("road", 700.0)
    assert result.reasons == (PlanReason.DIMMED,)
    assert 0.0 < result.scale[0] < 1.0
    budget = result.available_energy_wh[0] - result.reserve_wh[0]
    assert result.planned_energy_wh[0] == pytest.approx(budget, rel=1e-6)
    scaled = np.maximum(20.0, result.scale[0] * result.profile_levels)  # never below 20 %
    assert_allclose(result.levels[0], scaled, rtol=1e-9)


def test_the_reserve_covers_overcast_days_at_the_minimum_level() -> None:
    result = plan("road", 700.0, harvest=400.0)
    night_at_minimum = 60.0 * 0.20 * result.step_hours.sum()
    assert result.minimum_energy_wh[0] == pytest.approx(night_at_minimum)
    expected = 4.0 * (night_at_minimum - 0.15 * 400.0)
    assert result.reserve_wh[0] == pytest.approx(expected)
    # A better recent harvest needs a smaller reserve, so tonight may be brighter.
    assert plan("road", 700.0, harvest=600.0).planned_energy_wh[0] > result.planned_energy_wh[0]


def test_below_the_reserve_the_lights_run_at_the_minimum_level() -> None:
    result = plan("road", 300.0)
    assert result.reasons == (PlanReason.MINIMUM,)
    assert_allclose(result.levels[0], 20.0)


def test_a_battery_that_cannot_light_a_minimum_night_gives_what_it_has() -> None:
    result = plan("road", 100.0)
    assert result.reasons == (PlanReason.SHORT,)
    assert result.planned_energy_wh[0] == pytest.approx(0.9 * 100.0)
    assert np.all(result.levels[0] > 0.0)
    assert np.all(result.levels[0] < 20.0)
    empty = plan("road", 0.0)
    assert_allclose(empty.levels, 0.0)


def test_a_battery_at_its_last_watt_hours_plans_the_light_off_not_at_a_hundredth() -> None:
    nearly_empty = plan("road", 1.0)
    assert nearly_empty.reasons == (PlanReason.SHORT,)
    assert_allclose(nearly_empty.levels, 0.0)  # not 0.02 %: off
    assert nearly_empty.planned_energy_wh[0] == 0.0


@settings(max_examples=200, deadline=None)
@given(
    usable=st.lists(st.floats(0.0, 2_000.0), min_size=1, max_size=8),
    lamp_w=st.sampled_from([30.0, 40.0, 60.0]),
    harvest=st.floats(0.0, 1_500.0),
    kind=st.sampled_from(["road", "square", "garden", "entrance", "other"]),
    minimum=st.floats(0.0, 60.0),
    reserve_days=st.floats(0.0, 7.0),
)
def test_a_plan_never_spends_more_than_available_nor_dims_below_the_minimum(  # noqa: PLR0917
    usable: list[float],
    lamp_w: float,
    harvest: float,
    kind: str,
    minimum: float,
    reserve_days: float,
) -> None:
    policy = LightingPolicy(minimum_level=minimum, reserve_days=reserve_days)
    result = plan(kind, usable, policy=policy, lamp_w=lamp_w, harvest=harvest)
    assert np.all(result.planned_energy_wh <= result.available_energy_wh + 1e-9)
    assert np.all(result.planned_energy_wh <= result.profile_energy_wh + 1e-9)
    spent = lamp_w * (result.levels * result.step_hours).sum(axis=1) / 100.0
    assert_allclose(result.planned_energy_wh, spent)
    assert np.all(result.levels <= result.profile_levels + 1e-9)
    floor = np.minimum(result.profile_levels, minimum)
    for light, reason in enumerate(result.reasons):
        if reason is PlanReason.SHORT:
            assert result.available_energy_wh[light] < result.minimum_energy_wh[light]
        else:
            assert np.all(result.levels[light] >= floor - 1e-9)
        if reason is PlanReason.FULL:
            assert_allclose(result.levels[light], result.profile_levels)
    # More charge never plans a darker night.
    order = np.argsort(result.available_energy_wh)
    assert np.all(np.diff(result.planned_energy_wh[order]) >= -1e-6)


def test_usable_energy_is_the_charge_above_the_low_voltage_disconnect() -> None:
    assert_allclose(usable_energy_wh([100.0, 55.0, 10.0, 4.0], 1_300.0), [1170, 585, 0, 0])


# ----------------------------------------------------------------------------- the policy


def test_the_default_policy_survives_a_round_trip_through_a_mapping() -> None:
    data = msgspec.to_builtins(DEFAULT_LIGHTING)
    assert LightingPolicy.from_mapping(data) == DEFAULT_LIGHTING
    partial = LightingPolicy.from_mapping({"reserve_days": 2})
    assert partial.profiles == DEFAULT_LIGHTING.profiles  # unnamed fields keep their defaults


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"minimum_level": 120}, "$.minimum_level"),
        ({"dusk_elevation_deg": 8}, "$.dusk_elevation_deg"),
        ({"reserve_days": "three"}, "$.reserve_days"),
        ({"energy_margin": 0}, "$.energy_margin"),
        ({"reserv_days": 3}, "unknown field `reserv_days`"),
        (
            {"profiles": {"sqaure": [{"start": "12:00", "level": 50}]}},
            "unknown place kind 'sqaure'",
        ),
        ({"profiles": {"road": [{"start": "25:00", "level": 50}]}}, "start"),
        ({"profiles": {"road": []}}, "$.profiles"),
        (
            {
                "profiles": {
                    "road": [{"start": "22:00", "level": 50}, {"start": "22:00", "level": 9}]
                }
            },
            "profiles.road: two steps start at the same time",
        ),
        ({"default_profile": [{"start": "22:00", "level": 150}]}, "$.default_profile[0].level"),
        ({"sign_minimum_level": 80, "sign_maximum_level": 50}, "sign_minimum_level 80"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field(data: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match="invalid lighting policy") as error:
        LightingPolicy.from_mapping(data)
    assert words in str(error.value)


# ----------------------------------------------------------------------------- signs


def test_sign_brightness_is_the_agents_photocell_curve_by_default() -> None:
    lux = np.geomspace(0.1, 200_000.0, 60)
    expected = [control.sign_brightness_for_ambient(float(value)) for value in lux]
    assert_allclose(sign_brightness(DEFAULT_LIGHTING, lux), expected, rtol=1e-12)


def test_sign_brightness_spans_the_policys_levels() -> None:
    policy = LightingPolicy(sign_minimum_level=5.0, sign_maximum_level=60.0)
    assert_allclose(sign_brightness(policy, [0.0, 10.0, 40_000.0, 1e6]), [5, 5, 60, 60])
    assert 5.0 < float(sign_brightness(policy, 2_000.0)) < 60.0
