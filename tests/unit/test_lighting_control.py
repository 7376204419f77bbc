"""Who gets tonight's schedule when, and why (control/lighting_service.py, the pure planning
step), on a fake clock: no I/O, the time passed in."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import typer
from typer.testing import CliRunner

from control.commanding import CommandPolicy, Outcome, Reason, Sent, answered, issue
from control.lighting import night_window
from control.lighting_policy import DEFAULT_LIGHTING, LightingPolicy
from control.lighting_service import (
    COMPLETE_DAY_S,
    LightState,
    Plans,
    PlanSettings,
    expected_harvest_wh,
    lights_of,
    night_of,
    observe,
    plan_step,
    planning_window,
    with_past_day,
)
from control.strategy import PACKAGED_STRATEGY
from protocol.commands import SetSchedule
from protocol.sites import load_site
from protocol.sun import solar_elevation
from smartcity.lighting_cli import lighting
from storage.registry import as_registered
from tests.simulation_helpers import small_site

INVENTORY = small_site()
SITE = INVENTORY.site
ZONE = ZoneInfo(SITE.timezone)
LIGHTS, _ = lights_of(map(as_registered, INVENTORY.devices))
NIGHT = date(2026, 12, 15)
SETTINGS = PlanSettings(DEFAULT_LIGHTING, SITE)
WINDOW = planning_window(DEFAULT_LIGHTING, NIGHT, SITE, SETTINGS.above_gate_deg)
OPENS = WINDOW.opens
TODAY = NIGHT.toordinal()
ROAD, ROAD_LOW, GARDEN = "sl-main-001", "sl-main-002", "sl-park-001"


def state(soc: float, *, harvest_wh: float = 450.0, at: datetime = OPENS) -> LightState:
    """A light heard just before ``at``, with three complete days of ``harvest_wh``."""
    days = range(TODAY - 3, TODAY)
    return LightState(
        at - timedelta(minutes=3),
        soc,
        dict.fromkeys(days, harvest_wh),
        dict.fromkeys(days, 86_400.0),
    )


STATES = {ROAD: state(95.0), ROAD_LOW: state(25.0, harvest_wh=150.0), GARDEN: state(70.0)}


def step(
    now: datetime,
    latest: dict[str, Sent] | None = None,
    plans: Plans | None = None,
    states: dict[str, LightState] | None = None,
    settings: PlanSettings = SETTINGS,
) -> tuple[Plans, dict[str, str]]:
    plans, orders = plan_step(
        LIGHTS, STATES if states is None else states, latest or {}, plans or Plans(), now,
        settings=settings,
    )  # fmt: skip
    return plans, {order.device_id: order.why for order in orders}


def sent_all(
    now: datetime, plans: Plans, outcome: Outcome | None = Outcome.APPLIED
) -> dict[str, Sent]:
    """Tonight's plans sent at ``now`` and answered a second later with ``outcome``."""
    latest = {}
    for device_id, planned in plans.by_light.items():
        command = issue(f"c-{device_id}", device_id, planned.schedule, now, CommandPolicy())
        if outcome is not None:
            command = answered(command, outcome, now + timedelta(seconds=1))
        latest[device_id] = command
    return latest


def levels(plans: Plans, device_id: str) -> list[float]:
    return [step.level for step in plans.by_light[device_id].schedule.steps]


# ----------------------------------------------------------------------------- when


def test_the_night_is_planned_when_the_sun_is_6_degrees_high_until_dawn() -> None:
    elevation = solar_elevation(OPENS, SITE.latitude, SITE.longitude)
    assert 5.7 < elevation < 6.0, "the first minute below +6 deg (the gate, -1, plus 7)"
    night = night_window(DEFAULT_LIGHTING, OPENS, SITE.latitude, SITE.longitude)
    assert night.dusk - OPENS == timedelta(minutes=39), "before the lamps come on"
    assert WINDOW.closes == night.dawn
    assert datetime(2026, 12, 15, 16, 35, tzinfo=UTC) == OPENS
    assert night_of(OPENS, ZONE) == night_of(WINDOW.closes - timedelta(minutes=1), ZONE) == NIGHT
    june = planning_window(DEFAULT_LIGHTING, date(2026, 6, 21), SITE, 7.0)
    assert june.opens == datetime(2026, 6, 21, 18, 57, tzinfo=UTC), "later in summer"


