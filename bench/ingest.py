"""Ingest throughput, against the two limits it cannot beat, measured in one run.

(a) broker: a no-op paho-mqtt QoS 1 subscriber drains N messages queued for it;
(b) ingest: the full service drains the same N messages until every row is committed;
(c) database: a raw psycopg binary COPY of the same rows, in the same batch sizes.

To take the publisher out of the measurement, each consumer's persistent session is created
first, then the N messages are published while it is away, and the clock runs from its
reconnection to its last message (a) or last commit (b). Targets: b/a >= 0.8 and the ingest
writer >= 0.8 x c.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.service import IngestConfig, IngestService
from protocol.payloads import PROTOCOL_VERSION, Sample, TelemetryPayload, encode
from protocol.sites import Device, SiteInventory, parse_site
from protocol.topics import Channel, DeviceTopic
from smartcity.demo_publisher import demo_values
from smartcity.local_services import LocalMosquitto, LocalPostgres, free_port
from storage.migrate import migrate
from storage.registry import upsert_site

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class IngestBenchResult:
    messages: int
    rows: int
    broker_msgs_per_s: float
    broker_cpu_s: float
    ingest_msgs_per_s: float
    ingest_rows_per_s: float
    ingest_cpu_s: float
    writer_rows_per_s: float
    copy_rows_per_s: float
    copy_cpu_s: float
    ingest_over_broker: float
    writer_over_copy: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def bench_site(devices: int) -> SiteInventory:
    return parse_site(
        "site: {id: bench, name: Bench, timezone: UTC, latitude: 33.8, longitude: -4.8}\n"
        "streetlight_runs:\n"
        f"  - {{id_prefix: sl, street_group: g, name: G, count: {devices},"
        " start: [33.8, -4.8], end: [33.9, -4.7]}\n"
    )


def build_messages(inventory: SiteInventory, count: int) -> list[tuple[str, bytes, int]]:
    """(topic, payload, rows) of ``count`` distinct messages from the site's devices."""
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(hours=2)
    messages = []
    devices = inventory.devices
    for index in range(count):
        device: Device = devices[index % len(devices)]
        ts = start + timedelta(milliseconds=index)
        values = demo_values(device, ts, rng)
        payload = encode(TelemetryPayload(PROTOCOL_VERSION, index, [Sample(ts, values)]))
        topic = DeviceTopic(inventory.site.id, device.device_class, device.id, Channel.TELEMETRY)
        messages.append((str(topic), payload, len(values)))
    return messages


def publish(port: int, messages: list[tuple[str, bytes, int]]) -> None:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-publisher", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1_000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload, _ in messages]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


class NoopSubscriber:
    """A QoS 1 subscriber that only counts, with a persistent session like ingest's."""

    def __init__(self, port: int, receive_maximum: int) -> None:
        self.port = port
        self.receive_maximum = receive_maximum
        self.received = 0
        self.last_at = 0.0
        self.done = threading.Event()
        self.expected = 0

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-noop", protocol=mqtt.MQTTv5
        )

        def on_connect(c: mqtt.Client, *_: object) -> None:
            c.subscribe("sc/+/+/+/telemetry", qos=1)

        def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
            self.received += 1
            if self.received >= self.expected:
                self.last_at = time.perf_counter()
                self.done.set()

        client.on_connect = on_connect
        client.on_message = on_message
        return client

    def connect(self) -> mqtt.Client:
        client = self._client()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = self.receive_maximum
        client.connect("127.0.0.1", self.port, clean_start=False, properties=properties)
        client.loop_start()
        return client


def measure_broker(
    port: int, messages: list[tuple[str, bytes, int]], receive_maximum: int
) -> tuple[float, float]:
    subscriber = NoopSubscriber(port, receive_maximum)
    subscriber.expected = len(messages)
    client = subscriber.connect()
    time.sleep(0.5)  # subscription in place
    client.disconnect()
    client.loop_stop()
    publish(port, messages)
    cpu, started = time.process_time(), time.perf_counter()
    client = subscriber.connect()
    if not subscriber.done.wait(300):
        raise RuntimeError(f"no-op subscriber got {subscriber.received} of {len(messages)}")
    elapsed, cpu_used = subscriber.last_at - started, time.process_time() - cpu
    client.disconnect()
    client.loop_stop()
    return len(messages) / elapsed, cpu_used


def _telemetry_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT count(*) FROM telemetry_streetlight").fetchone()
    return 0 if row is None else int(row[0])


def measure_ingest(
    database_url: str, port: int, messages: list[tuple[str, bytes, int]], config: IngestConfig
) -> tuple[float, float, float]:
    """(messages/s, CPU seconds, writer rows/s)."""
    rows = sum(r for _, _, r in messages)
    first = IngestService(config)
    runner = threading.Thread(target=first.run)
    runner.start()
    first.ready.wait(30)
    first.stop()
    runner.join()
    publish(port, messages)
    service = IngestService(config)
    cpu, started = time.process_time(), time.perf_counter()
    runner = threading.Thread(target=service.run)
    runner.start()
    stored = service.metrics.stored.labels("telemetry")
    deadline = time.monotonic() + 600
    while stored._value.get() < rows:
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingest stored {stored._value.get()} of {rows} rows")
        time.sleep(0.005)
    elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
    service.stop()
    runner.join()
    write_seconds = service.metrics.write_seconds._sum.get()
    if _telemetry_rows(database_url) != rows:
        raise RuntimeError("ingest stored a different number of rows than were sent")
    return len(messages) / elapsed, cpu_used, rows / write_seconds


