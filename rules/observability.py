"""When a fault can first be observed: the moment detection delays are measured from.

A fault does not always show at once. A dead lamp shows only when the lamp is switched on; a
lamp stuck on only when it should be off or dimmed; a dead charger only in sunshine. Each such
fault type has a condition, written in the rules' own language over the device's readings,
and a fault is *observable from* the first reading at or after its start that begins a
stretch of readings where the condition holds for at least the minimum a rule needs to tell
(its ``for``, or as many readings as its occurrences count, within their window), and no other
fault of the device hides it (a dead lamp hides one stuck on, a power loss hides everything:
:func:`hidden_by`). A type without a condition shows
at its first reading, the same way; a link or power loss from its start (it shows by silence).
A fault that never shows so before it ends (a lamp that died at noon and was mended by dusk, a
door open for less than the rule waits) was never observable; it has no moment.

Rules that judge a day's harvest (a soiled or shaded panel) can tell only once a whole local
day's daylight has passed under the fault, at the first reading of the next day: such a fault
counts as observable (from its first daylight reading) only if it lasts that long, through
the daylight of a day it began before and into the day after.

The conditions, per fault type (the simulator's signatures: docs/simulators.md):

- ``lamp_failure``: the lamp is commanded on (``dimming_level >= 1``: below, it draws too
  little to judge) and the controller has not cut it for a flat battery: a lamp is dark by
  day anyway;
- ``cycling_driver``: so, and the driver drops out (the lamp dark): a driver that fails at
  random shows only when it does, and its rules need it to, three readings in a row or four
  within 3 h;
- ``battery_fade``: the lamp is commanded above a tenth, in the night (the sun 6 degrees
  below the horizon: no charge), the controller not cutting it: a battery shows its wear only
  while it discharges;
- ``day_burning``: the lamp is commanded below full and the controller has not cut it for a
  flat battery: a lamp stuck on at full level looks like a healthy one;
- ``charge_controller_fault``: the controller flags its charge path, or the sun is more
  than 15 degrees high (a charger that should be charging);
- ``panel_soiling``, ``panel_shading``: daylight (the sun above 5 degrees);
- ``heating_failure``, ``short_cycling``: the zone calls for heat (``heating_active``): a
  radiator without heat, or a heating that drops out, shows only then;
- a link or power loss: at its start; every other type (a pole knocked down, a sign's supply):
  at its first reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from protocol.faults import FAULT_CLASSES, FaultType
from protocol.topics import DeviceClass
from rules.expressions import Expression
from rules.names import names_for

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Minimum:
    """What a rule needs to see to tell a fault: its condition holding reading after reading
    for ``span_s`` (the rule's ``for``), or at ``count`` readings within ``within_s`` (its
    occurrences)."""

    span_s: float = 0.0
    count: int = 1
    within_s: float = math.inf


NO_MINIMUM: Final = Minimum()

OBSERVABLE_WHEN: Final[dict[FaultType, str]] = {
    FaultType.LAMP_FAILURE: "dimming_level >= 1 and not status_low_voltage_disconnect",
    FaultType.CYCLING_DRIVER: (
        "dimming_level >= 1 and not status_low_voltage_disconnect"
        " and lamp_power < 0.25 * lamp_w * dimming_level / 100"
    ),
    FaultType.BATTERY_FADE: (
        "dimming_level > 10 and sun_elevation < -6 and not status_low_voltage_disconnect"
    ),
    FaultType.DAY_BURNING: "dimming_level < 80 and not status_low_voltage_disconnect",
    FaultType.CHARGE_CONTROLLER_FAULT: "status_charge_mosfet_fault or sun_elevation > 15",
    FaultType.PANEL_SOILING: "sun_elevation > 5",
    FaultType.PANEL_SHADING: "sun_elevation > 5",
    FaultType.HEATING_FAILURE: "heating_active",
    FaultType.SHORT_CYCLING: "heating_active",
}
"""The condition under which each fault type can show; absent: it shows at its start."""

GROWS_FOR: Final[dict[FaultType, timedelta]] = {FaultType.SENSOR_DRIFT: timedelta(hours=16)}
"""Faults that grow, and how long they take to become large enough to tell: a drifting
sensor walks 0.25 K/h (simulators.city) and a zone's reading is judged against its learnt
balance to 4 K (sensor-drift), so a drift mended within 16 h never stood out from the zone's
own variation. A shorter one is never observable (it shows from its start otherwise)."""
LINK_FAULTS: Final = frozenset({FaultType.COMMUNICATION_LOSS, FaultType.POWER_LOSS})
"""Faults that show by the device's silence: from their start."""
_LAMP_DARK: Final = frozenset({FaultType.LAMP_FAILURE, FaultType.KNOCK_DOWN})
HIDDEN_BY: Final[dict[FaultType, frozenset[FaultType]]] = {
    FaultType.DAY_BURNING: _LAMP_DARK | {FaultType.CYCLING_DRIVER},
    FaultType.CYCLING_DRIVER: _LAMP_DARK,
    FaultType.BATTERY_FADE: _LAMP_DARK | {FaultType.CYCLING_DRIVER},
    FaultType.TILT: frozenset({FaultType.KNOCK_DOWN}),
    FaultType.PANEL_SOILING: frozenset({FaultType.CHARGE_CONTROLLER_FAULT}),
    FaultType.PANEL_SHADING: frozenset(
        {FaultType.PANEL_SOILING, FaultType.CHARGE_CONTROLLER_FAULT}
    ),
    FaultType.STUCK_VALVE: frozenset({FaultType.SENSOR_DRIFT}),
}
"""Faults of the same device that hide a fault type while they last, besides a power loss
(which hides every other fault: nothing is read): a lamp that is dead, down or dropping out
cannot be seen burning, flickering or draining its battery steadily; a pole lying down is not
leaning (pole-down tells it); a controller that does not charge harvests nothing, soiled or
shaded, and a soiled panel is dim at every sun height, which hides a shade's low-sun dip; a
drifting sensor can make an overheated zone read normal (sensor-drift tells it)."""


