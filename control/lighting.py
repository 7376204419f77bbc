"""Lighting control: the night's dimming schedule for each solar streetlight, and sign brightness.

Pure decisions, time passed in. Each evening the platform plans the coming night for every
light from its battery and its recent harvest (:func:`plan_night`) and sends the result as a
``set_schedule`` command (:class:`protocol.commands.SetSchedule`), which the agent keeps until
replaced. ``docs/lighting.md`` explains the policy and its formula.

The plan is computed over arrays, one element per light of one place kind, so a fleet of
thousands is planned in a few milliseconds a night.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from control.lighting_policy import LightingPolicy
from protocol.commands import DimmingStep, SetSchedule, photocell_brightness
from protocol.sun import elevation_at

Floats = npt.NDArray[np.float64]
ArrayLike = Floats | float | Sequence[float]

MINUTES_PER_DAY: Final = 1_440
LOWEST_LIT_LEVEL: Final = 1.0
"""A light planned below this [%] is planned off: drivers do not dim that far, and a lamp at a
few hundredths of a percent is dark in all but name (and would look like a dead lamp)."""
# ----------------------------------------------------------------------------- the night


@dataclass(frozen=True, slots=True)
class NightWindow:
    """The dark period the lights are planned for, as the policy's dusk and dawn set it."""

    dusk: datetime
    """When the setting sun goes below ``dusk_elevation_deg`` (aware)."""
    dawn: datetime
    """When the rising sun climbs above ``dawn_elevation_deg`` (aware)."""

    @property
    def hours(self) -> float:
        """Length of the night [h]."""
        return (self.dawn - self.dusk).total_seconds() / 3_600.0


def night_window(
    policy: LightingPolicy, after: datetime, latitude: float, longitude: float
) -> NightWindow:
    """The first night starting at or after ``after`` (its remainder, if ``after`` is night).

    latitude [deg north], longitude [deg east]. To the minute, with the agents' sun
    (:mod:`protocol.sun`). ValueError where the sun does not set and rise within 36 hours.
    """
    start = after.replace(second=0, microsecond=0)
    unix = start.timestamp() + 60.0 * np.arange(36 * 60, dtype=np.float64)
    elevation = elevation_at(unix, latitude, longitude)
    dark = np.flatnonzero(elevation < policy.dusk_elevation_deg)
    if len(dark) == 0:
        raise ValueError(f"the sun does not set below {policy.dusk_elevation_deg} deg by day")
    dusk_index = int(dark[0])
    # Dawn is the rising sun's crossing: the setting sun may still be above a dawn elevation
    # lower than the dusk one.
    rising = np.diff(elevation, prepend=elevation[0]) > 0
    light = np.flatnonzero(
        rising[dusk_index:] & (elevation[dusk_index:] >= policy.dawn_elevation_deg)
    )
    if len(light) == 0:
        raise ValueError(f"the sun does not rise above {policy.dawn_elevation_deg} deg by day")
    dawn_index = dusk_index + int(light[0])
    return NightWindow(start + timedelta(minutes=dusk_index), start + timedelta(minutes=dawn_index))


def _clock_minutes(start: str) -> int:
    return int(start[:2]) * 60 + int(start[3:])


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _local_minute(moment: datetime, zone: ZoneInfo) -> int:
    local = moment.astimezone(zone)
    return local.hour * 60 + local.minute


def step_index_by_minute(starts: Sequence[str]) -> npt.NDArray[np.intp]:
    """For each minute of the local day, the index of the step in force [-].

    ``starts`` are the steps' clock times, sorted; before the first of the day the last step
    still runs, as in :func:`edge_agents.control.scheduled_level`.
    """
    start_minutes = np.array([_clock_minutes(start) for start in starts])
    index = np.searchsorted(start_minutes, np.arange(MINUTES_PER_DAY), "right") - 1
    return np.where(index < 0, len(starts) - 1, index)


def levels_by_minute(starts: Sequence[str], levels: Floats) -> Floats:
    """What a schedule asks of the lamp at each minute of the local day, while dark [%].

    starts: the steps' clock times, sorted; levels: (lights, steps) [%]. Returns
    (lights, 1440): element [i, m] is :func:`edge_agents.control.scheduled_level` of light
    i's schedule at minute m.
    """
    table: Floats = np.atleast_2d(levels)[:, step_index_by_minute(starts)]
    return table


