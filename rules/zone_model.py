"""A building zone's heat balance, learnt from its own readings: ``expected_air_temperature``.

A zone's air loses heat to outdoors and to the other zones of its building, gains it from its
heating, and its cooling takes heat away. From one hour to the next, in the dark and empty
(neither the sun's gains nor those of people and what they switch on are measured, so those
hours are left out):

    T(h) - T(h-1) = b (T_out - T) + a P_heat + k P_cool + n (T_others(h-1) - T(h-1)) + c

with T, T_out and P as means over the two hours, P_heat and P_cool the meter's power [kW]
while the zone heats or cools, and T_others the mean of the building's other zones the hour
before.
The coefficients are the zone's own, learnt by least squares that forget with a time constant
of :data:`MEMORY_HOURS` usable hours, drawn towards a loss rate of 0.05 per hour and an
exchange with the neighbours of 0.02 per hour until the readings say otherwise (zones that
are always as warm as each other cannot show their exchange, yet it is there).

A sensor that reads ``d`` too high makes the zone look ``d`` warmer than its heat balance
allows: each hour it "loses" d·b less than the balance says (its thermostat, believing the
sensor, heats less), and while the error grows, the growth adds to it. So each usable hour's
residual over the loss rate b is an *offset* [K]: how far the reading stands from the
temperature the zone's own balance implies. The offset of a zone is the median of its latest
:data:`RECENT_HOURS` usable hours (one odd hour does not move it), and
``expected_air_temperature`` is the reading less that offset: NaN until the zone has
:data:`LEARNING_HOURS` usable hours behind it. It holds through the day at the value of the
latest dark hours.

Care is taken that a fault does not teach the model, nor spill over to the neighbours: once
trusted, an hour further than :data:`LEARN_GATE_K` from the balance is not learnt from, nor
one in which a neighbour was (:attr:`Neighbour.calm`; so an hour is learnt from an hour late,
once the neighbours have judged it: the exchange with a neighbour going wrong is not learnt);
a neighbour whose own offset is that large, and larger than the zone's, counts with it
removed (its true temperature, as far as its balance tells; :meth:`Neighbour.seen_by`);
hours with a window open, or with heating and cooling at once, are left out. A zone without
a meter (``power``) or outdoor temperature is never judged.

:class:`ZoneModel` is one zone's model; :meth:`ZoneModel.reading` takes readings one by one
(the streaming engine) and :func:`expected_temperatures` runs the same models over the
zones of a building at once (the backtest), hour by hour in the order the engine would
close them. A neighbour's hour counts once it is closed (its first reading of a later hour
came in) and while it is among its latest :data:`KEPT_HOURS` hours; live, a neighbour an
hour late is not waited for, so only then may the engine and a backtest differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from protocol.catalogue import CATALOGUE
from protocol.topics import DeviceClass

Floats = npt.NDArray[np.float64]

HOUR_S: Final = 3_600
READINGS_PER_HOUR: Final = HOUR_S / CATALOGUE[DeviceClass.BUILDING].expected_interval_s
"""What a zone sends in an hour at its class's interval."""
COMPLETE_SHARE: Final = 0.8
"""An hour counts when it holds this share of the readings its class's interval gives."""
DARK_ELEVATION_DEG: Final = -2.0
"""An hour is used only with the sun below this at every reading [deg]."""
MEMORY_HOURS: Final = 150.0
"""Time constant of the learnt balance's forgetting, in usable hours (ten winter nights)."""
LEARNING_HOURS: Final = 24
"""Usable hours learnt from before the balance is trusted (two winter nights)."""
LEARN_GATE_K: Final = 1.5
"""Once trusted, an hour is learnt from only while it is this close to the balance [K]."""
RECENT_HOURS: Final = 5
"""A zone's offset is the median over this many latest usable hours."""
MIN_LOSS_RATE: Final = 0.02
"""A learnt loss rate is taken as at least this [1/h]."""
KEPT_HOURS: Final = 24
"""A zone keeps its latest closed hours this long for its neighbours [h]."""
TERMS: Final = ("outdoor", "heating_kw", "cooling_kw", "others", "constant")
"""The balance's terms, in the order of its coefficients."""
_HEATING: Final = TERMS.index("heating_kw")
_COOLING: Final = TERMS.index("cooling_kw")
KNOWN_RANGE: Final = 1.25
KNOWN_SLACK_KW: Final = 0.5
"""An hour is judged while its heating and cooling power stay within this share of the most
the balance has learnt from, plus this much [kW]."""
_PRIOR: Final = np.array([0.05, 0.0, 0.0, 0.02, 0.0])
_PRIOR_WEIGHT: Final = np.diag([1.0, 0.1, 0.1, 10.0, 1.0])
_FORGET: Final = 1.0 - 1.0 / MEMORY_HOURS
READ: Final = (
    "air_temperature",
    "outdoor_temperature",
    "power",
    "heating_active",
    "cooling_active",
    "occupancy",
    "window_open",
    "vents_open",
)
"""The metrics the balance is learnt from (and ``sun_elevation``)."""


