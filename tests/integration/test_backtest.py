"""``smartcity rules backtest`` and ``rules check``: the default rules over two simulated days.

Two days of the small site go into a database by the history generator, with one fault of a
type the default rules cover on each of most devices, each at a time its signature can show
(a lamp fault spans a night, day burning a day). The backtest must find every one within its
rule's ``fires_within`` after it could first show, and nothing on the healthy devices. The
parts without a database (which columns to read, the array format, scopes) are checked too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from protocol.catalogue import CATALOGUE
from protocol.faults import FaultType
from protocol.solar import solar_elevation
from protocol.topics import DeviceClass
from rules import PACKAGED_RULES
from rules.backtest import (
    BacktestError,
    BacktestResult,
    DeviceHistory,
    DeviceInfo,
    backtest,
    evaluate_device,
    in_scope,
    metrics_read,
    parse_float8_matrix,
    rules_for,
)
from rules.context import DevicePlace, derive
from rules.expressions import Expression
from rules.model import Rule, RuleSet, Scope, load_rules, parse_rules
from rules.names import ZONE_MODEL_NAMES, names_for
from rules.zone_model import ZoneHistory, expected_temperatures
from simulators.faults import FaultEvent
from simulators.history import HistoryOptions, generate_history
from smartcity.cli import app
from storage.registry import upsert_site
from tests.conftest import PostgresServer
from tests.simulation_helpers import small_site

pytestmark = pytest.mark.integration

DEFAULT_RULES: Final = PACKAGED_RULES
START: Final = datetime(2026, 1, 12, 12, tzinfo=UTC)
"""A January noon: the run covers two afternoons, two nights and a morning."""
END: Final = START + timedelta(days=2)
RUN: Final = "backtest-test"
LATITUDE, LONGITUDE = 33.83, -4.84


def _at(day: int, hour: int) -> datetime:
    """``hour`` o'clock UTC on the run's first (0), second (1) or third (2) day."""
    return START.replace(hour=0) + timedelta(days=day, hours=hour)


def _fault(
    device_id: str, fault: FaultType, start: datetime = START, end: datetime = END
) -> FaultEvent:
    return FaultEvent(start, device_id, fault, end)


FAULTS: Final = (
    _fault("sl-main-001", FaultType.LAMP_FAILURE, _at(0, 15), _at(1, 9)),
    _fault("sl-main-002", FaultType.DAY_BURNING, _at(1, 8), _at(1, 16)),
    _fault("sl-main-003", FaultType.CYCLING_DRIVER, _at(0, 17), _at(1, 7)),
    _fault("sl-main-004", FaultType.KNOCK_DOWN),
    _fault("sl-main-005", FaultType.TILT),
    _fault("sl-main-006", FaultType.CHARGE_CONTROLLER_FAULT),
    _fault("sl-park-001", FaultType.BATTERY_FADE),
    _fault("sl-park-002", FaultType.POWER_LOSS, _at(1, 1), _at(1, 4)),
    _fault("sign-a", FaultType.SUPPLY_FAILURE, _at(0, 18), _at(1, 6)),
    _fault("hall-archives", FaultType.WINDOW_OPEN, _at(0, 18), _at(1, 2)),
    _fault("sl-park-003", FaultType.COMMUNICATION_LOSS, _at(0, 20), _at(0, 23)),
)
"""One fault per device, each where its signature shows within the two days."""
HEALTHY: Final = ("sl-park-004", "sign-b", "hall-offices")


def observable_from(fault: FaultType, start: datetime) -> datetime:
    """When a fault starting at ``start`` can first show in the telemetry: lamp faults at
    night (sun below -4 deg), day burning in daylight (above 5 deg), the rest at once."""
    night = (FaultType.LAMP_FAILURE, FaultType.CYCLING_DRIVER, FaultType.BATTERY_FADE)
    if fault not in (*night, FaultType.DAY_BURNING):
        return start
    minutes = start.timestamp() + np.arange(0.0, 2 * 86_400, 60.0)
    elevation = solar_elevation(minutes, LATITUDE, LONGITUDE)
    shows = elevation < -4 if fault in night else elevation > 5
    return datetime.fromtimestamp(float(minutes[np.argmax(shows)]), UTC)


@dataclass(frozen=True)
class Simulated:
    database_url: str
    rules: RuleSet
    result: BacktestResult


@pytest.fixture(scope="module")
def simulated(postgres_server: PostgresServer, migrated_template: str) -> Iterator[Simulated]:
    name = f"backtest_{uuid.uuid4().hex[:8]}"
    database_url = postgres_server.create_database(name, template=migrated_template)
    try:
        inventory = small_site()
        with psycopg.connect(database_url) as connection:
            upsert_site(connection, inventory)
        generate_history(
            HistoryOptions(inventory, START, END, seed=2026, faults=FAULTS, run_name=RUN),
            database_url,
            progress=lambda _line: None,
        )
        rules = load_rules(DEFAULT_RULES, [fault.value for fault in FaultType])
        yield Simulated(database_url, rules, backtest(database_url, rules, START, END, run=RUN))
    finally:
        postgres_server.drop_database(name)


# ----------------------------------------------------------------------------- detection


@pytest.mark.parametrize("event", FAULTS, ids=[f"{e.fault}@{e.device_id}" for e in FAULTS])
def test_each_fault_is_detected_within_its_rules_bound(
    simulated: Simulated, event: FaultEvent
) -> None:
    detecting = {r.id: r for r in simulated.rules.rules if event.fault.value in r.detects}
    assert detecting, f"no default rule detects {event.fault}"
    mine = [
        alert
        for alert in simulated.result.alerts
        if alert.device_id == event.device_id and alert.rule_id in detecting
    ]
    assert mine, f"no alert for {event.fault} on {event.device_id}"
    first = min(mine, key=lambda alert: alert.start)
    bound = detecting[first.rule_id].fires_within
    assert bound is not None
    shows = observable_from(event.fault, event.start)
    assert event.start <= first.start <= shows + bound, (
        f"{first.rule_id} fired {first.start - shows} after {event.fault} could show"
    )


def test_a_link_loss_is_told_from_its_will_and_birth(simulated: Simulated) -> None:
    """The spool replays a link loss's readings: only device_states shows it."""
    with psycopg.connect(simulated.database_url) as connection:
        states = connection.execute(
            "SELECT status, boot_id FROM device_states WHERE device_id = 'sl-park-003'"
            " ORDER BY received_at"
        ).fetchall()
    assert states == [("offline", "sl-park-003-boot-0"), ("online", "sl-park-003-boot-0")]
    [alert] = [a for a in simulated.result.alerts if a.device_id == "sl-park-003"]
    assert alert.rule_id == "light-offline"
    assert (alert.start, alert.end) == (
        _at(0, 20) + timedelta(seconds=90),  # the broker's will: 1.5 keepalives later
        _at(0, 23) + timedelta(seconds=5),  # the birth once the link is back
    )


