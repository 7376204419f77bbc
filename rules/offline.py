"""Missing data: when a device counts as gone, and why.

A device is *missing* from the earlier of
- its last will (the broker's ``offline``/``connection_lost`` state) or its own goodbye with a
  reason other than ``shutdown``, when no birth follows within the rule's ``grace`` (a client
  taking the device's session over for a moment, or a reconnection, is not an outage; the
  alert fires once the grace has passed, dated from the will), and
- ``silence`` seconds after its last reading (the rule's ``missing.after`` expected intervals),
until it is heard again: a gap that began with silence ends at its next reading or birth; one
that began with its will ends at its next birth (a device reconnects with a birth before it
replays its spool, and stored history keeps when readings were taken, not when they
arrived, so a replay must not end the gap early). A planned ``shutdown`` goodbye is not a
fault: it starts no
missing interval (silence after it still does).

Why it went, as far as the platform can tell:

- ``battery``: it said so (goodbye with ``power_low`` or ``battery_depleted``), or its last
  reading showed the battery flat (state of charge at the low-voltage disconnect, or the
  controller's disconnect bit);
- ``power``: a sign's last reading showed its supply failing; or it came back with a new
  ``boot_id`` (it rebooted: it had lost power);
- ``communication``: it came back with the same ``boot_id`` (it ran all along: the link
  failed), or readings taken during the gap arrived afterwards from its spool;
- ``unknown``: still missing and nothing above applies yet.

:class:`Presence` follows one device live (the streaming engine feeds it readings, states and
clock ticks); :func:`missing_intervals` computes the same from stored history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from protocol.solar import LOW_VOLTAGE_DISCONNECT_SOC
from protocol.topics import DeviceClass

BATTERY_REASONS: Final = frozenset({"power_low", "battery_depleted"})
PLANNED_REASONS: Final = frozenset({"shutdown"})


class Cause(StrEnum):
    UNKNOWN = "unknown"
    COMMUNICATION = "communication"
    POWER = "power"
    BATTERY = "battery"


def cause_from_last_values(device_class: DeviceClass, values: Mapping[str, float]) -> Cause:
    """What a device's last reading says about why it may have gone."""
    if device_class is DeviceClass.STREETLIGHT:
        soc = values.get("battery_soc", np.nan)
        status = values.get("controller_status", np.nan)
        flat = soc <= LOW_VOLTAGE_DISCONNECT_SOC or (
            not np.isnan(status) and int(status) >> 8 & 1  # low_voltage_disconnect
        )
        return Cause.BATTERY if flat else Cause.UNKNOWN
    if device_class is DeviceClass.SIGNAGE:
        supply = values.get("supply_voltage", np.nan)
        return Cause.POWER if supply < 180 else Cause.UNKNOWN
    return Cause.UNKNOWN


@dataclass(frozen=True, slots=True)
class Gone:
    """A missing interval of one device."""

    since_s: float
    """When it went (its will, or its last reading plus the silence allowed)."""
    cause: Cause
    back_s: float | None = None
    """When it came back; None while missing."""
    known_s: float | None = None
    """When it was known to be missing, if later than ``since_s`` (a will: after the grace)."""


