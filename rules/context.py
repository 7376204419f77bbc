"""The values of what a rule can read besides the metrics (:mod:`rules.names` lists them).

Each name is defined once, here, over the ordered readings of one device. The backtest calls
:func:`derive` on a device's whole history; the streaming engine keeps a :class:`DeviceMemory`
per device and calls :meth:`DeviceMemory.derive` on each new reading, which computes the very
same values from what it remembers (the previous reading and the daily harvest sums).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from protocol.catalogue import CATALOGUE
from protocol.commands import DEFAULT_SCHEDULE
from protocol.localtime import local_days, utc_offsets
from protocol.solar import (
    SunHours,
    clear_sky_irradiance,
    solar_elevation,
    sun_hours,
    usable_energy_wh,
)
from protocol.sun import SECONDS_PER_DAY
from protocol.topics import DeviceClass
from rules.names import BIT_NAMES, HARVEST_BANDS, HARVEST_DAYS, RATINGS
from rules.night_forecast import ForecastMemory, LightPlace, derive_forecast
from rules.radiator import RadiatorMemory, radiator_names
from rules.zone_model import ZoneModel

Floats = npt.NDArray[np.float64]


def peer_median(unix_s: Floats, peers: Sequence[tuple[Floats, Floats]], max_age_s: float) -> Floats:
    """For each time: the median over ``peers`` (each: reading times, values) of their latest
    value at or before it, if no older than ``max_age_s``; NaN where no peer has one."""
    times = np.asarray(unix_s, dtype=np.float64)
    columns = []
    for peer_times, peer_values in peers:
        index = np.searchsorted(peer_times, times, "right") - 1
        known = index >= 0
        safe = np.clip(index, 0, None)
        fresh = known & (times - peer_times[safe] <= max_age_s) if len(peer_times) else known
        columns.append(
            np.where(fresh, peer_values[safe], np.nan)
            if len(peer_times)
            else np.full(len(times), np.nan)
        )
    if not columns:
        return np.full(len(times), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all peers NaN: NaN, as wanted
        median: Floats = np.nanmedian(np.vstack(columns), axis=0)
    return median


@dataclass(frozen=True, slots=True)
class DevicePlace:
    """What the context needs to know of a device."""

    device_id: str
    device_class: DeviceClass
    latitude: float
    longitude: float
    timezone: str
    ratings: Mapping[str, float] = field(default_factory=dict)


def derive(
    place: DevicePlace,
    unix_s: Floats,
    metrics: Mapping[str, Floats],
    *,
    learnt: bool = True,
) -> dict[str, Floats]:
    """The environment of every reading of one device, readings in time order.

    unix_s: reading times [s]; metrics: name -> values (NaN where a reading lacks the metric);
    learnt: the names learnt from the device's whole past too, a streetlight's forecast and
    a zone's radiators (the streaming engine keeps its own memory of them).
    """
    count = len(unix_s)
    env: dict[str, Floats] = {
        name: np.asarray(values, np.float64) for name, values in metrics.items()
    }
    # A streetlight's names need the sunrise and sunset as well: the sun is computed once.
    sun = (
        sun_hours(unix_s, place.latitude, place.longitude)
        if place.device_class is DeviceClass.STREETLIGHT
        else None
    )
    elevation = (
        sun.elevation
        if sun is not None
        else solar_elevation(unix_s, place.latitude, place.longitude)
    )
    env["sun_elevation"] = elevation
    local_hour, weekday = _local_time(unix_s, place.timezone)
    env["local_hour"], env["weekday"] = local_hour, weekday
    for name in RATINGS[place.device_class]:
        env[name] = np.full(count, place.ratings.get(name, np.nan))
    gaps_h = np.diff(unix_s, prepend=np.nan) / 3_600.0
    for metric in CATALOGUE[place.device_class].metrics:
        values = env.get(metric, np.full(count, np.nan))
        previous = np.concatenate(([np.nan], values[:-1]))
        env[f"prev_{metric}"] = previous
        env[f"delta_{metric}"] = values - previous
        env[f"rate_{metric}"] = (values - previous) / gaps_h
    _bits(place.device_class, env, count)
    if sun is not None:
        _streetlight(place, unix_s, sun, env)
        if learnt:
            env.update(derive_forecast(light_place(place), unix_s, env, sun))
    if place.device_class is DeviceClass.BUILDING and learnt:
        env.update(radiator_names(env, count))
    return env


def _local_time(unix_s: Floats, timezone: str) -> tuple[Floats, Floats]:
    """Local hour of the day (0-24) and weekday (0 = Monday) of each time."""
    local = np.asarray(unix_s, dtype=np.float64) + utc_offsets(unix_s, timezone)
    days = np.floor(local / SECONDS_PER_DAY)
    hour: Floats = (local - days * SECONDS_PER_DAY) / 3_600.0
    weekday: Floats = np.mod(days + 3, 7)  # 1970-01-01 was a Thursday
    return hour, weekday


def _bits(device_class: DeviceClass, env: dict[str, Floats], count: int) -> None:
    if device_class not in BIT_NAMES:
        return
    metric, prefix, bits = BIT_NAMES[device_class]
    word = env.get(metric, np.full(count, np.nan))
    known = ~np.isnan(word)
    whole = np.where(known, word, 0).astype(np.int64)
    for position, bit in enumerate(bits):
        env[f"{prefix}_{bit}"] = np.where(known, (whole >> position) & 1, np.nan).astype(np.float64)


def _streetlight(place: DevicePlace, unix_s: Floats, sun: SunHours, env: dict[str, Floats]) -> None:
    count = len(unix_s)
    elevation = sun.elevation
    panel_wp = place.ratings.get("panel_wp", np.nan)
    battery_wh = place.ratings.get("battery_wh", np.nan)
    env["scheduled_lamp_level"] = _scheduled_level(elevation, env["local_hour"])
    clear = panel_wp * clear_sky_irradiance(elevation) / 1_000.0
    env["clear_sky_pv_power"] = clear
    pv = env.get("pv_power", np.full(count, np.nan))
    days = local_days(unix_s, place.timezone)
    charging = _charging(env)
    for name, (low, high) in HARVEST_BANDS.items():
        in_band = (elevation > low) & (elevation <= high) & charging
        env[name] = _best_recent_ratio(days, pv, clear, in_band)
    night_left = sun.until_sunrise
    env["night_hours_left"] = night_left
    soc = env.get("battery_soc", np.full(count, np.nan))
    env["usable_energy_wh"] = usable_energy_wh(soc, battery_wh)
    env["night_energy_needed_wh"] = env.get("lamp_power", np.full(count, np.nan)) * night_left


def light_place(place: DevicePlace) -> LightPlace:
    return LightPlace(
        place.latitude,
        place.longitude,
        place.timezone,
        place.ratings.get("panel_wp", np.nan),
        place.ratings.get("battery_wh", np.nan),
    )


def _scheduled_level(elevation: Floats, local_hour: Floats) -> Floats:
    """The default program's lamp level (edge_agents.control.lamp_level, no override)."""
    steps = sorted(DEFAULT_SCHEDULE.steps, key=lambda step: step.start)
    starts = np.array([int(step.start[:2]) * 60 + int(step.start[3:]) for step in steps])
    levels = np.array([step.level for step in steps], dtype=np.float64)
    minute = np.floor(np.round(local_hour * 60.0, 6))
    index = np.searchsorted(starts, minute, "right") - 1  # -1: the last step still runs
    dark = elevation < DEFAULT_SCHEDULE.dark_below_elevation
    level: Floats = np.where(dark, levels[index], 0.0)
    return level


