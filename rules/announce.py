"""What the rules engine tells the world of an alert, as pure functions: its retained MQTT
message (``alerts/{site}/{rule}/{subject}``) and the notice people are sent; and the recorder
of notification attempts."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Final

import psycopg

from alerts import store
from alerts.catalogue import BUILT_IN_KINDS, NoticeKind
from alerts.delivery import Delivery
from alerts.lifecycle import Alert, Status
from alerts.wording import AlertNotice
from rules.evaluator import FleetDevice
from rules.model import RuleSet

ALERT_TOPIC_ROOT: Final = "alerts"
"""Alerts are published on ``alerts/{site}/{rule}/{subject}`` (QoS 1, retained while open)."""


def alert_message(alert: Alert, site: str) -> tuple[str, bytes]:
    """The retained message of ``alert``: its topic and JSON body (empty once closed, which
    clears the retained message)."""
    topic = f"{ALERT_TOPIC_ROOT}/{site}/{alert.rule_id}/{alert.subject.replace(':', '-')}"
    body = {
        "alert_id": alert.alert_id,
        "rule_id": alert.rule_id,
        "subject": alert.subject,
        "severity": alert.severity.value,
        "status": alert.status.value,
        "fired_at": alert.fired_at.isoformat(),
        "cause": alert.cause,
        "muted_by": alert.muted_by,
    }
    return topic, b"" if alert.status is Status.CLOSED else json.dumps(body).encode()


def site_of(subject: str, fleet: Mapping[str, FleetDevice]) -> str:
    """The site of a device, or of the devices behind a root-cause subject."""
    device = fleet.get(subject)
    if device is not None:
        return device.scope.site_id or "unknown"
    for member in fleet.values():
        if subject in member.scope.root_keys():
            return member.scope.site_id or "unknown"
    return "unknown"


def notice_for(
    alert: Alert,
    queued: store.QueuedNotice,
    rules: RuleSet,
    device: FleetDevice | None,
    link: str,
) -> AlertNotice:
    """The notice to send for ``queued``: the rule's titles (or the built-in kind's), the
    device and its place, since when."""
    titles = _titles(rules, alert.rule_id)
    resolved = queued.kind is NoticeKind.RESOLVED and alert.resolved_at is not None
    return AlertNotice(
        alert_id=queued.alert_id,
        rule_id=alert.rule_id,
        severity=alert.severity,
        kind=queued.kind,
        titles=titles,
        device_id=alert.subject,
        device_name=device.name if device is not None else alert.subject,
        place=device.place_name if device is not None else alert.subject,
        zone=_zone(device),
        latitude=device.place.latitude if device is not None else None,
        longitude=device.place.longitude if device is not None else None,
        since=alert.resolved_at if resolved and alert.resolved_at else alert.started_at,
        timezone=device.place.timezone if device is not None else "UTC",
        link=link,
        cause=alert.cause or "",
        notification_id=queued.notification_id,
        escalation_step=queued.escalation_step,
        queued_at=queued.queued_at,
    )


def _titles(rules: RuleSet, rule_id: str) -> dict[str, str]:
    try:
        return dict(rules.by_id(rule_id).titles)
    except KeyError:
        kind = BUILT_IN_KINDS.get(rule_id)
        return dict(kind.titles) if kind is not None else {"en": rule_id}


def _zone(device: FleetDevice | None) -> str | None:
    if device is None:
        return None
    return device.scope.street_group or device.scope.building


class DeliveryRecorder:
    """Records every delivery attempt, and marks the notification sent or given up."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def record(self, delivery: Delivery) -> None:
        with self._lock:
            store.record_attempt(self._connection, delivery.notification_id, delivery)
            if delivery.notification_id is not None and delivery.final:
                store.finish_notification(
                    self._connection,
                    delivery.notification_id,
                    delivery.at,
                    sent=delivery.notice_sent,
                )
