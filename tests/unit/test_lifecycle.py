"""The alert lifecycle with a fake clock: reminders, escalation, silences, maintenance,
root-cause suppression, repairs verified or reopened."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from alerts.catalogue import NoticeKind
from alerts.lifecycle import (
    ENGINE,
    LifecycleError,
    Policy,
    Scope,
    Silence,
    Status,
    acknowledge,
    close,
    failing_groups,
    fire,
    group_sizes,
    held,
    mark_repaired,
    merge,
    mute_reason,
    refire,
    release,
    resolve,
    tick,
    unmute,
)
from protocol.payloads import Severity

T0 = datetime(2026, 11, 29, 18, tzinfo=UTC)
POLICY = Policy()
LAMP = Scope("sl-1", street_group="menzel", cabinet="c1", site_id="sefrou")


def minutes(count: float) -> datetime:
    return T0 + timedelta(minutes=count)


def test_firing_notifies_and_records_who_and_when() -> None:
    alert, transitions, notices = fire("lamp-out", "sl-1", Severity.CRITICAL, minutes(-20), T0)
    assert alert.status is Status.FIRING
    assert (alert.started_at, alert.fired_at) == (minutes(-20), T0)
    assert notices == [NoticeKind.FIRING]
    assert [(t.from_status, t.to_status, t.actor) for t in transitions] == [
        (None, Status.FIRING, ENGINE)
    ]


@pytest.mark.parametrize(
    ("severity", "at_minutes", "expected"),
    [
        (Severity.CRITICAL, 29, []),
        (Severity.CRITICAL, 30, [NoticeKind.ESCALATION]),
        (Severity.WARNING, 239, []),
        (Severity.WARNING, 240, [NoticeKind.REMINDER]),
        (Severity.INFO, 10_000, []),
    ],
)
def test_reminders_and_escalation_while_unacknowledged(
    severity: Severity, at_minutes: float, expected: list[NoticeKind]
) -> None:
    alert, _, _ = fire("r", "sl-1", severity, T0, T0)
    _, _, notices = tick(alert, minutes(at_minutes), POLICY, still_failing=True)
    assert notices == expected


def test_critical_escalates_once_then_reminds_hourly() -> None:
    alert, _, _ = fire("r", "sl-1", Severity.CRITICAL, T0, T0)
    sent = []
    for minute in range(0, 181, 5):
        alert, _, notices = tick(alert, minutes(minute), POLICY, still_failing=True)
        sent += [(minute, n) for n in notices]
    assert sent == [
        (30, NoticeKind.ESCALATION),
        (90, NoticeKind.REMINDER),
        (150, NoticeKind.REMINDER),
    ]


def test_acknowledged_alert_stops_reminding() -> None:
    alert, _, _ = fire("r", "sl-1", Severity.CRITICAL, T0, T0)
    alert, transitions, _ = acknowledge(alert, minutes(5), "crew-7")
    assert (alert.status, alert.acknowledged_by) == (Status.ACKNOWLEDGED, "crew-7")
    assert transitions[0].actor == "crew-7"
    _, _, notices = tick(alert, minutes(600), POLICY, still_failing=True)
    assert notices == []
    with pytest.raises(LifecycleError):
        acknowledge(alert, minutes(6), "crew-7")


def test_resolution_then_automatic_close() -> None:
    alert, _, _ = fire("r", "sl-1", Severity.WARNING, T0, T0)
    alert, transitions, notices = resolve(alert, minutes(30))
    assert alert.status is Status.RESOLVED
    assert notices == [NoticeKind.RESOLVED]
    assert transitions[0].actor == ENGINE
    alert, _, _ = tick(alert, minutes(30 + 24 * 60 - 1), POLICY, still_failing=False)
    assert alert.status is Status.RESOLVED
    alert, transitions, _ = tick(alert, minutes(30 + 24 * 60), POLICY, still_failing=False)
    assert alert.status is Status.CLOSED
    assert transitions[0].to_status is Status.CLOSED


def test_repair_verified_by_the_clear_condition() -> None:
    alert, _, _ = fire("lamp-out", "sl-1", Severity.CRITICAL, T0, T0)
    alert, transitions, _ = mark_repaired(alert, minutes(60), "crew-2", "driver replaced")
    assert alert.status is Status.RESOLVED
    assert "driver replaced" in transitions[0].note
    alert, transitions, _ = resolve(alert, minutes(24 * 60))  # lit at the next dusk
    assert alert.status is Status.CLOSED
    assert transitions[0].note == "repair verified"


def test_repair_not_confirmed_reopens() -> None:
    alert, _, _ = fire("lamp-out", "sl-1", Severity.CRITICAL, T0, T0)
    alert, _, _ = mark_repaired(alert, minutes(60), "crew-2")
    alert, _, notices = tick(alert, minutes(60 + 24 * 60), POLICY, still_failing=True)
    assert alert.status is Status.FIRING
    assert notices == [NoticeKind.REOPENED]
    assert alert.repaired_at is None


def test_fault_back_after_repair_reopens() -> None:
    alert, _, _ = fire("lamp-out", "sl-1", Severity.CRITICAL, T0, T0)
    alert, _, _ = mark_repaired(alert, minutes(60), "crew-2")
    alert, transitions, notices = refire(alert, minutes(300))
    assert (alert.status, notices) == (Status.FIRING, [NoticeKind.REOPENED])
    assert "came back" in transitions[0].note


def test_repair_without_fault_since_closes_after_the_window() -> None:
    alert, _, _ = fire("r", "sl-1", Severity.WARNING, T0, T0)
    alert, _, _ = mark_repaired(alert, minutes(10), "crew-2")
    alert, _, _ = tick(alert, minutes(10 + 24 * 60), POLICY, still_failing=False)
    assert alert.status is Status.CLOSED


def test_closing_twice_is_refused() -> None:
    alert, _, _ = fire("r", "sl-1", Severity.WARNING, T0, T0)
    alert, _, _ = close(alert, minutes(1), "admin", "duplicate")
    with pytest.raises(LifecycleError):
        close(alert, minutes(2), "admin")


SILENCE = Silence(1, minutes(0), minutes(120), rule_ids=("lamp-out",), street_groups=("menzel",))
MAINTENANCE = Silence(2, minutes(60), minutes(180), maintenance=True, device_ids=("sl-1",))


@pytest.mark.parametrize(
    ("rule_id", "scope", "at", "roots", "expected"),
    [
        ("lamp-out", LAMP, minutes(10), {}, "silence:1"),
        ("lamp-out", LAMP, minutes(130), {}, "maintenance:2"),
        ("lamp-out", LAMP, minutes(200), {}, None),
        ("day-burning", LAMP, minutes(10), {}, None),
        ("day-burning", LAMP, minutes(61), {}, "maintenance:2"),
        ("lamp-out", Scope("sl-9", street_group="other"), minutes(10), {}, None),
        ("light-offline", LAMP, minutes(200), {"street:menzel": 41}, "suppressed:41"),
        ("light-offline", LAMP, minutes(200), {"cabinet:c2": 42}, None),
    ],
)
def test_silences_maintenance_and_suppression(
    rule_id: str, scope: Scope, at: datetime, roots: dict[str, int], expected: str | None
) -> None:
    assert mute_reason(rule_id, scope, at, [SILENCE, MAINTENANCE], roots) == expected


def test_a_muted_alert_is_recorded_but_silent_until_unmuted() -> None:
    alert, transitions, notices = fire(
        "lamp-out", "sl-1", Severity.CRITICAL, T0, T0, muted_by="silence:1"
    )
    assert notices == []
    assert "silence:1" in transitions[0].note
    _, _, later = tick(alert, minutes(600), POLICY, still_failing=True)
    assert later == []
    alert, _, notices = unmute(alert, minutes(121))
    assert notices == [NoticeKind.FIRING]
    assert alert.muted_by is None


def test_root_cause_street_down_blames_the_street_not_each_light() -> None:
    scopes = {
        f"sl-{i}": Scope(f"sl-{i}", street_group="menzel" if i < 10 else "park", site_id="s")
        for i in range(20)
    }
    sizes = group_sizes(list(scopes.values()))
    down = failing_groups([f"sl-{i}" for i in range(6)], scopes, sizes)
    assert down == {"street:menzel": [f"sl-{i}" for i in range(6)]}
    assert failing_groups(["sl-1", "sl-2"], scopes, sizes) == {}, "two lights are not a street"
    everything = failing_groups(list(scopes), scopes, sizes)
    assert list(everything) == ["site:s"], "the site link explains both streets"


def test_escalation_counts_from_the_first_notice_of_the_episode() -> None:
    """A reopened or unmuted alert, or one notified late (a spool's reading), does not
    escalate at once for having fired long ago."""
    late, _, _ = fire("r", "sl-1", Severity.CRITICAL, T0, T0, notified_at=minutes(120))
    assert tick(late, minutes(121), POLICY, still_failing=True)[2] == []
    assert tick(late, minutes(150), POLICY, still_failing=True)[2] == [NoticeKind.ESCALATION]
    muted, _, _ = fire("r", "sl-1", Severity.CRITICAL, T0, T0, muted_by="silence:1")
    unmuted, _, _ = unmute(muted, minutes(200))
    assert tick(unmuted, minutes(201), POLICY, still_failing=True)[2] == []
    repaired, _, _ = mark_repaired(fire("r", "sl-1", Severity.CRITICAL, T0, T0)[0], T0, "crew")
    reopened, _, _ = refire(repaired, minutes(300))
    assert tick(reopened, minutes(301), POLICY, still_failing=True)[2] == []


def test_a_closed_alert_stays_closed_when_the_fault_clears() -> None:
    alert, _, _ = fire("r", "sl-1", Severity.WARNING, T0, T0)
    alert, _, _ = mark_repaired(alert, minutes(1), "crew")
    alert, _, _ = close(alert, minutes(2), "admin", "done")
    assert resolve(alert, minutes(3)) == (alert, [], [])


def test_a_held_alert_notifies_only_when_released_unless_muted_meanwhile() -> None:
    alert, _, notices = fire("light-offline", "sl-1", Severity.WARNING, T0, T0, hold=True)
    assert notices == []
    assert held(alert)
    released, _, notices = release(alert, minutes(1))
    assert notices == [NoticeKind.FIRING]
    assert not held(released)
    assert release(released, minutes(2))[2] == [], "once"
    muted = replace(alert, muted_by="suppressed:7")
    assert release(muted, minutes(1))[2] == [], "a root cause came first"
    _, _, notices = resolve(alert, minutes(1))
    assert notices == [], "back before anyone was told: nothing to say"


def test_a_citizens_alert_merges_into_the_one_telemetry_raised_and_only_once() -> None:
    citizens, _, _ = fire("citizen-report", "sl-1", Severity.WARNING, T0, T0)
    citizens = replace(citizens, alert_id=7)
    engine, _, _ = fire("lamp-out", "sl-1", Severity.CRITICAL, T0, minutes(20))
    engine = replace(engine, alert_id=9)
    merged, transitions, notices = merge(citizens, engine, minutes(21))
    assert (merged.status, merged.merged_into, merged.closed_at) == (
        Status.CLOSED,
        9,
        minutes(21),
    )
    assert transitions[0].note == "merged into alert 9 (lamp-out): telemetry confirms it"
    assert notices == [], "nobody is told twice: the engine's alert tells the crews"
    with pytest.raises(LifecycleError, match="already closed"):
        merge(merged, engine, minutes(30))
