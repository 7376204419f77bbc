"""Streetlights: battery, solar harvest, lamps out, autonomy and dimming, by street group."""

# SQL text for Grafana, built from fixed names and fragments of this package; it is never run
# with input spliced in (Grafana, or dashboards.macros, substitutes the variables).
# ruff: noqa: S608

from __future__ import annotations

from typing import Final

from dashboards.common import SITE, devices_variable, street_group, timeseries
from dashboards.fleet import LAMP_OUT_FRACTION, SAMPLE_INTERVAL_S
from dashboards.model import (
    Dashboard,
    Query,
    Tier,
    Variable,
    VariableKind,
    nest,
    tiered,
    time_column,
)
from protocol.solar import LOW_VOLTAGE_DISCONNECT_SOC

UID: Final = "smartcity-streetlights"
STREET_GROUP: Final = Variable(
    "street_group",
    "Street group",
    VariableKind.QUERY,
    f"SELECT DISTINCT {street_group()} FROM devices d WHERE d.device_class = 'streetlight'"
    " AND d.decommissioned_at IS NULL AND d.site_id IN ($site) ORDER BY 1",
    "Streets and squares lit together (the runs of the site file).",
)
LIGHT: Final = devices_variable(
    "light",
    "Light",
    "streetlight",
    f"site_id IN ($site) AND {street_group('devices')} IN ($street_group)",
)
LIGHTS: Final = (
    "JOIN devices d ON d.device_id = t.device_id\n"
    "WHERE $__timeFilter(t.{time}) AND t.device_id IN ($light)"
)
"""The rows of the selected lights in the range, with their registry entry as ``d``."""
EVERY_SAMPLE: Final = f"{SAMPLE_INTERVAL_S['streetlight']}s"
"""The panels' smallest interval: a streetlight reports every 5 minutes, so shorter buckets
would hold a sample in one and none in the next."""
RATINGS: Final = (
    "(d.metadata->'ratings'->>'lamp_w')::float",
    "(d.metadata->'ratings'->>'battery_wh')::float",
)
"""The lamp's rated power [W] and the battery's capacity [Wh] (storage.registry.ratings_of)."""


def _by_group(tier: Tier, value: str, name: str, every: str | None = None) -> str:
    return f"""
        SELECT {time_column("t." + tier.time, every)},
            {street_group()} AS street_group,
            {value} AS {name}
        FROM {tier.table("streetlight")} t
        {nest(LIGHTS.format(time=tier.time), 8)}
        GROUP BY 1, 2"""


def battery(tier: Tier) -> str:
    return _by_group(tier, tier.mean("battery_soc"), "battery_soc")


def harvest(tier: Tier) -> str:
    """Solar energy harvested per light and day [Wh]: the mean panel power over the day's
    samples times 24 h (the day's energy of a light that reported all day; no count of
    distinct lights, which would sort every sample)."""
    return _by_group(tier, f"{tier.mean('pv_power')} * 24", "harvest_wh_per_light", "24 hours")


def lamps_out(tier: Tier) -> str:
    """How many lights were out: commanded on, yet drawing less than the ``lamp-out`` rule's
    share of what their commanded level should draw, in a sample (raw) or whenever on in an
    hour or a day (rollups: ``lamp_power_max`` under the share of the highest level).

    Rows are counted and scaled by how long each stands for against the bucket's length: the
    mean number of lights out over the bucket, which is simply the count when a light has one
    row per bucket (raw buckets are at least 5 minutes, a streetlight's reporting interval)."""
    row_s = tier.row_seconds("streetlight")
    dark = (
        f"{tier.row_sum('lamp_on')} > 0 AND {tier.row_high('dimming_level')} > 0"
        f" AND {tier.row_high('lamp_power')}"
        f" < {LAMP_OUT_FRACTION} * {RATINGS[0]} * {tier.row_high('dimming_level')} / 100"
    )
    return _by_group(
        tier,
        f"count(*) FILTER (WHERE {dark})::float8 * {row_s}"
        f" / greatest({row_s}, $__interval_ms / 1000.0)",
        "lamps_out",
    )


def autonomy(tier: Tier) -> str:
    """The lowest autonomy of a group's lights [h]: the charge above the low-voltage
    disconnect, spent at the lamp's full rated power (from the lowest state of charge)."""
    lamp_w, battery_wh = RATINGS
    hours = (
        f"greatest({tier.row_low('battery_soc')} - {LOW_VOLTAGE_DISCONNECT_SOC}, 0) / 100"
        f" * {battery_wh} / nullif({lamp_w}, 0)"
    )
    return _by_group(tier, f"min({hours})", "autonomy_h")


def dimming(tier: Tier) -> str:
    """The mean lamp level while lit [%]: ``dimming_level`` is 0 while the lamp is off, so
    its sum over the samples switched on is its sum over all samples."""
    return _by_group(
        tier,
        f"{tier.total('dimming_level')} / nullif({tier.total('lamp_on')}, 0)",
        "dimming_level",
    )


def dashboard() -> Dashboard:
    order = "1, 2"
    return Dashboard(
        UID,
        "Smart city: streetlights",
        "Solar streetlights by street group: batteries, harvest, lamps out, autonomy, dimming.",
        (
            timeseries(
                "Battery state of charge",
                "Mean state of charge of the selected lights, by street group.",
                Query(tiered(battery, order_by=order), ("time", "street_group", "battery_soc")),
                "percent",
                min_interval=EVERY_SAMPLE,
            ),
            timeseries(
                "Solar harvest per light",
                "Energy the panels delivered per light and day, by street group.",
                Query(
                    tiered(harvest, order_by=order),
                    ("time", "street_group", "harvest_wh_per_light"),
                ),
                "watth",
                min_interval="1d",
                field_defaults={"custom": {"drawStyle": "bars", "fillOpacity": 70}},
            ),
            timeseries(
                "Lamps out",
                "Lights switched on whose lamp drew less than 5 % of its rated power (the "
                "lamp-out rule's condition) at a sample, or throughout an hour (a day) beyond 2 "
                "days (7 days), by street group; a mean over the interval when it is longer.",
                Query(tiered(lamps_out, order_by=order), ("time", "street_group", "lamps_out")),
                "none",
                min_interval=EVERY_SAMPLE,
                field_defaults={"custom": {"drawStyle": "bars", "fillOpacity": 70}, "min": 0},
            ),
            timeseries(
                "Autonomy at full power",
                "Lowest autonomy of the group's lights: hours of light at full power left in "
                "the battery above the low-voltage disconnect.",
                Query(tiered(autonomy, order_by=order), ("time", "street_group", "autonomy_h")),
                "h",
                min_interval=EVERY_SAMPLE,
                field_defaults={"min": 0},
            ),
            timeseries(
                "Dimming level while lit",
                "Mean lamp output while the lamps are on (100 = full), by street group.",
                Query(tiered(dimming, order_by=order), ("time", "street_group", "dimming_level")),
                "percent",
                width=24,
                min_interval=EVERY_SAMPLE,
                field_defaults={"custom": {"lineInterpolation": "stepAfter"}, "max": 100},
            ),
        ),
        (SITE, STREET_GROUP, LIGHT),
    )
