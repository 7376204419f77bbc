"""Pre-heating and pre-cooling under a site power cap: which zones start now.

Without a cap each zone starts at its own optimum start: its learnt warm-up time before
opening. When those starts would together draw more than the cap, the zones take turns,
earliest deadline first (the zone with the least time to spare runs first), and the turns
start early enough: at every decision, for each coming opening, the full-power hours the
zones opening by then still need must fit under the cap before it, with
:data:`PLAN_MARGIN` to spare; where they do not, zones start now, least time to spare first,
until the cap is used. Otherwise only zones whose own start has come run, as late as their
warm-up allows, which is what saves the heat.

Waiting costs heat (a zone cools while it waits, so it needs longer), which each decision
sees afresh: the warm-up times are re-estimated from the zones' temperatures every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

PLAN_MARGIN: Final = 0.6
"""Share of the cap the plan counts on: the rest absorbs estimates that prove short [-]."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """The zones under a cap, by zone."""

    lead_h: FloatArray
    """Full-power hours the zone still needs before opening [h]; 0 when warm (cool) enough."""
    hours_to_start: FloatArray
    """Until opening [h]; inf for a zone that does not take part (open, or opening beyond
    the horizon)."""
    demand_kw: FloatArray
    """Power while its plant runs flat out [kW]."""
    running: BoolArray
    """Pre-heating or pre-cooling at the last decision."""


def starts_under_cap(zones: Waiting, *, base_kw: float, cap_kw: float) -> BoolArray:
    """Which zones pre-heat or pre-cool now so that, with ``base_kw`` [kW] drawn by the
    zones not waiting, the site stays under ``cap_kw`` [kW] and every zone is ready by its
    opening as far as the cap allows."""
    needing = np.isfinite(zones.hours_to_start) & (zones.lead_h > 0)
    own_start = needing & (zones.hours_to_start <= zones.lead_h)
    room = cap_kw - base_kw
    if not needing.any() or (
        float(zones.demand_kw[own_start].sum()) <= room and _in_time(zones, own_start, room)
    ):
        return own_start
    # Turns: the least time to spare first; a zone already running keeps its turn over a
    # twin, so that turns do not flap between zones alike.
    spare_h = zones.hours_to_start - zones.lead_h
    order = np.lexsort((~zones.running, spare_h))
    start = np.zeros(zones.lead_h.size, dtype=np.bool_)
    drawn = 0.0
    for zone in order:
        if not needing[zone]:
            continue
        if drawn + zones.demand_kw[zone] > room and start.any():
            continue
        start[zone] = True
        drawn += float(zones.demand_kw[zone])
        if not own_start[zone] and _in_time(zones, start, room):
            break  # the rest can wait: they still fit under the cap after this one
    return start


def _in_time(zones: Waiting, started: BoolArray, room_kw: float) -> bool:
    """Whether the zones that need heat (or cold) and are not ``started`` can still wait:
    for every coming opening, the full-power energy the waiting zones opening by then need
    fits, with :data:`PLAN_MARGIN`, in what the cap leaves over until then once the
    started zones have drawn theirs."""
    rest = np.isfinite(zones.hours_to_start) & (zones.lead_h > 0) & ~started
    if not rest.any():
        return True
    deadlines = np.sort(zones.hours_to_start[rest])
    by_deadline = np.argsort(zones.hours_to_start[rest])
    needed = np.cumsum((zones.lead_h[rest] * zones.demand_kw[rest])[by_deadline])
    taken = np.minimum(zones.lead_h[started][:, None], deadlines[None, :])
    used = (zones.demand_kw[started][:, None] * taken).sum(axis=0)
    available = PLAN_MARGIN * (room_kw * deadlines - used)
    return bool((needed <= available).all())