def test_nothing_is_sent_before_the_window_opens_nor_after_dawn() -> None:
    assert step(OPENS - timedelta(minutes=1))[1] == {}
    assert step(datetime(2026, 12, 15, 12, 0, tzinfo=UTC))[1] == {}
    after_dawn = WINDOW.closes + timedelta(minutes=1)
    states = {device: state(80.0, at=after_dawn) for device in STATES}
    assert step(after_dawn, states=states)[1] == {}


def test_each_light_heard_from_gets_one_command_when_the_window_opens() -> None:
    plans, orders = step(OPENS)
    assert set(orders) == {ROAD, ROAD_LOW, GARDEN}, "the others were never heard from"
    assert all(why.endswith("; tonight's plan") for why in orders.values())
    for device_id in orders:
        schedule = plans.by_light[device_id].schedule
        assert isinstance(schedule, SetSchedule)
        assert schedule.dark_below_elevation == DEFAULT_LIGHTING.gate_elevation_deg


def test_a_light_that_never_reported_its_charge_gets_nothing() -> None:
    no_charge = observe(None, OPENS - timedelta(minutes=2), {"pv_power": 0.0}, ZONE)
    assert math.isnan(no_charge.battery_soc)
    assert step(OPENS, states={ROAD: no_charge})[1] == {}


def test_once_a_night_then_again_the_next_evening() -> None:
    plans, _ = step(OPENS)
    latest = sent_all(OPENS, plans)
    for minutes in (1, 30, 120, 600):
        assert step(OPENS + timedelta(minutes=minutes), latest, plans)[1] == {}, minutes
    tomorrow = planning_window(DEFAULT_LIGHTING, NIGHT + timedelta(days=1), SITE, 7.0).opens
    states = {device: state(80.0, at=tomorrow) for device in STATES}
    _, orders = step(tomorrow, latest, plans, states)
    assert set(orders) == set(STATES)
    assert all(why.endswith("tonight's plan") for why in orders.values())


def test_a_command_awaiting_its_answer_is_not_doubled() -> None:
    plans, _ = step(OPENS)
    latest = sent_all(OPENS, plans, outcome=None)
    assert step(OPENS + timedelta(minutes=30), latest, plans)[1] == {}, "retry's business"


def test_a_command_not_applied_is_sent_again() -> None:
    plans, _ = step(OPENS)
    expired = sent_all(OPENS, plans, Outcome.EXPIRED)
    assert set(step(OPENS + timedelta(minutes=1), expired, plans)[1]) == set(STATES), "at once"
    refused = sent_all(OPENS, plans, Outcome.REJECTED)
    assert step(OPENS + timedelta(minutes=14), refused, plans)[1] == {}, "not hammered"
    _, orders = step(OPENS + timedelta(minutes=15, seconds=1), refused, plans)
    assert set(orders) == set(STATES)
    assert all(why.endswith("; again") for why in orders.values())


# ----------------------------------------------------------------------------- what and why


def test_a_low_battery_gets_a_dimmer_night_and_the_reasons_say_why() -> None:
    plans, orders = step(OPENS)
    assert levels(plans, ROAD_LOW) < levels(plans, ROAD)
    assert max(levels(plans, ROAD_LOW)) <= DEFAULT_LIGHTING.minimum_level
    assert orders[ROAD].startswith("dimmed to ")
    assert "battery 95 %, harvest 450 Wh/day, 4.0 days of reserve" in orders[ROAD]
    assert orders[ROAD_LOW].startswith(("minimum 20 %", "short: "))
    assert "battery 25 %, harvest 150 Wh/day" in orders[ROAD_LOW]
    sunny = {ROAD: state(100.0, harvest_wh=900.0)}
    _, orders = step(OPENS, states=sunny)
    assert orders[ROAD].startswith("full profile: battery 100 %")


