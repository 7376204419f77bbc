"""What the rules engine tells of an alert: its retained MQTT message and the notice sent."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from alerts.catalogue import GROUP_OFFLINE, ROOT_CAUSE_KINDS, NoticeKind
from alerts.lifecycle import Alert, Scope, Status
from alerts.store import QueuedNotice
from protocol.payloads import Severity
from protocol.topics import DeviceClass
from rules.announce import alert_message, notice_for, site_of
from rules.context import DevicePlace
from rules.evaluator import FleetDevice
from rules.model import parse_rules

T0 = datetime(2026, 12, 6, 18, 30, tzinfo=UTC)
LIGHT = FleetDevice(
    DevicePlace("sl-menzel-012", DeviceClass.STREETLIGHT, 33.83, -4.84, "Africa/Casablanca"),
    Scope("sl-menzel-012", street_group="menzel", site_id="sefrou"),
    name="Menzel #12",
    place_name="Menzel",
)
FLEET = {LIGHT.place.device_id: LIGHT}
RULES = parse_rules(
    """
rules:
  - id: lamp-out
    class: streetlight
    title: {en: Lamp out at night, fr: Lampe éteinte la nuit}
    when: lamp_power < 1
    severity: critical
"""
)
LAMP_OUT = Alert("lamp-out", "sl-menzel-012", Severity.CRITICAL, Status.FIRING, T0, T0, 42)


def test_an_open_alert_is_published_retained_under_its_site_rule_and_subject() -> None:
    topic, payload = alert_message(LAMP_OUT, site_of(LAMP_OUT.subject, FLEET))
    assert topic == "alerts/sefrou/lamp-out/sl-menzel-012"
    body = json.loads(payload)
    assert (body["alert_id"], body["status"], body["severity"]) == (42, "firing", "critical")


def test_a_closed_alert_clears_its_retained_message() -> None:
    closed = replace(LAMP_OUT, status=Status.CLOSED, closed_at=T0 + timedelta(hours=1))
    assert alert_message(closed, "sefrou")[1] == b""


def test_a_root_cause_belongs_to_the_site_of_the_devices_behind_it() -> None:
    assert site_of("street:menzel", FLEET) == "sefrou"
    assert site_of("street:nowhere", FLEET) == "unknown"
    topic, _ = alert_message(replace(LAMP_OUT, subject="street:menzel"), "sefrou")
    assert topic == "alerts/sefrou/lamp-out/street-menzel"


def test_a_notice_takes_the_rules_titles_and_the_devices_place() -> None:
    queued = QueuedNotice(7, 42, NoticeKind.FIRING, T0)
    notice = notice_for(LAMP_OUT, queued, RULES, LIGHT, "https://sefrou.test/alerts/42")
    assert notice.title("fr") == "Lampe éteinte la nuit"
    assert (notice.device_name, notice.place, notice.zone) == ("Menzel #12", "Menzel", "menzel")
    assert (notice.since, notice.notification_id) == (T0, 7)


def test_a_resolved_notice_says_since_when_it_is_back() -> None:
    back = T0 + timedelta(hours=2)
    resolved = replace(LAMP_OUT, status=Status.RESOLVED, resolved_at=back)
    queued = QueuedNotice(8, 42, NoticeKind.RESOLVED, back)
    assert notice_for(resolved, queued, RULES, LIGHT, "https://sefrou.test/a/42").since == back


def test_a_root_cause_notice_takes_the_built_in_kinds_titles() -> None:
    cause = replace(LAMP_OUT, rule_id=GROUP_OFFLINE, subject="street:menzel")
    queued = QueuedNotice(9, 42, NoticeKind.FIRING, T0)
    notice = notice_for(cause, queued, RULES, None, "https://sefrou.test/a/42")
    assert notice.title("en") == ROOT_CAUSE_KINDS[GROUP_OFFLINE].titles["en"]
    assert notice.place == "street:menzel"
