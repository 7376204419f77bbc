"""Commands to devices and what comes of them: the pure part of the control services.

Every input, the time included, is an argument; :mod:`control.hvac_service` (HVAC) and
:mod:`control.lighting_service` (streetlight schedules) do the I/O. A command is any
:data:`protocol.commands.Params` under its action name (``set_hvac``, ``set_schedule``...).
Three questions are answered here:

- *When does a device get a new command?* (:func:`due`) The first time it is seen, when what
  it should hold changes (a zone's heating water only by at least ``supply_tolerance_k``),
  when a command with a hold has run half of it (so it never lapses while the platform runs;
  a command without one, such as a schedule, is kept until replaced and never renewed), and
  again after a command that was not applied.
- *What if nobody answers?* (:func:`retry`) The same command (same id, so an agent that did
  apply it answers again without applying it twice) is sent again with a fresh expiry when no
  acknowledgement came within ``ack_timeout_s``, at most ``max_attempts`` times in all; then
  it is marked ``unanswered``. :class:`CommandBook` keeps a service's commands in memory and
  says which alerts each outcome raises or resolves.
- *Does the zone do what it was told?* (:func:`follow`, building zones only) Measured against
  the setting in force (applied and within its hold): heating off while the zone is well
  below its heating setpoint, or on while well above it (frost protection counts as the
  setpoint of a zone not allowed to heat), and the same for cooling, for ``after_s`` in a row.

Each answer that deserves an alert comes back as a :class:`Finding`: raise or resolve the
alert of a rule (:data:`alerts.catalogue.CONTROL_KINDS`) on a device.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import msgspec

from alerts.catalogue import COMMAND_REFUSED, COMMAND_UNANSWERED, HVAC_NOT_FOLLOWING
from protocol.commands import ACTIONS, FROST_PROTECTION_C, Params, SetBrightness, SetHvac


class Outcome(StrEnum):
    """What came of a command: an agent's answer, or ``unanswered`` when none came."""

    APPLIED = "applied"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"
    UNANSWERED = "unanswered"


class Reason(StrEnum):
    """Why a device gets a new command."""

    FIRST = "first"
    CHANGED = "changed"
    REFRESH = "refresh"
    AGAIN = "again"
    """The last command was not applied."""


class Retry(StrEnum):
    WAIT = "wait"
    RESEND = "resend"
    GIVE_UP = "give-up"


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """Timing of commands; durations in seconds of the devices' time (see ``scale`` below)."""

    expiry_s: float = 120.0
    """A command not received by then is refused by the agent as expired."""
    ack_timeout_s: float = 60.0
    """No acknowledgement within this: send the command again."""
    max_attempts: int = 3
    """Sends of one command at most (the first included); then it is ``unanswered``."""
    refresh_share: float = 0.5
    """A held command is renewed once it has run this share of its hold."""
    expired_alert_after: int = 3
    """This many commands of a device expiring in a row raise a ``command-refused`` alert."""
    supply_tolerance_k: float = 2.0
    """A change of heating water temperature smaller than this is no reason for a new
    command (it follows the outdoor temperature, which moves all the time) [K]."""
    again_after_s: float = 900.0
    """After a command without a hold (a schedule, kept until replaced) was rejected, failed
    or went unanswered, the device is commanded again this long after (device time) [s];
    with a hold, after ``refresh_share`` of it."""

    def __post_init__(self) -> None:
        if self.expiry_s <= 0 or self.ack_timeout_s <= 0 or self.again_after_s <= 0:
            raise ValueError("expiry_s, ack_timeout_s and again_after_s must be positive")
        if self.max_attempts < 1 or self.expired_alert_after < 1:
            raise ValueError("max_attempts and expired_alert_after must be at least 1")
        if not 0 < self.refresh_share < 1:
            raise ValueError("refresh_share must lie between 0 and 1 (a share of the hold)")
        if self.supply_tolerance_k < 0:
            raise ValueError("supply_tolerance_k must not be negative")


ACTION_OF: Final[dict[type, str]] = {
    params_type: action for actions in ACTIONS.values() for action, params_type in actions.items()
}
"""The action name of each kind of command parameters (they are unique across classes)."""
PARAMS_OF: Final[dict[str, type[Params]]] = {action: kind for kind, action in ACTION_OF.items()}