def _night_steps(
    policy: LightingPolicy, place_kind: str, night: NightWindow, zone: ZoneInfo
) -> tuple[list[str], Floats, Floats]:
    """Tonight's steps of ``place_kind``: start times, profile levels [%], and hours within
    the night [h]. The end of the night that the agent's gate does not set is trimmed by a
    zero-level step at tonight's clock time."""
    profile = sorted(policy.profile_for(place_kind), key=lambda step: step.start)
    by_minute = np.array([step.level for step in profile])[
        step_index_by_minute([step.start for step in profile])
    ]
    dusk_minute = _local_minute(night.dusk, zone)
    dawn_minute = _local_minute(night.dawn, zone)
    if policy.dusk_elevation_deg < policy.dawn_elevation_deg:
        # The gate opens before dusk: dark from noon until tonight's dusk clock time.
        by_minute[np.arange(12 * 60, dusk_minute) % MINUTES_PER_DAY] = 0.0
    elif policy.dawn_elevation_deg < policy.dusk_elevation_deg:
        # The gate closes after dawn: dark from tonight's dawn clock time until noon.
        by_minute[np.arange(dawn_minute, 12 * 60) % MINUTES_PER_DAY] = 0.0
    changes = np.flatnonzero(by_minute != np.roll(by_minute, 1))
    if len(changes) == 0:
        changes = np.array([0])
    starts = [_clock(int(minute)) for minute in changes]
    levels = by_minute[changes]
    night_minutes = round((night.dawn - night.dusk).total_seconds() / 60.0)
    minutes = (dusk_minute + np.arange(night_minutes)) % MINUTES_PER_DAY
    # A change of UTC offset within the night shifts the clock by an hour: follow it.
    if night.dusk.astimezone(zone).utcoffset() != night.dawn.astimezone(zone).utcoffset():
        minutes = np.array(
            [
                _local_minute(night.dusk + timedelta(minutes=int(m)), zone)
                for m in range(len(minutes))
            ]
        )
    in_force = step_index_by_minute(starts)[minutes]
    hours = np.bincount(in_force, minlength=len(starts)).astype(np.float64) / 60.0
    return starts, levels.astype(np.float64), hours


# ----------------------------------------------------------------------------- the plan


class PlanReason(StrEnum):
    """Why a light got the levels it got."""

    FULL = "full"
    """The battery covers the profile and the reserve: the profile as it is."""
    DIMMED = "dimmed"
    """Levels scaled down so that the reserve stays in the battery."""
    MINIMUM = "minimum"
    """At the minimum level: the battery is already below its reserve."""
    SHORT = "short"
    """Below the minimum level: the battery cannot light even a minimum night; it gives what
    it has rather than go dark before dawn."""


@dataclass(frozen=True, slots=True)
class NightPlan:
    """Tonight's levels for lights of one place kind; arrays have one element per light."""

    place_kind: str
    night: NightWindow
    dark_below_elevation: float
    """The agents' switching elevation [deg]."""
    starts: tuple[str, ...]
    """Clock times of the steps (local), sorted."""
    profile_levels: Floats
    """The place's profile at each step [%], (steps,)."""
    step_hours: Floats
    """Hours of the night each step is in force [h], (steps,)."""
    levels: Floats
    """Planned level of each light at each step [%], (lights, steps)."""
    scale: Floats
    """Factor applied to the profile's levels, before the minimum level [-]."""
    profile_energy_wh: Floats
    """What the unscaled profile would use tonight [Wh]."""
    minimum_energy_wh: Floats
    """What the night at the minimum level would use [Wh]."""
    reserve_wh: Floats
    """Energy kept back for overcast days [Wh]."""
    available_energy_wh: Floats
    """The most a plan may spend: energy_margin * usable energy [Wh]."""
    planned_energy_wh: Floats
    """What the planned levels use tonight [Wh]; never above ``available_energy_wh``."""
    reasons: tuple[PlanReason, ...]

    def schedule(self, index: int) -> SetSchedule:
        """The ``set_schedule`` parameters of light ``index``."""
        return SetSchedule(
            steps=[
                DimmingStep(start=start, level=round(float(level), 1))
                for start, level in zip(self.starts, self.levels[index], strict=True)
            ],
            dark_below_elevation=self.dark_below_elevation,
        )

    def levels_by_minute(self) -> Floats:
        """Each light's level at each minute of the local day, while dark [%] (lights, 1440)."""
        return levels_by_minute(self.starts, self.levels)


def _dimmed(profile_levels: Floats, scale: Floats, minimum_level: float) -> Floats:
    """Levels of the profile scaled by ``scale``, not below the minimum level nor above the
    profile's own level [%]: (lights, steps)."""
    scaled = np.maximum(minimum_level, scale[:, None] * profile_levels[None, :])
    dimmed: Floats = np.minimum(profile_levels[None, :], scaled)
    return dimmed


def _scale_for(
    target_share_h: Floats, profile_levels: Floats, step_hours: Floats, minimum_level: float
) -> Floats:
    """The largest scale whose night uses ``target_share_h`` of full-level hours at most.

    The night's use per watt of lamp, sum_i h_i * min(l_i, max(m, s * l_i)) / 100 [h], is
    piecewise linear and non-decreasing in s with kinks at s = m / l_i: interpolating between
    its values at the kinks inverts it exactly.
    """
    with np.errstate(divide="ignore"):
        kinks = np.where(profile_levels > 0, minimum_level / profile_levels, 1.0)
    scales = np.unique(np.clip(np.concatenate(([0.0, 1.0], kinks)), 0.0, 1.0))
    use = (_dimmed(profile_levels, scales, minimum_level) * step_hours).sum(axis=1) / 100.0
    # A flat stretch (every step at the minimum) changes nothing: keep its largest scale.
    keep = np.append(np.diff(use) > 1e-12, True)
    scale: Floats = np.interp(target_share_h, use[keep], scales[keep], left=0.0, right=1.0)
    # Interpolation may round a hair above the target: step back to stay within it.
    return np.maximum(0.0, scale - 1e-9)


