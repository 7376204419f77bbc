"""Buildings and HVAC: zone temperatures against setpoints, plant state, energy, peaks, comfort."""

# SQL text for Grafana, built from fixed names and fragments of this package; it is never run
# with input spliced in (Grafana, or dashboards.macros, substitutes the variables).
# ruff: noqa: S608

from __future__ import annotations

from typing import Final

from dashboards.common import SITE, devices_variable, timeseries
from dashboards.energy import building_kwh, hours_per_sample
from dashboards.fleet import COMFORT_BAND_C, SAMPLE_INTERVAL_S
from dashboards.model import (
    BIN_ORIGIN,
    DAILY,
    HOURLY_BEYOND_RAW,
    Dashboard,
    Format,
    Panel,
    PanelKind,
    Query,
    Tier,
    Variable,
    VariableKind,
    nest,
    tiered,
    time_column,
)

UID: Final = "smartcity-buildings"
BUILDING: Final = Variable(
    "building",
    "Building",
    VariableKind.QUERY,
    "SELECT DISTINCT building FROM devices WHERE device_class = 'building'"
    " AND decommissioned_at IS NULL AND site_id IN ($site) ORDER BY 1",
    "Municipal buildings (one sensor device per zone).",
)
EVERY_SAMPLE: Final = f"{SAMPLE_INTERVAL_S['building']}s"
"""The smallest interval of the time series: a zone reports every minute."""
ZONE: Final = devices_variable("zone", "Zone", "building", "building IN ($building)")
COMFORT_LOW: Final = Variable(
    "comfort_low",
    "Comfort from [C]",
    VariableKind.TEXTBOX,
    f"{COMFORT_BAND_C[0]:g}",
    "Lower end of the comfort band (hvac.comfort_band.low of the energy strategy).",
)
COMFORT_HIGH: Final = Variable(
    "comfort_high",
    "Comfort up to [C]",
    VariableKind.TEXTBOX,
    f"{COMFORT_BAND_C[1]:g}",
    "Upper end of the comfort band (hvac.comfort_band.high of the energy strategy).",
)
ZONES: Final = (
    "JOIN devices d ON d.device_id = t.device_id\n"
    "WHERE $__timeFilter(t.{time}) AND t.device_id IN ($zone)"
)
"""The rows of the selected zones in the range, with their registry entry as ``d``."""


def temperatures(tier: Tier) -> str:
    return f"""
        SELECT {time_column("t." + tier.time)}, t.device_id AS zone,
            {tier.mean("air_temperature")} AS air_temperature
        FROM {tier.table("building")} t
        WHERE $__timeFilter(t.{tier.time}) AND t.device_id IN ($zone)
        GROUP BY 1, 2"""


SETPOINTS: Final = """
    SELECT greatest(c.issued_at, $__timeFrom()::timestamptz) AS "time", c.device_id AS zone,
        (c.params->>'heating_setpoint')::float AS heating_setpoint,
        (c.params->>'cooling_setpoint')::float AS cooling_setpoint
    FROM commands c
    WHERE c.action = 'set_hvac' AND c.device_id IN ($zone)
        AND (c.outcome IS NULL OR c.outcome = 'applied') AND c.issued_at <= $__timeTo()
        AND c.issued_at >= coalesce((
            SELECT max(p.issued_at) FROM commands p
            WHERE p.device_id = c.device_id AND p.action = 'set_hvac'
                AND (p.outcome IS NULL OR p.outcome = 'applied')
                AND p.issued_at < $__timeFrom()
        ), $__timeFrom()::timestamptz)
    ORDER BY 1, 2"""
"""The setpoints the platform commanded (``set_hvac`` applied, or awaiting an answer), from
the one in force when the range starts; between commands a zone keeps its setpoints until the
hold lapses, then runs its own thermostat (edge_agents/control.py)."""


def plant_state(tier: Tier) -> str:
    def share(metric: str) -> str:
        return f"100 * {tier.total(metric)} / nullif({tier.samples(metric)}, 0)"

    return f"""
        SELECT {time_column("t." + tier.time)}, d.building,
            {share("heating_active")} AS heating, {share("cooling_active")} AS cooling
        FROM {tier.table("building")} t
        {nest(ZONES.format(time=tier.time), 8)}
        GROUP BY 1, 2"""


def energy(tier: Tier) -> str:
    """Heating and cooling energy per building, per hour (per day from daily rollups)."""
    heating, cooling = building_kwh(tier)
    every = "24 hours" if tier is DAILY else "1 hour"
    return f"""
        SELECT {time_column("t." + tier.time, every)}, d.building,
            {heating} AS heating_kwh,
            {cooling} AS cooling_kwh
        FROM {tier.table("building")} t
        {nest(ZONES.format(time=tier.time), 8)}
        GROUP BY 1, 2"""


def building_hours(tier: Tier) -> str:
    """Each building's hours: energy, and demand (the hour's mean power summed over zones).

    Peaks are of hourly demand, as utilities bill it; a daily rollup cannot give them, so
    queries using this read hourly rollups at every length beyond the raw range."""
    hour = f"date_bin(interval '1 hour', t.ts, {BIN_ORIGIN})"
    heating, cooling = building_kwh(tier)
    return f"""
        SELECT hour, building, sum(heating_kwh) AS heating_kwh, sum(cooling_kwh) AS cooling_kwh,
            sum(zone_kw) AS demand_kw
        FROM (
            SELECT {hour if tier.is_raw else "t.bucket"} AS hour, d.building, t.device_id,
                {heating} AS heating_kwh,
                {cooling} AS cooling_kwh,
                {tier.mean("power")} AS zone_kw
            FROM {tier.table("building")} t
            {nest(ZONES.format(time=tier.time), 12)}
            GROUP BY 1, 2, 3
        ) AS zone_hours
        GROUP BY 1, 2"""