@dataclass(frozen=True, slots=True)
class Hour:
    """One closed hour of a zone: its means, and whether the balance may use it."""

    hour: int
    """Hours since 1970-01-01 UTC."""
    temperature: float
    outdoor: float
    heating_kw: float
    cooling_kw: float
    people: float
    occupied: float
    complete: bool
    """Enough readings with a temperature, outdoor temperature and power."""
    usable: bool
    """Complete, dark and empty throughout, no window open, never heated and cooled at
    once."""

    @classmethod
    def of(cls, hour: int, means: Sequence[float], *, complete: bool, usable: bool) -> Hour:
        """An hour from its six means, in the order of the fields."""
        temperature, outdoor, heating_kw, cooling_kw, people, occupied = means
        return cls(
            hour,
            temperature,
            outdoor,
            heating_kw,
            cooling_kw,
            people,
            occupied,
            complete=complete,
            usable=usable,
        )

    @property
    def means(self) -> tuple[float, ...]:
        return (
            self.temperature,
            self.outdoor,
            self.heating_kw,
            self.cooling_kw,
            self.people,
            self.occupied,
        )


@dataclass(frozen=True, slots=True)
class Neighbour:
    """What a zone tells its neighbours of one closed hour: its mean temperature, its offset
    once that hour was closed, and that hour's own offset (NaN when not judged)."""

    temperature: float
    offset: float
    gap: float = math.nan

    @property
    def calm(self) -> bool:
        """Its latest hour agreed with its balance (or was not judged): a zone may learn
        from its exchange with it."""
        return math.isnan(self.gap) or abs(self.gap) < LEARN_GATE_K

    def seen_by(self, own_offset: float) -> float:
        """The temperature a zone whose own offset is ``own_offset`` counts for this one: the
        reading less its offset where that is off (beyond :data:`LEARN_GATE_K`) and further
        off than the zone's own. Of two zones that disagree the one further from its balance
        is taken to be wrong; the other's reading stands, so the two cannot feed each
        other's errors."""
        off = self.offset
        if math.isnan(off) or abs(off) <= LEARN_GATE_K:
            return self.temperature
        if not math.isnan(own_offset) and abs(off) <= abs(own_offset):
            return self.temperature
        return self.temperature - off


_SUMS: Final = 7
"""Per hour: readings counted, and the sums of their temperature, outdoor temperature,
heating power, cooling power, people and occupied flag (see :func:`reading_terms`)."""


@dataclass(frozen=True, slots=True)
class ReadingTerms:
    """Readings' parts of their hours' sums (one row of :data:`_SUMS` columns each), and per
    reading whether it spoils its hour (a window open, heating and cooling at once) and the
    sun's elevation (0 where unknown: not dark)."""

    sums: Floats
    spoils: npt.NDArray[np.bool_]
    elevation: Floats


def reading_terms(env: Mapping[str, Floats], count: int) -> ReadingTerms:
    """What each of ``count`` readings adds to its hour (``env``: :data:`READ` and
    ``sun_elevation``); a reading without temperature, outdoor temperature or power adds
    nothing."""
    missing = np.full(count, np.nan)
    temperature = env.get("air_temperature", missing)
    outdoor = env.get("outdoor_temperature", missing)
    power = env.get("power", missing)
    heating = env.get("heating_active", missing) >= 0.5
    cooling = env.get("cooling_active", missing) >= 0.5
    people = np.nan_to_num(env.get("occupancy", missing), nan=0.0)
    counted = ~(np.isnan(temperature) | np.isnan(outdoor) | np.isnan(power))
    columns = np.column_stack(
        [
            np.ones(count),
            temperature,
            outdoor,
            np.where(heating & ~cooling, power, 0.0),
            np.where(cooling & ~heating, power, 0.0),
            people,
            (people > 0).astype(np.float64),
        ]
    )
    return ReadingTerms(
        np.where(counted[:, None], columns, 0.0),
        (env.get("window_open", missing) >= 0.5)
        | (env.get("vents_open", missing) >= 0.5)
        | (heating & cooling),
        np.nan_to_num(env.get("sun_elevation", missing), nan=0.0),
    )


