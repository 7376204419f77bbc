"""Escalation in steps and the on-call rota: the lifecycle's steps with a fake clock, who is
told at each step, who is on call when, and routing files that get them wrong."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from alerts.catalogue import NoticeKind
from alerts.lifecycle import Policy, acknowledge, fire, mark_repaired, refire, tick, unmute
from alerts.routing import NotificationConfig, NotificationConfigError, parse_notification_config
from alerts.wording import AlertNotice
from protocol.payloads import Severity

T0 = datetime(2026, 12, 8, 18, tzinfo=UTC)
STEPS = Policy(
    escalation=(
        {Severity.CRITICAL: timedelta(minutes=30), Severity.WARNING: timedelta(hours=8)},
        {Severity.CRITICAL: timedelta(hours=1)},
    )
)
ROUTING = """\
link_base: https://smartcity.sefrou.ma/console/
routes:
  - name: crew-lights
    zones: [menzel]
    urls: ["json://hooks.example.ma/crew"]
  - name: supervisors
    language: ar
    urls: ["json://hooks.example.ma/supervisors"]
escalation:
  - {after: {critical: 30m, warning: 8h}, routes: [supervisors]}
  - {after: {critical: 1h}, on_call: true}
on_call:
  timezone: Africa/Casablanca
  handover: mon 08:00
  first_week: 2026-12-07
  rota:
    - {name: youssef, urls: ["json://hooks.example.ma/youssef"]}
    - {name: amina, language: ar, urls: ["json://hooks.example.ma/amina"]}
    - {name: karim, language: en, urls: ["json://hooks.example.ma/karim"]}
