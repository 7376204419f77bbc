"""The life of an alert, as pure functions of the alert, the time and who acts.

::

    (condition pending) -> firing -> acknowledged -> resolved -> closed
                              \\___________________/      |
                                  reopened  <-------------'  (repair not confirmed)

- An alert is created when its rule fires; ``started_at`` keeps when the condition began (the
  pending phase lives in the engine's rule state, so that restarts continue its timer).
- The engine resolves it when the rule's clear condition holds; a person may acknowledge it,
  and close it with a note. A resolved alert closes by itself after ``close_after``.
- A crew marking it *repaired* resolves it pending verification: when the rule's clear
  condition is next seen (the lamp draws current at dusk) the engine closes it as verified;
  if the rule fires again, or nothing confirms the repair within ``verify_for``, it is
  reopened.
- While firing and unacknowledged, a reminder goes out every ``repeat_every`` and, once,
  an escalation after ``escalate_after`` (both by severity); or, with escalation steps
  (``Policy.escalation``, from the routing file), one escalation per step, each its delay
  after the previous one.
- A silence or a maintenance window that matches, or an open root-cause alert on the
  device's cabinet, street or site, *mutes* it: it is recorded like any other, but no
  notification goes out while muted.

Every change returns :class:`Transition` records (time, from, to, actor, note) and the
:class:`Notice` kinds to send; the store writes both in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from alerts.catalogue import NoticeKind
from alerts.errors import AlertError
from protocol.payloads import Severity

ENGINE: Final = "engine"
"""The actor of automatic transitions."""


class Status(StrEnum):
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED = "closed"


OPEN_STATUSES: Final = frozenset({Status.FIRING, Status.ACKNOWLEDGED})


class LifecycleError(AlertError):
    """An action that does not apply to the alert as it stands (e.g. acknowledging a closed one)."""


@dataclass(frozen=True, slots=True)
class Policy:
    repeat_every: Mapping[Severity, timedelta | None] = field(
        default_factory=lambda: {
            Severity.CRITICAL: timedelta(hours=1),
            Severity.WARNING: timedelta(hours=4),
            Severity.INFO: None,
        }
    )
    escalate_after: Mapping[Severity, timedelta | None] = field(
        default_factory=lambda: {
            Severity.CRITICAL: timedelta(minutes=30),
            Severity.WARNING: timedelta(hours=8),
            Severity.INFO: None,
        }
    )
    verify_for: timedelta = timedelta(hours=24)
    close_after: timedelta = timedelta(hours=24)
    escalation: tuple[Mapping[Severity, timedelta], ...] = ()
    """Escalation steps: by severity, each step's delay after the previous notice of the
    chain (the first step's after the alert's first notice); a severity missing from a step
    stops there. Empty: one step, ``escalate_after``."""

    def escalation_steps(self) -> tuple[Mapping[Severity, timedelta | None], ...]:
        return self.escalation or (self.escalate_after,)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a device stands, for silences, maintenance and root causes."""

    device_id: str
    street_group: str | None = None
    cabinet: str | None = None
    building: str | None = None
    site_id: str | None = None

    def root_keys(self) -> tuple[str, ...]:
        """The root-cause subjects that stand above this device."""
        keys = []
        if self.cabinet:
            keys.append(f"cabinet:{self.cabinet}")
        if self.street_group:
            keys.append(f"street:{self.street_group}")
        if self.site_id:
            keys.append(f"site:{self.site_id}")
        return tuple(keys)


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes matching alerts between two times; ``maintenance`` windows are planned work."""

    silence_id: int
    starts_at: datetime
    ends_at: datetime
    maintenance: bool = False
    rule_ids: tuple[str, ...] = ()
    device_ids: tuple[str, ...] = ()
    street_groups: tuple[str, ...] = ()
    buildings: tuple[str, ...] = ()
    reason: str = ""

    def matches(self, rule_id: str, scope: Scope, at: datetime) -> bool:
        if not self.starts_at <= at < self.ends_at:
            return False
        if self.rule_ids and rule_id not in self.rule_ids:
            return False
        places = (
            (self.device_ids, scope.device_id),
            (self.street_groups, scope.street_group),
            (self.buildings, scope.building),
        )
        wanted = [(values, value) for values, value in places if values]
        return all(value in values for values, value in wanted)

    @property
    def label(self) -> str:
        return f"{'maintenance' if self.maintenance else 'silence'}:{self.silence_id}"


@dataclass(frozen=True, slots=True)
class Alert:
    rule_id: str
    subject: str
    """A device id, or a root-cause subject such as ``street:menzel`` or ``site:sefrou``."""
    severity: Severity
    status: Status
    started_at: datetime
    fired_at: datetime
    alert_id: int | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    cause: str | None = None
    muted_by: str | None = None
    """``silence:ID``, ``maintenance:ID`` or ``suppressed:ALERT_ID``; None when it notifies."""
    last_notified_at: datetime | None = None
    reminders: int = 0
    escalation_step: int = 0
    """How many escalation steps the alert has gone through in this episode."""
    escalated_at: datetime | None = None
    merged_into: int | None = None
    """The alert this one was closed into (a citizen's report confirmed by telemetry)."""
    repaired_at: datetime | None = None
    repaired_by: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    at: datetime
    from_status: Status | None
    to_status: Status
    actor: str
    note: str = ""


Outcome = tuple[Alert, list[Transition], list[NoticeKind]]


def mute_reason(
    rule_id: str,
    scope: Scope,
    at: datetime,
    silences: Iterable[Silence],
    root_causes: Mapping[str, int],
) -> str | None:
    """Why an alert of ``rule_id`` on this device should not notify now, if it should not.

    root_causes: open root-cause alerts, subject (``cabinet:X``...) -> alert id.
    """
    for key in scope.root_keys():
        if key in root_causes:
            return f"suppressed:{root_causes[key]}"
    for silence in silences:
        if silence.matches(rule_id, scope, at):
            return silence.label
    return None


def fire(
    rule_id: str,
    subject: str,
    severity: Severity,
    started_at: datetime,
    at: datetime,
    *,
    muted_by: str | None = None,
    cause: str | None = None,
    notified_at: datetime | None = None,
    hold: bool = False,
) -> Outcome:
    """A new alert, fired at ``at`` (the reading that completed the condition); notified at
    ``notified_at`` (default ``at``; later when the reading arrives late, from a spool).

    hold: notify only when :func:`release` says so (a missing device waits a moment, in
    case its street or the site link turns out to be the cause)."""
    alert = Alert(rule_id, subject, severity, Status.FIRING, started_at, at, cause=cause)
    alert = replace(alert, muted_by=muted_by)
    transitions = [Transition(at, None, Status.FIRING, ENGINE, _muted_note(muted_by))]
    if muted_by is not None or hold:
        return alert, transitions, []
    told = notified_at or at
    return replace(alert, last_notified_at=told), transitions, [NoticeKind.FIRING]


def held(alert: Alert) -> bool:
    """Fired, neither muted nor notified yet: waiting for :func:`release`."""
    return alert.status is Status.FIRING and alert.muted_by is None and not alert.last_notified_at


def release(alert: Alert, now: datetime) -> Outcome:
    """Notify a held alert (its wait is over and no root cause muted it meanwhile)."""
    if not held(alert):
        return alert, [], []
    return replace(alert, last_notified_at=now), [], [NoticeKind.FIRING]


def _muted_note(muted_by: str | None) -> str:
    return f"muted by {muted_by}" if muted_by else ""


def acknowledge(alert: Alert, at: datetime, actor: str, note: str = "") -> Outcome:
    if alert.status is not Status.FIRING:
        raise LifecycleError(f"alert {alert.alert_id} is {alert.status}: only a firing alert")
    changed = replace(alert, status=Status.ACKNOWLEDGED, acknowledged_at=at, acknowledged_by=actor)
    return changed, [Transition(at, alert.status, Status.ACKNOWLEDGED, actor, note)], []


def resolve(alert: Alert, at: datetime, note: str = "clear condition held") -> Outcome:
    """The engine saw the clear condition: resolved, or closed when a repair awaited it."""
    if alert.status is Status.CLOSED:
        return alert, [], []  # closed by a person meanwhile: it stays closed
    if alert.status not in OPEN_STATUSES and alert.repaired_at is None:
        return alert, [], []
    if alert.repaired_at is not None and alert.status is Status.RESOLVED:
        closed = replace(alert, status=Status.CLOSED, closed_at=at)
        return closed, [Transition(at, alert.status, Status.CLOSED, ENGINE, "repair verified")], []
    resolved = replace(alert, status=Status.RESOLVED, resolved_at=at)
    notices = [NoticeKind.RESOLVED] if alert.last_notified_at and not alert.muted_by else []
    return resolved, [Transition(at, alert.status, Status.RESOLVED, ENGINE, note)], notices


def mark_repaired(alert: Alert, at: datetime, actor: str, note: str = "") -> Outcome:
    """A crew says it fixed the fault: resolved until telemetry confirms it (or not)."""
    if alert.status not in OPEN_STATUSES:
        raise LifecycleError(f"alert {alert.alert_id} is {alert.status}: nothing to repair")
    changed = replace(
        alert, status=Status.RESOLVED, resolved_at=at, repaired_at=at, repaired_by=actor
    )
    text = f"repaired, awaiting verification{': ' + note if note else ''}"
    return changed, [Transition(at, alert.status, Status.RESOLVED, actor, text)], []


def close(alert: Alert, at: datetime, actor: str, note: str = "") -> Outcome:
    if alert.status is Status.CLOSED:
        raise LifecycleError(f"alert {alert.alert_id} is already closed")
    changed = replace(alert, status=Status.CLOSED, closed_at=at)
    return changed, [Transition(at, alert.status, Status.CLOSED, actor, note)], []


def merge(alert: Alert, into: Alert, at: datetime) -> Outcome:
    """Close ``alert`` into ``into``, which says the same about the same device: a citizen's
    report that telemetry now confirms. Its reports follow ``into`` from then on."""
    if alert.status is Status.CLOSED:
        raise LifecycleError(f"alert {alert.alert_id} is already closed")
    note = f"merged into alert {into.alert_id} ({into.rule_id}): telemetry confirms it"
    closed = replace(alert, status=Status.CLOSED, closed_at=at, merged_into=into.alert_id)
    return closed, [Transition(at, alert.status, Status.CLOSED, ENGINE, note)], []


def refire(alert: Alert, at: datetime) -> Outcome:
    """The rule fired again on a subject whose alert awaits verification: reopen it."""
    if alert.status is not Status.RESOLVED or alert.repaired_at is None:
        raise LifecycleError(f"alert {alert.alert_id} is not awaiting verification")
    return _reopen(alert, at, "the fault came back after the repair")


def _reopen(alert: Alert, at: datetime, note: str) -> Outcome:
    reopened = replace(
        alert,
        status=Status.FIRING,
        resolved_at=None,
        repaired_at=None,
        repaired_by=None,
        acknowledged_at=None,
        acknowledged_by=None,
        escalation_step=0,
        escalated_at=None,
        reminders=0,
        last_notified_at=at,
    )
    transition = Transition(at, alert.status, Status.FIRING, ENGINE, f"reopened: {note}")
    return reopened, [transition], [NoticeKind.REOPENED]


def tick(alert: Alert, now: datetime, policy: Policy, *, still_failing: bool) -> Outcome:
    """What time alone does to an alert: reminders, escalation, verification, closing.

    still_failing: whether the rule's condition is still firing on the subject (the engine's
    rule state), to judge a repair at the end of its verification window.
    """
    if alert.status is Status.RESOLVED and alert.repaired_at is not None:
        if now - alert.repaired_at >= policy.verify_for and still_failing:
            return _reopen(alert, now, f"not confirmed within {policy.verify_for}")
        if now - alert.repaired_at >= policy.verify_for:
            closed = replace(alert, status=Status.CLOSED, closed_at=now)
            note = "closed: no sign of the fault since the repair"
            return closed, [Transition(now, alert.status, Status.CLOSED, ENGINE, note)], []
        return alert, [], []
    if alert.status is Status.RESOLVED and alert.resolved_at is not None:
        if now - alert.resolved_at >= policy.close_after:
            closed = replace(alert, status=Status.CLOSED, closed_at=now)
            note = f"closed {policy.close_after} after resolution"
            return closed, [Transition(now, alert.status, Status.CLOSED, ENGINE, note)], []
        return alert, [], []
    if alert.status is not Status.FIRING or alert.muted_by is not None:
        return alert, [], []
    steps = policy.escalation_steps()
    step = alert.escalation_step
    escalate = steps[step].get(alert.severity) if step < len(steps) else None
    # The first step counts from the first notice of this episode (firing, reopened or
    # unmuted), the others from the step before.
    told = alert.last_notified_at if alert.reminders == 0 and alert.last_notified_at else None
    since = alert.escalated_at or told or alert.fired_at
    if escalate is not None and now - since >= escalate:
        escalated = replace(alert, escalation_step=step + 1, escalated_at=now, last_notified_at=now)
        return escalated, [], [NoticeKind.ESCALATION]
    repeat = policy.repeat_every.get(alert.severity)
    last = alert.last_notified_at or alert.fired_at
    if repeat is not None and now - last >= repeat:
        changed = replace(alert, reminders=alert.reminders + 1, last_notified_at=now)
        return changed, [], [NoticeKind.REMINDER]
    return alert, [], []


def unmute(alert: Alert, now: datetime) -> Outcome:
    """A mute ended (silence expired, root cause resolved) while the alert still fires."""
    if alert.muted_by is None or alert.status is not Status.FIRING:
        return alert, [], []
    changed = replace(
        alert,
        muted_by=None,
        last_notified_at=now,
        reminders=0,
        escalation_step=0,
        escalated_at=None,
    )
    note = f"no longer muted by {alert.muted_by}"
    return changed, [Transition(now, alert.status, alert.status, ENGINE, note)], [NoticeKind.FIRING]


# ----------------------------------------------------------------------------- root causes

ROOT_CAUSE_SHARE: Final = 0.5
"""A cabinet, street or site is down when at least this share of its devices is missing..."""
ROOT_CAUSE_MIN_DEVICES: Final = 3
"""...and at least this many."""
DEFAULT_GROUP_WAIT: Final = timedelta(seconds=30)
"""How long a missing device's alert waits before it is told, in case its cabinet, street or
the site turns out to be the cause (then it is muted instead)."""


def failing_groups(
    missing: Iterable[str], scopes: Mapping[str, Scope], group_sizes: Mapping[str, int]
) -> dict[str, list[str]]:
    """Root-cause subjects (``cabinet:X``, ``street:Y``, ``site:Z``) that are down, with their
    missing devices; a failure wholly inside a wider failing group is left out (the site link
    explains its streets' and cabinets' failures)."""
    members: dict[str, list[str]] = {}
    for device_id in missing:
        scope = scopes.get(device_id)
        if scope is None:
            continue
        for key in scope.root_keys():
            members.setdefault(key, []).append(device_id)
    down = {
        key: sorted(devices)
        for key, devices in members.items()
        if len(devices) >= ROOT_CAUSE_MIN_DEVICES
        and len(devices) >= ROOT_CAUSE_SHARE * group_sizes.get(key, len(devices))
    }
    # A failing site explains its failing streets and cabinets: keep the widest failure.
    widest: dict[str, list[str]] = {}
    for key in sorted(down, key=_breadth, reverse=True):
        covered = any(set(down[key]) <= set(devices) for devices in widest.values())
        if not covered:
            widest[key] = down[key]
    return widest


def _breadth(key: str) -> int:
    return {"site": 3, "street": 2, "cabinet": 1}[key.split(":", 1)[0]]


def group_sizes(scopes: Sequence[Scope]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for scope in scopes:
        for key in scope.root_keys():
            sizes[key] = sizes.get(key, 0) + 1
    return sizes
