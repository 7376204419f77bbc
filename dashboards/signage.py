"""Signage: brightness, power, pixel faults and whether each sign is online."""

# SQL text for Grafana, built from fixed names and fragments of this package; it is never run
# with input spliced in (Grafana, or dashboards.macros, substitutes the variables).
# ruff: noqa: S608

from __future__ import annotations

from typing import Final

from dashboards.common import (
    SITE,
    devices_variable,
    latest_state,
    newest_sample,
    offline_condition,
    timeseries,
)
from dashboards.fleet import SAMPLE_INTERVAL_S
from dashboards.model import (
    DAILY,
    Dashboard,
    Format,
    Panel,
    PanelKind,
    Query,
    Tier,
    complete_slots,
    nest,
    tiered,
    time_column,
)

UID: Final = "smartcity-signage"
EVERY_SAMPLE: Final = f"{SAMPLE_INTERVAL_S['signage']}s"
"""The panels' smallest interval: a sign reports every minute."""
SIGN: Final = devices_variable("sign", "Sign", "signage", "site_id IN ($site)")


def _by_sign(tier: Tier, value: str, name: str, every: str | None = None) -> str:
    return f"""
        SELECT {time_column("t." + tier.time, every)}, t.device_id AS sign,
            {value} AS {name}
        FROM {tier.table("signage")} t
        WHERE $__timeFilter(t.{tier.time}) AND t.device_id IN ($sign)
        GROUP BY 1, 2"""


def brightness(tier: Tier) -> str:
    return _by_sign(tier, tier.mean("brightness_level"), "brightness_level")


def power(tier: Tier) -> str:
    return _by_sign(tier, tier.mean("power"), "power")


def pixel_faults(tier: Tier) -> str:
    return _by_sign(tier, tier.highest("failed_pixels"), "failed_pixels")


def availability(tier: Tier) -> str:
    """The share of the expected samples (one a minute) that arrived, per hour (per day from
    the daily rollups), for every sign and every whole hour (day) of the range: a sign that
    was offline, or without power, shows as a drop, to 0 % for an hour it sent nothing."""
    every, minutes = ("24 hours", 1440) if tier is DAILY else ("1 hour", 60)
    return f"""
        SELECT slot."time", sign.device_id AS sign,
            100 * coalesce(received.samples, 0)::float8 / {minutes} AS availability
        FROM {complete_slots(every)}
        CROSS JOIN (SELECT device_id FROM devices WHERE device_id IN ($sign)) AS sign
        LEFT JOIN (
            SELECT {time_column("t." + tier.time, every)}, t.device_id,
                {tier.samples("power")} AS samples
            FROM {tier.table("signage")} t
            WHERE $__timeFilter(t.{tier.time}) AND t.device_id IN ($sign)
            GROUP BY 1, 2
        ) AS received ON received."time" = slot."time" AND received.device_id = sign.device_id"""


SIGNS_NOW: Final = f"""
    SELECT d.device_id AS sign, d.name,
        CASE WHEN {offline_condition()} THEN 'offline' ELSE 'online' END AS status,
        last_sample.ts AS last_sample_at, latest.brightness_level, latest.failed_pixels,
        latest.door_open, latest.fault_bits
    FROM devices d
    {nest(newest_sample(), 4)}
    {nest(latest_state(), 4)}
    LEFT JOIN telemetry_signage latest
        ON latest.device_id = d.device_id AND latest.ts = last_sample.ts
    WHERE d.device_id IN ($sign)
    ORDER BY d.device_id"""


def dashboard() -> Dashboard:
    order = "1, 2"
    return Dashboard(
        UID,
        "Smart city: signage",
        "Electronic signs: brightness, power, failed pixels, and which are online.",
        (
            Panel(
                "Signs now",
                "Each sign at the end of the time range: online or offline (its last will, or "
                "nothing for three minutes), its newest sample and what it said.",
                PanelKind.TABLE,
                (
                    Query(
                        SIGNS_NOW,
                        (
                            "sign",
                            "name",
                            "status",
                            "last_sample_at",
                            "brightness_level",
                            "failed_pixels",
                            "door_open",
                            "fault_bits",
                        ),
                        Format.TABLE,
                    ),
                ),
                width=24,
                field_defaults={
                    "mappings": [
                        {
                            "options": {
                                "offline": {"color": "red", "index": 1},
                                "online": {"color": "green", "index": 0},
                            },
                            "type": "value",
                        }
                    ]
                },
            ),
            timeseries(
                "Brightness",
                "Mean LED brightness of each sign (100 = full).",
                Query(tiered(brightness, order_by=order), ("time", "sign", "brightness_level")),
                "percent",
                min_interval=EVERY_SAMPLE,
            ),
            timeseries(
                "Power",
                "Mean power drawn by each sign.",
                Query(tiered(power, order_by=order), ("time", "sign", "power")),
                "watt",
                min_interval=EVERY_SAMPLE,
            ),
            timeseries(
                "Failed pixels",
                "The most pixels each sign reported failed in the interval.",
                Query(tiered(pixel_faults, order_by=order), ("time", "sign", "failed_pixels")),
                "none",
                min_interval=EVERY_SAMPLE,
                field_defaults={"min": 0},
            ),
            timeseries(
                "Online (share of samples received)",
                "Samples received against one a minute expected, per hour (per day beyond "
                "7 days): below 100 % the sign was offline or without power for a while.",
                Query(tiered(availability, order_by=order), ("time", "sign", "availability")),
                "percent",
                min_interval="1h",
                field_defaults={"max": 100, "min": 0},
            ),
        ),
        (SITE, SIGN),
    )
