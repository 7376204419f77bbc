"""How the platform lights the city: the lighting part of an energy strategy.

:class:`LightingPolicy` is what a strategy file's ``lighting:`` mapping holds, checked field by
field; :mod:`control.lighting` plans each night from it (over numpy arrays), and the sign
control service reads its sign brightness bounds without needing numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, get_args

import msgspec

from protocol.commands import DEFAULT_SCHEDULE, DimmingStep
from protocol.sites import PlaceKind

PLACE_KINDS: Final = frozenset(get_args(PlaceKind))
MAX_PROFILE_STEPS: Final = 20
"""Steps a profile may have: the agent takes 24, and a trimmed dusk or dawn adds up to two."""

Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
SwitchElevation = Annotated[float, msgspec.Meta(ge=-12, le=5)]
Profile = Annotated[
    tuple[DimmingStep, ...], msgspec.Meta(min_length=1, max_length=MAX_PROFILE_STEPS)
]


def _steps(*pairs: tuple[str, float]) -> tuple[DimmingStep, ...]:
    return tuple(DimmingStep(start=start, level=level) for start, level in pairs)


DEFAULT_PROFILES: Final[Mapping[str, tuple[DimmingStep, ...]]] = {
    # The city entrance: a fast road; dimmed little, and only when traffic is lightest.
    "entrance": _steps(("12:00", 100.0), ("00:00", 70.0), ("05:00", 100.0)),
    # Roads: full for the evening traffic, dimmed late, brighter again for the morning.
    "road": _steps(("12:00", 100.0), ("22:00", 70.0), ("00:00", 50.0), ("05:30", 80.0)),
    # Squares are lived in until late (cafés, Ramadan evenings): full until half past midnight.
    "square": _steps(("12:00", 100.0), ("00:30", 60.0), ("02:00", 40.0), ("05:30", 70.0)),
    # Gardens close at night: full for the evening walk, then a safety level.
    "garden": _steps(("12:00", 100.0), ("22:00", 40.0), ("05:30", 60.0)),
}
"""Dimming by place kind (local times). Each starts at noon so that the evening level holds
from whenever dusk falls, winter or summer."""


class LightingPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the platform lights the city: switching, dimming by place, and battery care.

    Build one from a file's data with :meth:`from_mapping`, which checks every field's range.

    Dusk and dawn: lamps switch on when the setting sun goes below ``dusk_elevation_deg`` and
    off when the rising sun climbs above ``dawn_elevation_deg``. An agent knows one switching
    elevation only, so a schedule gates the lamp at the higher of the two and trims the other
    end of the night with a zero-level step at tonight's clock time (see
    :func:`plan_night`); with both equal, as by default, no trimming step is sent.
    """

    dusk_elevation_deg: SwitchElevation = -1.0
    """Sun elevation below which the evening's lighting starts [deg]."""
    dawn_elevation_deg: SwitchElevation = -1.0
    """Sun elevation above which the morning's lighting stops [deg]."""
    profiles: dict[str, Profile] = msgspec.field(default_factory=lambda: dict(DEFAULT_PROFILES))
    """Dimming profile by place kind (``protocol.sites.PlaceKind``): steps of local time and
    level [%], each level holding until the next step, the last one past midnight. Giving
    ``profiles`` replaces the whole mapping; kinds left out run ``default_profile``."""
    default_profile: Profile = tuple(DEFAULT_SCHEDULE.steps)
    """The profile of a place kind without its own: the agents' default program."""
    minimum_level: Percent = 20.0
    """Battery care never dims a step below this level [%] (nor above the profile's own)."""
    reserve_days: Annotated[float, msgspec.Meta(ge=0, le=14)] = 4.0
    """Overcast days the battery must still light at the minimum level after tonight [d]."""
    cloudy_harvest_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.15
    """Share of the recent daily harvest that an overcast day still brings [-]."""
    energy_margin: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.9
    """Share of the estimated usable energy a plan may spend: discharge losses (3 %) and the
    error of a charge estimated from voltage [-]."""
    sign_minimum_level: Percent = 15.0
    """Sign brightness in the dark [%]."""
    sign_maximum_level: Percent = 100.0
    """Sign brightness in full sunshine [%]."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.profiles) - PLACE_KINDS)
        if unknown:
            raise ValueError(
                f"profiles: unknown place kind {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(PLACE_KINDS))}"
            )
        named = [(f"profiles.{kind}", profile) for kind, profile in self.profiles.items()]
        for name, profile in [*named, ("default_profile", self.default_profile)]:
            starts = [step.start for step in profile]
            if len(set(starts)) != len(starts):
                raise ValueError(f"{name}: two steps start at the same time")
        if self.sign_minimum_level > self.sign_maximum_level:
            raise ValueError(
                f"sign_minimum_level {self.sign_minimum_level} is above "
                f"sign_maximum_level {self.sign_maximum_level}"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> LightingPolicy:
        """Validate a policy read from a file; a ValueError names the bad field and why."""
        try:
            return msgspec.convert(dict(data), cls)
        except msgspec.ValidationError as error:
            raise ValueError(f"invalid lighting policy: {error}") from None

    def profile_for(self, place_kind: str) -> tuple[DimmingStep, ...]:
        """The dimming profile of ``place_kind``, the default one for a kind without its own."""
        return self.profiles.get(place_kind, self.default_profile)

    @property
    def gate_elevation_deg(self) -> float:
        """The agent's switching elevation: the higher of dusk and dawn [deg]."""
        return max(self.dusk_elevation_deg, self.dawn_elevation_deg)


DEFAULT_LIGHTING: Final = LightingPolicy()
"""The platform's policy for Sefrou: :data:`DEFAULT_PROFILES`, lamps on from -1 deg (as the
agents), never below 20 %, four overcast days in reserve."""
