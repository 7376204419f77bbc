"""The backtest tells the same story as the live engine: one stored history through both.

Twelve hours of the small site, from a January afternoon, are written by the history
generator with a dead lamp, three of the park's four lights losing power together (a street
gone dark: one root cause, its lights muted behind it) and a sign losing its link. The
backtest runs over the stored history; then the same rows, readings and last wills alike, are
published to a real Mosquitto in the order they arrived, five minutes of device time at a
time, to the live rules engine (event time, writing alerts to PostgreSQL). Both must give the
same alerts: rule, device or group, whether anyone was told, and a start within one reading
interval.

The same for five January days of two buildings whose zones learn their heat balance
(``expected_air_temperature``) from nothing: two sensors drift, one either way, one of them
in a zone alone in its building, beside a zone whose heating fails.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import psycopg
import pytest

from alerts import store
from alerts.catalogue import GROUP_OFFLINE
from protocol.catalogue import CATALOGUE, ValueKind
from protocol.decoding import AcceptanceWindow
from protocol.faults import FaultType
from protocol.sites import parse_site
from protocol.topics import Channel, DeviceClass, DeviceTopic
from rules import PACKAGED_RULES
from rules.backtest import backtest
from rules.model import load_rules
from rules.service import RulesConfig, RulesService
from runtime.local_services import LocalMosquitto, free_port
from simulators.city import drift_sign
from simulators.faults import FaultEvent
from simulators.history import HistoryOptions, generate_history
from storage.registry import upsert_site
from tests.conftest import PostgresServer
from tests.integration.helpers import Publisher, reading
from tests.simulation_helpers import small_site

pytestmark = pytest.mark.integration

START: Final = datetime(2026, 1, 12, 14, tzinfo=UTC)
END: Final = START + timedelta(hours=12)
STEP: Final = timedelta(minutes=5)
"""A streetlight's reading interval: the replay's step, and the tolerance on start times."""
SITE: Final = "simtown"
ZONES_SITE: Final = """
site: {id: simtown, name: Simtown, timezone: Africa/Casablanca,
       latitude: 33.83, longitude: -4.84, altitude: 850}
buildings:
  - {id: hall, name: Town hall, kind: town_hall, latitude: 33.83, longitude: -4.84,
     zones: [{id: z1, area_m2: 150}, {id: z2, area_m2: 120}, {id: z3, area_m2: 80}]}
  - {id: kiosk, name: Bus kiosk, kind: road_station, latitude: 33.829, longitude: -4.838,
     zones: [{id: waiting-room, area_m2: 60}]}
"""
ZONES_START: Final = datetime(2026, 1, 5, tzinfo=UTC)
ZONES_END: Final = ZONES_START + timedelta(days=5)
"""In the past (the engine refuses readings from the future); the faults come on the fourth
day, once a zone busy by day (the kiosk) has learnt from enough empty nights."""
ZONES_STEP: Final = timedelta(minutes=1)
"""A zone's reading interval: the tolerance on start times."""
ZONE_FAULTS: Final = (
    FaultEvent(ZONES_START + timedelta(days=3, hours=9), "hall-z2", FaultType.SENSOR_DRIFT),
    FaultEvent(ZONES_START + timedelta(days=3), "hall-z3", FaultType.HEATING_FAILURE),
    FaultEvent(
        ZONES_START + timedelta(days=3, hours=3), "kiosk-waiting-room", FaultType.SENSOR_DRIFT
    ),
)


@dataclass(frozen=True, slots=True)
class Replay:
    """A history's period, and how much device time the replay publishes at a time."""

    start: datetime
    end: datetime
    step: timedelta


REPLAY: Final = Replay(START, END, STEP)
ZONES_REPLAY: Final = Replay(ZONES_START, ZONES_END, timedelta(hours=1))
FAULTS: Final = (
    FaultEvent(START + timedelta(hours=1), "sl-main-001", FaultType.LAMP_FAILURE),
    *(
        FaultEvent(
            START + timedelta(hours=6), device, FaultType.POWER_LOSS, START + timedelta(hours=7)
        )
        for device in ("sl-park-001", "sl-park-002", "sl-park-003")
    ),
    FaultEvent(
        START + timedelta(hours=8),
        "sign-a",
        FaultType.COMMUNICATION_LOSS,
        START + timedelta(hours=8, minutes=30),
    ),
)