def action_of(params: Params) -> str:
    """The action name that carries ``params`` (``set_hvac``, ``set_schedule``...)."""
    return ACTION_OF[type(params)]


def params_for(action: str, raw: object) -> Params:
    """The parameters of ``action`` from their JSON form (a ``commands.params`` value)."""
    kind = PARAMS_OF.get(action)
    if kind is None:
        raise ValueError(f"unknown action {action!r}")
    return msgspec.convert(raw, kind)


def hold_of(params: Params) -> float | None:
    """How long a device keeps what a command sets [s]; None: until replaced."""
    if isinstance(params, SetBrightness) and params.level is None:
        return None  # new ends of the photocell curve, not an override
    hold = getattr(params, "hold_s", None)
    return None if hold is None else float(hold)


@dataclass(frozen=True, slots=True)
class Sent:
    """One command to one device, as the platform tracks it (a row of ``commands``)."""

    id: str
    device_id: str
    action: str
    params: Params
    issued_at: datetime
    expires_at: datetime
    last_sent_at: datetime
    attempts: int = 1
    outcome: Outcome | None = None
    outcome_at: datetime | None = None
    """The agent's time of its answer; ours when we gave up."""
    reason: str = ""
    """What came of it: the agent's reason, or why we gave up."""
    superseded_by: str | None = None
    """A newer command to the device, sent before this one was answered: no more resends."""
    why: str = ""
    """Why it was sent (the ``reason`` column of ``commands``)."""

    def in_force(self, at: datetime) -> bool:
        """Applied, and its hold (if it has one) not run out at ``at``."""
        if self.outcome is not Outcome.APPLIED or self.outcome_at is None:
            return False
        hold = hold_of(self.params)
        if hold is None:
            return self.outcome_at <= at
        return self.outcome_at <= at < self.outcome_at + timedelta(seconds=hold)


def issue(
    command_id: str,
    device_id: str,
    params: Params,
    now: datetime,
    policy: CommandPolicy,
    *,
    scale: float = 1.0,
    action: str | None = None,
    why: str = "",
) -> Sent:
    """A new command, sent now; ``scale``: device seconds per second of ours (accelerated
    simulations; 1 in real time) stretches the expiry. ``action``: by default the one that
    carries ``params``."""
    expires = now + timedelta(seconds=policy.expiry_s * scale)
    name = action if action is not None else action_of(params)
    return Sent(command_id, device_id, name, params, now, expires, now, why=why)


def due(
    current: Sent | None, wanted: Params, now: datetime, policy: CommandPolicy
) -> Reason | None:
    """Whether the device needs a new command (and why) given its latest one."""
    if current is None:
        return Reason.FIRST
    if not same_params(current.params, wanted, policy.supply_tolerance_k):
        return Reason.CHANGED
    if current.outcome is None:
        return None  # awaiting its answer: resends are :func:`retry`'s business
    if current.outcome is Outcome.EXPIRED:
        return Reason.AGAIN  # it came late: a fresh one at once
    hold = hold_of(current.params)
    if hold is None and current.outcome is Outcome.APPLIED:
        return None  # kept until replaced
    since = current.outcome_at or current.last_sent_at
    wait_s = policy.again_after_s if hold is None else hold * policy.refresh_share
    if now - since < timedelta(seconds=wait_s):
        return None
    return Reason.REFRESH if current.outcome is Outcome.APPLIED else Reason.AGAIN


def same_params(held: Params, wanted: Params, supply_tolerance_k: float = 0.0) -> bool:
    """Whether ``wanted`` says what ``held`` says (for zones: heating water within the
    tolerance)."""
    if isinstance(held, SetHvac) and isinstance(wanted, SetHvac):
        return same_setting(held, wanted, supply_tolerance_k)
    return held == wanted


def same_setting(held: SetHvac, wanted: SetHvac, supply_tolerance_k: float = 0.0) -> bool:
    """Whether ``wanted`` says what ``held`` says, heating water within the tolerance."""
    if msgspec.structs.replace(held, supply_temperature=wanted.supply_temperature) != wanted:
        return False
    if held.supply_temperature is None or wanted.supply_temperature is None:
        return held.supply_temperature == wanted.supply_temperature
    return abs(held.supply_temperature - wanted.supply_temperature) < supply_tolerance_k


