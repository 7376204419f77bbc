"""When zones get commands, how unanswered ones are resent and given up, which outcomes raise
alerts, and when a zone is judged not to follow its command (control/commanding.py), on a fake
clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import typer
from typer.testing import CliRunner

from alerts.catalogue import COMMAND_REFUSED, COMMAND_UNANSWERED, CONTROL_KINDS, HVAC_NOT_FOLLOWING
from control.commanding import (
    CommandBook,
    CommandPolicy,
    DevicePace,
    Following,
    FollowPolicy,
    Outcome,
    Reason,
    Retry,
    Sent,
    ZoneReading,
    answered,
    deviation,
    due,
    follow,
    issue,
    outcome_findings,
    params_for,
    retry,
)
from control.hvac import controlled_zones
from protocol.commands import (
    DimmingStep,
    HvacMode,
    SetDimming,
    SetHvac,
    SetSchedule,
)
from smartcity.control_cli import control
from tests.simulation_helpers import small_site

T0 = datetime(2026, 1, 13, 7, 0, tzinfo=UTC)
POLICY = CommandPolicy()
COMFORT = SetHvac(mode=HvacMode.AUTO, heating_setpoint=20.5, cooling_setpoint=24.5, hold_s=1_800)
SETBACK = SetHvac(mode=HvacMode.AUTO, heating_setpoint=15.0, cooling_setpoint=30.0, hold_s=1_800)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sent(setting: SetHvac = COMFORT, *, when: float = 0.0, command_id: str = "c1") -> Sent:
    return issue(command_id, "hall-offices", setting, at(when), POLICY)


# ----------------------------------------------------------------------------- when to command


def test_a_zone_is_commanded_first_and_when_its_setting_changes() -> None:
    assert due(None, COMFORT, T0, POLICY) is Reason.FIRST
    applied = answered(sent(), Outcome.APPLIED, at(1))
    assert due(applied, COMFORT, at(60), POLICY) is None
    assert due(applied, SETBACK, at(60), POLICY) is Reason.CHANGED


def test_the_heating_water_must_move_by_the_tolerance_to_make_a_change() -> None:
    warm = msgspec.structs.replace(COMFORT, supply_temperature=55.0)
    applied = answered(sent(warm), Outcome.APPLIED, at(1))
    for supply, expected in (
        (56.9, None),
        (53.1, None),
        (57.0, Reason.CHANGED),
        (None, Reason.CHANGED),
    ):
        wanted = msgspec.structs.replace(COMFORT, supply_temperature=supply)
        assert due(applied, wanted, at(60), POLICY) is expected, supply
    strict = CommandPolicy(supply_tolerance_k=0.0)
    wanted = msgspec.structs.replace(COMFORT, supply_temperature=55.1)
    assert due(applied, wanted, at(60), strict) is Reason.CHANGED


def test_a_command_awaiting_its_answer_is_not_doubled_unless_the_setting_changes() -> None:
    waiting = sent()
    assert due(waiting, COMFORT, at(3_000), POLICY) is None, "resends are retry's business"
    assert due(waiting, SETBACK, at(10), POLICY) is Reason.CHANGED


def test_a_held_command_is_renewed_once_it_has_run_half_its_hold() -> None:
    applied = answered(sent(), Outcome.APPLIED, at(2))
    assert due(applied, COMFORT, at(2 + 899), POLICY) is None
    assert due(applied, COMFORT, at(2 + 900), POLICY) is Reason.REFRESH


def test_after_a_command_not_applied_the_zone_is_commanded_again() -> None:
    expired = answered(sent(), Outcome.EXPIRED, at(5), "command expired")
    assert due(expired, COMFORT, at(6), POLICY) is Reason.AGAIN, "a late command: at once"
    for outcome in (Outcome.REJECTED, Outcome.FAILED):
        refused = answered(sent(), outcome, at(5))
        assert due(refused, COMFORT, at(600), POLICY) is None, "not hammered"
        assert due(refused, COMFORT, at(905), POLICY) is Reason.AGAIN
    unanswered, _ = retry(replace(sent(), attempts=3), at(60), POLICY)
    assert unanswered.outcome is Outcome.UNANSWERED
    assert due(unanswered, COMFORT, at(959), POLICY) is None
    assert due(unanswered, COMFORT, at(960), POLICY) is Reason.AGAIN


def test_a_command_expires_after_the_expiry_stretched_by_the_pace_of_device_time() -> None:
    assert sent().expires_at == at(120)
    assert issue("c", "z", COMFORT, T0, POLICY, scale=600.0).expires_at == at(72_000)


# ----------------------------------------------------------------------------- retries


def test_an_unanswered_command_is_resent_with_the_same_id_then_given_up() -> None:
    """The fake clock moves 10 s at a time; nobody ever answers."""
    command = sent()
    sends = [(0.0, command.id, command.expires_at)]
    given_up_at = None
    for step in range(1, 40):
        now = at(10 * step)
        command, action = retry(command, now, POLICY)
        if action is Retry.RESEND:
            sends.append((10.0 * step, command.id, command.expires_at))
        elif action is Retry.GIVE_UP:
            given_up_at = 10.0 * step
            break
    assert sends == [
        (0.0, "c1", at(120)),
        (60.0, "c1", at(180)),
        (120.0, "c1", at(240)),
    ], "same id, fresh expiry, every ack_timeout_s"
    assert given_up_at == 180.0
    assert command.outcome is Outcome.UNANSWERED
    assert command.attempts == POLICY.max_attempts
    assert command.reason == "no answer to 3 sends"
    assert command.issued_at == T0, "a resend is the same command"


def test_an_answered_command_is_never_resent() -> None:
    applied = answered(sent(), Outcome.APPLIED, at(1))
    assert retry(applied, at(10_000), POLICY) == (applied, Retry.WAIT)


def test_a_superseded_command_is_not_resent_but_given_up_quietly() -> None:
    old = replace(sent(), superseded_by="c2")
    given_up, action = retry(old, at(60), POLICY)
    assert action is Retry.GIVE_UP
    assert given_up.reason == "no answer; superseded by c2"
    assert outcome_findings(given_up, 0, POLICY) == [], "the newer command speaks for the zone"


def test_the_ack_timeout_is_stretched_by_the_pace_of_device_time() -> None:
    assert retry(sent(), at(599), POLICY, scale=10.0)[1] is Retry.WAIT
    resent, action = retry(sent(), at(600), POLICY, scale=10.0)
    assert action is Retry.RESEND
    assert resent.expires_at == at(600 + 1_200)


def test_a_repeated_answer_changes_nothing_and_a_late_one_replaces_unanswered() -> None:
    applied = answered(sent(), Outcome.APPLIED, at(1))
    assert answered(applied, Outcome.APPLIED, at(70)) is applied
    gave_up = replace(sent(), outcome=Outcome.UNANSWERED, outcome_at=at(180))
    late = answered(gave_up, Outcome.APPLIED, at(200))
    assert (late.outcome, late.outcome_at, late.reason) == (
        Outcome.APPLIED,
        at(200),
        "answered late",
    )


# ----------------------------------------------------------------------------- alerts


def test_which_outcomes_raise_and_resolve_alerts() -> None:
    applied = answered(sent(), Outcome.APPLIED, at(1))
    assert [(f.rule_id, f.fire) for f in outcome_findings(applied, 0, POLICY)] == [
        (COMMAND_UNANSWERED, False),
        (COMMAND_REFUSED, False),
    ]
    rejected = answered(sent(), Outcome.REJECTED, at(1), "invalid params for set_hvac")
    [finding] = outcome_findings(rejected, 0, POLICY)
    assert (finding.rule_id, finding.fire, finding.subject) == (
        COMMAND_REFUSED,
        True,
        "hall-offices",
    )
    assert "rejected: invalid params" in finding.cause
    failed = answered(sent(), Outcome.FAILED, at(1), "modbus timeout")
    assert outcome_findings(failed, 0, POLICY)[0].rule_id == COMMAND_REFUSED
    unanswered = replace(sent(), attempts=3, outcome=Outcome.UNANSWERED, outcome_at=at(180))
    [finding] = outcome_findings(unanswered, 0, POLICY)
    assert (finding.rule_id, finding.started_at, finding.at) == (COMMAND_UNANSWERED, T0, at(180))


def test_expired_commands_raise_an_alert_only_when_they_keep_expiring() -> None:
    expired = answered(sent(), Outcome.EXPIRED, at(1))
    assert outcome_findings(expired, 1, POLICY) == []
    assert outcome_findings(expired, 2, POLICY) == []
    [finding] = outcome_findings(expired, 3, POLICY)
    assert finding.rule_id == COMMAND_REFUSED
    assert "3 commands in a row expired" in finding.cause


def test_every_control_alert_has_titles_in_three_languages() -> None:
    for spec in CONTROL_KINDS.values():
        assert set(spec.titles) == {"en", "fr", "ar"}


# ----------------------------------------------------------------------------- any command

NIGHT = SetSchedule(steps=[DimmingStep(start="18:00", level=80.0)], dark_below_elevation=-1.0)
DIMMER = SetSchedule(steps=[DimmingStep(start="18:00", level=40.0)], dark_below_elevation=-1.0)


def test_a_command_carries_the_action_of_its_params() -> None:
    assert sent().action == "set_hvac"
    schedule = issue("s1", "sl-1", NIGHT, T0, POLICY)
    assert schedule.action == "set_schedule"
    assert issue("d1", "sl-1", SetDimming(level=50.0), T0, POLICY).action == "set_dimming"
    assert params_for("set_schedule", msgspec.to_builtins(NIGHT)) == NIGHT
    assert params_for("set_hvac", msgspec.to_builtins(COMFORT)) == COMFORT
    with pytest.raises(ValueError, match="unknown action"):
        params_for("set_colour", {})


def test_a_schedule_is_kept_until_replaced_never_renewed() -> None:
    applied = answered(issue("s1", "sl-1", NIGHT, T0, POLICY), Outcome.APPLIED, at(2))
    assert applied.in_force(at(30 * 86_400)), "no hold: in force until replaced"
    assert due(applied, NIGHT, at(30 * 86_400), POLICY) is None
    assert due(applied, DIMMER, at(60), POLICY) is Reason.CHANGED


def test_a_schedule_not_applied_is_sent_again_after_again_after_s() -> None:
    refused = answered(issue("s1", "sl-1", NIGHT, T0, POLICY), Outcome.REJECTED, at(2))
    assert due(refused, NIGHT, at(2 + 899), POLICY) is None
    assert due(refused, NIGHT, at(2 + 900), POLICY) is Reason.AGAIN
    late = answered(issue("s1", "sl-1", NIGHT, T0, POLICY), Outcome.EXPIRED, at(2))
    assert due(late, NIGHT, at(3), POLICY) is Reason.AGAIN
    with pytest.raises(ValueError, match="again_after_s"):
        CommandPolicy(again_after_s=0)


def test_the_book_supersedes_resends_and_settles() -> None:
    book = CommandBook(POLICY)
    first = issue("s1", "sl-1", NIGHT, T0, POLICY)
    book.add(first)
    second = issue("s2", "sl-1", DIMMER, at(10), POLICY)
    book.add(second)
    assert book.latest["sl-1"] is second
    assert book.awaiting["s1"].superseded_by == "s2", "the older one is no longer resent"
    due_now = {s.id: action for s, action in book.retries(at(70))}
    assert due_now == {"s1": Retry.GIVE_UP, "s2": Retry.RESEND}
    resent = next(s for s, action in book.retries(at(70)) if action is Retry.RESEND)
    book.resent(resent)
    assert book.latest["sl-1"].attempts == 2
    assert book.find("s2") is resent
    gave_up = next(s for s, action in book.retries(at(70)) if action is Retry.GIVE_UP)
    assert book.settle(gave_up) == [], "superseded: the newer command speaks for the light"
    findings = book.settle(answered(resent, Outcome.APPLIED, at(75)))
    assert [(f.rule_id, f.fire) for f in findings] == [
        (COMMAND_UNANSWERED, False),
        (COMMAND_REFUSED, False),
    ]
    assert book.awaiting == {}
    assert book.applied["sl-1"].id == "s2"
    restored = CommandBook(POLICY)
    restored.restore([second], [], [first, second])
    assert restored.awaiting["s1"].superseded_by == "s2"
    assert restored.awaiting["s2"].superseded_by is None


def test_a_device_gone_is_forgotten_and_one_taken_up_later_keeps_the_others() -> None:
    """Decommissioned: its command awaiting an answer is handed back and never resent. Taken
    up while the service runs: its commands of before are restored next to the others."""
    book = CommandBook(POLICY)
    kept = issue("k1", "sl-1", NIGHT, at(0), POLICY)
    gone = issue("g1", "sl-2", NIGHT, at(0), POLICY)
    book.add(kept)
    book.add(gone)
    assert book.forget(["sl-2"]) == [gone]
    assert {s.id for s, _ in book.retries(at(600))} == {"k1"}, "nothing more to sl-2"
    assert "sl-2" not in book.latest
    earlier = answered(issue("n0", "sl-3", DIMMER, at(-60), POLICY), Outcome.APPLIED, at(-59))
    book.restore([earlier], [earlier], [])
    assert book.latest["sl-3"] is earlier
    assert book.latest["sl-1"] is kept, "restoring one device leaves the others as they were"
    assert set(book.awaiting) == {"k1"}


def test_expired_commands_are_counted_in_a_row_by_the_book() -> None:
    book = CommandBook(POLICY)
    found = []
    for k in range(3):
        command = issue(f"e{k}", "sl-1", NIGHT, at(k), POLICY)
        book.add(command)
        found = book.settle(answered(command, Outcome.EXPIRED, at(k + 1)))
    assert [f.rule_id for f in found] == [COMMAND_REFUSED]
    assert "3 commands in a row expired" in found[0].cause


# ----------------------------------------------------------------------------- following


def reading(
    seconds: float, temperature: float, heating: bool, cooling: bool = False
) -> ZoneReading:
    return ZoneReading("hall-offices", at(seconds), temperature, heating, cooling)


def run(
    setting: SetHvac | None, readings: list[ZoneReading], state: Following | None = None
) -> tuple[Following, list[tuple[float, bool]]]:
    """Feed readings; (seconds since T0, fire) of each finding."""
    state = state or Following()
    found = []
    for item in readings:
        state, finding = follow(state, setting, item, FollowPolicy())
        if finding is not None:
            found.append(((finding.at - T0).total_seconds(), finding.fire))
    return state, found


def minutes(first: int, last: int, temperature: float, heating: bool) -> list[ZoneReading]:
    return [reading(60 * m, temperature, heating) for m in range(first, last + 1)]


def test_a_zone_told_to_heat_that_stays_cold_and_off_is_not_following_after_15_minutes() -> None:
    state, found = run(COMFORT, minutes(0, 20, 18.0, heating=False))
    assert found == [(900.0, True)], "fired once, 15 min after the mismatch began"
    assert state.firing
    _, found = run(COMFORT, [reading(1_300, 18.2, heating=True)], state)
    assert found == [(1_300.0, False)], "it heats: resolved"


def test_a_short_mismatch_is_no_alert() -> None:
    readings = minutes(0, 14, 18.0, heating=False) + minutes(15, 30, 18.0, heating=True)
    assert run(COMFORT, readings)[1] == []


def test_a_zone_set_back_that_keeps_heating_well_above_its_setpoint_is_not_following() -> None:
    assert run(SETBACK, minutes(0, 20, 17.0, heating=True))[1] == [(900.0, True)]
    assert run(SETBACK, minutes(0, 20, 16.4, heating=True))[1] == [], "within 1.5 K"


def test_a_zone_switched_off_may_heat_only_for_frost_protection() -> None:
    off = SetHvac(mode=HvacMode.OFF, hold_s=1_800)
    assert run(off, minutes(0, 20, 12.0, heating=True))[1] == [(900.0, True)]
    assert run(off, minutes(0, 20, 5.0, heating=True))[1] == [], "frost protection"
    assert run(off, minutes(0, 20, 5.0, heating=False))[1] == [(900.0, True)], "no frost guard"


def test_cooling_is_judged_the_same_way() -> None:
    cool = SetHvac(mode=HvacMode.COOL, heating_setpoint=20.0, cooling_setpoint=24.0, hold_s=1_800)
    assert deviation(cool, 26.0, heating_active=False, cooling_active=False, margin_k=1.0)
    assert deviation(cool, 25.0, heating_active=False, cooling_active=False, margin_k=1.0) is None
    assert deviation(cool, 22.0, heating_active=False, cooling_active=True, margin_k=1.0)
    heat = msgspec.structs.replace(cool, mode=HvacMode.HEAT)
    assert deviation(heat, 26.0, heating_active=False, cooling_active=True, margin_k=1.0)


def test_a_new_setting_starts_the_count_again_a_renewed_one_does_not() -> None:
    readings = minutes(0, 10, 18.0, heating=False)
    state, _ = run(COMFORT, readings)
    renewed = SetHvac(
        mode=HvacMode.AUTO, heating_setpoint=20.5, cooling_setpoint=24.5, hold_s=1_800
    )
    assert run(renewed, minutes(11, 15, 18.0, heating=False), state)[1] == [(900.0, True)]
    standby = msgspec.structs.replace(COMFORT, heating_setpoint=19.8)
    assert run(standby, minutes(11, 25, 18.0, heating=False), state)[1] == [], "restarted at 11"


def test_a_new_heating_water_temperature_does_not_start_the_count_again() -> None:
    state, _ = run(COMFORT, minutes(0, 10, 18.0, heating=False))
    warmer = msgspec.structs.replace(COMFORT, supply_temperature=60.0)
    assert run(warmer, minutes(11, 15, 18.0, heating=False), state)[1] == [(900.0, True)]


def test_nothing_is_judged_without_a_setting_in_force_or_a_temperature() -> None:
    state, found = run(None, minutes(0, 30, 10.0, heating=False))
    assert found == []
    assert state.since is None
    assert run(COMFORT, minutes(0, 30, float("nan"), heating=False))[1] == []


def test_a_command_is_in_force_from_its_application_for_its_hold() -> None:
    command = answered(sent(), Outcome.APPLIED, at(5))
    assert not command.in_force(at(4))
    assert command.in_force(at(5))
    assert command.in_force(at(5 + 1_799))
    assert not command.in_force(at(5 + 1_800))
    assert not sent().in_force(at(10)), "not applied (yet)"


# ----------------------------------------------------------------------------- pace


def test_the_pace_of_device_time_is_measured_and_errs_low() -> None:
    real_time = DevicePace()
    for second in range(0, 300):
        real_time.observe(second, 1_000_000 + 60 * (second // 60))  # a sample a minute
    assert real_time.scale(300) == 1.0
    fast = DevicePace()
    assert fast.scale(0.0) is None
    for tenth in range(0, 50):
        fast.observe(tenth / 10, 1_000_000 + 60 * tenth)  # 600x: a minute every 0.1 s
    assert fast.scale(0.5) is None, "not before min_span_s"
    scale = fast.scale(5.0)
    assert scale is not None
    assert 550 < scale <= 600


def test_a_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        CommandPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="refresh_share"):
        CommandPolicy(refresh_share=1.0)


def test_the_zones_are_the_sites_building_devices_in_order() -> None:
    controlled = controlled_zones(small_site().devices)
    assert controlled.zones.ids == ("hall-offices", "hall-archives")
    assert controlled.zones.buildings == ("hall",)
    assert [place.kind for place in controlled.places] == ["town_hall", "town_hall"]
    assert controlled.zones.can_heat.all()
    assert HVAC_NOT_FOLLOWING in CONTROL_KINDS


def test_the_control_command_names_a_bad_strategy_file(tmp_path: Path) -> None:
    app = typer.Typer(rich_markup_mode=None)
    app.command("control")(control)
    app.command("other")(lambda: None)
    assert "smartcity energy control" in CliRunner().invoke(app, ["control", "--help"]).output
    bad = tmp_path / "strategy.yaml"
    bad.write_text("strategy: x\nhvac: {}\nschedules: {}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["control", "--strategy", str(bad)])
    assert result.exit_code == 2
    assert "strategy.yaml" in result.output


def test_a_wide_deadband_and_long_minimum_times_are_not_taken_for_disobedience() -> None:
    wide = SetHvac(mode=HvacMode.HEAT, heating_setpoint=20.0, deadband_k=3.0, hold_s=3_600)
    # Within 3 K of the setpoint a thermostat with a 3 K deadband may rightly be off or on.
    assert deviation(wide, 18.0, heating_active=False, cooling_active=False, margin_k=1.0) is None
    assert deviation(wide, 22.0, heating_active=True, cooling_active=False, margin_k=1.0) is None
    assert deviation(wide, 15.5, heating_active=False, cooling_active=False, margin_k=1.0)
    slow = SetHvac(mode=HvacMode.HEAT, heating_setpoint=20.0, min_off_s=1_800, hold_s=3_600)
    assert run(slow, minutes(0, 25, 18.0, heating=False))[1] == [], "still in its minimum off"
    assert run(slow, minutes(0, 31, 18.0, heating=False))[1] == [(1_800.0, True)]