def test_the_place_kind_sets_the_profile() -> None:
    plans, _ = step(OPENS, states={ROAD: state(100.0, harvest_wh=2_000.0)})
    road = [(s.start, s.level) for s in plans.by_light[ROAD].schedule.steps]
    assert road == [("00:00", 50.0), ("05:30", 80.0), ("12:00", 100.0), ("22:00", 70.0)]
    plans, _ = step(OPENS, states={GARDEN: state(100.0, harvest_wh=2_000.0)})
    garden = [(s.start, s.level) for s in plans.by_light[GARDEN].schedule.steps]
    assert garden == [("05:30", 60.0), ("12:00", 100.0), ("22:00", 40.0)]


def test_a_light_first_heard_in_the_night_gets_the_rest_of_it() -> None:
    plans, _ = step(OPENS)
    latest = sent_all(OPENS, plans)
    late = OPENS + timedelta(hours=8)  # 01:35
    states = {**STATES, "sl-main-003": state(90.0, at=late)}
    _, orders = step(late, latest, plans, states)
    assert set(orders) == {"sl-main-003"}


def test_a_changed_policy_replans_the_night() -> None:
    plans, _ = step(OPENS)
    latest = sent_all(OPENS, plans)
    soon = OPENS + timedelta(minutes=1)
    again = plans.after_policy_change(soon, ZONE)
    assert step(soon, latest, again)[1] == {}, "planned the same: nothing to send"
    later = OPENS + timedelta(hours=1)
    brighter = PlanSettings(LightingPolicy(minimum_level=40.0, reserve_days=1.0), SITE)
    replanned, orders = step(later, latest, plans.after_policy_change(later, ZONE), None, brighter)
    changed = {
        device
        for device in STATES
        if replanned.by_light[device].schedule != plans.by_light[device].schedule
    }
    assert set(orders) == changed == {ROAD, ROAD_LOW}, "the garden's full profile stays"
    assert all(why.endswith("; replanned") for why in orders.values())
    assert min(levels(replanned, ROAD_LOW)) > max(levels(plans, ROAD_LOW)), "a higher minimum"


def test_after_a_restart_tonights_command_stands() -> None:
    plans, _ = step(OPENS)
    latest = sent_all(OPENS, plans)
    restarted = {device: state(50.0, at=OPENS + timedelta(hours=2)) for device in STATES}
    adopted, orders = step(OPENS + timedelta(hours=2), latest, Plans(), restarted)
    assert orders == {}, "not planned again from a later charge"
    assert adopted.by_light[ROAD].schedule == plans.by_light[ROAD].schedule


def test_the_whole_of_sefrou_is_planned_in_one_step() -> None:
    """Every light of the city gets tonight's plan and its order from one step (how long it
    takes is a figure for a benchmark, not a test's: tests check behaviour)."""
    inventory = load_site(Path("sites/sefrou.yaml"))
    lights, unrated = lights_of(map(as_registered, inventory.devices))
    assert (len(lights), unrated) == (2_106, [])
    states = {
        light.device_id: state(20.0 + 75.0 * (i % 10) / 9, harvest_wh=100.0 + i % 500)
        for i, light in enumerate(lights)
    }
    settings = PlanSettings(DEFAULT_LIGHTING, inventory.site)
    plans, orders = plan_step(lights, states, {}, Plans(), OPENS, settings=settings)
    assert len(orders) == len(plans.by_light) == 2_106


# ----------------------------------------------------------------------------- harvest


def test_readings_add_up_the_days_harvest_and_an_older_one_changes_nothing() -> None:
    start = datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
    light = None
    for k in range(12):  # an hour of 300 W readings every 5 minutes
        light = observe(light, start + timedelta(minutes=5 * k), {"pv_power": 300.0}, ZONE)
    assert light is not None
    assert light.harvest_wh[date(2026, 12, 14).toordinal()] == pytest.approx(300.0)
    older = observe(light, start, {"pv_power": 500.0, "battery_soc": 10.0}, ZONE)
    assert older is light
    gap = observe(light, start + timedelta(hours=5), {"pv_power": 100.0, "battery_soc": 60.0}, ZONE)
    assert gap.harvest_wh[date(2026, 12, 14).toordinal()] == pytest.approx(300.0 + 100.0 / 6)
    assert gap.battery_soc == 60.0


