"""Energy as SQL: power integrated over samples, and the building meters' heating/cooling split.

Energy is computed the same way from raw samples and from rollups: each sample stands for its
class's reporting interval, so a sum of power samples (or a rollup's ``<metric>_sum``) times
that interval is energy. Streetlight and sign power is in W, the building meters' in kW.
"""

from __future__ import annotations

from dashboards.fleet import SAMPLE_INTERVAL_S
from dashboards.model import Tier


def hours_per_sample(device_class: str) -> str:
    """How long one sample of the class stands for [h], as SQL."""
    return f"({SAMPLE_INTERVAL_S[device_class]} / 3600::float8)"


def lamp_kwh(tier: Tier, row: str = "t") -> str:
    """Streetlight lamp energy [kWh] of the rows aggregated."""
    return f"{tier.total('lamp_power', row)} * {hours_per_sample('streetlight')} / 1000"


def sign_kwh(tier: Tier, row: str = "t") -> str:
    """Sign energy [kWh] of the rows aggregated."""
    return f"{tier.total('power', row)} * {hours_per_sample('signage')} / 1000"


def cooling_share(tier: Tier, row: str = "t") -> str:
    """The share of a building row's energy that went to cooling [0..1].

    A raw sample is all cooling when ``cooling_active`` is 1, else all heating (the meter
    counts radiator heat and air-conditioning electricity; a zone never heats and cools at
    once). A rollup's energy is split by how many of its samples were cooling against heating:
    exact when the zone only heated or only cooled within the hour or day, which the seasons
    of the energy strategy make the rule. Energy with neither running (radiators cooling down)
    counts as heating."""
    if tier.is_raw:
        return f"coalesce({row}.cooling_active, 0)"
    return (
        f"coalesce({row}.cooling_active_sum"
        f" / nullif({row}.heating_active_sum + {row}.cooling_active_sum, 0), 0)"
    )


def building_kwh(tier: Tier, row: str = "t") -> tuple[str, str]:
    """Building heating and cooling energy [kWh] of the rows aggregated."""
    energy = f"{tier.row_sum('power', row)} * {hours_per_sample('building')}"
    share = cooling_share(tier, row)
    return f"sum({energy} * (1 - {share}))", f"sum({energy} * {share})"