"""
NOTICE = AlertNotice(
    alert_id=42,
    rule_id="lamp-out",
    severity=Severity.CRITICAL,
    kind=NoticeKind.FIRING,
    titles={"en": "Lamp out at night"},
    device_id="sl-menzel-012",
    device_name="Menzel #12",
    place="Menzel entrance",
    zone="menzel",
    latitude=33.8268,
    longitude=-4.8236,
    since=T0,
    timezone="Africa/Casablanca",
    link="https://smartcity.sefrou.ma/console/alerts/42",
    queued_at=T0,
)


def minutes(count: float) -> datetime:
    return T0 + timedelta(minutes=count)


def escalations(
    severity: Severity, until_minutes: int, policy: Policy = STEPS
) -> list[tuple[int, int]]:
    alert, _, _ = fire("lamp-out", "sl-1", severity, T0, T0)
    told = []
    for minute in range(0, until_minutes + 1, 5):
        alert, _, notices = tick(alert, minutes(minute), policy, still_failing=True)
        told += [(minute, alert.escalation_step) for n in notices if n is NoticeKind.ESCALATION]
    return told


def test_each_step_comes_its_delay_after_the_one_before() -> None:
    assert escalations(Severity.CRITICAL, 300) == [(30, 1), (90, 2)]


def test_a_severity_left_out_of_a_step_stops_before_it() -> None:
    assert escalations(Severity.WARNING, 24 * 60) == [(480, 1)]
    assert escalations(Severity.INFO, 24 * 60) == []


def test_without_steps_an_alert_escalates_once_as_before() -> None:
    assert escalations(Severity.CRITICAL, 600, Policy()) == [(30, 1)]


def test_an_acknowledged_alert_goes_no_further_and_a_reopened_one_starts_again() -> None:
    alert, _, _ = fire("lamp-out", "sl-1", Severity.CRITICAL, T0, T0)
    alert, _, _ = tick(alert, minutes(30), STEPS, still_failing=True)
    assert alert.escalation_step == 1
    acknowledged, _, _ = acknowledge(alert, minutes(40), "crew-north")
    _, _, notices = tick(acknowledged, minutes(200), STEPS, still_failing=True)
    assert notices == []
    repaired, _, _ = mark_repaired(acknowledged, minutes(60), "crew-north")
    reopened, _, _ = refire(repaired, minutes(70))
    assert reopened.escalation_step == 0
    assert reopened.escalated_at is None


@pytest.fixture(scope="module")
def config() -> NotificationConfig:
    return parse_notification_config(ROUTING, "notifications.yaml")


def told(config: NotificationConfig, **changes: object) -> list[str]:
    notice = dataclasses.replace(NOTICE, **changes)  # type: ignore[arg-type]
    return [route.name for route in config.routes_for(notice)]


def test_the_supervisors_hear_of_nothing_but_their_step(config: NotificationConfig) -> None:
    assert told(config) == ["crew-lights"]
    assert told(config, kind=NoticeKind.REMINDER) == ["crew-lights"]
    assert told(config, kind=NoticeKind.ESCALATION, escalation_step=1) == ["supervisors"]


def test_the_last_step_goes_to_whoever_is_on_call_when_it_is_queued(
    config: NotificationConfig,
) -> None:
    second = {"kind": NoticeKind.ESCALATION, "escalation_step": 2}
    # 2026-12-08 18:00 UTC is the Tuesday of the first week: youssef's.
    assert told(config, **second) == ["on-call-youssef"]
    assert told(config, **second, queued_at=T0 + timedelta(days=7)) == ["on-call-amina"]
    assert told(config, **second, queued_at=T0 + timedelta(days=14)) == ["on-call-karim"]
    assert told(config, **second, queued_at=T0 + timedelta(days=21)) == ["on-call-youssef"]
    route = config.routes_for(
        dataclasses.replace(NOTICE, **second, queued_at=T0 + timedelta(days=7))  # type: ignore[arg-type]
    )
    assert route[0].language == "ar"


def test_the_week_changes_hands_at_the_local_handover_even_across_a_clock_change() -> None:
    """Morocco went from UTC+1 to UTC+0 on 2026-09-20 (the tzdata the platform ships): the
    Monday 08:00 handover is 07:00 UTC before it and 08:00 UTC after."""
    text = ROUTING.replace("first_week: 2026-12-07", "first_week: 2026-09-14")
    rota = parse_notification_config(text, "notifications.yaml").on_call
    assert rota is not None
    assert rota.on_call_at(datetime(2026, 9, 14, 6, 59, tzinfo=UTC)).name == "karim"
    assert rota.on_call_at(datetime(2026, 9, 14, 7, 0, tzinfo=UTC)).name == "youssef"
    assert rota.on_call_at(datetime(2026, 9, 21, 7, 59, tzinfo=UTC)).name == "youssef"
    assert rota.on_call_at(datetime(2026, 9, 21, 8, 0, tzinfo=UTC)).name == "amina"
    assert rota.on_call_at(datetime(2026, 12, 14, 8, 0, tzinfo=UTC)).name == "amina"  # week 13


def broken(old: str, new: str) -> str:
    assert old in ROUTING
    return ROUTING.replace(old, new)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (broken("routes: [supervisors]", "routes: [chiefs]"), "names no route chiefs"),
        (broken("on_call:\n  timezone", "rota_off:\n  timezone"), "unknown field"),
        (
            broken("on_call:\n  timezone: Africa/Casablanca\n", "on_cal:\n  timezone: x\n"),
            "unknown field",
        ),
        (broken("first_week: 2026-12-07", "first_week: 2026-12-08"), "give a mon"),
        (broken("handover: mon 08:00", "handover: monday at eight"), "weekday and a local"),
        (broken("timezone: Africa/Casablanca", "timezone: Africa/Sefrou"), "unknown time zone"),
        (broken("{after: {critical: 1h}, on_call: true}", "{after: {critical: 1h}}"), "tell"),
        (broken("{critical: 30m, warning: 8h}", "{critical: soon}"), "duration"),
        (broken("{after: {critical: 1h}", "{after: {critical: 1h, info: 2h}"), "skip a step"),
        (broken("rota:\n", "rota: []\nx:\n"), "empty"),
    ],
)
def test_a_bad_escalation_or_rota_is_refused_saying_what_to_fix(text: str, complaint: str) -> None:
    with pytest.raises(NotificationConfigError, match=complaint) as caught:
        parse_notification_config(text, "notifications.yaml")
    assert str(caught.value).startswith("notifications.yaml")


def test_on_call_asked_for_without_a_rota_is_refused() -> None:
    text = ROUTING[: ROUTING.index("on_call:\n  timezone")]
    with pytest.raises(NotificationConfigError, match="give an on_call rota"):
        parse_notification_config(text, "notifications.yaml")


def test_a_silence_that_ends_starts_the_chain_again_from_its_first_step() -> None:
    alert, _, _ = fire("lamp-out", "sl-1", Severity.CRITICAL, T0, T0)
    alert, _, _ = tick(alert, minutes(30), STEPS, still_failing=True)
    assert alert.escalation_step == 1
    silenced = dataclasses.replace(alert, muted_by="silence:3")
    back, _, _ = unmute(silenced, minutes(330))
    assert (back.escalation_step, back.escalated_at) == (0, None)
    _, _, soon = tick(back, minutes(335), STEPS, still_failing=True)
    assert soon == [], "not the second step seconds after the silence"
    again, _, later = tick(back, minutes(360), STEPS, still_failing=True)
    assert later == [NoticeKind.ESCALATION]
    assert again.escalation_step == 1
