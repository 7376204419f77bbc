"""Alerts: what is open, how fast alerts are acknowledged and repaired.

From ``alerts`` and ``alert_transitions`` (docs/alerts.md): a small table next to telemetry, so
these queries read it directly at every range.
"""

# SQL text for Grafana, built from fixed names and fragments of this package; it is never run
# with input spliced in (Grafana, or dashboards.macros, substitutes the variables).
# ruff: noqa: S608

from __future__ import annotations

from typing import Final

from dashboards.common import OPEN_STATUSES, severity_rank, timeseries
from dashboards.model import (
    Dashboard,
    Format,
    Panel,
    PanelKind,
    Query,
    Variable,
    VariableKind,
    time_column,
)

UID: Final = "smartcity-alerts"
SEVERITY: Final = Variable(
    "severity",
    "Severity",
    VariableKind.CUSTOM,
    "critical,warning,info",
    "Alert severities (rules/default_rules.yaml).",
)

OPEN_ALERTS: Final = f"""
    SELECT a.alert_id, a.severity, a.status, a.rule_id, a.subject, a.title, a.fired_at,
        a.acknowledged_by, a.muted_by,
        extract(epoch FROM $__timeTo()::timestamptz - a.fired_at)::float8 / 3600 AS open_h
    FROM alerts a
    WHERE a.status IN {OPEN_STATUSES} AND a.severity IN ($severity)
        AND a.fired_at <= $__timeTo()
    ORDER BY {severity_rank("a.severity")}, a.fired_at"""

FIRED: Final = f"""
    SELECT {time_column("a.fired_at")}, a.severity, count(*) AS fired
    FROM alerts a
    WHERE $__timeFilter(a.fired_at) AND a.severity IN ($severity)
    GROUP BY 1, 2
    ORDER BY 1, 2"""

TIME_TO_ACKNOWLEDGE: Final = f"""
    SELECT a.severity, count(*) AS fired, count(ack.minutes) AS acknowledged,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY ack.minutes) AS median_min,
        percentile_cont(0.9) WITHIN GROUP (ORDER BY ack.minutes) AS p90_min,
        max(ack.minutes) AS max_min
    FROM alerts a
    LEFT JOIN LATERAL (
        SELECT extract(epoch FROM min(tr.at) - a.fired_at)::float8 / 60 AS minutes
        FROM alert_transitions tr
        WHERE tr.alert_id = a.alert_id AND tr.to_status = 'acknowledged'
    ) AS ack ON true
    WHERE $__timeFilter(a.fired_at) AND a.severity IN ($severity)
    GROUP BY a.severity
    ORDER BY {severity_rank("a.severity")}"""
"""From firing to the first acknowledgement, for the alerts fired in the range."""

TIME_TO_REPAIR: Final = """
    SELECT a.rule_id, count(*) AS fired, count(repair.hours) AS repaired,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY repair.hours) AS median_h,
        percentile_cont(0.9) WITHIN GROUP (ORDER BY repair.hours) AS p90_h,
        max(repair.hours) AS max_h
    FROM alerts a
    LEFT JOIN LATERAL (
        SELECT extract(epoch FROM coalesce(
            max(tr.at) FILTER (WHERE tr.to_status = 'resolved'),
            min(tr.at) FILTER (WHERE tr.to_status = 'closed')
        ) - a.fired_at)::float8 / 3600 AS hours
        FROM alert_transitions tr
        WHERE tr.alert_id = a.alert_id AND a.status IN ('resolved', 'closed')
    ) AS repair ON true
    WHERE $__timeFilter(a.fired_at) AND a.severity IN ($severity)
    GROUP BY a.rule_id
    ORDER BY 2 DESC, 1"""
"""From firing to the last resolution (a reopened alert counts until its final repair), or to
its closing when it closed without being resolved; for the alerts fired in the range that are
resolved or closed now."""


def dashboard() -> Dashboard:
    return Dashboard(
        UID,
        "Smart city: alerts",
        "Open alerts, alerts fired, time to acknowledge and time to repair.",
        (
            Panel(
                "Open alerts",
                "Alerts firing or acknowledged, most severe and oldest first.",
                PanelKind.TABLE,
                (
                    Query(
                        OPEN_ALERTS,
                        (
                            "alert_id",
                            "severity",
                            "status",
                            "rule_id",
                            "subject",
                            "title",
                            "fired_at",
                            "acknowledged_by",
                            "muted_by",
                            "open_h",
                        ),
                        Format.TABLE,
                    ),
                ),
                width=24,
                height=10,
                field_defaults={"decimals": 1},
            ),
            timeseries(
                "Alerts fired",
                "Alerts fired in each interval, by severity.",
                Query(FIRED, ("time", "severity", "fired")),
                "none",
                width=24,
                min_interval="1h",
                field_defaults={"custom": {"drawStyle": "bars", "fillOpacity": 70}},
            ),
            Panel(
                "Time to acknowledge",
                "Minutes from firing to the first acknowledgement, for the alerts fired in the "
                "range.",
                PanelKind.TABLE,
                (
                    Query(
                        TIME_TO_ACKNOWLEDGE,
                        ("severity", "fired", "acknowledged", "median_min", "p90_min", "max_min"),
                        Format.TABLE,
                    ),
                ),
                field_defaults={"decimals": 1},
            ),
            Panel(
                "Time to repair",
                "Hours from firing to the repair (the last resolution), by rule, for the alerts "
                "fired in the range.",
                PanelKind.TABLE,
                (
                    Query(
                        TIME_TO_REPAIR,
                        ("rule_id", "fired", "repaired", "median_h", "p90_h", "max_h"),
                        Format.TABLE,
                    ),
                ),
                field_defaults={"decimals": 1},
            ),
        ),
        (SEVERITY,),
        default_range="now-7d",
    )
