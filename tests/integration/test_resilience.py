"""Nothing lost, nothing doubled: ingest killed, the database stopped, the broker restarted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from protocol.payloads import MAX_PAYLOAD_BYTES
from runtime.local_services import LocalMosquitto, LocalPostgres
from storage.migrate import migrate
from tests.conftest import _private_cluster
from tests.integration.helpers import (
    TelemetryMessage,
    provision_test_site,
    publisher,
    running_ingest,
    scalar,
    streetlight_stream,
    wait_until,
)

pytestmark = pytest.mark.integration


def assert_stored_exactly_once(database_url: str, messages: list[TelemetryMessage]) -> None:
    expected = {
        (m.device_id, metric, m.ts, float(value))
        for m in messages
        for metric, value in m.values.items()
    }
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT device_id, metric, ts, value FROM telemetry WHERE device_class = 'streetlight'"
        ).fetchall()
    assert len(rows) == len(expected), "no row lost, no row doubled"
    assert set(rows) == expected, "every row exactly as sent"


def publish_in_background(port: int, messages: list[TelemetryMessage]) -> threading.Thread:
    def run() -> None:
        with publisher(port, "background-device") as device:
            device.publish_all([(m.topic, m.payload) for m in messages], timeout_s=180)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def start_ingest_process(database_url: str, port: int, log_file: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SMARTCITY_MQTT_PORT": str(port),
        "SMARTCITY_INGEST_METRICS_PORT": "0",
        "SMARTCITY_INGEST_BATCH_MAX_MESSAGES": "200",
    }
    smartcity = shutil.which("smartcity", path=str(Path(sys.executable).parent))
    assert smartcity, "the smartcity command is installed beside this Python"
    with log_file.open("ab") as log:
        return subprocess.Popen([smartcity, "ingest"], env=env, stdout=log, stderr=log)


def test_ingest_killed_mid_stream_then_restarted_stores_every_message_exactly_once(
    database_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    provision_test_site(database_url)
    messages = streetlight_stream(6_000)
    log_file = tmp_path / "ingest.log"
    ingest = start_ingest_process(database_url, broker.port, log_file)
    try:
        # Wait for the persistent session to exist, so the broker queues for us while we are dead.
        wait_until(lambda: "connected to broker" in log_file.read_text(), what="ingest to connect")
        sender = publish_in_background(broker.port, messages)
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") > 1_000,
            what="ingest to be mid-stream",
        )
        ingest.send_signal(signal.SIGKILL)
        ingest.wait()
        stored_at_kill = scalar(database_url, "SELECT count(*) FROM telemetry")
        assert stored_at_kill < 12_000, "killed mid-stream, not after"
        ingest = start_ingest_process(database_url, broker.port, log_file)
        sender.join(180)
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") >= 12_000,
            timeout_s=120,
            what="the restarted ingest to catch up",
        )
        time.sleep(1)  # anything doubled would show up now
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(30)
    assert_stored_exactly_once(database_url, messages)


@pytest.fixture
def controlled_postgres(pytestconfig: pytest.Config) -> Iterator[LocalPostgres]:
    """A server of this test's own, which it may stop and start."""
    server = _private_cluster(pytestconfig, "smartcity-test-outage-")
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def test_database_stopped_for_30_s_mid_stream_loses_nothing_and_ingest_recovers_by_itself(
    controlled_postgres: LocalPostgres, broker: LocalMosquitto
) -> None:
    database_url = controlled_postgres.url()
    migrate(database_url)
    provision_test_site(database_url)
    messages = streetlight_stream(4_000)
    with running_ingest(database_url, broker.port) as service:
        sender = publish_in_background(broker.port, messages)
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") > 500,
            what="ingest to be mid-stream",
        )
        controlled_postgres.stop("fast")
        stopped_at = time.monotonic()
        sender.join(180)  # devices keep publishing; the broker holds what ingest can't store
        time.sleep(max(0.0, 30 - (time.monotonic() - stopped_at)))
        assert service.metrics.database_up._value.get() == 0
        controlled_postgres.start()
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") >= 8_000,
            timeout_s=120,
            what="ingest to recover and catch up",
        )
        # the storing process reports to the service just after it commits
        wait_until(lambda: service.metrics.database_up._value.get() == 1, what="database up")
        assert service.metrics.write_retries._value.get() > 0
    assert_stored_exactly_once(database_url, messages)