def _hour(hour: int, sums: Floats, spoilt: bool, brightest: float, needed: float) -> Hour:
    count = float(sums[0])
    if count <= 0:
        return Hour.of(hour, [math.nan] * 6, complete=False, usable=False)
    complete = count >= needed
    dark = brightest <= DARK_ELEVATION_DEG
    means = [float(value) for value in sums[1:7] / count]
    empty = means[5] == 0.0
    return Hour.of(
        hour, means, complete=complete, usable=complete and dark and empty and not spoilt
    )


@dataclass
class ZoneModel:
    """One zone's learnt heat balance and its latest offset."""

    readings_per_hour: float = READINGS_PER_HOUR
    """What the zone sends in an hour."""
    lhs: Floats = field(default_factory=lambda: np.zeros((len(TERMS), len(TERMS))))
    rhs: Floats = field(default_factory=lambda: np.zeros(len(TERMS)))
    learnt: int = 0
    """Usable hours learnt from."""
    gaps: list[float] = field(default_factory=list)
    """The latest :data:`RECENT_HOURS` usable hours' offsets, oldest first [K]."""
    offset: float = math.nan
    """The zone's offset now [K] (NaN until trusted)."""
    last: Hour | None = None
    """The latest closed hour."""
    heating_seen: float = 0.0
    cooling_seen: float = 0.0
    """The most heating and cooling power learnt from [kW]."""
    kept: dict[int, Neighbour] = field(default_factory=dict)
    """Closed hours for the neighbours (the latest :data:`KEPT_HOURS`)."""
    hour: int | None = None
    """The hour being summed."""
    sums: Floats = field(default_factory=lambda: np.zeros(_SUMS))
    spoilt: bool = False
    brightest: float = -math.inf

    # ------------------------------------------------------------------ streaming

    def reading(
        self,
        unix_s: float,
        env: Mapping[str, Floats],
        neighbours: Callable[[int], Sequence[Neighbour]] | None,
    ) -> float:
        """The offset to subtract from this reading (``env``: its 1-element arrays; NaN until
        trusted). ``neighbours``: the building's other zones' records of an hour (None: the
        zone is alone in its building)."""
        hour = int(unix_s // HOUR_S)
        if self.hour is not None and hour > self.hour:
            closing = self.hour
            self.close(
                _hour(closing, self.sums, self.spoilt, self.brightest, self._needed()),
                None if neighbours is None else neighbours(closing - 1),
            )
        if self.hour is None or hour > self.hour:
            self.hour, self.sums = hour, np.zeros(_SUMS)
            self.spoilt, self.brightest = False, -math.inf
        if hour == self.hour:  # a reading of an hour already closed does not count
            terms = reading_terms(env, 1)
            self.sums = self.sums + terms.sums[0]
            self.spoilt = self.spoilt or bool(terms.spoils[0])
            self.brightest = max(self.brightest, float(terms.elevation[0]))
        return self.offset

    def _needed(self) -> float:
        return COMPLETE_SHARE * self.readings_per_hour

    # ------------------------------------------------------------------ the balance

    def close(self, hour: Hour, neighbours: Sequence[Neighbour] | None) -> None:
        """Judge the hour ending now and learn from it. ``neighbours``: the other zones'
        records of the hour before (None: alone in the building)."""
        before, self.last = self.last, hour
        calm = neighbours is None or all(neighbour.calm for neighbour in neighbours)
        terms = self._terms(before, hour, neighbours, self.offset)
        judged = math.nan
        if terms is not None and before is not None:
            change = hour.temperature - before.temperature
            solution = np.linalg.solve(self.lhs + _PRIOR_WEIGHT, self.rhs + _PRIOR_WEIGHT @ _PRIOR)
            gap = (change - float(solution @ terms)) / max(float(solution[0]), MIN_LOSS_RATE)
            trusted = self.learnt >= LEARNING_HOURS
            known = self._known(terms)
            if calm and (not trusted or abs(gap) < LEARN_GATE_K):
                self._learn(terms, change)
            if trusted and known:
                judged = gap
                self.gaps = [*self.gaps, gap][-RECENT_HOURS:]
                if len(self.gaps) == RECENT_HOURS:
                    self.offset = float(np.median(self.gaps))
        if hour.complete:
            self.kept[hour.hour] = Neighbour(hour.temperature, self.offset, judged)
        for old in [old for old in self.kept if old <= hour.hour - KEPT_HOURS]:
            del self.kept[old]

    def _known(self, terms: Floats) -> bool:
        """Whether the hour's heating and cooling lie within what the balance has learnt
        from (:data:`KNOWN_RANGE`): beyond, its coefficients are guesses (a zone that barely
        heats in October, a valve stuck open), so the hour is not judged (and learnt from only
        if it agrees with the balance)."""
        heating, cooling = float(terms[_HEATING]), float(terms[_COOLING])
        return (
            heating <= KNOWN_RANGE * self.heating_seen + KNOWN_SLACK_KW
            and cooling <= KNOWN_RANGE * self.cooling_seen + KNOWN_SLACK_KW
        )

    def _learn(self, terms: Floats, change: float) -> None:
        self.lhs = _FORGET * self.lhs + np.outer(terms, terms)
        self.rhs = _FORGET * self.rhs + change * terms
        self.learnt += 1
        self.heating_seen = max(self.heating_seen, float(terms[_HEATING]))
        self.cooling_seen = max(self.cooling_seen, float(terms[_COOLING]))

    @staticmethod
    def _terms(
        before: Hour | None,
        hour: Hour,
        neighbours: Sequence[Neighbour] | None,
        own_offset: float,
    ) -> Floats | None:
        """The balance's terms for the change from ``before`` to ``hour``; None when the two
        hours cannot be used."""
        if before is None or before.hour != hour.hour - 1 or not (before.usable and hour.usable):
            return None
        others = 0.0
        if neighbours is not None:
            if not neighbours:
                return None  # the building's other zones are silent: the balance is not whole
            seen = [neighbour.seen_by(own_offset) for neighbour in neighbours]
            others = float(np.mean(seen)) - before.temperature
        return np.array(
            [
                (before.outdoor + hour.outdoor) / 2 - (before.temperature + hour.temperature) / 2,
                (before.heating_kw + hour.heating_kw) / 2,
                (before.cooling_kw + hour.cooling_kw) / 2,
                others,
                1.0,
            ]
        )

    # ------------------------------------------------------------------ saving

    def to_json(self) -> dict[str, object]:
        def number(value: float) -> float | None:
            return None if math.isnan(value) or math.isinf(value) else value

        last = self.last
        return {
            "lhs": self.lhs.tolist(),
            "rhs": self.rhs.tolist(),
            "learnt": self.learnt,
            "gaps": self.gaps,
            "offset": number(self.offset),
            "last": None
            if last is None
            else [last.hour, *(number(v) for v in last.means), last.complete, last.usable],
            "seen": [self.heating_seen, self.cooling_seen],
            "kept": {str(hour): [n.temperature, number(n.offset)] for hour, n in self.kept.items()},
            "hour": self.hour,
            "sums": self.sums.tolist(),
            "spoilt": self.spoilt,
            "brightest": number(self.brightest),
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, object], readings_per_hour: float = READINGS_PER_HOUR
    ) -> ZoneModel:
        """A model saved by :meth:`to_json`; a fresh one where the data is not one."""
        try:
            last = data.get("last")
            kept = data.get("kept")
            hour = data.get("hour")
            brightest = data.get("brightest")
            offset = data.get("offset")
            gaps = data.get("gaps")
            seen = data.get("seen")
            model = cls(
                readings_per_hour,
                lhs=np.array(data["lhs"], dtype=np.float64).reshape(len(TERMS), len(TERMS)),
                rhs=np.array(data["rhs"], dtype=np.float64).reshape(len(TERMS)),
                learnt=int(str(data["learnt"])),
                gaps=[float(g) for g in gaps] if isinstance(gaps, list) else [],
                offset=math.nan if offset is None else float(str(offset)),
                last=None if not isinstance(last, list) else _hour_from_list(last),
                heating_seen=float(str(seen[0])) if isinstance(seen, list) else 0.0,
                cooling_seen=float(str(seen[1])) if isinstance(seen, list) else 0.0,
                kept={
                    int(k): Neighbour(*(math.nan if x is None else float(x) for x in v))
                    for k, v in kept.items()
                }
                if isinstance(kept, dict)
                else {},
                hour=None if hour is None else int(str(hour)),
                sums=np.array(data["sums"], dtype=np.float64).reshape(_SUMS),
                spoilt=bool(data.get("spoilt", False)),
                brightest=-math.inf if brightest is None else float(str(brightest)),
            )
        except (KeyError, TypeError, ValueError):
            return cls(readings_per_hour)
        return model