def peak_demand(tier: Tier) -> str:
    return f"""
        SELECT {time_column("hour")}, building, max(demand_kw) AS peak_kw
        FROM (
            {nest(building_hours(tier), 12)}
        ) AS building_hours
        GROUP BY 1, 2"""


def energy_and_peak(tier: Tier) -> str:
    return f"""
        SELECT building, sum(heating_kwh) AS heating_kwh, sum(cooling_kwh) AS cooling_kwh,
            max(demand_kw) AS peak_kw
        FROM (
            {nest(building_hours(tier), 12)}
        ) AS building_hours
        GROUP BY 1"""


def comfort(tier: Tier) -> str:
    """Hours each zone was occupied, and of those, outside the comfort band.

    From raw samples, each occupied sample outside the band counts its interval; from
    hourly rollups, an hour counts when someone was in the zone during it and its mean
    temperature was outside the band."""
    outside = "{temperature} < $comfort_low OR {temperature} > $comfort_high"
    if tier.is_raw:
        hours = hours_per_sample("building")
        occupied = "t.occupancy > 0"
        figures = (
            f"count(*) FILTER (WHERE {occupied}) * {hours} AS occupied_h,\n"
            f"count(*) FILTER (WHERE {occupied} AND"
            f" ({outside.format(temperature='t.air_temperature')})) * {hours} AS outside_band_h"
        )
    else:
        occupied = "t.occupancy_max > 0"
        mean = "t.air_temperature_sum / nullif(t.air_temperature_count, 0)"
        figures = (
            f"count(*) FILTER (WHERE {occupied})::float8 AS occupied_h,\n"
            f"count(*) FILTER (WHERE {occupied} AND ({outside.format(temperature=mean)}))::float8"
            " AS outside_band_h"
        )
    return f"""
        SELECT zone, building, occupied_h, outside_band_h,
            100 * outside_band_h / nullif(occupied_h, 0) AS outside_band_pct
        FROM (
            SELECT t.device_id AS zone, d.building,
                {nest(figures, 16)}
            FROM {tier.table("building")} t
            {nest(ZONES.format(time=tier.time), 12)}
            GROUP BY 1, 2
        ) AS zones"""


def dashboard() -> Dashboard:
    order = "1, 2"
    return Dashboard(
        UID,
        "Smart city: buildings and HVAC",
        "Municipal buildings zone by zone: temperatures against setpoints, heating and cooling, "
        "energy, peak demand and comfort.",
        (
            Panel(
                "Zone temperatures against setpoints",
                "Mean air temperature of each zone, and the heating and cooling setpoints the "
                "platform commanded (steps at each command).",
                PanelKind.TIMESERIES,
                (
                    Query(
                        tiered(temperatures, order_by=order),
                        ("time", "zone", "air_temperature"),
                    ),
                    Query(
                        SETPOINTS,
                        ("time", "zone", "heating_setpoint", "cooling_setpoint"),
                        ref_id="B",
                    ),
                ),
                unit="celsius",
                width=24,
                min_interval=EVERY_SAMPLE,
                height=10,
                field_defaults={"custom": {"lineInterpolation": "stepAfter"}},
            ),
            timeseries(
                "Heating and cooling",
                "Share of the time the selected zones of each building were heating, cooling.",
                Query(
                    tiered(plant_state, order_by=order), ("time", "building", "heating", "cooling")
                ),
                "percent",
                min_interval=EVERY_SAMPLE,
                field_defaults={"max": 100, "min": 0},
            ),
            timeseries(
                "Energy by building",
                "Heating and cooling energy of the selected zones per hour (per day beyond "
                "7 days), from the zone meters.",
                Query(
                    tiered(energy, order_by=order),
                    ("time", "building", "heating_kwh", "cooling_kwh"),
                ),
                "kwatth",
                min_interval="1h",
                field_defaults={"custom": {"drawStyle": "bars", "fillOpacity": 70}},
            ),
            timeseries(
                "Peak demand",
                "Highest hourly demand of each building (its zones' mean power over an hour, "
                "summed) in each interval.",
                Query(
                    tiered(peak_demand, order_by=order, tiers=HOURLY_BEYOND_RAW),
                    ("time", "building", "peak_kw"),
                ),
                "kwatt",
                min_interval="1h",
            ),
            Panel(
                "Energy and peak demand over the range",
                "Each building's heating and cooling energy over the time range and its highest "
                "hourly demand.",
                PanelKind.TABLE,
                (
                    Query(
                        tiered(energy_and_peak, order_by="1", tiers=HOURLY_BEYOND_RAW),
                        ("building", "heating_kwh", "cooling_kwh", "peak_kw"),
                        Format.TABLE,
                    ),
                ),
                field_defaults={"decimals": 1},
            ),
            Panel(
                "Comfort: occupied hours outside the band",
                "Hours each zone had people in it, and of those the hours its temperature was "
                "outside the comfort band ($comfort_low to $comfort_high C).",
                PanelKind.TABLE,
                (
                    Query(
                        tiered(comfort, order_by="4 DESC, 1", tiers=HOURLY_BEYOND_RAW),
                        ("zone", "building", "occupied_h", "outside_band_h", "outside_band_pct"),
                        Format.TABLE,
                    ),
                ),
                width=24,
                field_defaults={"decimals": 1},
            ),
        ),
        (SITE, BUILDING, ZONE, COMFORT_LOW, COMFORT_HIGH),
        default_range="now-2d",
    )
