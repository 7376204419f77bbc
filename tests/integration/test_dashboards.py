"""Every dashboard panel's SQL, expanded as Grafana expands it, against a database of history.

One database for the module: the Sefrou registry, two days of generated history for a part of
the fleet (three street groups, four signs, two buildings: the whole fleet takes 20 s a day to
generate), the rollups maintained, and a few alerts, dead letters, events, acknowledgements and
HVAC commands. Each panel's query runs for a day (raw samples), five days (hourly rollups) and
forty days (daily rollups) and must return rows with exactly the columns the panel declares.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts import lifecycle, store
from dashboards.build import PanelQuery, panel_queries
from dashboards.macros import TimeRange
from dashboards.run import expanded_sql, run_query, variable_values
from protocol.faults import FaultType
from protocol.payloads import Severity
from protocol.sites import SiteInventory, load_site
from protocol.topics import DeviceClass
from simulators.faults import FaultEvent
from simulators.history import HistoryOptions, generate_history
from storage.registry import upsert_site
from storage.rollups import refresh_period
from tests.conftest import PostgresServer

pytestmark = pytest.mark.integration

ROOT: Final = Path(__file__).resolve().parents[2]
END: Final = datetime(2026, 11, 28, tzinfo=UTC)
"""The end of the generated history, and of every range the panels are run for."""
HISTORY: Final = timedelta(days=2)
RANGES: Final = {
    "raw-1d": TimeRange(END - timedelta(days=1), END),
    "hourly-5d": TimeRange(END - timedelta(days=5), END),
    "daily-40d": TimeRange(END - timedelta(days=40), END),
}
STREET_GROUPS: Final = ("rachad-1", "rachad-2", "bab-al-maqam")
BUILDINGS: Final = ("town-hall", "library")
QUERIES: Final = panel_queries()


def _ids(inventory: SiteInventory, device_class: DeviceClass) -> list[str]:
    return [d.id for d in inventory.by_class(device_class)]


def _part_of_the_fleet(inventory: SiteInventory) -> SiteInventory:
    lights = [
        d.id for d in inventory.by_class(DeviceClass.STREETLIGHT) if d.street_group in STREET_GROUPS
    ]
    zones = [d.id for d in inventory.by_class(DeviceClass.BUILDING) if d.building in BUILDINGS]
    return inventory.only(*lights, *_ids(inventory, DeviceClass.SIGNAGE)[:4], *zones)


@pytest.fixture(scope="module")
def city() -> SiteInventory:
    return load_site(ROOT / "sites" / "sefrou.yaml")


@pytest.fixture(scope="module")
def history(
    postgres_server: PostgresServer, migrated_template: str, city: SiteInventory
) -> Iterator[str]:
    """The URL of a database filled as the module docstring says (like ``database_url``, but
    shared by the module's tests: generating the history is the slow part)."""
    name = f"dash_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name, template=migrated_template)
    try:
        _fill(url, city)
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(scope="module")
def connection(history: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(history, autocommit=True) as connection:
        yield connection


def _failed_light(city: SiteInventory) -> str:
    """The light whose lamp fails 40 hours before the end (it stays dark)."""
    return _ids(_part_of_the_fleet(city), DeviceClass.STREETLIGHT)[0]


def _cut_sign(city: SiteInventory) -> str:
    """The sign without power from 20 to 18 hours before the end."""
    return _ids(_part_of_the_fleet(city), DeviceClass.SIGNAGE)[0]


def _fill(url: str, city: SiteInventory) -> None:
    fleet = _part_of_the_fleet(city)
    failed_light, cut_sign = _failed_light(city), _cut_sign(city)
    with psycopg.connect(url) as connection:
        upsert_site(connection, city)
    faults = (
        FaultEvent(END - timedelta(hours=40), failed_light, FaultType.LAMP_FAILURE),
        FaultEvent(
            END - timedelta(hours=20), cut_sign, FaultType.POWER_LOSS, END - timedelta(hours=18)
        ),
    )
    options = HistoryOptions(fleet, END - HISTORY, END, seed=6, faults=faults, run_name="dash")
    generate_history(options, url, progress=lambda _: None)
    with psycopg.connect(url, autocommit=True) as connection:
        refresh_period(connection, END - HISTORY, END)
    with psycopg.connect(url) as connection:
        _alerts(connection, failed_light, cut_sign)
        _dead_letters(connection)
        _events_and_commands(connection, cut_sign, _ids(fleet, DeviceClass.BUILDING)[0])


def _alerts(connection: psycopg.Connection, light: str, sign: str) -> None:
    """A lamp-out acknowledged, repaired and verified; a sign's pixels acknowledged and still
    open; a street's root cause firing; an info alert resolved by the engine."""
    fired = END - timedelta(hours=20)

    def fire(rule: str, subject: str, severity: Severity, title: str) -> int:
        outcome = lifecycle.fire(rule, subject, severity, fired - timedelta(hours=1), fired)
        alert, _ = store.insert_alert(connection, outcome, title)
        assert alert.alert_id is not None
        return alert.alert_id

    def act(alert_id: int, change: Callable[[lifecycle.Alert], lifecycle.Outcome]) -> None:
        store.change_alert(connection, alert_id, change)

    def after(minutes: int) -> datetime:
        return fired + timedelta(minutes=minutes)

    with connection.transaction():
        lamp = fire("lamp-out", light, Severity.CRITICAL, "Lamp out at night")
        act(lamp, lambda alert: lifecycle.acknowledge(alert, after(15), "crew-north"))
        act(lamp, lambda alert: lifecycle.mark_repaired(alert, after(240), "crew-north", "LED"))
        act(lamp, lambda alert: lifecycle.resolve(alert, after(720)))  # verified at dusk
        pixels = fire("pixel-failures", sign, Severity.WARNING, "Pixels failed")
        act(pixels, lambda alert: lifecycle.acknowledge(alert, after(45), "crew-north"))
        fire("group-offline", "street:rachad-2", Severity.CRITICAL, "Street offline")
        door = fire("door-open", sign, Severity.INFO, "Cabinet door open")
        act(door, lambda alert: lifecycle.resolve(alert, after(30)))


def _dead_letters(connection: psycopg.Connection) -> None:
    refused = [
        (END - timedelta(hours=30), "out_of_range", "battery_soc: 140 % is outside [0, 100] %"),
        (END - timedelta(hours=3), "out_of_range", "lamp_power: 900 W is outside [0, 200] W"),
        (END - timedelta(hours=2), "malformed", "not valid JSON"),
        (END - timedelta(hours=1), "unknown_device", "device 'sl-999' is not in the registry"),
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO dead_letters (digest, received_at, topic, device_id, reason, detail,"
            " payload) VALUES (%s, %s, %s, NULL, %s, %s, %s)",
            [
                (digest, at, "sc/sefrou/x/y/telemetry", reason, detail, detail.encode())
                for at, reason, detail in refused
                for digest in [hashlib.sha256(detail.encode()).digest()]
            ],
        )


def _events_and_commands(connection: psycopg.Connection, sign: str, zone: str) -> None:
    """Events and acknowledgements arriving late by a few seconds (one by ten minutes, from a
    spool), and the HVAC setpoints commanded to a zone before and within the last day."""
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO device_events (ts, device_id, kind, seq, severity, message, data,"
            " received_at) VALUES (%s, %s, %s, %s, 'warning', '', '{}', %s)",
            [
                (END - timedelta(hours=h), sign, "door_opened", h, END - timedelta(hours=h) + lag)
                for h, lag in ((5, timedelta(seconds=2)), (9, timedelta(minutes=10)))
            ],
        )
        issued = (END - timedelta(hours=30), END - timedelta(hours=6))
        cursor.executemany(
            "INSERT INTO commands (id, device_id, action, params, source, issued_at, expires_at,"
            " last_sent_at, outcome, outcome_at) VALUES (%s, %s, 'set_hvac', %s, 'hvac-control',"
            " %s, %s, %s, 'applied', %s)",
            [
                (
                    f"c-{index}",
                    zone,
                    Jsonb(
                        {"mode": "auto", "heating_setpoint": 19.8 + index, "cooling_setpoint": 25}
                    ),
                    at,
                    at + timedelta(minutes=5),
                    at,
                    at + timedelta(seconds=1),
                )
                for index, at in enumerate(issued)
            ],
        )
        cursor.executemany(
            "INSERT INTO command_acks (device_id, command_id, ts, outcome, received_at)"
            " VALUES (%s, %s, %s, 'applied', %s)",
            [
                (zone, f"c-{index}", at, at + timedelta(seconds=1))
                for index, at in enumerate(issued)
            ],
        )


def _name(query: PanelQuery) -> str:
    return f"{query.dashboard_uid.removeprefix('smartcity-')}/{query.panel_title}/{query.ref_id}"


@pytest.mark.parametrize("range_name", RANGES)
@pytest.mark.parametrize("query", QUERIES, ids=_name)
def test_every_panel_returns_rows_with_its_columns(
    connection: psycopg.Connection, query: PanelQuery, range_name: str
) -> None:
    for variable, values in variable_values(
        connection, query.dashboard_uid, RANGES[range_name]
    ).items():
        assert values, f"${variable} of {query.dashboard_uid} has no value"
    columns, rows = run_query(connection, query, RANGES[range_name])
    assert columns == query.columns
    assert rows, f"{_name(query)} returned nothing for {range_name}"


TIERED: Final = [q for q in QUERIES if q.raw_sql is not None]


@pytest.mark.parametrize("query", TIERED, ids=_name)
def test_long_ranges_read_only_the_aggregates(
    connection: psycopg.Connection, query: PanelQuery
) -> None:
    backend = connection.execute("SELECT timescaledb FROM storage_backend").fetchone()
    if backend is not None and backend[0]:
        pytest.skip(
            "plain PostgreSQL only: TimescaleDB's real-time aggregates read the raw samples of "
            "the hours not yet materialized, by design"
        )

    def scanned(time_range: TimeRange) -> set[str]:
        """The telemetry tables and partitions the query really read (EXPLAIN ANALYZE lists
        the branches the guards switched off as never executed, or not at all)."""
        expanded = expanded_sql(connection, query, time_range)
        plan = connection.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {expanded}")
        return {
            line.split(" on ")[1].split()[0]
            for (line,) in plan
            if " on telemetry_" in line and "never executed" not in line
        }

    def raw(tables: set[str]) -> set[str]:
        """Raw tables, partitions and their indexes; not the rollups or their indexes."""
        return {t for t in tables if "_hourly" not in t and "_daily" not in t}

    short, long = scanned(RANGES["raw-1d"]), scanned(RANGES["daily-40d"])
    assert short, "a day reads raw samples"
    assert raw(short) == short, "a day reads raw samples only"
    assert long, "a long range reads the rollups"
    assert not raw(long), "a long range must read the rollups only"


AGREEING: Final = ("Energy today", "Energy and peak demand over the range")
"""Panels whose figures the rollups give exactly: sums, and means of whole hours."""


@pytest.mark.parametrize("range_name", ["hourly-5d", "daily-40d"])
@pytest.mark.parametrize("query", [q for q in TIERED if q.panel_title in AGREEING], ids=_name)
def test_the_aggregates_give_what_the_raw_samples_give(
    connection: psycopg.Connection, query: PanelQuery, range_name: str
) -> None:
    time_range = RANGES[range_name]
    _, from_rollups = run_query(connection, query, time_range)
    _, from_samples = run_query(connection, query, time_range, raw=True)
    totals = _totals(from_samples)
    assert totals, f"{_name(query)}: no samples in {range_name}, nothing compared"
    assert any(totals.values()), f"{_name(query)}: every figure is 0, nothing compared"
    assert _totals(from_rollups) == pytest.approx(totals, rel=1e-9)


def test_each_agreeing_panel_is_compared() -> None:
    """The comparison above is parametrized by title: a renamed panel must not drop out."""
    assert {q.panel_title for q in TIERED if q.panel_title in AGREEING} == set(AGREEING)


def _totals(rows: list[tuple[object, ...]]) -> dict[str, float]:
    """Each label's sum of each numeric column (heating and cooling summed: the raw samples
    split them sample by sample, the rollups by their shares)."""
    totals: dict[str, float] = {}
    for row in rows:
        label = ",".join(str(v) for v in row if isinstance(v, str))
        numbers = [float(v) for v in row if isinstance(v, int | float) and not isinstance(v, bool)]
        totals[label] = totals.get(label, 0.0) + sum(numbers)
    return totals


def test_the_map_shows_open_alerts_silence_and_life(connection: psycopg.Connection) -> None:
    [query] = [q for q in QUERIES if q.panel_title == "Devices by status"]
    _, rows = run_query(connection, query, RANGES["raw-1d"])
    status: Mapping[str, object] = {str(row[0]): row[5] for row in rows}
    assert status["sl-rachad2-001"] == "open alert", "its street's root cause is open"
    assert status["sl-rachad1-001"] == "online"
    assert status["sl-menzel-n-001"] == "offline", "no history for it: silent"
    assert list(status.values()).count("open alert") >= 15


def _rows(connection: psycopg.Connection, title: str, range_name: str) -> list[dict[str, object]]:
    """Panel ``title``'s first query run for ``range_name``: one mapping per row."""
    [query] = [q for q in QUERIES if q.panel_title == title and q.ref_id == "A"]
    columns, rows = run_query(connection, query, RANGES[range_name])
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _numbers(rows: list[dict[str, object]], column: str, **where: object) -> list[float]:
    """``column`` of the rows whose other columns have the values in ``where``."""
    found = []
    for row in rows:
        if all(row[name] == value for name, value in where.items()):
            value = row[column]
            assert isinstance(value, int | float), f"{column} is {value!r}"
            found.append(float(value))
    return found


@pytest.mark.parametrize("range_name", RANGES)
def test_the_panels_show_what_happened(
    connection: psycopg.Connection, city: SiteInventory, range_name: str
) -> None:
    """The failed lamp, the sign's power cut, the alerts' timings, the refused messages."""

    def rows(title: str) -> list[dict[str, object]]:
        return _rows(connection, title, range_name)

    light = city.only(_failed_light(city)).devices[0]
    lamps_out = rows("Lamps out")
    assert max(_numbers(lamps_out, "lamps_out", street_group=light.street_group)) == 1
    assert set(_numbers(lamps_out, "lamps_out", street_group="rachad-1")) == {0}
    signs = rows("Online (share of samples received)")
    cut = _numbers(signs, "availability", sign=_cut_sign(city))
    assert min(cut) < 92, "two hours without power"
    assert max(cut) == pytest.approx(100.0)
    assert set(_numbers(signs, "availability", sign="sign-bab-maqam")) == {0.0}, (
        "a sign that sent nothing is at 0 %, not a gap"
    )
    acknowledge = rows("Time to acknowledge")
    assert _numbers(acknowledge, "median_min", severity="critical") == [pytest.approx(15.0)]
    assert _numbers(acknowledge, "median_min", severity="warning") == [pytest.approx(45.0)]
    assert _numbers(acknowledge, "fired", severity="critical") == [2], "the lamp and the street"
    repair = rows("Time to repair")
    assert _numbers(repair, "median_h", rule_id="lamp-out") == [pytest.approx(4.0)]
    assert _numbers(repair, "median_h", rule_id="door-open") == [pytest.approx(0.5)]
    assert _numbers(repair, "repaired", rule_id="pixel-failures") == [0]
    assert max(_numbers(rows("Delivery lag"), "max_lag_s", source="events")) == 600
    letters = {str(r["reason"]): r["dead_letters"] for r in rows("Dead letters in the range")}
    assert letters == {
        "out_of_range": 1 if range_name == "raw-1d" else 2,
        "malformed": 1,
        "unknown_device": 1,
    }
