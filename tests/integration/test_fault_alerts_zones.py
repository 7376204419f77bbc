"""A drifting sensor raises its alert through agents, broker and engine, and the crews hear of it.

The zones' heat balance is learnt over their first nights (rules/zone_model.py), so the
drift has a scenario of its own, beside test_fault_alerts' (whose helpers it uses), in a
file of its own so that the test workers run the two side by side.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import pytest

from protocol.faults import FaultType
from protocol.sites import parse_site
from rules.model import RuleSet
from simulators.faults import FaultEvent
from tests.integration.test_fault_alerts import (
    Outcome,
    Scenario,
    outcome_of,
)
from tests.integration.test_fault_alerts import rules as rules  # noqa: PLC0414 - the fixture
from tests.integration.test_fault_signatures import FAULT_SITE, START

pytestmark = pytest.mark.integration

DRIFT: Final = FaultEvent(START + timedelta(days=2), "hall-z2", FaultType.SENSOR_DRIFT)
ZONES: Final = Scenario(
    parse_site(FAULT_SITE, source="<fault site>").only("hall-z1", "hall-z2", "hall-z3"),
    (DRIFT,),
    3 * 24 + 12,
)
"""A drifting sensor is judged against the zone's heat balance, learnt over its first two
nights: three of the hall's zones for three and a half days, one sensor drifting from the
third day's noon."""


zone_outcome = outcome_of(ZONES, "zones")


def test_a_drifting_sensor_alerts_within_its_bound_and_notifies(
    zone_outcome: Outcome, rules: RuleSet
) -> None:
    detecting = {rule.id: rule for rule in rules.rules if DRIFT.fault.value in rule.detects}
    mine = [
        a for a in zone_outcome.alerts if a.subject == DRIFT.device_id and a.rule_id in detecting
    ]
    assert mine, "no alert for the drifting sensor by the next morning"
    first = min(mine, key=lambda a: a.fired_at)
    bound = detecting[first.rule_id].fires_within
    assert bound is not None
    assert DRIFT.start <= first.fired_at <= DRIFT.start + bound
    assert zone_outcome.delivered[first.alert_id or 0] == {"crew-mail", "crew-hook"}


def test_the_drifting_sensors_neighbours_raise_nothing(zone_outcome: Outcome) -> None:
    assert [
        (a.rule_id, a.subject, a.fired_at)
        for a in zone_outcome.alerts
        if a.subject != DRIFT.device_id
    ] == []