def _hour_from_list(values: list[object]) -> Hour:
    hour, *means, complete, usable = values
    return Hour.of(
        int(str(hour)),
        [math.nan if v is None else float(str(v)) for v in means],
        complete=bool(complete),
        usable=bool(usable),
    )


# ----------------------------------------------------------------------------- batch


@dataclass(frozen=True, slots=True)
class ZoneHistory:
    """One zone's readings in time order (the names of :data:`READ` and ``sun_elevation``)."""

    unix_s: Floats
    env: Mapping[str, Floats]


def expected_temperatures(
    zones: Sequence[ZoneHistory], *, alone: bool, readings_per_hour: float = READINGS_PER_HOUR
) -> list[Floats]:
    """Each zone's ``expected_air_temperature`` at each of its readings: the zones of one
    building (``alone``: a building of one zone), their models run as the engine runs them."""
    closes: list[tuple[float, int, int, Hour]] = []
    for index, zone in enumerate(zones):
        for close_s, hour in _hours(zone, readings_per_hour):
            closes.append((close_s, hour.hour, index, hour))
    closes.sort(key=lambda item: (item[0], item[1], item[2]))
    models = [ZoneModel(readings_per_hour) for _ in zones]
    offsets: list[list[tuple[float, float]]] = [[] for _ in zones]
    for close_s, _, index, hour in closes:
        neighbours = (
            None
            if alone
            else [
                model.kept[hour.hour - 1]
                for other, model in enumerate(models)
                if other != index and hour.hour - 1 in model.kept
            ]
        )
        models[index].close(hour, neighbours)
        offsets[index].append((close_s, models[index].offset))
    result = []
    for zone, changes in zip(zones, offsets, strict=True):
        times = np.array([close_s for close_s, _ in changes], dtype=np.float64)
        values = np.array([np.nan] + [offset for _, offset in changes], dtype=np.float64)
        at = np.searchsorted(times, zone.unix_s, side="right")
        temperature = zone.env.get("air_temperature", np.full(len(zone.unix_s), np.nan))
        result.append(temperature - values[at])
    return result


def _hours(zone: ZoneHistory, readings_per_hour: float) -> list[tuple[float, Hour]]:
    """The zone's hours as the engine closes them: each with the time of the reading that
    closes it (the first of a later hour); the last hour is never closed. The sums are taken
    reading by reading, in order, as the engine takes them."""
    count = len(zone.unix_s)
    if count == 0:
        return []
    hours = (zone.unix_s // HOUR_S).astype(np.int64)
    starts = np.flatnonzero(np.diff(hours, prepend=hours[0] - 1))
    group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, count)))
    terms = reading_terms(zone.env, count)
    sums = np.column_stack(
        [np.bincount(group, weights=terms.sums[:, column]) for column in range(_SUMS)]
    )
    spoilt = np.bincount(group, weights=terms.spoils.astype(np.float64)) > 0
    brightest = np.full(len(starts), -math.inf)
    np.maximum.at(brightest, group, terms.elevation)
    needed = COMPLETE_SHARE * readings_per_hour
    return [
        (
            float(zone.unix_s[starts[position + 1]]),
            _hour(
                int(hours[start]),
                sums[position],
                bool(spoilt[position]),
                float(brightest[position]),
                needed,
            ),
        )
        for position, start in enumerate(starts[:-1])
    ]