def plan_night(
    policy: LightingPolicy,
    place_kind: str,
    *,
    night: NightWindow,
    zone: ZoneInfo,
    usable_energy_wh: ArrayLike,
    lamp_w: ArrayLike,
    expected_harvest_wh_per_day: ArrayLike,
) -> NightPlan:
    """Tonight's schedule for lights of ``place_kind``, dimmed to keep the battery's reserve.

    usable_energy_wh: charge above the low-voltage disconnect
    (:func:`protocol.solar.usable_energy_wh`) [Wh];
    lamp_w: lamp power at 100 % [W]; expected_harvest_wh_per_day: the recent daily harvest
    (for example the mean of the last three days' panel energy) [Wh]. Scalars or one element
    per light. With E(s) tonight's use at scale s (levels min(l, max(m, s l)) of the
    profile's l and the minimum level m):

    - available A = energy_margin * usable energy;
    - reserve R = reserve_days * max(0, E(0) - cloudy_harvest_share * harvest);
    - budget B = A - R: the profile as it is if B >= E(1); else the largest s with E(s) <= B;
      else the minimum level if A >= E(0); else the minimum levels scaled by A / E(0).

    The planned energy never exceeds A.
    """
    usable = np.atleast_1d(np.asarray(usable_energy_wh, dtype=np.float64))
    count = len(usable)
    lamp = np.broadcast_to(np.asarray(lamp_w, dtype=np.float64), (count,))
    harvest = np.broadcast_to(np.asarray(expected_harvest_wh_per_day, dtype=np.float64), (count,))
    starts, profile_levels, step_hours = _night_steps(policy, place_kind, night, zone)
    minimum = policy.minimum_level
    full_share_h = float((profile_levels * step_hours).sum()) / 100.0
    floor_share_h = float((np.minimum(profile_levels, minimum) * step_hours).sum()) / 100.0
    profile_energy = lamp * full_share_h
    minimum_energy = lamp * floor_share_h
    available = policy.energy_margin * np.maximum(usable, 0.0)
    reserve = policy.reserve_days * np.maximum(
        0.0, minimum_energy - policy.cloudy_harvest_share * np.maximum(harvest, 0.0)
    )
    budget = available - reserve
    with np.errstate(divide="ignore", invalid="ignore"):
        target_share_h = np.where(lamp > 0, budget / lamp, np.inf)
    scale = _scale_for(target_share_h, profile_levels, step_hours, minimum)
    full = budget >= profile_energy
    scale = np.where(full, 1.0, scale)
    levels = _dimmed(profile_levels, scale, minimum)
    short = ~full & (available < minimum_energy)
    safe_minimum = np.where(minimum_energy > 0, minimum_energy, 1.0)
    with np.errstate(over="ignore"):  # a vanishing minimum: the share clips to 1
        short_share = np.clip(available / safe_minimum, 0.0, 1.0)
    levels = np.where(short[:, None], levels * short_share[:, None], levels)
    levels = np.where(short[:, None] & (levels < LOWEST_LIT_LEVEL), 0.0, levels)
    planned = lamp * (levels * step_hours).sum(axis=1) / 100.0
    at_minimum = ~full & ~short & (budget < minimum_energy)
    reasons = tuple(
        PlanReason.FULL
        if is_full
        else PlanReason.SHORT
        if is_short
        else PlanReason.MINIMUM
        if is_minimum
        else PlanReason.DIMMED
        for is_full, is_short, is_minimum in zip(full, short, at_minimum, strict=True)
    )
    return NightPlan(
        place_kind=place_kind,
        night=night,
        dark_below_elevation=policy.gate_elevation_deg,
        starts=tuple(starts),
        profile_levels=profile_levels,
        step_hours=step_hours,
        levels=levels,
        scale=scale,
        profile_energy_wh=profile_energy,
        minimum_energy_wh=minimum_energy,
        reserve_wh=reserve,
        available_energy_wh=available,
        planned_energy_wh=planned,
        reasons=reasons,
    )


# ----------------------------------------------------------------------------- signs


def sign_brightness(policy: LightingPolicy, ambient_lux: ArrayLike) -> Floats:
    """Sign brightness for the ambient illuminance [%]: legible at night, full in sunshine.

    ambient_lux [lx]. The agents' photocell curve (:func:`protocol.commands.photocell_brightness`)
    from ``sign_minimum_level`` to ``sign_maximum_level``.
    """
    levels = [
        photocell_brightness(float(lux), policy.sign_minimum_level, policy.sign_maximum_level)
        for lux in np.atleast_1d(np.asarray(ambient_lux, dtype=np.float64)).ravel()
    ]
    brightness: Floats = np.reshape(np.array(levels), np.shape(ambient_lux))
    return brightness