def same_thermostat(one: SetHvac, other: SetHvac) -> bool:
    """Whether two settings ask the same of the zone's thermostat (its heating water aside)."""
    return (one.mode, one.heating_setpoint, one.cooling_setpoint, one.deadband_k) == (
        other.mode,
        other.heating_setpoint,
        other.cooling_setpoint,
        other.deadband_k,
    )


def retry(
    sent: Sent, now: datetime, policy: CommandPolicy, scale: float = 1.0
) -> tuple[Sent, Retry]:
    """Resend a command nobody acknowledged in time (same id, fresh expiry), or give it up."""
    if sent.outcome is not None:
        return sent, Retry.WAIT
    if now - sent.last_sent_at < timedelta(seconds=policy.ack_timeout_s * scale):
        return sent, Retry.WAIT
    if sent.superseded_by is None and sent.attempts < policy.max_attempts:
        resent = replace(
            sent,
            attempts=sent.attempts + 1,
            last_sent_at=now,
            expires_at=now + timedelta(seconds=policy.expiry_s * scale),
        )
        return resent, Retry.RESEND
    if sent.superseded_by is not None:
        why = f"no answer; superseded by {sent.superseded_by}"
    else:
        why = f"no answer to {sent.attempts} sends"
    return replace(sent, outcome=Outcome.UNANSWERED, outcome_at=now, reason=why), Retry.GIVE_UP


def answered(sent: Sent, outcome: Outcome, at: datetime, reason: str = "") -> Sent:
    """The command after its acknowledgement. A repeated answer (to a resend) changes
    nothing; an answer after we gave up replaces ``unanswered``."""
    if sent.outcome is not None and sent.outcome is not Outcome.UNANSWERED:
        return sent
    if sent.outcome is Outcome.UNANSWERED:
        reason = f"answered late{': ' + reason if reason else ''}"
    return replace(sent, outcome=outcome, outcome_at=at, reason=reason)


@dataclass(frozen=True, slots=True)
class Finding:
    """Raise (``fire``) or resolve the alert of ``rule_id`` on ``subject``."""

    rule_id: str
    subject: str
    fire: bool
    at: datetime
    started_at: datetime
    cause: str = ""


def outcome_findings(sent: Sent, expired_in_a_row: int, policy: CommandPolicy) -> list[Finding]:
    """The alerts a command's outcome raises or resolves.

    expired_in_a_row: the device's commands that expired in a row, this one included.
    """
    at = sent.outcome_at or sent.last_sent_at
    device = sent.device_id
    if sent.outcome is Outcome.APPLIED:
        return [
            Finding(COMMAND_UNANSWERED, device, False, at, at),
            Finding(COMMAND_REFUSED, device, False, at, at),
        ]
    if sent.superseded_by is not None:
        return []  # the newer command speaks for the device
    if sent.outcome is Outcome.UNANSWERED:
        cause = f"command {sent.id}: {sent.reason}"
        return [Finding(COMMAND_UNANSWERED, device, True, at, sent.issued_at, cause)]
    if sent.outcome in (Outcome.REJECTED, Outcome.FAILED):
        cause = f"command {sent.id} {sent.outcome}: {sent.reason}"
        return [Finding(COMMAND_REFUSED, device, True, at, sent.issued_at, cause)]
    if sent.outcome is Outcome.EXPIRED and expired_in_a_row >= policy.expired_alert_after:
        cause = (
            f"{expired_in_a_row} commands in a row expired before the device received them "
            f"(last {sent.id}): slow delivery or a wrong clock"
        )
        return [Finding(COMMAND_REFUSED, device, True, at, sent.issued_at, cause)]
    return []


# ----------------------------------------------------------------------------- book