@dataclass(frozen=True, slots=True, order=True)
class Seen:
    rule_id: str
    subject: str
    told: bool
    start: datetime


@pytest.fixture(scope="module")
def history(postgres_server_module_db: str) -> str:
    url = postgres_server_module_db
    inventory = small_site()
    with psycopg.connect(url) as connection:
        upsert_site(connection, inventory)
    generate_history(
        HistoryOptions(inventory, START, END, seed=3, faults=FAULTS, run_name="equal"),
        url,
        progress=lambda _line: None,
    )
    return url


@pytest.fixture(scope="module")
def postgres_server_module_db(
    postgres_server: PostgresServer, migrated_template: str
) -> Iterator[str]:
    name = "backtest_equals_live"
    url = postgres_server.create_database(name, template=migrated_template)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(scope="module")
def zones_history(postgres_server: PostgresServer, migrated_template: str) -> Iterator[str]:
    name = "backtest_equals_live_zones"
    url = postgres_server.create_database(name, template=migrated_template)
    inventory = parse_site(ZONES_SITE, source="<zones site>")
    with psycopg.connect(url) as connection:
        upsert_site(connection, inventory)
    generate_history(
        HistoryOptions(
            inventory, ZONES_START, ZONES_END, seed=5, faults=ZONE_FAULTS, run_name="zones"
        ),
        url,
        progress=lambda _line: None,
    )
    yield url
    postgres_server.drop_database(name)


def _from_backtest(url: str, replay: Replay = REPLAY) -> list[Seen]:
    rules = load_rules(PACKAGED_RULES, [fault.value for fault in FaultType])
    result = backtest(url, rules, replay.start, replay.end, warmup=timedelta(0))
    return sorted(
        Seen(alert.rule_id, alert.device_id, not alert.muted, alert.start)
        for alert in result.alerts
    )


def _messages(url: str) -> list[tuple[datetime, str, bytes]]:
    """Every stored reading and state message: when it reached the broker, topic, payload."""
    found: list[tuple[datetime, str, bytes]] = []
    with psycopg.connect(url) as connection:
        classes: dict[str, str] = dict(
            connection.execute("SELECT device_id, device_class FROM devices").fetchall()
        )
        for device_class in DeviceClass:
            metrics = CATALOGUE[device_class].metrics
            columns = ", ".join(metrics)
            rows = connection.execute(
                f"SELECT device_id, ts, {columns} FROM telemetry_{device_class.value} ORDER BY ts"  # noqa: S608 - catalogue names
            ).fetchall()
            for seq, (device_id, ts, *values) in enumerate(rows):
                sample: dict[str, float | bool] = {}
                for (name, metric), value in zip(metrics.items(), values, strict=True):
                    if value is None:
                        continue
                    if metric.kind is ValueKind.FLAG:
                        sample[name] = bool(value)
                    elif metric.kind in (ValueKind.BITS, ValueKind.COUNT):
                        sample[name] = int(value)
                    else:
                        sample[name] = float(value)
                topic, payload = reading(SITE, device_class, device_id, ts, sample, seq=seq)
                found.append((ts, topic, payload))
        for ts, device_id, status, reason, boot_id, received_at in connection.execute(
            "SELECT ts, device_id, status, reason, boot_id, received_at FROM device_states"
        ).fetchall():
            where = DeviceTopic(SITE, DeviceClass(classes[device_id]), device_id, Channel.STATE)
            state = {"v": 1, "status": status, "ts": ts.isoformat(), "boot_id": boot_id}
            if reason is not None:
                state["reason"] = reason
            found.append((received_at, str(where), json.dumps(state).encode()))
    return sorted(found, key=lambda message: message[0])


