"""When a fault can first be observed: the moment detection delays are measured from.

A fault does not always show at once. A dead lamp shows only when the lamp is switched on; a
lamp stuck on only when it should be off or dimmed; a dead charger only in sunshine. Each such
fault type has a condition, written in the rules' own language over the device's readings,
and a fault is *observable from* the first reading at or after its start that begins a
stretch of readings where the condition holds for at least the minimum duration a rule needs
to tell (its ``for``), and where no other fault of the device hides it (a dead lamp hides one
stuck on, a power loss hides everything: :func:`hidden_by`). A type without a condition shows
at its first reading, the same way; a link or power loss from its start (it shows by silence).
A fault that never shows so before it ends (a lamp that died at noon and was mended by dusk, a
door open for less than the rule waits) was never observable; it has no moment.

The conditions, per fault type (the simulator's signatures: docs/simulators.md):

- ``lamp_failure``, ``cycling_driver``, ``battery_fade``: the lamp is commanded on
  (``dimming_level > 0``): a lamp is dark by day anyway, and a battery drains at night;
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

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt

from protocol.faults import FAULT_CLASSES, FaultType
from protocol.topics import DeviceClass
from rules.expressions import Expression
from rules.names import names_for

Floats = npt.NDArray[np.float64]

OBSERVABLE_WHEN: Final[dict[FaultType, str]] = {
    FaultType.LAMP_FAILURE: "dimming_level > 0",
    FaultType.CYCLING_DRIVER: "dimming_level > 0",
    FaultType.BATTERY_FADE: "dimming_level > 0",
    FaultType.DAY_BURNING: "dimming_level < 80 and not status_low_voltage_disconnect",
    FaultType.CHARGE_CONTROLLER_FAULT: "status_charge_mosfet_fault or sun_elevation > 15",
    FaultType.PANEL_SOILING: "sun_elevation > 5",
    FaultType.PANEL_SHADING: "sun_elevation > 5",
    FaultType.HEATING_FAILURE: "heating_active",
    FaultType.SHORT_CYCLING: "heating_active",
}
"""The condition under which each fault type can show; absent: it shows at its start."""

LINK_FAULTS: Final = frozenset({FaultType.COMMUNICATION_LOSS, FaultType.POWER_LOSS})
"""Faults that show by the device's silence: from their start."""
HIDDEN_BY: Final[dict[FaultType, frozenset[FaultType]]] = {
    FaultType.DAY_BURNING: frozenset(
        {FaultType.LAMP_FAILURE, FaultType.KNOCK_DOWN, FaultType.CYCLING_DRIVER}
    ),
}
"""Faults of the same device that hide a fault type while they last, besides a power loss
(which hides every other fault: nothing is read): a lamp that is dead, down or dropping out
cannot be seen burning."""


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
    min_span_s: float = 0.0,
    hidden: Sequence[tuple[datetime, datetime | None]] = (),
) -> datetime | None:
    """The first moment at or after ``start`` (and before ``end``) the fault can show.

    unix_s: the device's reading times [s], increasing; environment: the values the rules
    read at those times (:func:`rules.context.derive`); min_span_s: how long the condition
    must hold, reading after reading, to count; hidden: the intervals of the device's other
    faults that hide this one. ``start`` itself for a link or power loss; ``None`` when it
    never shows while the fault lasts.
    """
    if fault in LINK_FAULTS:
        return start
    condition = CONDITIONS.get(fault)
    first = int(np.searchsorted(unix_s, start.timestamp(), "left"))
    last = len(unix_s) if end is None else int(np.searchsorted(unix_s, end.timestamp(), "left"))
    times = unix_s[first:last]
    holds = (
        np.ones(len(times), dtype=np.bool_)
        if condition is None
        else condition.holds(dict(environment))[first:last].copy()
    )
    for hidden_start, hidden_end in hidden:
        until = np.inf if hidden_end is None else hidden_end.timestamp()
        holds &= ~((times >= hidden_start.timestamp()) & (times < until))
    run_start: float | None = None
    for moment, shows in zip(times.tolist(), holds.tolist(), strict=True):
        if not shows:
            run_start = None
            continue
        run_start = moment if run_start is None else run_start
        if moment - run_start >= min_span_s:
            return datetime.fromtimestamp(run_start, UTC)
    return None