def hidden_by(fault: FaultType) -> frozenset[FaultType]:
    """The faults that hide ``fault`` while they last."""
    if fault in LINK_FAULTS:
        return frozenset()
    return HIDDEN_BY.get(fault, frozenset()) | {FaultType.POWER_LOSS}


def _parsed() -> dict[FaultType, Expression]:
    parsed = {}
    for fault, text in OBSERVABLE_WHEN.items():
        (device_class,) = FAULT_CLASSES[fault]
        parsed[fault] = Expression.parse(text, names_for(device_class))
    return parsed


CONDITIONS: Final = _parsed()


def names_read_by_class(device_class: DeviceClass) -> frozenset[str]:
    """What the conditions of the fault types striking ``device_class`` read."""
    return frozenset().union(
        *(
            condition.names
            for fault, condition in CONDITIONS.items()
            if device_class in FAULT_CLASSES[fault]
        )
    )


def observable_from(
    fault: FaultType,
    start: datetime,
    end: datetime | None,
    unix_s: Floats,
    environment: Mapping[str, Floats],
    *,
    minimum: Minimum = NO_MINIMUM,
    hidden: Sequence[tuple[datetime, datetime | None]] = (),
    whole_day: npt.NDArray[np.int64] | None = None,
) -> datetime | None:
    """The first moment at or after ``start`` (and before ``end``) the fault can show.

    unix_s: the device's reading times [s], increasing; environment: the values the rules
    read at those times (:func:`rules.context.derive`); minimum: what a rule needs to see
    (:class:`Minimum`); hidden: the intervals of the device's other faults that hide this
    one; whole_day: the local day of each reading, when the rules detecting the fault judge a
    whole day (then it must last through one: module docstring). ``start`` itself for a link
    or power loss; ``None`` when it never shows while the fault lasts.
    """
    if fault in LINK_FAULTS:
        return start
    if end is not None and end - start < GROWS_FOR.get(fault, timedelta(0)):
        return None
    condition = CONDITIONS.get(fault)
    first = int(np.searchsorted(unix_s, start.timestamp(), "left"))
    last = len(unix_s) if end is None else int(np.searchsorted(unix_s, end.timestamp(), "left"))
    times = unix_s[first:last]
    shown = (
        np.ones(len(unix_s), dtype=np.bool_)
        if condition is None
        else condition.holds(dict(environment))
    )
    unhidden = np.ones(len(times), dtype=np.bool_)
    for hidden_start, hidden_end in hidden:
        until = np.inf if hidden_end is None else hidden_end.timestamp()
        unhidden &= ~((times >= hidden_start.timestamp()) & (times < until))
    holds = shown[first:last] & unhidden
    if whole_day is not None:
        lasts = _lasts_a_whole_day(whole_day, shown, (first, last), unhidden)
        return _first_shown(times, holds) if lasts else None
    if minimum.count > 1:
        return _first_of_enough(times[holds], minimum)
    run_start: float | None = None
    for moment, shows in zip(times.tolist(), holds.tolist(), strict=True):
        if not shows:
            run_start = None
            continue
        run_start = moment if run_start is None else run_start
        if moment - run_start >= minimum.span_s:
            return datetime.fromtimestamp(run_start, UTC)
    return None


def _first_of_enough(showing_s: Floats, minimum: Minimum) -> datetime | None:
    """The first of ``minimum.count`` showing readings within ``minimum.within_s``."""
    count = minimum.count
    if len(showing_s) < count:
        return None
    enough = np.flatnonzero(
        showing_s[count - 1 :] - showing_s[: len(showing_s) - count + 1] <= minimum.within_s
    )
    return datetime.fromtimestamp(float(showing_s[enough[0]]), UTC) if len(enough) else None


def _first_shown(times: Floats, holds: npt.NDArray[np.bool_]) -> datetime | None:
    shows = np.flatnonzero(holds)
    return datetime.fromtimestamp(float(times[shows[0]]), UTC) if len(shows) else None


def _lasts_a_whole_day(
    days: npt.NDArray[np.int64],
    shown: npt.NDArray[np.bool_],
    within: tuple[int, int],
    unhidden: npt.NDArray[np.bool_],
) -> bool:
    """Whether the fault's readings ``within`` (the positions [first, last) of the device's)
    hold every showing reading of one local day, unhidden, and a reading of the day after."""
    first, last = within
    for day in np.unique(days[first:last]).tolist():
        of_day = np.flatnonzero((days == day) & shown)
        if not len(of_day) or of_day[0] < first or of_day[-1] >= last:
            continue
        if unhidden[of_day - first].all() and (days[of_day[-1] : last] > day).any():
            return True
    return False