def _from_live(
    url: str, workdir_port: tuple[LocalMosquitto, int], replay: Replay = REPLAY
) -> list[Seen]:
    broker, _ = workdir_port
    engine = RulesService(
        RulesConfig(
            url,
            PACKAGED_RULES,
            mqtt_port=broker.port,
            tick_s=0.05,
            group_wait_s=2.0,
            event_time=True,
            window=AcceptanceWindow(max_age=timedelta(days=10 * 365)),
        )
    )
    thread = threading.Thread(target=engine.run, name="rules")
    thread.start()
    publisher = Publisher(broker.port, "replay")
    try:
        assert engine.ready.wait(30)
        messages = _messages(url)
        sent = 0
        moment, step = replay.start, replay.step
        while moment < replay.end + step:
            batch = [
                (topic, payload) for at, topic, payload in messages if moment <= at < moment + step
            ]
            publisher.publish_all(batch)
            sent += len(batch)
            deadline = time.monotonic() + 30
            while engine.messages_applied < sent and time.monotonic() < deadline:
                time.sleep(0.01)
            assert engine.messages_applied >= sent, "the engine did not keep up"
            time.sleep(0.15)  # a periodic check at this moment of device time
            moment += step
        time.sleep(2.5)  # the held alerts' wait
    finally:
        publisher.close()
        engine.stop()
        thread.join(30)
    with psycopg.connect(url) as connection:
        alerts = [alert for alert, _ in store.alerts(connection, limit=10_000)]
    return sorted(
        Seen(alert.rule_id, alert.subject, alert.last_notified_at is not None, alert.fired_at)
        for alert in alerts
    )


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalMosquitto, int]]:
    mosquitto = LocalMosquitto(tmp_path_factory.mktemp("equal") / "broker", free_port())
    mosquitto.start()
    yield mosquitto, mosquitto.port
    mosquitto.kill()


def test_the_backtest_and_the_live_engine_raise_the_same_alerts(
    history: str, broker: tuple[LocalMosquitto, int]
) -> None:
    offline = _from_backtest(history)
    live = _from_live(history, broker)
    key = [(seen.rule_id, seen.subject, seen.told) for seen in offline]
    assert key == [(seen.rule_id, seen.subject, seen.told) for seen in live], (offline, live)
    for mine, theirs in zip(offline, live, strict=True):
        assert abs(mine.start - theirs.start) <= STEP, (mine, theirs)
    groups = [seen for seen in offline if seen.rule_id == GROUP_OFFLINE]
    assert [(g.subject, g.told) for g in groups] == [("street:park", True)]
    assert {seen.subject for seen in offline if not seen.told} == {
        "sl-park-001",
        "sl-park-002",
        "sl-park-003",
    }
    assert ("lamp-out", "sl-main-001", True) in key
    assert ("sign-offline", "sign-a", True) in key


def test_zones_learning_their_balance_alert_the_same_live_and_in_the_backtest(
    zones_history: str, broker: tuple[LocalMosquitto, int]
) -> None:
    offline = _from_backtest(zones_history, ZONES_REPLAY)
    live = _from_live(zones_history, broker, ZONES_REPLAY)
    key = [(seen.rule_id, seen.subject, seen.told) for seen in offline]
    assert key == [(seen.rule_id, seen.subject, seen.told) for seen in live], (offline, live)
    for mine, theirs in zip(offline, live, strict=True):
        assert abs(mine.start - theirs.start) <= ZONES_STEP, (mine, theirs)
    drifting = {seen.subject: seen.start for seen in offline if seen.rule_id == "sensor-drift"}
    assert sorted(drifting) == ["hall-z2", "kiosk-waiting-room"], offline
    for fault in ZONE_FAULTS:
        if fault.fault is FaultType.SENSOR_DRIFT:
            assert fault.start < drifting[fault.device_id] <= fault.start + timedelta(hours=36)
    assert {drift_sign(f) for f in ZONE_FAULTS if f.fault is FaultType.SENSOR_DRIFT} == {1, -1}