class CommandBook:
    """A service's commands in memory: each device's latest and latest applied command, and
    those awaiting an answer, by id.

    The service records each change in ``commands`` first (so a failed write leaves the book
    as it was, and the next step tries again), then tells the book; :meth:`settle` says which
    alerts an outcome raises or resolves.
    """

    def __init__(self, policy: CommandPolicy) -> None:
        self.policy = policy
        self.latest: dict[str, Sent] = {}
        self.applied: dict[str, Sent] = {}
        """The latest command each device applied."""
        self.awaiting: dict[str, Sent] = {}
        """Commands without an answer yet, by id."""
        self._expired_in_a_row: dict[str, int] = {}

    def restore(
        self, latest: Iterable[Sent], applied: Iterable[Sent], awaiting: Iterable[Sent]
    ) -> None:
        """The commands of a previous run (each device's latest, latest applied, and those
        still awaiting an answer; an older one of those is superseded by the latest), for
        devices the book does not hold yet: at the start, or taken up while it runs."""
        self.latest.update((sent.device_id, sent) for sent in latest)
        self.applied.update((sent.device_id, sent) for sent in applied)
        for sent in awaiting:
            newest = self.latest.get(sent.device_id, sent)
            self.awaiting[sent.id] = (
                sent if newest.id == sent.id else replace(sent, superseded_by=newest.id)
            )

    def forget(self, devices: Iterable[str]) -> list[Sent]:
        """Drop what the book holds of ``devices`` (decommissioned: no more resends); the
        commands of theirs that were still awaiting an answer."""
        gone = set(devices)
        dropped = [sent for sent in self.awaiting.values() if sent.device_id in gone]
        for sent in dropped:
            del self.awaiting[sent.id]
        for device in gone:
            self.latest.pop(device, None)
            self.applied.pop(device, None)
            self._expired_in_a_row.pop(device, None)
        return dropped

    def add(self, sent: Sent) -> None:
        """A new command: the device's latest; an older one awaiting its answer is superseded
        (no more resends of it)."""
        previous = self.latest.get(sent.device_id)
        if previous is not None and previous.id in self.awaiting:
            self.awaiting[previous.id] = replace(self.awaiting[previous.id], superseded_by=sent.id)
        self.latest[sent.device_id] = sent
        self.awaiting[sent.id] = sent

    def find(self, command_id: str) -> Sent | None:
        """A command of this run by id (the table has the older ones)."""
        found = self.awaiting.get(command_id)
        if found is not None:
            return found
        for sent in (*self.latest.values(), *self.applied.values()):
            if sent.id == command_id:
                return sent
        return None

    def retries(self, now: datetime, scale: float = 1.0) -> list[tuple[Sent, Retry]]:
        """The commands to send again and those to give up now (:func:`retry`); the book is
        unchanged until told with :meth:`resent` and :meth:`settle`."""
        found: list[tuple[Sent, Retry]] = []
        for sent in self.awaiting.values():
            updated, action = retry(sent, now, self.policy, scale=scale)
            if action is not Retry.WAIT:
                found.append((updated, action))
        return found

    def resent(self, sent: Sent) -> None:
        self.awaiting[sent.id] = sent
        if self.latest.get(sent.device_id, sent).id == sent.id:
            self.latest[sent.device_id] = sent

    def settle(self, sent: Sent) -> list[Finding]:
        """Take a command's outcome in; the alerts it raises or resolves."""
        device = sent.device_id
        self.awaiting.pop(sent.id, None)
        last = self.latest.get(device)
        if last is not None and last.id == sent.id:
            self.latest[device] = sent
        if sent.outcome is Outcome.APPLIED:
            applied = self.applied.get(device)
            if applied is None or applied.issued_at <= sent.issued_at:
                self.applied[device] = sent
        if sent.superseded_by is not None and sent.outcome is not Outcome.APPLIED:
            return []
        run = self._expired_in_a_row.get(device, 0)
        run = run + 1 if sent.outcome is Outcome.EXPIRED else 0
        self._expired_in_a_row[device] = run
        return outcome_findings(sent, run, self.policy)


# ----------------------------------------------------------------------------- following


@dataclass(frozen=True, slots=True)
class FollowPolicy:
    margin_k: float = 1.0
    """How far beyond its thermostat's deadband a zone must be for its plant's state to be
    wrong [K]."""
    after_s: float = 900.0
    """How long the plant must stay wrong before the alert, at least the setting's minimum on
    and off times [s]."""


@dataclass(frozen=True, slots=True)
class Following:
    """What :func:`follow` remembers of one zone."""

    setting: SetHvac | None = None
    """The setting the running mismatch is judged against."""
    since: datetime | None = None
    """When the running mismatch began."""
    firing: bool = False


