"""Root causes over a history (the backtest's), as the engine raises and mutes them live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.catalogue import GROUP_OFFLINE
from alerts.lifecycle import Scope
from rules.outages import DEFAULT_GROUP_WAIT, group_outages
from rules.scoring import AlertInterval, FaultInterval, score

T0 = datetime(2027, 1, 10, 20, tzinfo=UTC)
OFFLINE = "light-offline"
STREET = [f"sl-s1-{n}" for n in range(4)]
OTHERS = [f"sl-s2-{n}" for n in range(20)]
SCOPES = {
    **{d: Scope(d, street_group="s1", site_id="x") for d in STREET},
    **{d: Scope(d, street_group="s2", site_id="x") for d in OTHERS},
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def gone(device: str, start: float, end: float | None) -> AlertInterval:
    return AlertInterval(OFFLINE, device, at(start), None if end is None else at(end))


def test_a_street_gone_dark_is_one_alert_muting_its_lights() -> None:
    alerts = [gone(STREET[0], 0, 60), gone(STREET[1], 0.2, 60), gone(STREET[2], 0.3, 60)]
    found = group_outages(alerts, SCOPES, {OFFLINE}, DEFAULT_GROUP_WAIT)
    groups = [a for a in found if a.rule_id == GROUP_OFFLINE]
    assert [(g.device_id, g.start, g.end) for g in groups] == [("street:s1", at(0.3), at(60))]
    assert groups[0].members == tuple(STREET[:3])
    assert all(a.muted for a in found if a.rule_id == OFFLINE), "held 30 s, then muted"


def test_a_light_still_dark_when_its_street_is_back_is_told() -> None:
    alerts = [gone(STREET[0], 0, 60), gone(STREET[1], 0, 60), gone(STREET[2], 0, 200)]
    found = group_outages(alerts, SCOPES, {OFFLINE}, DEFAULT_GROUP_WAIT)
    muted = {a.device_id: a.muted for a in found if a.rule_id == OFFLINE}
    assert muted == {STREET[0]: True, STREET[1]: True, STREET[2]: False}


def test_a_light_alone_is_its_own_alert() -> None:
    alerts = [gone(STREET[0], 0, 60), gone(OTHERS[0], 10, 30)]
    found = group_outages(alerts, SCOPES, {OFFLINE}, DEFAULT_GROUP_WAIT)
    assert found == alerts


def test_a_light_lost_long_before_its_street_was_told_already() -> None:
    alerts = [gone(STREET[0], 0, 120), gone(STREET[1], 30, 120), gone(STREET[2], 30, 120)]
    found = group_outages(alerts, SCOPES, {OFFLINE}, DEFAULT_GROUP_WAIT)
    muted = {a.device_id: a.muted for a in found if a.rule_id == OFFLINE}
    assert muted == {STREET[0]: False, STREET[1]: True, STREET[2]: True}


def test_the_score_counts_what_was_told_and_the_street_as_right() -> None:
    alerts = [gone(d, 0, 60) for d in STREET[:3]]
    found = group_outages(alerts, SCOPES, {OFFLINE}, DEFAULT_GROUP_WAIT)
    faults = [FaultInterval(d, "power_loss", at(-1), at(59)) for d in STREET[:3]]
    result = score(
        found,
        faults,
        {OFFLINE: frozenset({"power_loss"}), GROUP_OFFLINE: frozenset({"power_loss"})},
        period_start=T0 - timedelta(hours=1),
        period_end=T0 + timedelta(days=1),
        device_count=len(SCOPES),
        bounds={OFFLINE: timedelta(minutes=20), GROUP_OFFLINE: timedelta(minutes=20)},
    )
    assert (result.alerts, result.muted, result.true_positives) == (1, 3, 1)
    assert result.by_rule[GROUP_OFFLINE].true_positives == 1
    assert result.by_rule[OFFLINE].muted == 3
    assert result.by_fault["power_loss"].detected == 3, "each light's loss is found"
