"""``smartcity bench api``: the API's latency and every dashboard panel's query, over history.

1. A database of ``days`` of the whole Sefrou fleet's history (generated in a scratch database,
   or an existing one given with ``--history-url``), the rollups maintained, and a year's worth
   of alerts (most closed, some open).
2. The API served by uvicorn in this process, called over HTTP: p50/p95 of the alert list (a
   technician's and a crew's) and of a 30-day telemetry range for one device and for a street
   group. Baseline: the same range's query on raw rows, run in the same process.
3. Every dashboard panel's query over the last 90 days, macros expanded as Grafana does:
   p95 from the aggregates (target <= 200 ms), and its ratio to the same query on raw rows.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx2
import psycopg

from alerts import lifecycle, store
from api import telemetry_queries as telemetry
from api.accounts import create_user, issue_token
from api.config import ApiConfig
from api.roles import Role
from api.server import BackgroundApiServer
from bench.services import bench_services, migrated_and_provisioned
from dashboards.build import panel_queries
from dashboards.macros import TimeRange
from dashboards.run import expanded_sql, variable_values
from protocol.payloads import Severity
from protocol.sites import SiteInventory
from protocol.topics import DeviceClass
from runtime.local_services import free_port
from storage.rollups import refresh_period

Progress = Callable[[str], None]
PANEL_TARGET_S: Final = 0.200
ALERTS_PER_DAY: Final = 30
"""Alerts written for each day of history: Sefrou's fault rate (4 per device-year) is 24."""
OPEN_SHARE: Final = 0.05
GROUP: Final = "route-el-menzel-north"
DEVICE: Final = "sl-menzel-n-001"
METRICS: Final = ["battery_soc", "lamp_power"]


@dataclass(frozen=True, slots=True)
class Latency:
    name: str
    p50_s: float
    p95_s: float
    samples: int
    baseline_p50_s: float | None = None
    """The same answer's query on raw rows (in process, no HTTP)."""

    @classmethod
    def of(cls, name: str, seconds: list[float], baseline: list[float] | None = None) -> Latency:
        return cls(
            name,
            _percentile(seconds, 50),
            _percentile(seconds, 95),
            len(seconds),
            _percentile(baseline, 50) if baseline else None,
        )


@dataclass(frozen=True, slots=True)
class PanelTiming:
    dashboard: str
    panel: str
    ref_id: str
    rows: int
    p95_s: float
    raw_s: float | None
    """One run of the same query on raw rows (None: the panel reads no telemetry)."""

    @property
    def raw_over_aggregate(self) -> float | None:
        return None if self.raw_s is None else self.raw_s / max(self.p95_s, 1e-6)


@dataclass(slots=True)
class ApiBenchResult:
    history_days: float
    history_rows: int
    history_seconds: float | None
    """None when an existing history database was used."""
    alerts: int
    requests: list[Latency] = field(default_factory=list)
    panels: list[PanelTiming] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        panels_p95 = [panel.p95_s for panel in self.panels]
        return {
            "history_days": self.history_days,
            "history_rows": self.history_rows,
            "history_seconds": self.history_seconds,
            "alerts": self.alerts,
            "requests": [asdict(latency) for latency in self.requests],
            "panels": [
                {**asdict(panel), "raw_over_aggregate": panel.raw_over_aggregate}
                for panel in self.panels
            ],
            "panel_p95_max_s": max(panels_p95, default=None),
            "panels_within_target": sum(p95 <= PANEL_TARGET_S for p95 in panels_p95),
            "panels_total": len(panels_p95),
        }


def _percentile(values: list[float], percent: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# ----------------------------------------------------------------------------- the data


@contextmanager
def history_database(  # noqa: PLR0917 - the bench's options, passed down
    inventory: SiteInventory,
    days: float,
    end: datetime,
    history_url: str | None,
    server_url: str | None,
    progress: Progress,
) -> Iterator[tuple[str, float | None]]:
    """The URL of a database with ``days`` of history ending at ``end``, and how long it took
    to generate (None: ``history_url`` was given and used as it is)."""
    if history_url is not None:
        yield history_url, None
        return
    from simulators.history import HistoryOptions, generate_history

    with bench_services(server_url, progress, "api") as services:
        migrated_and_provisioned(services.database_url, inventory)
        started = time.monotonic()
        options = HistoryOptions(inventory, end - timedelta(days=days), end, seed=7)
        generate_history(options, services.database_url, progress=progress)
        progress("refreshing the rollups")
        with psycopg.connect(services.database_url, autocommit=True) as connection:
            refresh_period(connection, end - timedelta(days=days), end)
        yield services.database_url, time.monotonic() - started


def history_extent(database_url: str) -> tuple[datetime, datetime, int]:
    """The first and last sample of the streetlights, and the rows of every class."""
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT min(ts), max(ts), (SELECT count(*) FROM telemetry_signage)"
            " + (SELECT count(*) FROM telemetry_building) + count(*)"
            " FROM telemetry_streetlight"
        ).fetchone()
    if row is None or row[0] is None:
        raise ValueError("the history database holds no streetlight samples")
    return row[0], row[1], int(row[2])