DayRatios = Mapping[int, Mapping[str, float]]
"""Local day -> harvest name -> that day's harvest over clear-sky harvest in the band."""


def _charging(env: Mapping[str, Floats]) -> npt.NDArray[np.bool_]:
    """Readings whose harvest tells of the panel: not those of a controller reporting a
    charging fault (it harvests nothing whatever the panel)."""
    fault = env.get("status_charge_mosfet_fault")
    return np.ones(1, dtype=bool) if fault is None else ~(fault > 0.5)


def day_ratios(
    place: DevicePlace, unix_s: Floats, metrics: Mapping[str, Floats]
) -> dict[int, dict[str, float]]:
    """Each local day's harvest ratio in every band of :data:`HARVEST_BANDS`, over the
    readings of a charging controller (days without one in a band lack it): what a light's
    peers compare with. ``metrics``: its ``pv_power`` and ``controller_status``."""
    count = len(unix_s)
    pv_power = metrics.get("pv_power", np.full(count, np.nan))
    bits: dict[str, Floats] = {
        "controller_status": metrics.get("controller_status", np.full(count, np.nan))
    }
    _bits(DeviceClass.STREETLIGHT, bits, count)
    charging = _charging(bits)
    elevation = solar_elevation(unix_s, place.latitude, place.longitude)
    clear = place.ratings.get("panel_wp", np.nan) * clear_sky_irradiance(elevation) / 1_000.0
    days = local_days(unix_s, place.timezone)
    unique_days, index = np.unique(days, return_inverse=True)
    found: dict[int, dict[str, float]] = {int(day): {} for day in unique_days}
    for name, (low, high) in HARVEST_BANDS.items():
        use = (elevation > low) & (elevation <= high) & ~np.isnan(pv_power) & charging
        size = len(unique_days)
        got = np.bincount(index, weights=np.where(use, pv_power, 0.0), minlength=size)
        could = np.bincount(index, weights=np.where(use, clear, 0.0), minlength=size)
        for position in np.flatnonzero(could > 0):
            found[int(unique_days[position])][name] = float(got[position] / could[position])
    return found


