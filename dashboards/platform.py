"""Platform health: ingest rate, delivery lag, data freshness and dead letters."""

# SQL text for Grafana, built from fixed names and fragments of this package; it is never run
# with input spliced in (Grafana, or dashboards.macros, substitutes the variables).
# ruff: noqa: S608

from __future__ import annotations

from typing import Final

from dashboards.common import newest_sample, timeseries
from dashboards.fleet import DEVICE_CLASSES, METRICS
from dashboards.model import (
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

UID: Final = "smartcity-platform"
RATE_BUCKETS: Final = {
    "raw": ("5 minutes", 5),
    "hourly": ("1 hour", 60),
    "daily": ("24 hours", 1440),
}
"""Each tier's bucket for the ingest rate and its length [min]: the slowest class reports
every 5 minutes, so finer buckets would count it in one and not in the next."""


def ingest_rate(tier: Tier) -> str:
    """Samples stored per minute, by class, at the samples' own times (telemetry rows keep no
    arrival time): a spool replayed after an outage fills its hours in again.

    A rollup counts samples metric by metric; a sample carries at least one metric, so the
    largest count of a row is the number of samples it stands for (exact when every sample
    carries the same metrics, as the agents send them)."""
    every, minutes = RATE_BUCKETS[tier.name]

    def samples(device_class: str) -> str:
        if tier.is_raw:
            return "count(*)"
        counts = ", ".join(tier.row_count(m) for m in METRICS[device_class])
        return f"sum(greatest({counts}))"

    stored = "\nUNION ALL\n".join(
        f"SELECT {time_column('t.' + tier.time, every)}, '{c}' AS device_class,\n"
        f"    {samples(c)} AS samples\n"
        f"FROM {tier.table(c)} t WHERE $__timeFilter(t.{tier.time})\n"
        "GROUP BY 1"
        for c in DEVICE_CLASSES
    )
    classes = ", ".join(f"('{c}')" for c in DEVICE_CLASSES)
    return f"""
        SELECT slot."time", class.device_class,
            coalesce(stored.samples, 0)::float8 / {minutes} AS samples_per_minute
        FROM {complete_slots(every)}
        CROSS JOIN (VALUES {classes}) AS class(device_class)
        LEFT JOIN (
            {nest(stored, 12)}
        ) AS stored ON stored."time" = slot."time" AND stored.device_class = class.device_class"""


LAG: Final = f"""
    SELECT {time_column("received_at")}, source,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_s) AS median_lag_s,
        max(lag_s) AS max_lag_s
    FROM (
        SELECT received_at, 'events' AS source,
            extract(epoch FROM received_at - ts)::float8 AS lag_s
        FROM device_events WHERE $__timeFilter(received_at)
        UNION ALL
        SELECT received_at, 'command acknowledgements',
            extract(epoch FROM received_at - ts)::float8
        FROM command_acks WHERE $__timeFilter(received_at)
        UNION ALL
        SELECT received_at, 'births', extract(epoch FROM received_at - ts)::float8
        FROM device_states WHERE status = 'online' AND $__timeFilter(received_at)
    ) AS lags
    GROUP BY 1, 2
    ORDER BY 1, 2"""
"""received_at - ts of what carries both: events, command acknowledgements and births (a
last will's ``ts`` is when its session began, not when it was sent: left out)."""

AGES: Final = ",\n".join(
    f"extract(epoch FROM $__timeTo()::timestamptz"
    f" - max(last_sample.ts) FILTER (WHERE d.device_class = '{c}'))::float8 AS {c}"
    for c in DEVICE_CLASSES
)
FRESHNESS: Final = f"""
    SELECT {nest(AGES, 8)}
    FROM devices d
    {nest(newest_sample(), 4)}
    WHERE d.decommissioned_at IS NULL"""
"""How old each class's newest sample is at the end of the range [s] (NULL after a day)."""

DEAD_LETTERS: Final = f"""
    SELECT {time_column("received_at")}, reason, count(*) AS dead_letters
    FROM dead_letters
    WHERE $__timeFilter(received_at)
    GROUP BY 1, 2
    ORDER BY 1, 2"""

DEAD_LETTER_REASONS: Final = """
    SELECT reason, count(*) AS dead_letters, max(received_at) AS last_received_at,
        (array_agg(detail ORDER BY received_at DESC))[1] AS last_detail
    FROM dead_letters
    WHERE $__timeFilter(received_at)
    GROUP BY reason
    ORDER BY 2 DESC, 1"""


def dashboard() -> Dashboard:
    return Dashboard(
        UID,
        "Smart city: platform health",
        "Ingest rate, delivery lag, data freshness and dead letters.",
        (
            timeseries(
                "Ingest rate",
                "Samples stored per minute by device class, at the samples' own times (per 5 "
                "minutes, per hour beyond 2 days, per day beyond 7 days).",
                Query(
                    tiered(ingest_rate, order_by="1, 2"),
                    ("time", "device_class", "samples_per_minute"),
                ),
                "none",
            ),
            timeseries(
                "Delivery lag",
                "received_at - ts of device events, command acknowledgements and births: the "
                "time from the device to the platform (spool replays show as long lags).",
                Query(LAG, ("time", "source", "median_lag_s", "max_lag_s")),
                "s",
                min_interval="1m",
            ),
            Panel(
                "Newest sample age",
                "Seconds since the newest sample of each class, at the end of the range; "
                "empty when nothing came for a day.",
                PanelKind.STAT,
                (
                    Query(
                        FRESHNESS,
                        DEVICE_CLASSES,
                        Format.TABLE,
                    ),
                ),
                unit="s",
                width=8,
                display_names={c: f"{c.capitalize()} samples" for c in DEVICE_CLASSES},
                field_defaults={
                    "thresholds": {
                        "mode": "absolute",
                        "steps": [
                            {"color": "green", "value": None},
                            {"color": "orange", "value": 900},
                            {"color": "red", "value": 3600},
                        ],
                    }
                },
            ),
            timeseries(
                "Dead letters by reason",
                "Messages refused in each interval, by reason (docs/protocol.md, Rejections).",
                Query(DEAD_LETTERS, ("time", "reason", "dead_letters")),
                "none",
                width=16,
                min_interval="1m",
                field_defaults={"custom": {"drawStyle": "bars", "fillOpacity": 70}},
            ),
            Panel(
                "Dead letters in the range",
                "Each reason's count in the time range, with the newest detail.",
                PanelKind.TABLE,
                (
                    Query(
                        DEAD_LETTER_REASONS,
                        ("reason", "dead_letters", "last_received_at", "last_detail"),
                        Format.TABLE,
                    ),
                ),
                width=24,
            ),
        ),
        default_range="now-6h",
    )