def write_alerts(database_url: str, start: datetime, end: datetime, seed: int = 7) -> int:
    """:data:`ALERTS_PER_DAY` real alerts a day over [start, end), through the lifecycle:
    most closed after a repair, :data:`OPEN_SHARE` still open. Returns the alerts now stored."""
    generator = random.Random(seed)
    with psycopg.connect(database_url) as connection:
        existing = connection.execute("SELECT count(*) FROM alerts").fetchone()
        if existing is not None and existing[0] > 0:
            return int(existing[0])  # a reused history database keeps its alerts
        devices = [
            row[0]
            for row in connection.execute(
                "SELECT device_id FROM devices WHERE decommissioned_at IS NULL ORDER BY 1"
            )
        ]
        count = int((end - start) / timedelta(days=1) * ALERTS_PER_DAY)
        still_open: set[tuple[str, str]] = set()  # one open alert per (rule, device)
        for index in range(count):
            fired = start + (end - start) * generator.random()
            device = devices[generator.randrange(len(devices))]
            rule = generator.choice(("lamp-out", "battery-low", "device-missing", "sign-dark"))
            severity = generator.choice((Severity.WARNING, Severity.CRITICAL, Severity.INFO))
            outcome = lifecycle.fire(rule, device, severity, fired, fired, cause=None)
            if (rule, device) in still_open:
                continue
            alert, _ = store.insert_alert(connection, outcome, f"{rule} on {device}")
            if generator.random() > OPEN_SHARE and alert.alert_id is not None:
                closed_at = fired + timedelta(hours=generator.uniform(1, 48))
                store.change_alert(connection, alert.alert_id, _closer(closed_at))
            else:
                still_open.add((rule, device))
            if index % 500 == 499:
                connection.commit()
        connection.commit()
    return count


def _closer(at: datetime) -> Callable[[lifecycle.Alert], lifecycle.Outcome]:
    def close(alert: lifecycle.Alert) -> lifecycle.Outcome:
        return lifecycle.close(alert, at, "bench", "repaired")

    return close


# ----------------------------------------------------------------------------- the API


def measure_requests(
    database_url: str, end: datetime, samples: int, progress: Progress
) -> list[Latency]:
    """p50/p95 of the alert lists and of 30-day telemetry ranges, over HTTP."""
    with psycopg.connect(database_url) as connection:
        tokens = {}
        for name, role, groups in (
            (f"bench-technician-{os.getpid()}", Role.TECHNICIAN, ()),
            (f"bench-crew-{os.getpid()}", Role.CREW, (GROUP,)),
        ):
            create_user(connection, name, role, street_groups=groups)
            tokens[role], _ = issue_token(connection, name, now=datetime.now(UTC))
    server = BackgroundApiServer(ApiConfig(database_url=database_url), port=free_port())
    server.start()
    month = {"from": (end - timedelta(days=30)).isoformat(), "to": end.isoformat()}
    calls: dict[str, tuple[Role, str, dict[str, Any]]] = {
        "alert list (technician, open)": (Role.TECHNICIAN, "/api/v1/alerts", {}),
        "alert list (technician, all, 100)": (
            Role.TECHNICIAN,
            "/api/v1/alerts",
            {"status": "all", "limit": 100},
        ),
        "alert list (crew, open)": (Role.CREW, "/api/v1/alerts", {}),
        "telemetry 30 d, one device": (
            Role.TECHNICIAN,
            "/api/v1/telemetry",
            {"device_id": DEVICE, "metric": METRICS, **month},
        ),
        "telemetry 30 d, street group": (
            Role.TECHNICIAN,
            "/api/v1/telemetry",
            {"street_group": GROUP, "device_class": "streetlight", "metric": METRICS, **month},
        ),
    }
    baselines = _raw_baselines(database_url, end, samples)
    results = []
    try:
        with httpx2.Client(base_url=server.url, timeout=120) as client:
            for name, (role, path, params) in calls.items():
                headers = {"Authorization": f"Bearer {tokens[role]}"}

                def call(path: str = path, params: Any = params, headers: Any = headers) -> None:
                    response = client.get(path, params=params, headers=headers)
                    if response.status_code != 200:
                        raise RuntimeError(f"{path} {params}: {response.text[:300]}")

                call()  # warm-up: connections, plans, caches
                seconds = [_timed(call) for _ in range(samples)]
                latency = Latency.of(name, seconds, baselines.get(name))
                progress(f"{name}: p50 {latency.p50_s * 1000:.1f} ms")
                results.append(latency)
    finally:
        server.stop()
    return results


