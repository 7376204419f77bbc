"""Ingest end to end: a real Mosquitto, a real PostgreSQL, messages published as devices."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from api.command_queries import find_commands
from ingest.metrics import serve_metrics
from protocol.topics import DeviceClass
from runtime.local_services import LocalMosquitto, free_port
from storage import rollups
from tests.integration.helpers import (
    provision_test_site,
    publisher,
    running_ingest,
    scalar,
    streetlight_stream,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_published_telemetry_appears_as_rows_with_exact_values_and_timestamps(
    database_url: str, broker: LocalMosquitto
) -> None:
    provision_test_site(database_url)
    ts = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=3)
    later = ts + timedelta(seconds=30)
    payload = json.dumps(
        {
            "v": 1,
            "seq": 41,
            "samples": [
                {"ts": ts.isoformat(), "values": {"battery_soc": 81.5, "lamp_on": True}},
                {"ts": later.astimezone().isoformat(), "values": {"pv_power": 0.125}},
            ],
        }
    ).encode()
    with running_ingest(database_url, broker.port), publisher(broker.port) as device:
        device.publish_all([("sc/sefrou/streetlight/sl-001/telemetry", payload)])
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM telemetry") == 3)
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT device_class, device_id, metric, ts, value FROM telemetry ORDER BY ts, metric"
        ).fetchall()
    assert rows == [
        ("streetlight", "sl-001", "battery_soc", ts, 81.5),
        ("streetlight", "sl-001", "lamp_on", ts, 1.0),
        ("streetlight", "sl-001", "pv_power", later, 0.125),
    ]


def record_command(database_url: str, command_id: str, device_id: str, issued: datetime) -> None:
    """A command as the platform records it before it sends it (table ``commands``)."""
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "INSERT INTO commands (id, device_id, action, params, source, issued_at, expires_at,"
            " last_sent_at) VALUES (%s, %s, 'set_hvac', '{}', 'test', %s, %s, %s)",
            (command_id, device_id, issued, issued + timedelta(minutes=5), issued),
        )


def ack(device_topic: str, command_id: str, ts: datetime) -> tuple[str, bytes]:
    payload = {"v": 1, "id": command_id, "ts": ts.isoformat(), "outcome": "applied"}
    return f"{device_topic}/cmd_ack", json.dumps(payload).encode()


def test_events_states_and_acks_are_stored(database_url: str, broker: LocalMosquitto) -> None:
    provision_test_site(database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    record_command(database_url, "c-1", "hall-offices", now)
    stamp = now.isoformat()
    messages = [
        (
            "sc/sefrou/signage/sign-1/event",
            json.dumps(
                {
                    "v": 1,
                    "seq": 3,
                    "ts": stamp,
                    "kind": "door_opened",
                    "severity": "warning",
                    "data": {"sensor": "reed"},
                }
            ).encode(),
        ),
        (
            "sc/sefrou/signage/sign-1/state",
            json.dumps({"v": 1, "status": "online", "ts": stamp, "firmware": "2.1"}).encode(),
        ),
        (
            "sc/sefrou/building/hall-offices/cmd_ack",
            json.dumps({"v": 1, "id": "c-1", "ts": stamp, "outcome": "applied"}).encode(),
        ),
    ]
    with running_ingest(database_url, broker.port), publisher(broker.port) as device:
        device.publish_all(messages)
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM command_acks") == 1)
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM device_events") == 1)
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM device_states") == 1)
    with psycopg.connect(database_url) as connection:
        event = connection.execute(
            "SELECT device_id, kind, severity, data, ts FROM device_events"
        ).fetchone()
        state = connection.execute("SELECT status, firmware FROM device_states").fetchone()
        ack = connection.execute(
            "SELECT device_id, command_id, outcome FROM command_acks"
        ).fetchone()
    assert event == ("sign-1", "door_opened", "warning", {"sensor": "reed"}, now)
    assert state == ("online", "2.1")
    assert ack == ("hall-offices", "c-1", "applied")


BAD_INPUTS = [
    ("sc/sefrou/streetlight/sl-001/telemetry", b"{not json", "malformed"),
    (
        "sc/sefrou/streetlight/sl-001/telemetry",
        b'{"v":9,"seq":1,"samples":[]}',
        "unsupported_version",
    ),
    ("sc/sefrou/streetlight/sl-001/telemetry", b'{"v":1,"seq":"x","samples":[]}', "schema"),
    ("sc/sefrou/streetlight/sl-999/telemetry", None, "unknown_device"),
    ("sc/sefrou/signage/sl-001/telemetry", None, "device_mismatch"),
    (
        "sc/sefrou/streetlight/sl-001/telemetry",
        b'{"v":1,"seq":1,"samples":[{"ts":"2026-01-01T00:00:00Z","values":{"tilt":1}}]}',
        "bad_timestamp",
    ),
    ("sc/sefrou/streetlight/sl-001/telemetry", "out_of_range", "out_of_range"),
    ("sc/sefrou/streetlight/sl-001/telemetry", "unknown_metric", "unknown_metric"),
    ("sc/sefrou/lamp/sl-001/telemetry", b"{}", "bad_topic"),
]


def test_each_kind_of_bad_input_lands_in_dead_letters_while_the_stream_continues(
    database_url: str, broker: LocalMosquitto
) -> None:
    provision_test_site(database_url)
    good = streetlight_stream(50)
    fresh = datetime.now(UTC).isoformat()

    def bad_payload(spec: bytes | str | None) -> bytes:
        if isinstance(spec, bytes):
            return spec
        values = {"battery_soc": 250} if spec == "out_of_range" else {"sparkle": 1}
        if spec is None:
            values = {"tilt": 1}
        return json.dumps({"v": 1, "seq": 1, "samples": [{"ts": fresh, "values": values}]}).encode()

    stream: list[tuple[str, bytes]] = []
    for index, message in enumerate(good):
        stream.append((message.topic, message.payload))
        if index < len(BAD_INPUTS):
            topic, spec, _ = BAD_INPUTS[index]
            stream.append((topic, bad_payload(spec)))
    with running_ingest(database_url, broker.port), publisher(broker.port) as device:
        device.publish_all(stream)
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM telemetry") == 100)
        wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM dead_letters") == len(BAD_INPUTS)
        )
    with psycopg.connect(database_url) as connection:
        letters = connection.execute(
            "SELECT topic, reason, detail, payload FROM dead_letters ORDER BY id"
        ).fetchall()
    assert sorted(reason for _, reason, _, _ in letters) == sorted(r for _, _, r in BAD_INPUTS)
    for topic, _reason, detail, payload in letters:
        assert detail, "every dead letter says why"
        assert (topic, bytes(payload)) in stream, "raw bytes and topic are kept as sent"


def test_an_acknowledgement_of_a_command_never_sent_is_refused_with_its_reason(
    database_url: str, broker: LocalMosquitto
) -> None:
    """Only a command the platform recorded can be acknowledged: an answer to an id it never
    sent, or sent to another device, is a dead letter (``unknown_command``), and nothing
    appears applied; the answer to a command it sent is stored, and the command is applied."""
    provision_test_site(database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    record_command(database_url, "c-sent", "hall-offices", now)
    record_command(database_url, "c-for-the-sign", "sign-1", now)
    hall = "sc/sefrou/building/hall-offices"
    never_sent = ack(hall, "c-never-sent", now)
    not_to_this_device = ack(hall, "c-for-the-sign", now)
    answered = ack(hall, "c-sent", now)
    with running_ingest(database_url, broker.port) as service, publisher(broker.port) as device:
        device.publish_all([never_sent, not_to_this_device, answered])
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM dead_letters") == 2)
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM command_acks") == 1)
        # The storing process commits, then reports the batch to the service: the rows can be
        # visible a moment before the counter moves.
        unknown_commands = service.metrics.rejected.labels("unknown_command")
        wait_until(lambda: unknown_commands._value.get() >= 2)
        rejected = unknown_commands._value.get()
    assert rejected == 2
    with psycopg.connect(database_url) as connection:
        letters = connection.execute(
            "SELECT topic, device_id, reason, detail, payload FROM dead_letters ORDER BY id"
        ).fetchall()
        acks = connection.execute(
            "SELECT device_id, command_id, outcome FROM command_acks"
        ).fetchall()
        commands = find_commands(
            connection, ["c-never-sent", "c-for-the-sign", "c-sent"], now + timedelta(minutes=1)
        )
    assert [(topic, bytes(payload)) for topic, _, _, _, payload in letters] == [
        never_sent,
        not_to_this_device,
    ]
    assert {(device_id, reason) for _, device_id, reason, _, _ in letters} == {
        ("hall-offices", "unknown_command")
    }
    assert "'c-never-sent'" in letters[0][3]
    assert "'c-for-the-sign'" in letters[1][3]
    assert acks == [("hall-offices", "c-sent", "applied")]
    assert [(c.id, c.device_id, c.outcome) for c in commands] == [
        ("c-for-the-sign", "sign-1", "pending"),
        ("c-sent", "hall-offices", "applied"),
    ]


def test_the_same_messages_published_twice_are_stored_once(
    database_url: str, broker: LocalMosquitto
) -> None:
    provision_test_site(database_url)
    messages = [(m.topic, m.payload) for m in streetlight_stream(300)]
    with running_ingest(database_url, broker.port) as service, publisher(broker.port) as device:
        device.publish_all(messages)
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM telemetry") == 600)
        device.publish_all(messages)
        wait_until(  # 300 samples (rows) of two values each
            lambda: (
                service.metrics.duplicates._value.get() == 300
            ),  # samples (rows) of two values each
            what="the second copies to be seen as duplicates",
        )
    assert scalar(database_url, "SELECT count(*) FROM telemetry") == 600


def test_a_device_provisioned_while_ingest_runs_is_accepted_without_restart(
    database_url: str, broker: LocalMosquitto
) -> None:
    message = streetlight_stream(1)[0]
    with running_ingest(database_url, broker.port), publisher(broker.port) as device:
        provision_test_site(database_url)
        device.publish_all([(message.topic, message.payload)])
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM telemetry") == 2)
    assert scalar(database_url, "SELECT count(*) FROM dead_letters") == 0


def test_metrics_endpoint_reports_what_was_received_stored_and_rejected(
    database_url: str, broker: LocalMosquitto
) -> None:
    provision_test_site(database_url)
    messages = [(m.topic, m.payload) for m in streetlight_stream(100)]
    messages.append(("sc/sefrou/streetlight/sl-001/telemetry", b"{broken"))
    port = free_port()
    with running_ingest(database_url, broker.port) as service, publisher(broker.port) as device:
        server = serve_metrics(service.metrics, port)
        assert server is not None
        try:
            device.publish_all(messages)
            wait_until(lambda: service.metrics.acknowledged._value.get() == 101)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                text = page.read().decode()
        finally:
            server.shutdown()
            server.server_close()
    assert 'smartcity_ingest_messages_received_total{channel="telemetry"} 101.0' in text
    assert 'smartcity_ingest_rows_stored_total{table="telemetry"} 100.0' in text
    assert 'smartcity_ingest_messages_rejected_total{reason="malformed"} 1.0' in text
    assert "smartcity_ingest_batch_seconds_count" in text
    assert "smartcity_ingest_lag_seconds" in text
    assert "smartcity_ingest_queue_depth" in text


def _differences(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as connection:
        return sum(
            rollups.rollup_differences(connection, device_class, grain)
            for device_class in DeviceClass
            for grain, _ in rollups.GRAINS
        )


def test_late_samples_ingested_into_rolled_up_hours_reach_the_rollups_by_ingests_maintenance(
    database_url: str, broker: LocalMosquitto
) -> None:
    provision_test_site(database_url)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)

    def sample(at: datetime, soc: float) -> bytes:
        values = {"battery_soc": soc, "lamp_power": soc / 2}
        return json.dumps(
            {"v": 1, "seq": 1, "samples": [{"ts": at.isoformat(), "values": values}]}
        ).encode()

    topic = "sc/sefrou/streetlight/sl-001/telemetry"
    with (
        running_ingest(database_url, broker.port, maintenance_interval_s=0.5),
        publisher(broker.port) as device,
    ):
        device.publish_all([(topic, sample(hour + timedelta(minutes=m), 50.0)) for m in (5, 35)])
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM telemetry_streetlight") == 2)
        wait_until(lambda: _differences(database_url) == 0)
        hourly = (
            "SELECT coalesce(sum(battery_soc_count), 0) FROM telemetry_streetlight_hourly"
            " WHERE bucket = %s"
        )
        assert scalar(database_url, hourly, (hour,)) == 2, "the hour is rolled up"
        late = [(topic, sample(hour + timedelta(minutes=m), 10.0)) for m in (10, 50)]
        device.publish_all(late)
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM telemetry_streetlight") == 4)
        wait_until(lambda: scalar(database_url, hourly, (hour,)) == 4)
        wait_until(lambda: _differences(database_url) == 0)
    daily = "SELECT battery_soc_min FROM telemetry_streetlight_daily WHERE bucket = %s"
    assert scalar(database_url, daily, (hour.replace(hour=0),)) == 10


def _maintenance_waits_on_a_lock(database_url: str, lock: str) -> bool:
    """Someone (the maintenance: nothing else touches the table ``lock`` names) waits on it."""
    table = lock.split()[2]
    waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass"
    return scalar(database_url, waiting, (table,)) == 1


def _reading(at: datetime, soc: float) -> bytes:
    values = {"battery_soc": soc, "lamp_power": soc / 2}
    return json.dumps(
        {"v": 1, "seq": 1, "samples": [{"ts": at.isoformat(), "values": values}]}
    ).encode()


@pytest.mark.parametrize(
    ("lock", "plain_only"),
    [
        # held up at its start, on either backend (it reads which backend it runs on)
        ("LOCK TABLE storage_backend IN ACCESS EXCLUSIVE MODE", False),
        # held up in the middle of recomputing the hour that the next write marks again
        ("LOCK TABLE telemetry_streetlight_daily IN EXCLUSIVE MODE", True),
    ],
    ids=["before-it-starts", "mid-refresh"],
)
def test_writes_are_stored_while_maintenance_is_held_up_and_reach_the_rollups_after(
    database_url: str, broker: LocalMosquitto, lock: str, plain_only: bool
) -> None:
    """Maintenance runs beside the writer, not between its batches, and a refresh never
    makes a writer wait: a sample for the very hour being recomputed is stored at once, and
    rolled up by the next maintenance (its marker was renewed, so it stays dirty)."""
    provision_test_site(database_url)
    with psycopg.connect(database_url) as connection:
        if plain_only and rollups.uses_timescaledb(connection):
            pytest.skip("TimescaleDB: continuous aggregates have no dirty markers to wait on")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    topic = "sc/sefrou/streetlight/sl-001/telemetry"
    stored = "SELECT count(*) FROM telemetry_streetlight"
    with (
        running_ingest(database_url, broker.port, maintenance_interval_s=0.3),
        publisher(broker.port) as device,
    ):
        device.publish_all([(topic, _reading(hour + timedelta(minutes=5), 50.0))])
        wait_until(lambda: scalar(database_url, stored) == 1)
        with psycopg.connect(database_url) as blocker:
            blocker.execute(lock)
            wait_until(lambda: _maintenance_waits_on_a_lock(database_url, lock), 10, "held up")
            device.publish_all([(topic, _reading(hour + timedelta(minutes=10), 10.0))])
            wait_until(lambda: scalar(database_url, stored) == 2, 10, "stored meanwhile")
            assert _maintenance_waits_on_a_lock(database_url, lock), (
                "still held up when it was stored"
            )
        wait_until(lambda: _differences(database_url) == 0, 20, "rolled up after")
    hourly = "SELECT battery_soc_min FROM telemetry_streetlight_hourly WHERE bucket = %s"
    assert scalar(database_url, hourly, (hour,)) == 10