def test_soiled_and_shaded_panels_are_found_within_days(
    postgres_server: PostgresServer, migrated_template: str
) -> None:
    """Harvest ratios need complete days: five days of three lights, two with dirty or
    shaded panels from the start."""
    name = f"backtest_{uuid.uuid4().hex[:8]}"
    database_url = postgres_server.create_database(name, template=migrated_template)
    lights = ("sl-main-001", "sl-main-002", "sl-main-003")
    faults = (
        _fault(lights[0], FaultType.PANEL_SOILING, START, START + timedelta(days=6)),
        _fault(lights[1], FaultType.PANEL_SHADING, START, START + timedelta(days=6)),
    )
    end = START + timedelta(days=5)
    try:
        inventory = small_site().only(*lights)
        with psycopg.connect(database_url) as connection:
            upsert_site(connection, inventory)
        generate_history(
            HistoryOptions(inventory, START, end, seed=7, faults=faults, run_name="panels"),
            database_url,
            progress=lambda _line: None,
        )
        rules = load_rules(DEFAULT_RULES, [fault.value for fault in FaultType])
        result = backtest(database_url, rules, START, end, run="panels")
    finally:
        postgres_server.drop_database(name)
    # The lights run their agents' own program here: a shaded panel in January leaves its
    # battery too low for the night, and will-go-dark foretells it; every such forecast
    # must come true.
    forecasts = [a for a in result.alerts if a.rule_id == "will-go-dark"]
    assert sorted(result.foretold_darkness(), key=str) == sorted(forecasts, key=str)
    found = {(a.rule_id, a.device_id): a.start for a in result.alerts if a not in forecasts}
    assert set(found) == {("panel-soiled", lights[0]), ("panel-shaded", lights[1])}
    for (rule_id, _), fired in found.items():
        bound = rules.by_id(rule_id).fires_within
        assert bound is not None
        assert fired <= START + bound, f"{rule_id} after {fired - START}"


