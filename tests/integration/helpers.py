"""Shared pieces of the integration tests: a device-like publisher, ingest in a thread, the
registry changed as the API changes it, a service running in a thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from api import device_queries
from ingest.service import IngestConfig, IngestService
from protocol.sites import SiteInventory, parse_site
from protocol.topics import Channel, DeviceClass, DeviceTopic
from storage.registry import upsert_site

TEST_SITE = """
site: {id: sefrou, name: Sefrou, timezone: Africa/Casablanca, latitude: 33.83, longitude: -4.84}
models:
  sl-60w: {class: streetlight, panel_wp: 200, battery_ah: 101.5625, lamp_w: 60}
  vms-3-line-amber: {class: signage, pixels: 3456, max_power_w: 1245}
streetlight_runs:
  - {id_prefix: sl, street_group: menzel, name: Menzel, count: 20, model: sl-60w,
     start: [33.8268, -4.8236], end: [33.8391, -4.8049]}
devices:
  - {id: sign-1, class: signage, model: vms-3-line-amber, latitude: 33.827, longitude: -4.823}
buildings:
  - {id: hall, name: Town hall, kind: town_hall, latitude: 33.83, longitude: -4.84,
     zones: [offices]}
"""


def provision_test_site(database_url: str) -> SiteInventory:
    inventory = parse_site(TEST_SITE)
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, inventory)
    return inventory


def wait_until(
    condition: Callable[[], bool], timeout_s: float = 30, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def scalar(database_url: str, sql: str, params: Sequence[object] = ()) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True, slots=True)
class TelemetryMessage:
    device_id: str
    seq: int
    ts: datetime
    values: dict[str, float | bool]

    @property
    def topic(self) -> str:
        return f"sc/sefrou/streetlight/{self.device_id}/telemetry"

    @property
    def payload(self) -> bytes:
        sample = {"ts": self.ts.isoformat(), "values": self.values}
        return json.dumps({"v": 1, "seq": self.seq, "samples": [sample]}).encode()


def streetlight_stream(
    count: int, start: datetime | None = None, devices: int = 20
) -> list[TelemetryMessage]:
    """``count`` distinct messages from ``devices`` streetlights, each with two values."""
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return [
        TelemetryMessage(
            f"sl-{index % devices + 1:03d}",
            index,
            start + timedelta(milliseconds=index),
            {"battery_soc": round(index % 1000 / 10, 1), "lamp_power": float(index % 60)},
        )
        for index in range(count)
    ]


class Publisher:
    """A QoS 1 publisher that knows which messages the broker acknowledged."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def publish_all(self, messages: Sequence[tuple[str, bytes]], timeout_s: float = 60) -> None:
        infos = [self.publish(topic, payload) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout_s)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def running_ingest(
    database_url: str, broker_port: int, **overrides: object
) -> Iterator[IngestService]:
    config = IngestConfig(
        database_url,
        "127.0.0.1",
        broker_port,
        batch_max_seconds=0.1,
        **overrides,  # type: ignore[arg-type]
    )
    service = IngestService(config)
    thread = threading.Thread(target=service.run, name="ingest")
    thread.start()
    try:
        assert service.ready.wait(30), "ingest did not connect and subscribe"
        yield service
    finally:
        service.stop()
        thread.join(30)
        assert not thread.is_alive(), "ingest did not stop"


@contextmanager
def publisher(port: int, client_id: str = "test-publisher") -> Iterator[Publisher]:
    client = Publisher(port, client_id)
    try:
        yield client
    finally:
        client.close()


# ----------------------------------------------------------------------------- registry


def add_device(
    database_url: str,
    device_id: str,
    device_class: DeviceClass,
    site_id: str,
    *,
    model: str = "",
    street_group: str | None = None,
    building: str | None = None,
    zone: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Add a device to the registry as ``POST /api/v1/devices`` does (its model's ratings
    taken from a device of that model), while services run."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        ratings: dict[str, Any] | None = {}
        if device_class in device_queries.RATED_CLASSES:
            ratings = device_queries.model_ratings(connection, device_class, model)
        assert ratings is not None, f"no device of model {model!r} to take its ratings from"
        new = device_queries.NewDevice(
            device_id, site_id, device_class, device_id, model, None, None,
            street_group, None, building, zone, metadata or {},
        )  # fmt: skip
        assert device_queries.insert_device(connection, new, ratings, datetime.now(UTC))


def change_device(database_url: str, device_id: str, **changes: object) -> None:
    """Change a device's editable fields as ``PATCH /api/v1/devices/{id}`` does."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        record = device_queries.find_device(connection, device_id)
        assert record is not None
        device_queries.update_device(connection, record, changes, datetime.now(UTC))


def decommission(database_url: str, device_id: str) -> None:
    """Take a device out of service as ``DELETE /api/v1/devices/{id}`` does."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        device_queries.decommission_device(connection, device_id, datetime.now(UTC))


def reading(
    site_id: str,
    device_class: DeviceClass,
    device_id: str,
    ts: datetime,
    values: Mapping[str, float | bool],
    *,
    seq: int = 1,
) -> tuple[str, bytes]:
    """One telemetry message of a device: its topic and payload."""
    topic = DeviceTopic(site_id, device_class, device_id, Channel.TELEMETRY)
    sample = {"ts": ts.isoformat(), "values": dict(values)}
    return str(topic), json.dumps({"v": 1, "seq": seq, "samples": [sample]}).encode()


def commands_to(database_url: str, device_id: str) -> list[dict[str, Any]]:
    """The rows of ``commands`` to a device, oldest first."""
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, action, params, source, reason, attempts, outcome, outcome_reason"
            " FROM commands WHERE device_id = %s ORDER BY issued_at, id",
            (device_id,),
        )
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class Service(Protocol):
    ready: threading.Event

    def run(self) -> None: ...

    def stop(self) -> None: ...


@contextmanager
def running(service: Service, name: str) -> Iterator[None]:
    """``service`` running in a thread, subscribed; stopped (and checked so) on the way out."""
    thread = threading.Thread(target=service.run, name=name)
    thread.start()
    try:
        assert service.ready.wait(30), f"{name} did not subscribe"
        yield
    finally:
        service.stop()
        thread.join(30)
        assert not thread.is_alive(), f"{name} did not stop"