def test_broker_restarted_mid_stream_loses_nothing_it_had_accepted(
    database_url: str, broker: LocalMosquitto
) -> None:
    provision_test_site(database_url)
    messages = streetlight_stream(4_000)
    with running_ingest(database_url, broker.port):
        sender = publish_in_background(broker.port, messages)
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") > 500,
            what="ingest to be mid-stream",
        )
        broker.stop()  # SIGTERM: mosquitto writes its persistence file
        time.sleep(2)
        broker.start()
        sender.join(180)
        assert not sender.is_alive()
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") >= 8_000,
            timeout_s=120,
            what="ingest to reconnect and catch up",
        )
    assert_stored_exactly_once(database_url, messages)


def test_memory_held_stays_under_its_bound_while_the_database_is_away(
    controlled_postgres: LocalPostgres, broker: LocalMosquitto
) -> None:
    database_url = controlled_postgres.url()
    migrate(database_url)
    provision_test_site(database_url)
    messages = streetlight_stream(3_000)
    largest = max(len(m.payload) for m in messages)
    bound = 8 * MAX_PAYLOAD_BYTES  # room for 8 messages of the largest size allowed
    with running_ingest(database_url, broker.port, max_held_bytes=bound) as service:
        assert service.config.effective_receive_maximum == 8
        controlled_postgres.stop("fast")
        sender = publish_in_background(broker.port, messages)
        held = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            held.append(service.held_bytes)
            time.sleep(0.01)
        sender.join(60)
        assert not sender.is_alive(), "the broker took every message while ingest held back"
        assert max(held) > 0, "ingest did hold messages while the database was away"
        assert max(held) <= 8 * largest, "never more than the broker may send it"
        controlled_postgres.start()
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") >= 6_000,
            timeout_s=120,
            what="ingest to store what the broker kept",
        )
    assert_stored_exactly_once(database_url, messages)


def test_the_storing_process_killed_mid_stream_is_replaced_and_nothing_is_lost(
    database_url: str, broker: LocalMosquitto
) -> None:
    provision_test_site(database_url)
    messages = streetlight_stream(4_000)
    with running_ingest(database_url, broker.port) as service:
        first_pid = service.storing_process_pid
        assert first_pid is not None
        sender = publish_in_background(broker.port, messages)
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") > 500,
            what="ingest to be mid-stream",
        )
        os.kill(first_pid, signal.SIGKILL)
        sender.join(180)
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") >= 8_000,
            timeout_s=120,
            what="a new storing process to store the rest",
        )
        assert service.storing_process_pid not in (None, first_pid)
    assert_stored_exactly_once(database_url, messages)


def test_ingest_stops_promptly_while_the_database_is_away_and_loses_nothing(
    controlled_postgres: LocalPostgres, broker: LocalMosquitto
) -> None:
    database_url = controlled_postgres.url()
    migrate(database_url)
    provision_test_site(database_url)
    messages = streetlight_stream(1_000)
    with running_ingest(database_url, broker.port) as service:
        controlled_postgres.stop("fast")
        with publisher(broker.port) as device:
            device.publish_all([(m.topic, m.payload) for m in messages])
        wait_until(lambda: service.held_bytes > 0, what="ingest to hold messages")
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 15, "stopped without waiting for the database"
    controlled_postgres.start()
    with running_ingest(database_url, broker.port):
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM telemetry") >= 2_000,
            timeout_s=60,
            what="the next ingest to store what the broker kept",
        )
    assert_stored_exactly_once(database_url, messages)