def test_the_expected_harvest_is_the_mean_of_complete_days_else_todays() -> None:
    full, half = COMPLETE_DAY_S, COMPLETE_DAY_S / 2
    light = LightState(
        OPENS,
        80.0,
        {TODAY - 4: 900.0, TODAY - 3: 300.0, TODAY - 2: 500.0, TODAY - 1: 50.0, TODAY: 200.0},
        {TODAY - 4: full, TODAY - 3: full, TODAY - 2: full, TODAY - 1: half, TODAY: half},
    )
    assert expected_harvest_wh(light, TODAY) == 400.0, "the last three days, complete ones"
    fresh = LightState(OPENS, 80.0, {TODAY: 200.0}, {TODAY: half})
    assert expected_harvest_wh(fresh, TODAY) == 200.0, "a service started today"
    stored = with_past_day(fresh, TODAY - 1, 610.0, 24 * 3_600.0)
    assert expected_harvest_wh(stored, TODAY) == 610.0, "a day read from storage"
    assert with_past_day(stored, TODAY - 1, 1.0, 3_600.0) is stored, "memory knows it better"


# ----------------------------------------------------------------------------- command line


def test_the_lighting_command_has_an_example_and_names_a_bad_strategy(tmp_path: Path) -> None:
    app = typer.Typer(rich_markup_mode=None)
    app.command("lighting")(lighting)
    app.command("other")(lambda: None)
    shown = CliRunner().invoke(app, ["lighting", "--help"]).output
    assert "smartcity energy lighting --site sefrou" in shown
    bad = tmp_path / "strategy.yaml"
    packaged = PACKAGED_STRATEGY.read_text(encoding="utf-8")
    bad.write_text(
        packaged.replace("lighting: {}", "lighting: {minimum_level: 200}"), encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["lighting", "--strategy", str(bad)])
    assert result.exit_code == 2
    assert "minimum_level" in result.output


# ----------------------------------------------------------------------------- registry


def test_a_light_is_dimmed_by_the_place_kind_of_its_street_group() -> None:
    """Moved to the park (its own metadata still says road), a light is a garden light; alone
    in a new group, or without one, it keeps its own kind."""
    registered = {device.id: as_registered(device) for device in INVENTORY.devices}

    def kinds(moves: dict[str, str | None]) -> dict[str, str]:
        devices = [
            replace(device, street_group=moves[device.id]) if device.id in moves else device
            for device in registered.values()
        ]
        return {light.device_id: light.place_kind for light in lights_of(devices)[0]}

    assert kinds({})[ROAD] == "road"
    assert kinds({ROAD: "park"})[ROAD] == "garden"
    assert kinds({ROAD: "park"})[ROAD_LOW] == "road", "the others stay"
    assert kinds({ROAD: "new-street"})[ROAD] == "road"
    assert kinds({GARDEN: None})[GARDEN] == "garden"
    unrated = replace(registered[ROAD], metadata={"place_kind": "road"})
    assert lights_of([unrated]) == ([], [ROAD]), "no ratings in the registry: not planned"


def test_a_moved_light_is_planned_again_the_same_night_and_the_others_keep_theirs() -> None:
    plans, _ = step(OPENS)
    latest = sent_all(OPENS, plans)
    moved = [replace(light, place_kind="garden") if light.device_id == ROAD else light
             for light in LIGHTS]  # fmt: skip
    later = OPENS + timedelta(minutes=30)
    for before in (plans, Plans()):  # running, and after a restart
        replanned, orders = plan_step(
            moved, STATES, latest, before.after_lights_changed([ROAD]), later, settings=SETTINGS
        )
        assert [(order.device_id, order.reason) for order in orders] == [(ROAD, Reason.CHANGED)]
        assert orders[0].why.endswith("; replanned")
        assert replanned.by_light[ROAD].schedule != plans.by_light[ROAD].schedule
        assert replanned.by_light[ROAD_LOW].schedule == plans.by_light[ROAD_LOW].schedule
        assert replanned.afresh == frozenset(), "planned: adopted again after a restart"