@dataclass
class Presence:
    """One device's presence, live. Feed it in arrival order; ``now_s`` is the clock."""

    device_class: DeviceClass
    silence_s: float
    grace_s: float = 0.0
    """How long after a will a birth may still come without the device counting as gone."""
    last_heard_s: float | None = None
    last_values: Mapping[str, float] | None = None
    boot_id: str | None = None
    gone: Gone | None = None

    by_will: bool = False
    """The present interval began with a will or a goodbye (only a birth ends it)."""
    last_state: tuple[bool, float | None, str | None, str | None] | None = None
    """The last state message applied: (online, sent at, reason, boot id)."""
    will: tuple[float, Cause] | None = None
    """A will (or goodbye) within its grace: (when, why); a birth before the grace is over
    cancels it, else it becomes the missing interval, from its time."""

    def reading(self, now_s: float, values: Mapping[str, float]) -> Gone | None:
        """A reading arrived at ``now_s``; the interval it ends, if any."""
        self.last_values = values
        if self.by_will:
            return None
        self.last_heard_s = max(now_s, self.last_heard_s or now_s)
        return self._back(now_s, None)

    def state(
        self,
        now_s: float,
        online: bool,
        reason: str | None,
        boot_id: str | None,
        sent_s: float | None = None,
    ) -> Gone | None:
        """A state message (sent at ``sent_s`` by the device's clock, when known); the interval
        it starts or ends, if any. The very same message again (a broker redelivering it) is
        ignored."""
        message = (online, sent_s, reason, boot_id)
        if sent_s is not None and message == self.last_state:
            return None
        self.last_state = message
        if not online and boot_id is not None:
            self.boot_id = self.boot_id or boot_id  # the will names the boot it ends
        if online:
            rebooted = self.boot_id is not None and boot_id is not None and boot_id != self.boot_id
            self.boot_id = boot_id or self.boot_id
            self.last_heard_s = now_s
            self.will = None  # back within the grace: it never counted as gone
            return self._back(now_s, Cause.POWER if rebooted else Cause.COMMUNICATION)
        if self.gone is not None or self.will is not None or reason in PLANNED_REASONS:
            return None
        cause = Cause.BATTERY if reason in BATTERY_REASONS else self._cause_now()
        self.will = now_s, cause
        return self.tick(now_s)

    def tick(self, now_s: float) -> Gone | None:
        """The clock moved on; the interval that starts because a will's grace is over or
        the device fell silent."""
        if self.will is not None and self.gone is None:
            since_s, cause = self.will
            if now_s - since_s >= self.grace_s:
                self.will = None
                known = since_s + self.grace_s if self.grace_s > 0 else None
                self.gone, self.by_will = Gone(since_s, cause, known_s=known), True
                return self.gone
        if self.gone is not None or self.last_heard_s is None:
            return None
        if now_s - self.last_heard_s < self.silence_s:
            return None
        self.gone = Gone(self.last_heard_s + self.silence_s, self._cause_now())
        return self.gone

    def _cause_now(self) -> Cause:
        return cause_from_last_values(self.device_class, self.last_values or {})

    def _back(self, now_s: float, cause: Cause | None) -> Gone | None:
        if self.gone is None:
            return None
        known = self.gone.cause if self.gone.cause is not Cause.UNKNOWN else cause
        ended = Gone(self.gone.since_s, known or Cause.UNKNOWN, now_s)
        self.gone, self.by_will = None, False
        return ended


def missing_intervals(
    device_class: DeviceClass,
    sample_s: npt.NDArray[np.float64],
    values: Mapping[str, npt.NDArray[np.float64]],
    *,
    silence_s: float,
    grace_s: float = 0.0,
    states: Sequence[tuple[float, bool, str | None, str | None]] = (),
    until_s: float | None = None,
) -> list[Gone]:
    """Missing intervals over stored history: readings taken at ``sample_s``, ``states`` as
    (time, online, reason, boot_id), up to ``until_s`` (an interval still open then has no
    ``back_s``). Readings count as heard when taken: their arrival is not stored."""
    presence = Presence(device_class, silence_s, grace_s)
    found: list[Gone] = []
    events = sorted(
        [(float(t), _READING, index) for index, t in enumerate(sample_s)]
        + [(float(s[0]), _STATE, index) for index, s in enumerate(states)]
    )
    for moment, kind, index in events:
        presence.tick(moment)
        if kind == _READING:
            ended = presence.reading(moment, {name: float(v[index]) for name, v in values.items()})
        else:
            _, online, reason, boot_id = states[index]
            ended = presence.state(moment, online, reason, boot_id)
        if ended is not None and ended.back_s is not None:
            found.append(_power_when_sampling_stopped(ended, kind))
    if until_s is not None:
        presence.tick(until_s)
    if presence.gone is not None:
        found.append(presence.gone)
    return found


_STATE, _READING = 0, 1


def _power_when_sampling_stopped(gone: Gone, kind: int) -> Gone:
    """Over stored readings, a gap that ends with a reading (no state message to tell) means
    the device took no readings: it was off, not merely unheard."""
    if kind == _READING and gone.cause is Cause.UNKNOWN:
        return Gone(gone.since_s, Cause.POWER, gone.back_s, gone.known_s)
    return gone