def _raw_baselines(database_url: str, end: datetime, samples: int) -> dict[str, list[float]]:
    """The telemetry ranges' own queries forced onto raw rows, timed in process."""
    plan = telemetry.plan_range(end - timedelta(days=30), end, "auto")
    raw = replace(plan, source=telemetry.Source.RAW)
    timings: dict[str, list[float]] = {}
    with psycopg.connect(database_url, autocommit=True) as connection:
        group = [
            row[0]
            for row in connection.execute(
                "SELECT device_id FROM devices"
                " WHERE street_group = %s AND device_class = 'streetlight'",
                (GROUP,),
            )
        ]
        for name, ids in (
            ("telemetry 30 d, one device", [DEVICE]),
            ("telemetry 30 d, street group", group),
        ):

            def query(ids: list[str] = ids) -> None:
                telemetry.read_series(
                    connection, DeviceClass.STREETLIGHT, ids, METRICS, raw,
                    aggregate=telemetry.Aggregate.AVG, across=telemetry.Across.AVG,
                )  # fmt: skip

            timings[name] = [_timed(query) for _ in range(max(3, samples // 10))]
    return timings


# ----------------------------------------------------------------------------- dashboards


def measure_panels(
    database_url: str, end: datetime, samples: int, progress: Progress
) -> list[PanelTiming]:
    """Every panel's query over the 90 days before ``end``, or over its own range (``now/d``:
    the last day), as Grafana runs it."""
    ninety_days = TimeRange(end - timedelta(days=90), end)
    today = TimeRange(end.replace(hour=0, minute=0, second=0, microsecond=0), end)
    timings = []
    with psycopg.connect(database_url, autocommit=True) as connection:
        variables: dict[str, Any] = {}
        for query in panel_queries():
            if query.relative_time not in {None, "now/d"}:
                raise ValueError(f"{query.panel_title}: no bench range for {query.relative_time}")
            time_range = today if query.relative_time == "now/d" else ninety_days
            if query.dashboard_uid not in variables:
                variables[query.dashboard_uid] = variable_values(
                    connection, query.dashboard_uid, ninety_days
                )
            values = variables[query.dashboard_uid]
            sql = expanded_sql(connection, query, time_range, variables=values)
            rows = len(connection.execute(sql).fetchall())  # warm-up
            seconds = [_time_query(connection, sql) for _ in range(samples)]
            raw_s = None
            if query.raw_sql is not None:
                raw = expanded_sql(connection, query, time_range, raw=True, variables=values)
                raw_s = _time_query(connection, raw)
            timing = PanelTiming(
                query.dashboard_uid, query.panel_title, query.ref_id, rows,
                _percentile(seconds, 95), raw_s,
            )  # fmt: skip
            progress(_panel_line(timing))
            timings.append(timing)
    return timings


def _time_query(connection: psycopg.Connection, sql: str) -> float:
    return _timed(lambda: connection.execute(sql).fetchall())


def _panel_line(timing: PanelTiming) -> str:
    raw = (
        f"raw {timing.raw_s * 1000:8.0f} ms ({timing.raw_over_aggregate:6.1f}x)"
        if timing.raw_s is not None
        else "raw        -"
    )
    title = f"{timing.dashboard}/{timing.panel} [{timing.ref_id}]"
    return f"  {title[:60]:<60} p95 {timing.p95_s * 1000:7.1f} ms  {raw}  rows {timing.rows}"


# ----------------------------------------------------------------------------- all


def run(
    inventory: SiteInventory,
    *,
    days: float,
    history_url: str | None,
    server_url: str | None,
    samples: int,
    progress: Progress,
) -> ApiBenchResult:
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with history_database(inventory, days, end, history_url, server_url, progress) as (
        url,
        generated_s,
    ):
        first, last, rows = history_extent(url)
        end = last + timedelta(seconds=1)
        alerts = write_alerts(url, first, end)
        result = ApiBenchResult((end - first) / timedelta(days=1), rows, generated_s, alerts)
        progress(
            f"history: {rows:,} rows from {first:%Y-%m-%d} to {last:%Y-%m-%d}; {alerts} alerts"
        )
        result.requests = measure_requests(url, end, samples, progress)
        result.panels = measure_panels(url, end, max(5, samples // 4), progress)
    return result


def report(result: ApiBenchResult) -> str:
    lines = [
        f"history: {result.history_days:.1f} days, {result.history_rows:,} rows"
        + (
            f" (generated in {result.history_seconds:.0f} s)"
            if result.history_seconds is not None
            else " (an existing database)"
        )
        + f"; {result.alerts:,} alerts",
        "API over HTTP (p50 / p95; baseline: the same query on raw rows, in process):",
    ]
    for latency in result.requests:
        baseline = (
            f"  raw rows p50 {latency.baseline_p50_s * 1000:.1f} ms"
            f" ({latency.baseline_p50_s / latency.p50_s:.1f}x the API)"
            if latency.baseline_p50_s is not None
            else ""
        )
        lines.append(
            f"  {latency.name:<36} {latency.p50_s * 1000:7.1f} / {latency.p95_s * 1000:7.1f} ms"
            f"{baseline}"
        )
    within = sum(panel.p95_s <= PANEL_TARGET_S for panel in result.panels)
    lines.append(
        f"dashboard panels over 90 days: {within} of {len(result.panels)} within"
        f" {PANEL_TARGET_S * 1000:.0f} ms at p95 from the aggregates"
    )
    lines += [_panel_line(panel) for panel in result.panels]
    return "\n".join(lines)


def to_json(result: ApiBenchResult) -> str:
    return json.dumps(result.as_dict(), default=str)
