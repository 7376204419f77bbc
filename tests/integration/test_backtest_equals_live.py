"""The backtest tells the same story as the live engine: one stored history through both.

Twelve hours of the small site, from a January afternoon, are written by the history
generator with a dead lamp, three of the park's four lights losing power together (a street
gone dark: one root cause, its lights muted behind it) and a sign losing its link. The
backtest runs over the stored history; then the same rows, readings and last wills alike, are
published to a real Mosquitto in the order they arrived, five minutes of device time at a
time, to the live rules engine (event time, writing alerts to PostgreSQL). Both must give the
same alerts: rule, device or group, whether anyone was told, and a start within one reading
interval.
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
from protocol.topics import Channel, DeviceClass, DeviceTopic
from rules import PACKAGED_RULES
from rules.backtest import backtest
from rules.model import load_rules
from rules.service import RulesConfig, RulesService
from runtime.local_services import LocalMosquitto, free_port
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


def _from_backtest(url: str) -> list[Seen]:
    rules = load_rules(PACKAGED_RULES, [fault.value for fault in FaultType])
    result = backtest(url, rules, START, END, warmup=timedelta(0))
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


def _from_live(url: str, workdir_port: tuple[LocalMosquitto, int]) -> list[Seen]:
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
        moment = START
        while moment < END + STEP:
            batch = [
                (topic, payload) for at, topic, payload in messages if moment <= at < moment + STEP
            ]
            publisher.publish_all(batch)
            sent += len(batch)
            deadline = time.monotonic() + 30
            while engine.messages_applied < sent and time.monotonic() < deadline:
                time.sleep(0.01)
            assert engine.messages_applied >= sent, "the engine did not keep up"
            time.sleep(0.15)  # a periodic check at this moment of device time
            moment += STEP
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
