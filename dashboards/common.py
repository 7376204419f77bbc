"""Variables and SQL fragments several dashboards share."""

# SQL text for Grafana, built from fixed names and fragments of this package; it is never run
# with input spliced in (Grafana, or dashboards.macros, substitutes the variables).
# ruff: noqa: S608

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any, Final

from dashboards.fleet import DEVICE_CLASSES, SAMPLE_INTERVAL_S, SILENT_AFTER_INTERVALS
from dashboards.model import Panel, PanelKind, Query, Variable, VariableKind, nest

NO_GROUP: Final = "(none)"
"""What a device without a street group is filed under, so that "All" still selects it."""
OPEN_STATUSES: Final = "('firing', 'acknowledged')"

SITE: Final = Variable(
    "site",
    "Site",
    VariableKind.QUERY,
    "SELECT site_id AS __value, name AS __text FROM sites ORDER BY name",
    "Sites of the registry (one file of sites/ each).",
)


def street_group(row: str = "d") -> str:
    """A device's street group, ``(none)`` when it has none."""
    return f"coalesce({row}.street_group, '{NO_GROUP}')"


def devices_variable(name: str, label: str, device_class: str, condition: str) -> Variable:
    """Devices of one class in service, narrowed by ``condition`` (on ``devices``)."""
    return Variable(
        name,
        label,
        VariableKind.QUERY,
        f"SELECT device_id FROM devices WHERE device_class = '{device_class}'"
        f" AND decommissioned_at IS NULL AND {condition} ORDER BY device_id",
        f"Devices of class {device_class}; the panels show the devices selected here.",
    )


def severity_rank(column: str) -> str:
    """Critical first, then warning, then info."""
    return f"CASE {column} WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"


def _expected_interval(row: str) -> str:
    cases = " ".join(f"WHEN '{c}' THEN {SAMPLE_INTERVAL_S[c]}" for c in DEVICE_CLASSES)
    return f"CASE {row}.device_class {cases} END"


def newest_sample(row: str = "d") -> str:
    """A lateral join giving ``last_sample.ts``: the device's newest sample in the day up to
    ``$__timeTo()``, whatever the range (an index probe per device and day partition)."""
    branches = "\n        UNION ALL\n".join(
        f"        SELECT max(s.ts) AS ts FROM telemetry_{c} s\n"
        f"        WHERE {row}.device_class = '{c}' AND s.device_id = {row}.device_id\n"
        f"            AND s.ts > $__timeTo()::timestamptz - interval '24 hours'"
        f" AND s.ts <= $__timeTo()"
        for c in DEVICE_CLASSES
    )
    return (
        "LEFT JOIN LATERAL (\n"
        "    SELECT max(newest.ts) AS ts FROM (\n"
        f"{branches}\n"
        "    ) AS newest\n"
        ") AS last_sample ON true"
    )


def latest_state(row: str = "d") -> str:
    """A lateral join giving ``state.status``: the last online/offline message received by
    ``$__timeTo()`` (ordered by arrival: a last will carries its session's start as ``ts``)."""
    return (
        "LEFT JOIN LATERAL (\n"
        "    SELECT ds.status FROM device_states ds\n"
        f"    WHERE ds.device_id = {row}.device_id AND ds.received_at <= $__timeTo()\n"
        "    ORDER BY ds.received_at DESC LIMIT 1\n"
        ") AS state ON true"
    )


def offline_condition(row: str = "d") -> str:
    """Offline: its last state message said so, or it sent nothing for
    ``SILENT_AFTER_INTERVALS`` reporting intervals before ``$__timeTo()``."""
    return (
        "state.status = 'offline' OR last_sample.ts IS NULL"
        f" OR last_sample.ts < $__timeTo()::timestamptz"
        f" - interval '1 second' * {SILENT_AFTER_INTERVALS} * {_expected_interval(row)}"
    )


def alert_subjects(row: str = "d") -> str:
    """The alert subjects that concern a device: itself, and the root-cause subjects of its
    cabinet, street group and site (alerts/lifecycle.py, ``Scope.root_keys``)."""
    return (
        f"({row}.device_id, 'cabinet:' || {row}.cabinet, 'street:' || {row}.street_group,"
        f" 'site:' || {row}.site_id)"
    )


DEVICE_STATUS: Final = f"""
WITH open_subjects AS (
    SELECT DISTINCT a.subject FROM alerts a
    WHERE a.status IN {OPEN_STATUSES} AND a.fired_at <= $__timeTo()
), device_status AS (
    SELECT d.device_id, d.name, d.device_class, d.latitude, d.longitude,
        CASE
            WHEN EXISTS (SELECT 1 FROM open_subjects o WHERE o.subject IN {alert_subjects()})
                THEN 'open alert'
            WHEN {offline_condition()} THEN 'offline'
            ELSE 'online'
        END AS status
    FROM devices d
    {nest(newest_sample(), 4)}
    {nest(latest_state(), 4)}
    WHERE d.decommissioned_at IS NULL AND d.site_id IN ($site)
)"""
"""Every device's status at ``$__timeTo()``: ``open alert`` (an alert open on it or on its
cabinet, street or site), else ``offline``, else ``online``."""


def with_device_status(select: str) -> str:
    """``select`` (reading ``device_status``) after the query of :data:`DEVICE_STATUS`."""
    return DEVICE_STATUS.strip("\n") + "\n" + textwrap.dedent(select).strip("\n")


STATUS_CODE: Final = "CASE status WHEN 'online' THEN 0 WHEN 'offline' THEN 1 ELSE 2 END"
"""A number to colour by: 0 online, 1 offline, 2 open alert."""


def timeseries(
    title: str,
    description: str,
    query: Query,
    unit: str,
    *,
    width: int = 12,
    min_interval: str | None = None,
    field_defaults: Mapping[str, Any] | None = None,
) -> Panel:
    """A time series panel of one query."""
    return Panel(
        title,
        description,
        PanelKind.TIMESERIES,
        (query,),
        unit=unit,
        width=width,
        min_interval=min_interval,
        field_defaults=field_defaults or {},
    )