def measure_copy(
    database_url: str,
    inventory: SiteInventory,
    messages: list[tuple[str, bytes, int]],
    batch_messages: int,
) -> tuple[float, float]:
    """Raw binary COPY of the same rows into the same (emptied) table, batch by batch."""
    from protocol.decoding import Telemetry, decode

    now = datetime.now(UTC)
    batches: list[list[tuple[datetime, str, str, float]]] = []
    for start in range(0, len(messages), batch_messages):
        rows: list[tuple[datetime, str, str, float]] = []
        for topic, payload, _ in messages[start : start + batch_messages]:
            decoded = decode(topic, payload, now)
            if not isinstance(decoded, Telemetry):
                raise TypeError(f"benchmark message refused: {decoded}")
            rows.extend(decoded.readings)
        batches.append(rows)
    total = sum(len(rows) for rows in batches)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("TRUNCATE telemetry_streetlight")
        cpu, started = time.process_time(), time.perf_counter()
        for rows in batches:
            with (
                connection.transaction(),
                connection.cursor() as cursor,
                cursor.copy(
                    "COPY telemetry_streetlight (ts, device_id, metric, value) FROM STDIN"
                    " (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["timestamptz", "text", "text", "float8"])
                for row in rows:
                    copy.write_row(row)
        elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
    return total / elapsed, cpu_used


@contextmanager
def bench_services(database_url: str | None, progress: Progress) -> Iterator[tuple[int, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="smartcity-bench-", dir="/tmp"))
    workdir.chmod(0o755)
    broker = LocalMosquitto(workdir / "broker", free_port())
    postgres: LocalPostgres | None = None
    try:
        broker.start()
        if database_url is None:
            postgres = LocalPostgres(workdir / "postgres", free_port(), durable=True)
            progress(f"starting a private PostgreSQL (fsync on) in {postgres.data_dir}")
            postgres.start()
            database_url = postgres.url()
        yield broker.port, database_url
    finally:
        broker.kill()
        if postgres is not None:
            postgres.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)


def run(
    count: int,
    *,
    devices: int,
    batch_messages: int,
    receive_maximum: int,
    database_url: str | None,
    progress: Progress,
) -> IngestBenchResult:
    inventory = bench_site(devices)
    messages = build_messages(inventory, count)
    rows = sum(r for _, _, r in messages)
    with bench_services(database_url, progress) as (port, url):
        progress("migrating and provisioning")
        migrate(url)
        with psycopg.connect(url) as connection:
            upsert_site(connection, inventory)
            connection.execute("TRUNCATE telemetry_streetlight")
        progress(f"(a) no-op subscriber draining {count:,} queued messages")
        broker_rate, broker_cpu = measure_broker(port, messages, receive_maximum)
        progress(f"(b) ingest draining the same {count:,} messages ({rows:,} rows)")
        config = IngestConfig(
            url,
            "127.0.0.1",
            port,
            client_id="bench-ingest",
            batch_max_messages=batch_messages,
            receive_maximum=receive_maximum,
            maintenance_interval_s=3600,
        )
        ingest_rate, ingest_cpu, writer_rate = measure_ingest(url, port, messages, config)
        progress(f"(c) raw binary COPY of the same {rows:,} rows")
        copy_rate, copy_cpu = measure_copy(url, inventory, messages, batch_messages)
    return IngestBenchResult(
        messages=count,
        rows=rows,
        broker_msgs_per_s=broker_rate,
        broker_cpu_s=broker_cpu,
        ingest_msgs_per_s=ingest_rate,
        ingest_rows_per_s=ingest_rate * rows / count,
        ingest_cpu_s=ingest_cpu,
        writer_rows_per_s=writer_rate,
        copy_rows_per_s=copy_rate,
        copy_cpu_s=copy_cpu,
        ingest_over_broker=ingest_rate / broker_rate,
        writer_over_copy=writer_rate / copy_rate,
    )


def report(result: IngestBenchResult) -> str:
    def verdict(ratio: float) -> str:
        return "meets the 0.8 target" if ratio >= 0.8 else "BELOW the 0.8 target"

    return "\n".join(
        [
            f"messages: {result.messages:,}   rows: {result.rows:,}",
            f"(a) broker, no-op subscriber : {result.broker_msgs_per_s:>10,.0f} msg/s"
            f"   client CPU {result.broker_cpu_s:6.2f} s",
            f"(b) full ingest, committed   : {result.ingest_msgs_per_s:>10,.0f} msg/s"
            f" {result.ingest_rows_per_s:>10,.0f} rows/s   client CPU {result.ingest_cpu_s:6.2f} s",
            f"    ingest writer (DB time)  : {result.writer_rows_per_s:>10,.0f} rows/s",
            f"(c) raw binary COPY          : {result.copy_rows_per_s:>10,.0f} rows/s"
            f"   client CPU {result.copy_cpu_s:6.2f} s",
            f"b/a = {result.ingest_over_broker:.2f} ({verdict(result.ingest_over_broker)});"
            f" writer/c = {result.writer_over_copy:.2f} ({verdict(result.writer_over_copy)})",
        ]
    )