def test_healthy_devices_raise_nothing(simulated: Simulated) -> None:
    assert [a for a in simulated.result.alerts if a.device_id in HEALTHY] == []


def test_every_alert_is_a_true_positive(simulated: Simulated) -> None:
    """Each fault shows only as itself here, so nothing fires but what it should."""
    score = simulated.result.score
    assert score.false_positives == 0, [
        (rule.rule_id, rule.false_positives) for rule in score.by_rule.values()
    ]
    assert score.recall == 1.0
    assert score.device_count == len(small_site().devices)
    for event in FAULTS:
        assert score.by_fault[event.fault.value].injected == 1


def test_rows_evaluated_are_readings_times_rules(simulated: Simulated) -> None:
    result = simulated.result
    with psycopg.connect(simulated.database_url) as connection:
        expected = 0
        for device_class in DeviceClass:
            (readings,) = connection.execute(
                f"SELECT count(*) FROM telemetry_{device_class}"  # noqa: S608 - enum values
            ).fetchone() or (0,)
            expected += readings * len(simulated.rules.for_class(device_class))
    assert result.rows_evaluated == expected
    assert result.rows_per_second > 0
    assert set(result.rows_evaluated_by_rule) == {rule.id for rule in simulated.rules.rules}


def test_only_some_devices(simulated: Simulated) -> None:
    ids = ["sl-main-001", "hall-offices"]
    result = backtest(simulated.database_url, simulated.rules, START, END, ids, RUN)
    assert {alert.device_id for alert in result.alerts} == {"sl-main-001"}
    assert result.device_count == 2
    assert [fault.device_id for fault in result.faults] == ["sl-main-001"]


def test_unknown_devices_and_runs_are_refused(simulated: Simulated) -> None:
    with pytest.raises(BacktestError, match="sl-nowhere"):
        backtest(simulated.database_url, simulated.rules, START, END, ["sl-nowhere"])
    with pytest.raises(BacktestError, match=f"known runs: {RUN}"):
        backtest(simulated.database_url, simulated.rules, START, END, run="no-such-run")
    with pytest.raises(BacktestError, match="time zone"):
        backtest(simulated.database_url, simulated.rules, START.replace(tzinfo=None), END)


# ----------------------------------------------------------------------------- the commands