def peer_harvest(
    days: npt.NDArray[np.int64], own: DayRatios, peers: Sequence[DayRatios]
) -> dict[str, Floats]:
    """For readings of local ``days``: ``peer_<band>`` = the light's ratio of its latest
    complete day with one (yesterday, else up to :data:`HARVEST_DAYS` back: a day its
    controller did not charge or it had no power has none) over the median of its peers'
    ratios of that day (NaN without either). A cloudy day lowers every light of a street
    alike; a dirty or shaded panel lowers its own only."""
    env = {f"peer_{name}": np.full(len(days), np.nan) for name in HARVEST_BANDS}
    for day in np.unique(days):
        at = days == day
        for name in HARVEST_BANDS:
            latest = next(
                (
                    past
                    for past in range(int(day) - 1, int(day) - 1 - HARVEST_DAYS, -1)
                    if name in own.get(past, {})
                ),
                None,
            )
            if latest is None:
                continue
            values = [peer[latest][name] for peer in peers if name in peer.get(latest, {})]
            median = float(np.median(values)) if values else 0.0
            if median > 0:
                env[f"peer_{name}"][at] = own[latest][name] / median
    return env


def recent_days(day: int) -> list[int]:
    """The days :func:`peer_harvest` may read for readings of local ``day``."""
    return list(range(day - HARVEST_DAYS, day))


def _best_recent_ratio(
    days: npt.NDArray[np.int64], harvest: Floats, clear: Floats, in_band: npt.NDArray[np.bool_]
) -> Floats:
    """For each reading: max over the last HARVEST_DAYS complete days of sum(harvest)/sum(clear)
    over the readings in band (days without a reading in band do not count)."""
    use = in_band & ~np.isnan(harvest)
    unique_days, index = np.unique(days, return_inverse=True)
    harvested = np.bincount(index, weights=np.where(use, harvest, 0.0), minlength=len(unique_days))
    possible = np.bincount(index, weights=np.where(use, clear, 0.0), minlength=len(unique_days))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(possible > 0, harvested / possible, np.nan)
    best = np.full(len(days), np.nan)
    for position, day in enumerate(unique_days):
        window = (unique_days < day) & (unique_days >= day - HARVEST_DAYS)
        values = ratio[window]
        values = values[~np.isnan(values)]
        if len(values):
            best[index == position] = values.max()
    return best