def deviation(
    setting: SetHvac,
    temperature: float,
    heating_active: bool,
    cooling_active: bool,
    margin_k: float,
) -> str | None:
    """What the zone's plant does against ``setting``, if it is plainly wrong; else None.

    margin_k counts from the edge of the thermostat's deadband, where the plant may rightly
    be in either state."""
    heats, cools = setting.mode.heats, setting.mode.cools
    heating_point = (
        max(setting.heating_setpoint, FROST_PROTECTION_C) if heats else FROST_PROTECTION_C
    )
    margin_k = margin_k + setting.deadband_k
    mode = f"mode {setting.mode}"
    if not heating_active and temperature < heating_point - margin_k:
        return (
            f"heating off at {temperature:.1f} C, {heating_point - temperature:.1f} K below "
            f"its heating setpoint {heating_point:g} C ({mode})"
        )
    if heating_active and temperature > heating_point + margin_k:
        return (
            f"heating on at {temperature:.1f} C, {temperature - heating_point:.1f} K above "
            f"its heating setpoint {heating_point:g} C ({mode})"
        )
    cooling_point = setting.cooling_setpoint
    if cools and not cooling_active and temperature > cooling_point + margin_k:
        return (
            f"cooling off at {temperature:.1f} C, {temperature - cooling_point:.1f} K above "
            f"its cooling setpoint {cooling_point:g} C ({mode})"
        )
    if cooling_active and (not cools or temperature < cooling_point - margin_k):
        return f"cooling on at {temperature:.1f} C ({mode}, cooling setpoint {cooling_point:g} C)"
    return None


@dataclass(frozen=True, slots=True)
class ZoneReading:
    device_id: str
    at: datetime
    """When it was taken (the device's time)."""
    temperature: float
    heating_active: bool
    cooling_active: bool


def follow(
    state: Following, in_force: SetHvac | None, reading: ZoneReading, policy: FollowPolicy
) -> tuple[Following, Finding | None]:
    """Judge one reading of a zone against the setting it holds.

    in_force: the setting the zone holds (None when none does: nothing is judged). A change
    of thermostat setting starts the count again; a reading without a mismatch resolves the
    alert.
    """
    at, device_id = reading.at, reading.device_id
    if in_force is None or math.isnan(reading.temperature):
        return replace(state, setting=None, since=None), None
    problem = deviation(
        in_force,
        reading.temperature,
        reading.heating_active,
        reading.cooling_active,
        policy.margin_k,
    )
    if problem is None:
        finding = Finding(HVAC_NOT_FOLLOWING, device_id, False, at, at) if state.firing else None
        return Following(in_force), finding
    same = state.setting is not None and same_thermostat(state.setting, in_force)
    since = state.since if state.since is not None and same else at
    lasted = (at - since).total_seconds()
    patience = max(policy.after_s, in_force.min_on_s, in_force.min_off_s)
    if lasted >= patience and not state.firing:
        cause = f"{problem}, for {lasted / 60:.0f} min"
        finding = Finding(HVAC_NOT_FOLLOWING, device_id, True, at, since, cause)
        return Following(in_force, since, True), finding
    return Following(in_force, since, state.firing), None


# ----------------------------------------------------------------------------- pace


class DevicePace:
    """How many seconds of device time pass per second of ours: 1 in real time, N in a
    simulation run N times faster (the network's budgets are stretched by it).

    Measured over the last ``window_s`` of our time from the devices' latest sample times,
    which advance in steps of a sample interval (``granularity_s``): that step is taken off
    the advance, so the estimate errs low (never below 1), and none is given before
    ``min_span_s`` of our time has been watched.
    """

    def __init__(
        self, window_s: float = 120.0, min_span_s: float = 1.0, granularity_s: float = 60.0
    ) -> None:
        self.window_s = window_s
        self.min_span_s = min_span_s
        self.granularity_s = granularity_s
        self._seen: deque[tuple[float, float]] = deque()
        self._first: float | None = None

    def observe(self, ours_s: float, device_s: float) -> None:
        if self._first is None:
            self._first = ours_s
        if self._seen and device_s <= self._seen[-1][1]:
            return
        self._seen.append((ours_s, device_s))
        while len(self._seen) > 2 and ours_s - self._seen[1][0] >= self.window_s:
            self._seen.popleft()

    def scale(self, ours_s: float) -> float | None:
        """Device seconds per second of ours; None until measured."""
        if self._first is None or ours_s - self._first < self.min_span_s or not self._seen:
            return None
        first_ours, first_device = self._seen[0]
        _, last_device = self._seen[-1]
        span = max(ours_s - first_ours, self.min_span_s)
        advance = max(0.0, last_device - first_device - self.granularity_s)
        return max(1.0, advance / span)