BROKEN: Final = {
    "bad_expression.yaml": (
        "rules:\n  - id: lamp-out\n    class: streetlight\n    title: {en: Lamp out}\n"
        "    when: lamp_on and and lamp_power < 1\n",
        5,
        "not a valid expression",
    ),
    "unknown_field.yaml": (
        "rules:\n  - id: lamp-out\n    class: streetlight\n    title: {en: Lamp out}\n"
        "    when: lamp_on\n    severty: critical\n",
        6,
        "unknown field",
    ),
    "unknown_metric.yaml": (
        "rules:\n  - id: lamp-out\n    class: streetlight\n    title: {en: Lamp out}\n"
        "    when: lamp_on and lamp_powr < 1\n",
        5,
        "did you mean lamp_power?",
    ),
    "unknown_fault.yaml": (
        "rules:\n  - id: lamp-out\n    class: streetlight\n    title: {en: Lamp out}\n"
        "    when: lamp_on\n    detects: [lamp_failur]\n",
        6,
        "unknown fault type 'lamp_failur'",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_check_names_file_line_and_hint(tmp_path: Path, name: str) -> None:
    text, line, hint = BROKEN[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    outcome = CliRunner().invoke(app, ["rules", "check", str(path)])
    assert outcome.exit_code == 1, outcome.output
    assert f"error: {path}: rules[0] (lamp-out)" in outcome.output
    assert f"(line {line})" in outcome.output
    assert hint in outcome.output


def test_check_passes_the_default_rules() -> None:
    outcome = CliRunner().invoke(app, ["rules", "check"])
    assert outcome.exit_code == 0, outcome.output
    count = len(load_rules(DEFAULT_RULES).rules)
    assert outcome.output.startswith(f"rules/default_rules.yaml: {count} rules OK (building ")


def test_backtest_command_compares_and_ends_with_json(simulated: Simulated, tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text(
        DEFAULT_RULES.read_text(encoding="utf-8").replace("for: 1h\n", "for: 2h\n", 1),
        encoding="utf-8",
    )
    outcome = CliRunner().invoke(
        app,
        [
            "rules",
            "backtest",
            "--from",
            START.isoformat(),
            "--to",
            END.isoformat(),
            "--run",
            RUN,
            "--compare",
            str(draft),
            "--json",
        ],
        env={"DATABASE_URL": simulated.database_url},
    )
    assert outcome.exit_code == 0, outcome.output
    lines = outcome.stdout.splitlines()
    document = json.loads(lines[-1])
    assert set(document) == {"current", "draft"}
    assert document["current"]["score"]["totals"]["recall"] == 1.0
    assert "rows/s" in lines[-2]
    assert any(line.startswith("lamp-out ") for line in lines), "the rules table"
    assert "recall default_rules" in outcome.stdout
    assert "recall draft" in outcome.stdout


# ----------------------------------------------------------------------------- pure parts

_EVERY_METRIC: Final = {
    device_class: tuple(CATALOGUE[device_class].metrics) for device_class in DeviceClass
}


def _rule(device_class: DeviceClass, when: str, scope: str = "") -> Rule:
    text = (
        f"rules:\n  - id: r\n    class: {device_class}\n    title: {{en: T}}\n"
        f"    when: {when}\n" + (f"    scope: {scope}\n" if scope else "")
    )
    return parse_rules(text).rules[0]


@pytest.mark.parametrize("device_class", list(DeviceClass))
def test_the_metrics_read_are_enough_for_every_name(device_class: DeviceClass) -> None:
    """Each name derived from only the metrics :func:`metrics_read` asks for is what it is
    from all of them: leaving the other columns out changes nothing a rule reads."""
    place = DevicePlace(
        "d",
        device_class,
        LATITUDE,
        LONGITUDE,
        "Africa/Casablanca",
        {"lamp_w": 60.0, "panel_wp": 200.0, "battery_wh": 1300.0, "pixels": 2304.0},
    )
    generator = np.random.default_rng(7)
    unix_s = START.timestamp() + np.arange(0.0, 4 * 86_400, 300.0)
    metrics = {name: generator.uniform(0, 100, len(unix_s)) for name in _EVERY_METRIC[device_class]}

    def environment(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        env = derive(place, unix_s, columns)
        # a zone's balance is run by the backtest over its building (rules/zone_model.py)
        for name in ZONE_MODEL_NAMES if device_class is DeviceClass.BUILDING else ():
            history = ZoneHistory(unix_s, {**columns, "sun_elevation": env["sun_elevation"]})
            (env[name],) = expected_temperatures([history], alone=True)
        return env

    whole = environment(metrics)
    # peer_ names come from the other devices' histories, not from derive()
    for name in sorted(n for n in names_for(device_class) if not n.startswith("peer_")):
        needed = metrics_read([_rule(device_class, f"{name} > 1")], device_class)
        assert len(needed) < len(_EVERY_METRIC[device_class]), f"{name} needs every metric?"
        part = environment({metric: metrics[metric] for metric in needed})
        np.testing.assert_array_equal(part[name], whole[name], err_msg=name)


def test_a_name_it_does_not_know_reads_every_metric() -> None:
    """A name added to the context later, before metrics_read learns where it comes from."""
    rule = _rule(DeviceClass.BUILDING, "air_temperature > 1")
    future = replace(rule, when=Expression.parse("comfort_index > 1", {"comfort_index"}))
    assert metrics_read([future], DeviceClass.BUILDING) == _EVERY_METRIC[DeviceClass.BUILDING]


def test_missing_data_rules_read_what_tells_why() -> None:
    text = (
        "rules:\n  - id: m\n    class: streetlight\n    title: {en: M}\n    missing: {after: 3}\n"
    )
    assert metrics_read(parse_rules(text).rules, DeviceClass.STREETLIGHT) == (
        "battery_soc",
        "controller_status",
    )


def test_scope_any_of_its_lists() -> None:
    device = DeviceInfo(
        DevicePlace("sl-1", DeviceClass.STREETLIGHT, LATITUDE, LONGITUDE, "UTC"),
        street_group="main",
        cabinet="c1",
    )
    assert in_scope(Scope(), device)
    assert in_scope(Scope(street_groups=("park", "main")), device)
    assert in_scope(Scope(cabinets=("c1",)), device)
    assert in_scope(Scope(devices=("sl-1",)), device)
    assert not in_scope(Scope(street_groups=("park",), buildings=("main",)), device)
    scoped = _rule(DeviceClass.STREETLIGHT, "tilt > 1", "{street_groups: [park]}")
    everywhere = _rule(DeviceClass.STREETLIGHT, "tilt > 1")
    zone_rule = _rule(DeviceClass.BUILDING, "co2 > 1")
    assert rules_for([scoped, everywhere, zone_rule], device) == (everywhere,)


def test_float8_matrix_as_postgresql_sends_it(simulated: Simulated) -> None:
    with psycopg.connect(simulated.database_url) as connection:
        row = connection.execute(
            "SELECT array_send(ARRAY[[1.5, 'NaN'], [-2, 3e10]]::float8[])", binary=True
        ).fetchone()
        assert row is not None
        matrix = parse_float8_matrix(bytes(row[0]))
        np.testing.assert_array_equal(matrix, [[1.5, np.nan], [-2.0, 3e10]])
        with_null = connection.execute(
            "SELECT array_send(ARRAY[[1, NULL]]::float8[])", binary=True
        ).fetchone()
        assert with_null is not None
        with pytest.raises(BacktestError, match="NULL"):
            parse_float8_matrix(bytes(with_null[0]))


def test_evaluate_device_counts_rows_and_times_alerts() -> None:
    place = DevicePlace("z", DeviceClass.BUILDING, LATITUDE, LONGITUDE, "UTC")
    unix_s = START.timestamp() + np.arange(0.0, 600.0, 60.0)
    window = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=np.float64)
    rules = parse_rules(
        "rules:\n"
        "  - {id: w, class: building, title: {en: W}, when: window_open, for: 1m}\n"
        "  - {id: m, class: building, title: {en: M}, missing: {after: 3}}\n"
    ).rules
    history = DeviceHistory(DeviceInfo(place), unix_s, {"window_open": window})
    outcome = evaluate_device(rules, history, until_s=unix_s[-1] + 600)
    assert outcome.rows_evaluated == 10 * 2
    fired = [(a.rule_id, a.fired_s - unix_s[0], a.resolved_s) for a in outcome.alerts]
    assert fired == [("w", 180.0, unix_s[5]), ("m", 9 * 60 + 180.0, None)]


def test_a_fault_free_day_of_the_whole_city_raises_almost_nothing(
    postgres_server: PostgresServer, migrated_template: str
) -> None:
    """The acceptance bound, on a CI-sized period: at most 1 alert per 1,000 device-days
    (a January day of all of Sefrou's 2,162 devices after a day of warm-up; the calibration
    weeks of docs/faults.md raised none)."""
    from protocol.sites import load_site

    name = f"backtest_{uuid.uuid4().hex[:8]}"
    database_url = postgres_server.create_database(name, template=migrated_template)
    inventory = load_site(Path(__file__).parents[2] / "sites" / "sefrou.yaml")
    first, end = datetime(2026, 1, 19, tzinfo=UTC), datetime(2026, 1, 21, tzinfo=UTC)
    try:
        with psycopg.connect(database_url) as connection:
            upsert_site(connection, inventory)
        generate_history(
            HistoryOptions(inventory, first, end, seed=5, run_name="clean"),
            database_url,
            progress=lambda _line: None,
        )
        rules = load_rules(DEFAULT_RULES, [fault.value for fault in FaultType])
        result = backtest(database_url, rules, end - timedelta(days=1), end)
    finally:
        postgres_server.drop_database(name)
    assert result.device_count == len(inventory.devices)
    per_thousand = result.score.alerts_per_1000_device_days
    assert per_thousand is not None
    assert per_thousand <= 1.0, result.alerts_by_rule