# ----------------------------------------------------------------------------- streaming


@dataclass
class DeviceMemory:
    """What the streaming engine remembers of one device to derive a reading's context."""

    place: DevicePlace
    last_unix_s: float | None = None
    last_values: dict[str, float] = field(default_factory=dict)
    day_sums: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)
    """Local day -> harvest name -> (sum of harvest, sum of clear-sky harvest) in band."""
    forecast: ForecastMemory | None = None
    """A streetlight's sums for tonight's forecast (:mod:`rules.night_forecast`)."""
    radiator: RadiatorMemory | None = None
    """A zone's learnt radiator rating (:mod:`rules.radiator`)."""
    zone_model: ZoneModel | None = None
    """A building zone's learnt heat balance (:mod:`rules.zone_model`); the evaluator keeps
    it, for it reads the zone's neighbours too."""

    def derive(self, unix_s: float, values: Mapping[str, float]) -> dict[str, Floats]:
        """The environment of one new reading (later than every one before), as 1-element
        arrays, equal to what :func:`derive` gives for it over the device's whole history."""
        metrics = CATALOGUE[self.place.device_class].metrics
        times = np.array([unix_s] if self.last_unix_s is None else [self.last_unix_s, unix_s])
        columns = {
            name: np.array(
                [values.get(name, np.nan)]
                if self.last_unix_s is None
                else [self.last_values.get(name, np.nan), values.get(name, np.nan)]
            )
            for name in metrics
        }
        whole = derive(self.place, times, columns, learnt=False)
        env = {name: array[-1:] for name, array in whole.items()}
        if self.place.device_class is DeviceClass.STREETLIGHT:
            self._harvest(unix_s, env)
            if self.forecast is None:
                self.forecast = ForecastMemory(light_place(self.place))
            env.update(self.forecast.derive(unix_s, env))
        if self.place.device_class is DeviceClass.BUILDING:
            if self.radiator is None:
                self.radiator = RadiatorMemory()
            env.update(self.radiator.derive(env))
        self.last_unix_s = unix_s
        self.last_values = {name: float(values.get(name, np.nan)) for name in metrics}
        return env

    def day_ratios(self, days: Iterable[int] | None = None) -> dict[int, dict[str, float]]:
        """Each remembered local day's harvest ratio per band (of ``days`` only, if given),
        as :func:`day_ratios`."""
        wanted = self.day_sums.keys() if days is None else days
        return {
            day: {name: got / could for name, (got, could) in sums.items() if could > 0}
            for day in wanted
            if (sums := self.day_sums.get(day)) is not None
        }

    def _harvest(self, unix_s: float, env: dict[str, Floats]) -> None:
        day = int(local_days(np.array([unix_s]), self.place.timezone)[0])
        elevation = float(env["sun_elevation"][0])
        pv = float(env.get("pv_power", np.array([np.nan]))[0])
        clear = float(env["clear_sky_pv_power"][0])
        charging = bool(_charging(env)[0])
        sums = self.day_sums.setdefault(day, {})
        for name, (low, high) in HARVEST_BANDS.items():
            harvested, possible = sums.get(name, (0.0, 0.0))
            if low < elevation <= high and not np.isnan(pv) and charging:
                harvested, possible = harvested + pv, possible + clear
            sums[name] = (harvested, possible)
            ratios = [
                got / could
                for past, past_sums in self.day_sums.items()
                if day - HARVEST_DAYS <= past < day
                for got, could in [past_sums.get(name, (0.0, 0.0))]
                if could > 0
            ]
            env[name] = np.array([max(ratios) if ratios else np.nan])
        for past in [past for past in self.day_sums if past < day - HARVEST_DAYS]:
            del self.day_sums[past]


def stack(readings: Sequence[Mapping[str, float]], names: Sequence[str]) -> dict[str, Floats]:
    """Readings (name -> value) as columns (name -> array), NaN where a reading lacks one."""
    return {name: np.array([r.get(name, np.nan) for r in readings], np.float64) for name in names}
