"""A zone's radiators, measured against themselves: the names behind "radiator gives no heat".

A radiator gives heat in proportion to its valve's opening and to the supply water's excess
over the room to the power 1.3 (EN 442), so the zone's heat meter, the valve and the two
temperatures tell what the radiators would give wide open with water 50 K above the room:

``radiator_kw``
    that rating as this reading shows it: ``power / (valve/100 x ((supply - air)/50)^1.3)``
    [kW], while the zone heats (and does not cool: the meter would count the air
    conditioner), the valve is open at least :data:`MIN_VALVE` % and the water is
    :data:`MIN_EXCESS_K` K warmer than the room; NaN otherwise.
``learnt_radiator_kw``
    the zone's own rating, learnt from its earlier readings that showed one: a running mean
    over about :data:`MEMORY_READINGS` of them, NaN until :data:`TRUSTED_READINGS`; once
    trusted, a reading below :data:`LEARN_FLOOR` of it is not learnt from (a radiator that
    stopped giving heat does not teach the mean that it is normal).

An air-locked or blocked radiator, a closed lockshield, a failed circulator on the zone's
branch: the valve opens, the water is hot, and the meter counts next to nothing.

:func:`radiator_names` computes them over a zone's whole history (the backtest);
:class:`RadiatorMemory` from each new reading (the streaming engine), the very same values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

MIN_VALVE: Final = 20.0
"""[%]"""
MIN_EXCESS_K: Final = 10.0
"""Supply water over room [K]."""
RATED_EXCESS_K: Final = 50.0
EXPONENT: Final = 1.3
MEMORY_READINGS: Final = 60
TRUSTED_READINGS: Final = 30
LEARN_FLOOR: Final = 0.5
NAMES: Final = ("radiator_kw", "learnt_radiator_kw")
READ: Final = (
    "power",
    "valve_position",
    "supply_water_temperature",
    "air_temperature",
    "heating_active",
    "cooling_active",
)


def radiator_kw(env: Mapping[str, Floats], count: int) -> Floats:
    """Each reading's :data:`NAMES` ``radiator_kw`` (see the module)."""
    missing = np.full(count, np.nan)
    power = env.get("power", missing)
    valve = env.get("valve_position", missing)
    excess = env.get("supply_water_temperature", missing) - env.get("air_temperature", missing)
    heating = env.get("heating_active", missing) >= 0.5
    cooling = env.get("cooling_active", missing) >= 0.5
    shown = heating & ~cooling & (valve >= MIN_VALVE) & (excess >= MIN_EXCESS_K)
    with np.errstate(invalid="ignore", divide="ignore"):
        rating = power / (valve / 100.0 * (excess / RATED_EXCESS_K) ** EXPONENT)
    shown &= np.isfinite(rating)
    return np.where(shown, rating, np.nan)


@dataclass
class RadiatorMemory:
    """The learnt rating of a zone's radiators and how many readings taught it."""

    learnt: float = math.nan
    readings: int = 0

    @property
    def trusted(self) -> float:
        """The learnt rating once trusted, else NaN."""
        return self.learnt if self.readings >= TRUSTED_READINGS else math.nan

    @classmethod
    def from_json(cls, data: object) -> RadiatorMemory | None:
        """A memory saved as ``[learnt, readings]``; None (learn afresh) for anything else."""
        if not isinstance(data, list) or len(data) != 2:
            return None
        try:
            memory = cls(float(str(data[0])), int(str(data[1])))
        except ValueError:
            return None
        return memory if math.isfinite(memory.learnt) and memory.readings >= 0 else None

    def learn(self, rating: float) -> None:
        """Take in one reading's rating (NaN: the reading showed none)."""
        if math.isnan(rating):
            return
        if self.readings >= TRUSTED_READINGS and rating < LEARN_FLOOR * self.learnt:
            return
        if math.isnan(self.learnt):
            self.learnt = rating
        else:
            self.learnt += (rating - self.learnt) / MEMORY_READINGS
        self.readings += 1

    def derive(self, env: Mapping[str, Floats]) -> dict[str, Floats]:
        """The names of one new reading (``env``: its 1-element arrays)."""
        now = radiator_kw(env, 1)
        names = {"radiator_kw": now, "learnt_radiator_kw": np.array([self.trusted])}
        self.learn(float(now[0]))
        return names


def radiator_names(env: Mapping[str, Floats], count: int) -> dict[str, Floats]:
    """:data:`NAMES` over a zone's whole history, readings in time order: the learnt rating
    at each reading is the one its earlier readings taught, as :class:`RadiatorMemory` has
    it then."""
    now = radiator_kw(env, count)
    learnt = np.full(count, np.nan)
    memory = RadiatorMemory()
    shown = np.flatnonzero(~np.isnan(now))
    changes = np.full(len(shown), np.nan)
    for position, at in enumerate(shown):
        memory.learn(float(now[at]))
        changes[position] = memory.trusted
    # Each reading sees the rating as of its previous shown reading.
    before = np.searchsorted(shown, np.arange(count), side="left") - 1
    known = before >= 0
    learnt[known] = changes[before[known]]
    return {"radiator_kw": now, "learnt_radiator_kw": learnt}
