"""The HVAC decision core, the schedules it reads and the thermostat it steers, on a fake clock."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pandas as pd
import pytest

from control.hvac import (
    INITIAL_HEAT_RATE,
    INITIAL_LOSS_RATE,
    STOP_MARGIN_K,
    VENT_FLOOR_AFTER_OPENING_H,
    Level,
    Memory,
    Observation,
    Zones,
    decide,
    hours_to_reach,
    learn_from_history,
)
from control.opening import ZonePlace, calendar_for, open_grid, outlook
from control.strategy import (
    PACKAGED_STRATEGY,
    SitePowerCap,
    StrategyFileError,
    load_strategy,
    parse_strategy,
)
from edge_agents.control import LocalState, apply_command, zone_outputs
from protocol.calendar import DayKind, MoroccanCalendar
from protocol.commands import FROST_PROTECTION_C, HvacMode, SetHvac, check_command
from protocol.localtime import utc_offsets
from protocol.payloads import CommandPayload
from protocol.topics import DeviceClass

STRATEGY = load_strategy(PACKAGED_STRATEGY)
HVAC = STRATEGY.hvac
TZ = "Africa/Casablanca"


def zones(count: int = 2, building: str = "town-hall") -> Zones:
    return Zones(
        ids=tuple(f"z{i}" for i in range(count)),
        building=np.zeros(count, dtype=np.intp),
        buildings=(building,),
        can_heat=np.ones(count, dtype=np.bool_),
        can_cool=np.ones(count, dtype=np.bool_),
        can_ventilate=np.zeros(count, dtype=np.bool_),
        can_shade=np.zeros(count, dtype=np.bool_),
    )


def seen(now: datetime, count: int = 2, **values: object) -> Observation:
    defaults: dict[str, object] = {
        "temperature": np.full(count, 20.0),
        "occupancy": np.zeros(count),
        "window_open": np.zeros(count, dtype=np.bool_),
        "vents_open": np.zeros(count, dtype=np.bool_),
        "heating_active": np.zeros(count, dtype=np.bool_),
        "cooling_active": np.zeros(count, dtype=np.bool_),
        "power": np.zeros(count),
        "scheduled": np.zeros(count, dtype=np.bool_),
        "hours_to_start": np.full(count, math.inf),
        "hours_to_end": np.zeros(count),
        "outdoor_temperature": 5.0,
        "sun_elevation": -10.0,
    }
    defaults.update(values)
    return Observation(now=now, **defaults)  # type: ignore[arg-type]


NOW = datetime(2027, 1, 12, 7, 0, tzinfo=UTC)


def test_the_calendar_knows_moroccan_holidays_and_ramadan() -> None:
    calendar = MoroccanCalendar.spanning(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert calendar.kind(dt.date(2026, 7, 30)) is DayKind.HOLIDAY  # Throne Day
    assert calendar.kind(dt.date(2026, 11, 18)) is DayKind.HOLIDAY  # Independence Day
    assert calendar.kind(dt.date(2026, 3, 1)) is DayKind.RAMADAN
    assert calendar.kind(dt.date(2026, 3, 20)) is DayKind.HOLIDAY  # Eid al-Fitr (estimated)
    assert calendar.kind(dt.date(2026, 4, 14)) is DayKind.WORKING
    assert len(calendar.ramadan_days) == 30


def test_opening_hours_follow_ramadan_holidays_and_booked_events() -> None:
    text = STRATEGY.text.replace(
        "events: []",
        "events:\n  - {building: town-hall, zones: [council-chamber], start: "
        '"2026-03-02T18:00:00+00:00", end: "2026-03-02T21:00:00+00:00"}',
    )
    strategy = parse_strategy(text)
    places = [
        ZonePlace("town_hall", "town-hall", "offices"),
        ZonePlace("town_hall", "town-hall", "council-chamber"),
    ]
    times = pd.DatetimeIndex(
        [
            "2026-04-14T08:00+00:00",  # Tuesday 09:00 local: open
            "2026-04-14T16:00+00:00",  # 17:00 local: closed
            "2026-03-02T14:30+00:00",  # Ramadan Monday 14:30 local (UTC+0 in Ramadan): open
            "2026-03-02T18:30+00:00",  # Ramadan Monday 18:30 local: the council's event
            "2026-07-30T09:00+00:00",  # Throne Day: closed
        ]
    )
    calendar = MoroccanCalendar.spanning(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    grid = open_grid(strategy, places, times.asi8 // 1_000_000_000, calendar, TZ)
    assert grid[0].tolist() == [True, False, True, False, False]
    assert grid[1].tolist() == [True, False, True, True, False]


def test_local_time_is_the_time_zone_databases_across_a_year_of_changes() -> None:
    """Morocco leaves UTC+1 for UTC+0 during Ramadan: the offsets follow, to the minute."""
    times = pd.date_range("2026-01-01", "2027-01-01", freq="15min", tz="UTC")
    unix_s = times.asi8 // 1_000_000_000
    expected = (times.tz_convert(TZ).tz_localize(None) - times.tz_localize(None)).total_seconds()
    offsets = utc_offsets(unix_s, TZ)
    assert offsets.tolist() == expected.astype(float).tolist()
    assert set(offsets.tolist()) == {0, 3_600}


def test_outlook_counts_hours_to_opening_and_to_closing() -> None:
    grid = np.array([[False, False, True, True, False]])
    to_start, to_end = outlook(grid, 1_800)
    assert to_start[0].tolist() == [1.0, 0.5, 0.0, 0.0, math.inf]
    assert to_end[0].tolist() == [0.0, 0.0, 1.0, 0.5, 0.0]


def test_open_and_occupied_is_comfort_closed_is_setback() -> None:
    observation = seen(
        NOW,
        scheduled=np.array([True, False]),
        occupancy=np.array([3.0, 0.0]),
        hours_to_end=np.array([8.0, 0.0]),
    )
    _, decision = decide(HVAC, zones(), observation, Memory.initial(2))
    assert decision.level == (Level.COMFORT, Level.SETBACK)
    assert decision.heating_setpoint.tolist() == [HVAC.comfort.heating, HVAC.setback.heating]
    assert decision.mode == (HvacMode.HEAT, HvacMode.HEAT)  # winter: no cooling at all


def test_an_open_zone_left_empty_goes_to_standby_and_back_when_people_come() -> None:
    memory = Memory.initial(1)
    observation = seen(NOW, 1, scheduled=np.array([True]), hours_to_end=np.array([8.0]))
    memory, first = decide(HVAC, zones(1), observation, memory)
    assert first.level == (Level.COMFORT,)  # just opened: people are expected
    later = NOW + timedelta(seconds=HVAC.standby_after + 60)
    memory, decision = decide(
        HVAC,
        zones(1),
        seen(later, 1, scheduled=np.array([True]), hours_to_end=np.array([6.0])),
        memory,
    )
    assert decision.level == (Level.STANDBY,)
    back = seen(
        later + timedelta(minutes=5),
        1,
        scheduled=np.array([True]),
        hours_to_end=np.array([6.0]),
        occupancy=np.array([1.0]),
    )
    _, decision = decide(HVAC, zones(1), back, memory)
    assert decision.level == (Level.COMFORT,)


def test_optimum_start_begins_just_early_enough_to_be_inside_the_band_at_opening() -> None:
    cold = np.array([17.0, 17.0])
    memory = Memory.initial(2)
    target = HVAC.comfort_band.low + HVAC.optimum_start.inside_band_k
    assert target < HVAC.comfort.heating
    needed = float(hours_to_reach(cold, target, 5.0, memory.heat_rate, memory.loss_rate)[0])
    assert 0 < needed < 10
    lead = needed * HVAC.optimum_start.safety + HVAC.optimum_start.margin / 3_600
    observation = seen(NOW, temperature=cold, hours_to_start=np.array([lead - 0.1, lead + 0.5]))
    uncapped = HVAC.model_copy(update={"site_power_cap": SitePowerCap()})  # no turns to take
    _, decision = decide(uncapped, zones(), observation, memory)
    assert decision.level == (Level.PREHEAT, Level.SETBACK)
    assert decision.heating_setpoint[0] == HVAC.comfort.heating
    assert decision.supply_temperature[0] > decision.supply_temperature[1]  # boosted water


def test_warm_up_is_learnt_from_the_zone_itself() -> None:
    memory = Memory.initial(1)
    memory, _ = decide(
        HVAC,
        zones(1),
        seen(
            NOW,
            1,
            temperature=np.array([14.0]),
            heating_active=np.array([True]),
            hours_to_start=np.array([0.5]),
        ),
        memory,
    )
    temperature = 14.0
    for minute in range(5, 65, 5):  # the zone warms 6 K/h while heating flat out
        temperature += 0.5
        memory, _ = decide(
            HVAC,
            zones(1),
            seen(
                NOW + timedelta(minutes=minute),
                1,
                temperature=np.array([temperature]),
                heating_active=np.array([True]),
                hours_to_start=np.array([0.2]),
            ),
            memory,
        )
    assert memory.heat_rate[0] > 4.0  # moved from 2 K/h towards what it saw


def test_optimum_stop_lets_a_warm_zone_drift_for_the_last_hour() -> None:
    observation = seen(
        NOW,
        temperature=np.array([21.0, 19.6]),
        occupancy=np.array([5.0, 5.0]),
        scheduled=np.array([True, True]),
        hours_to_end=np.array([0.5, 0.5]),
    )
    _, decision = decide(HVAC, zones(), observation, Memory.initial(2))
    assert decision.level == (
        Level.STOP_EARLY,
        Level.COMFORT,
    )  # the cooler one would leave the band


def test_an_open_window_suspends_the_zone_after_a_while() -> None:
    memory = Memory.initial(1)
    window = np.array([True])
    memory, decision = decide(HVAC, zones(1), seen(NOW, 1, window_open=window), memory)
    assert decision.mode == (HvacMode.HEAT,)
    later = NOW + timedelta(seconds=HVAC.window_open_after + 1)
    _, decision = decide(HVAC, zones(1), seen(later, 1, window_open=window), memory)
    assert decision.mode == (HvacMode.OFF,)
    assert decision.level == (Level.WINDOW,)


def test_a_power_cap_sets_back_zones_in_turn_empty_ones_first() -> None:
    capped = parse_strategy(STRATEGY.text.replace("power_caps: {}", "power_caps: {town-hall: 25}"))
    memory = Memory.initial(3)
    memory = Memory(
        **{
            **{f: getattr(memory, f) for f in memory.__dataclass_fields__},
            "demand_kw": np.array([10.0, 10.0, 10.0]),
        }
    )
    observation = seen(
        NOW,
        3,
        temperature=np.full(3, 17.0),
        scheduled=np.ones(3, dtype=np.bool_),
        occupancy=np.array([2.0, 0.0, 2.0]),
        hours_to_end=np.full(3, 6.0),
    )
    memory, first = decide(capped.hvac, zones(3), observation, memory)
    assert first.level.count(Level.SHED) == 1
    assert first.level[1] == Level.SHED  # the empty zone goes first
    rotated = seen(
        NOW + timedelta(minutes=5),
        3,
        temperature=np.full(3, 17.0),
        scheduled=np.ones(3, dtype=np.bool_),
        occupancy=np.array([2.0, 2.0, 2.0]),
        hours_to_end=np.full(3, 6.0),
    )
    memory, second = decide(capped.hvac, zones(3), rotated, memory)
    _, third = decide(capped.hvac, zones(3), replace_time(rotated, minutes=10), memory)
    assert second.level.count(Level.SHED) == 1
    assert third.level.count(Level.SHED) == 1
    assert second.level.index(Level.SHED) != third.level.index(Level.SHED)  # taking turns


def replace_time(observation: Observation, minutes: int) -> Observation:
    return replace(observation, now=NOW + timedelta(minutes=minutes))


def test_decisions_become_valid_commands_never_heating_and_cooling_at_once() -> None:
    unknown_season = seen(  # no outdoor temperature: heating and cooling both allowed
        NOW,
        outdoor_temperature=math.nan,
        scheduled=np.array([True, False]),
        hours_to_end=np.array([3.0, 0.0]),
    )
    _, decision = decide(HVAC, zones(), unknown_season, Memory.initial(2))
    assert decision.mode == (HvacMode.AUTO, HvacMode.AUTO)
    for index in range(2):
        setting = decision.setting(index, HVAC)
        assert msgspec.convert(msgspec.to_builtins(setting), SetHvac) == setting
        assert setting.cooling_setpoint - setting.heating_setpoint >= 2 * setting.deadband_k


def test_contradictory_and_expired_commands_are_refused() -> None:
    issued = NOW
    contradictory = CommandPayload(
        v=1,
        id="c1",
        issued_at=issued,
        expires_at=issued + timedelta(minutes=2),
        action="set_hvac",
        params={"mode": "auto", "heating_setpoint": 22.0, "cooling_setpoint": 22.5},
    )
    refusal = check_command(DeviceClass.BUILDING, contradictory, issued)
    assert getattr(refusal, "outcome", None) == "rejected"
    assert "never heated and cooled at once" in getattr(refusal, "reason", "")
    expired = msgspec.structs.replace(contradictory, id="c2", params={"mode": "heat"})
    late = check_command(DeviceClass.BUILDING, expired, issued + timedelta(minutes=3))
    assert getattr(late, "outcome", None) == "expired"


def test_frost_protection_holds_when_commands_stop_and_in_mode_off() -> None:
    state = apply_command(LocalState(), SetHvac(mode=HvacMode.OFF, hold_s=600), NOW)
    state, outputs = zone_outputs(state, NOW + timedelta(minutes=1), FROST_PROTECTION_C - 1, False)
    assert outputs.heating  # off, yet frost protection heats
    # The platform stops talking: the hold lapses and the zone runs its own thermostat.
    _, outputs = zone_outputs(state, NOW + timedelta(hours=2), 3.0, False)
    assert outputs.heating
    assert not outputs.cooling


def test_minimum_on_and_off_times_hold_but_never_against_frost() -> None:
    setting = SetHvac(mode=HvacMode.HEAT, heating_setpoint=20.0, min_on_s=600, min_off_s=600)
    state = apply_command(LocalState(), setting, NOW)
    state, outputs = zone_outputs(state, NOW, 18.0, False)
    assert outputs.heating
    state, outputs = zone_outputs(state, NOW + timedelta(minutes=2), 21.0, False)
    assert outputs.heating  # warm enough, but it came on two minutes ago
    state, outputs = zone_outputs(state, NOW + timedelta(minutes=11), 21.0, False)
    assert not outputs.heating
    state, outputs = zone_outputs(state, NOW + timedelta(minutes=12), 18.0, False)
    assert not outputs.heating  # cold again, but it went off a minute ago
    _, outputs = zone_outputs(state, NOW + timedelta(minutes=13), FROST_PROTECTION_C - 1, False)
    assert outputs.heating  # frost never waits


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "comfort: {heating: 20.5, cooling: 24.5}",
            "comfort: {heating: 24.5, cooling: 24.8}",
            "never heated and cooled at once",
        ),
        ("standby_after: 15m", "standby_after: soon", "is not a duration"),
        ("mon-fri:", "mon-fry:", "unknown day"),
        ('"08:30-16:30"', '"16:30-08:30"', "must end after it starts"),
        ("hold: 30m", "hold: 30s", "hold must lie between"),
        ("down_to: 21}", "down_to: 17}", r"night_ventilation.down_to \(17 C\) must not be below"),
        ("down_to: 21}", "down_to: 40}", "less than or equal to 35"),
        ("shading: {enabled: true}", "shading: {enabled: sometimes}", "valid boolean"),
    ],
)
def test_a_bad_strategy_file_is_refused_naming_the_line(old: str, new: str, message: str) -> None:
    assert old in STRATEGY.text
    with pytest.raises(StrategyFileError, match=message) as caught:
        parse_strategy(STRATEGY.text.replace(old, new, 1), "mine.yaml")
    assert "mine.yaml" in str(caught.value)
    assert "(line " in str(caught.value)


def test_rates_are_learnt_from_stored_history_and_not_across_gaps() -> None:
    history = []
    temperature = 12.0
    for step in range(24):  # two hours in 5-minute steps, heating flat out: +0.5 K a step
        reading = temperature if step != 12 else math.nan  # one step missing
        history.append(
            seen(
                NOW + timedelta(minutes=5 * step),
                1,
                temperature=np.array([reading]),
                heating_active=np.array([True]),
            )
        )
        temperature += 0.5
    learnt = learn_from_history(Memory.initial(1), history, HVAC)
    assert learnt.heat_rate[0] > 4.0  # from 2 K/h towards the 6 K/h seen
    assert learnt.last_time == history[-1].now.timestamp()
    jumpy = [history[0], replace(history[1], temperature=np.array([30.0]))]
    jumpy[1] = replace(jumpy[1], now=NOW + timedelta(hours=2))  # a two-hour gap
    assert learn_from_history(Memory.initial(1), jumpy, HVAC).heat_rate[0] == pytest.approx(2.0)


def test_a_strategy_corrects_the_estimated_calendar() -> None:
    text = STRATEGY.text.replace(
        "lighting: {}",
        # Ramadan announced two days later than estimated, and Eid al-Fitr with it.
        "calendar:\n  holidays_added: [2027-03-11, 2027-03-12]\n"
        "  holidays_removed: [2027-01-14, 2027-03-09, 2027-03-10]\n"
        "  ramadan: [{first: 2027-02-09, last: 2027-03-10}]\nlighting: {}",
    )
    corrected = parse_strategy(text).calendar
    times = pd.date_range("2027-01-01", "2027-12-31", freq="D", tz="UTC")
    unix_s = times.asi8 // 1_000_000_000
    estimated, known = calendar_for(unix_s), calendar_for(unix_s, corrected)
    assert estimated.kind(dt.date(2027, 1, 14)) is DayKind.HOLIDAY  # Amazigh New Year
    assert known.kind(dt.date(2027, 1, 14)) is DayKind.WORKING
    assert known.kind(dt.date(2027, 3, 11)) is DayKind.HOLIDAY
    assert known.kind(dt.date(2027, 3, 10)) is DayKind.RAMADAN
    assert known.kind(dt.date(2027, 2, 8)) is DayKind.WORKING
    ramadan_2027 = {day for day in known.ramadan_days if day.year == 2027}
    assert len(ramadan_2027) == 30


def test_a_window_counts_from_the_observation_that_first_saw_it_open() -> None:
    memory, _ = decide(HVAC, zones(1), seen(NOW, 1), Memory.initial(1))
    opened = np.array([True])
    memory, decision = decide(
        HVAC, zones(1), seen(NOW + timedelta(minutes=5), 1, window_open=opened), memory
    )
    assert decision.mode == (HvacMode.HEAT,)  # it may have opened a second ago
    _, decision = decide(
        HVAC, zones(1), seen(NOW + timedelta(minutes=10), 1, window_open=opened), memory
    )
    assert decision.level == (Level.WINDOW,)


def test_a_zone_colder_than_its_setback_is_not_shed_for_nothing() -> None:
    capped = parse_strategy(STRATEGY.text.replace("power_caps: {}", "power_caps: {town-hall: 15}"))
    memory = replace(Memory.initial(2), demand_kw=np.array([10.0, 10.0]))
    observation = seen(
        NOW,
        2,
        temperature=np.array([HVAC.setback.heating - 3, 17.0]),  # the first below its setback
        scheduled=np.array([False, True]),
        occupancy=np.array([0.0, 3.0]),
        hours_to_end=np.array([0.0, 6.0]),
    )
    _, decision = decide(capped.hvac, zones(2), observation, memory)
    assert decision.level[0] == Level.SETBACK  # still heats, to its setback: nothing to shed
    assert decision.level[1] == Level.SHED


def test_zones_added_and_removed_keep_what_was_learnt_of_the_others() -> None:
    memory = Memory.initial(3)
    learnt = replace(
        memory,
        heat_rate=np.array([3.0, 4.0, 5.0]),
        empty_for_s=np.array([10.0, 20.0, 30.0]),
        was_empty=np.zeros(3, dtype=np.bool_),
        rotation=2,
    )
    moved = learnt.reindexed(("z0", "z1", "z2"), ("z2", "new", "z0"))
    np.testing.assert_allclose(moved.heat_rate, [5.0, INITIAL_HEAT_RATE, 3.0])
    np.testing.assert_allclose(moved.empty_for_s, [30.0, math.inf, 10.0])
    assert moved.rotation == 2
    assert moved.was_empty.tolist() == [False, True, False]
    assert learnt.reindexed(("z0", "z1", "z2"), ()).heat_rate.shape == (0,)


def test_under_the_site_power_cap_warm_ups_take_turns_the_first_opening_first() -> None:
    cold = np.array([12.0, 12.0])
    memory = replace(Memory.initial(2), demand_kw=np.array([100.0, 100.0]))
    capped = HVAC.model_copy(update={"site_power_cap": SitePowerCap(heating=150.0)})
    observation = seen(NOW, temperature=cold, hours_to_start=np.array([0.5, 0.75]))
    _, decision = decide(capped, zones(), observation, memory)
    assert decision.level == (Level.PREHEAT, Level.SETBACK)  # one at a time under 150 kW
    uncapped = HVAC.model_copy(update={"site_power_cap": SitePowerCap()})
    _, decision = decide(uncapped, zones(), observation, memory)
    assert decision.level == (Level.PREHEAT, Level.PREHEAT)


def test_on_a_hot_afternoon_over_the_site_cap_the_coolest_zone_is_set_back() -> None:
    memory = replace(Memory.initial(3), demand_kw=np.full(3, 100.0), outdoor_mean=27.0)
    capped = HVAC.model_copy(update={"site_power_cap": SitePowerCap(cooling=210.0)})
    afternoon = seen(
        NOW,
        3,
        temperature=np.array([25.8, 25.2, 25.5]),
        occupancy=np.full(3, 5.0),
        scheduled=np.ones(3, dtype=np.bool_),
        hours_to_end=np.full(3, 4.0),
        outdoor_temperature=35.0,
    )
    _, decision = decide(capped, zones(3), afternoon, memory)
    assert decision.level == (Level.COMFORT, Level.SHED, Level.COMFORT)
    assert decision.cooling_setpoint[1] == HVAC.setback.cooling
    # The heating season's cap does not shed: it only has warm-ups take turns.
    heating_only = HVAC.model_copy(update={"site_power_cap": SitePowerCap(heating=210.0)})
    _, decision = decide(heating_only, zones(3), afternoon, memory)
    assert Level.SHED not in decision.level


def equipped(count: int) -> Zones:
    """Zones with motorised windows and external blinds."""
    return replace(
        zones(count),
        can_ventilate=np.ones(count, dtype=np.bool_),
        can_shade=np.ones(count, dtype=np.bool_),
    )


SUMMER_NIGHT = NOW.replace(month=7, hour=23)


def test_on_summer_nights_closed_empty_zones_with_motorised_windows_are_ventilated() -> None:
    """Zones: open and occupied, closed and empty, closed but someone in; then the same
    closed, empty zone without motorised windows."""
    memory = replace(Memory.initial(3), outdoor_mean=26.0)
    night = seen(
        SUMMER_NIGHT,
        3,
        temperature=np.full(3, 29.0),
        occupancy=np.array([4.0, 0.0, 2.0]),
        scheduled=np.array([True, False, False]),
        hours_to_end=np.array([2.0, 0.0, 0.0]),
        hours_to_start=np.array([0.0, 9.0, 9.0]),
        outdoor_temperature=19.0,
    )
    _, decision = decide(HVAC, equipped(3), night, memory)
    down_to = HVAC.night_ventilation.down_to
    assert np.array_equal(decision.ventilate_to, [np.nan, down_to, np.nan], equal_nan=True)
    assert decision.shade.tolist() == [True, True, True]
    commands = [decision.setting(index, HVAC) for index in range(3)]
    assert [command.ventilate_to for command in commands] == [None, down_to, None]
    assert all(command.shade for command in commands)

    _, bare = decide(HVAC, zones(3), night, memory)
    assert np.isnan(bare.ventilate_to).all(), "no motorised windows, no ventilation"
    assert not bare.shade.any(), "no blinds to lower"
    off = HVAC.model_copy(
        update={
            "night_ventilation": HVAC.night_ventilation.model_copy(update={"enabled": False}),
            "shading": HVAC.shading.model_copy(update={"enabled": False}),
        }
    )
    _, disabled = decide(off, equipped(3), night, memory)
    assert np.isnan(disabled.ventilate_to).all()
    assert not disabled.shade.any()


def test_in_winter_nothing_is_ventilated_or_shaded() -> None:
    memory = replace(Memory.initial(2), outdoor_mean=6.0)
    night = seen(NOW.replace(hour=23), temperature=np.full(2, 18.0), outdoor_temperature=2.0)
    _, decision = decide(HVAC, equipped(2), night, memory)
    assert np.isnan(decision.ventilate_to).all()
    assert not decision.shade.any(), "the winter sun is welcome"


def test_the_zone_s_own_ventilation_is_not_learnt_as_its_heat_loss() -> None:
    """A closed, empty zone at night: drifting, its loss rate is learnt; with its windows
    open (and the step after they shut) it is not."""
    start = replace(Memory.initial(1), outdoor_mean=26.0)

    def night(minute: int, temperature: float, vents: bool) -> Observation:
        return seen(
            SUMMER_NIGHT + timedelta(minutes=minute),
            1,
            temperature=np.array([temperature]),
            vents_open=np.array([vents]),
            outdoor_temperature=18.0,
        )

    def learnt(vents: list[bool]) -> float:
        memory = start
        for step, (open_now, temperature) in enumerate(zip(vents, (30.0, 29.5, 29.0), strict=True)):
            memory, _ = decide(HVAC, equipped(1), night(5 * step, temperature, open_now), memory)
        return float(memory.loss_rate[0])

    assert learnt([False, False, False]) != INITIAL_LOSS_RATE, "drifting: learnt"
    assert learnt([True, True, True]) == INITIAL_LOSS_RATE, "ventilated: not learnt"
    assert learnt([True, True, False]) == INITIAL_LOSS_RATE, "not from the step they shut"


def test_a_quick_zone_is_not_ventilated_so_far_down_that_it_would_open_cold() -> None:
    """A small room that loses heat fast, an hour before opening on a cool summer morning:
    ventilated no lower than it can be and, drifting by its learnt loss rate, still be inside
    the comfort band an hour after opening (the floor in half degrees: the command changes
    a few times a night, not at every decision)."""
    loss_rate, outdoor = 0.3, 14.0
    memory = replace(Memory.initial(2), outdoor_mean=24.0, loss_rate=np.array([loss_rate, 0.02]))
    morning = seen(
        SUMMER_NIGHT.replace(hour=4),
        2,
        temperature=np.full(2, 26.0),
        hours_to_start=np.array([1.0, 1.0]),
        outdoor_temperature=outdoor,
    )
    _, decision = decide(HVAC, equipped(2), morning, memory)
    quick, slow = decision.ventilate_to
    assert quick > HVAC.night_ventilation.down_to
    drifted = outdoor + (quick - outdoor) * math.exp(
        -loss_rate * (1.0 + VENT_FLOOR_AFTER_OPENING_H)
    )
    floor = HVAC.comfort_band.low + STOP_MARGIN_K
    assert floor <= drifted < floor + 0.5, "the floor, rounded up to half a degree"
    assert quick * 2 == round(quick * 2)
    assert slow == HVAC.night_ventilation.down_to, "a heavy zone keeps the strategy's target"


def test_a_strategy_with_a_warm_comfort_band_and_no_ventilation_section_still_parses() -> None:
    """``night_ventilation.down_to`` left at its default is raised to the band's low edge;
    only one written below it is refused."""
    warm = STRATEGY.text.replace(
        "comfort_band: {low: 19.0, high: 26.0}", "comfort_band: {low: 21.5, high: 26.0}"
    ).replace("comfort: {heating: 20.5, cooling: 24.5}", "comfort: {heating: 22.0, cooling: 24.5}")
    without = "\n".join(
        line for line in warm.splitlines() if not line.lstrip().startswith("night_ventilation")
    )
    parsed = parse_strategy(without, "warm.yaml")
    memory = replace(Memory.initial(1), outdoor_mean=26.0)
    night = seen(SUMMER_NIGHT, 1, temperature=np.array([29.0]), hours_to_start=np.array([9.0]))
    _, decision = decide(parsed.hvac, equipped(1), night, memory)
    assert decision.ventilate_to[0] >= 21.5
    with pytest.raises(StrategyFileError, match=r"night_ventilation\.down_to"):
        parse_strategy(warm, "warm.yaml")
