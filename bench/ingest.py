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

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.services import bench_services, migrated_and_provisioned
from bench.synthetic import demo_values
from ingest.pipeline import Inbound, classify
from ingest.service import IngestConfig, IngestService
from protocol.catalogue import CATALOGUE
from protocol.payloads import PROTOCOL_VERSION, Sample, TelemetryPayload, encode
from protocol.sites import Device, SiteInventory, parse_site
from protocol.topics import Channel, DeviceClass, DeviceTopic
from storage.registry import Registration
from storage.writer import BatchWriter

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class IngestBenchResult:
    backend: str
    """Where the rows went: "timescaledb" or "postgresql"."""
    messages: int
    rows: int
    values: int
    repeats: int
    broker_msgs_per_s: float
    broker_cpu_s: float
    ingest_msgs_per_s: float
    ingest_rows_per_s: float
    ingest_cpu_s: float
    writer_rows_per_s: float
    writer_cpu_s: float
    writer_in_service_rows_per_s: float
    copy_rows_per_s: float
    copy_cpu_s: float
    ingest_over_broker: float
    writer_over_copy: float
    broker_range: tuple[float, float]
    ingest_range: tuple[float, float]
    writer_range: tuple[float, float]
    copy_range: tuple[float, float]
    ingest_over_broker_per_round: tuple[float, ...]
    """b/a of each round (a and b measured one after the other), sorted."""
    writer_over_copy_per_round: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
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

    def __init__(self, port: int, receive_maximum: int, expected: int, client_id: str) -> None:
        self.port = port
        self.client_id = client_id
        self.receive_maximum = receive_maximum
        self.expected = expected
        self.received = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.done = threading.Event()

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe("sc/+/+/+/telemetry", qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: object, _m: mqtt.MQTTMessage) -> None:
        self.received += 1
        if self.received == 1:
            self.first_at = time.perf_counter()
        if self.received >= self.expected:
            self.last_at = time.perf_counter()
            self.done.set()

    def connect(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = self.receive_maximum
        client.connect("127.0.0.1", self.port, clean_start=False, properties=properties)
        client.loop_start()
        return client


@dataclass(frozen=True, slots=True)
class Measurement:
    per_second: float
    """Messages (a, b) or rows (c) per second."""
    cpu_s: float
    """CPU seconds of the client processes (ours, not the broker's or the database's)."""
    writer_rows_per_s: float = 0.0


def median_of(runs: list[Measurement]) -> Measurement:
    ordered = sorted(runs, key=lambda m: m.per_second)
    return ordered[len(ordered) // 2]


def spread(runs: list[Measurement]) -> tuple[float, float]:
    rates = [m.per_second for m in runs]
    return min(rates), max(rates)


def measure_broker(
    port: int, messages: list[tuple[str, bytes, int]], receive_maximum: int, client_id: str
) -> Measurement:
    """From the first message received to the last, after a reconnection.

    Each round uses new client ids: an earlier round's sessions still queue what is published
    but never reconnect, so they cannot take messages from this one."""
    subscriber = NoopSubscriber(port, receive_maximum, len(messages), client_id)
    client = subscriber.connect()
    time.sleep(0.5)  # subscription in place
    client.disconnect()
    client.loop_stop()
    publish(port, messages)
    cpu = time.process_time()
    client = subscriber.connect()
    if not subscriber.done.wait(300):
        raise RuntimeError(f"no-op subscriber got {subscriber.received} of {len(messages)}")
    cpu_used = time.process_time() - cpu
    client.disconnect()
    client.loop_stop()
    return Measurement(len(messages) / (subscriber.last_at - subscriber.first_at), cpu_used)


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of another process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _telemetry_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT count(*) FROM telemetry_streetlight").fetchone()
    return 0 if row is None else int(row[0])


def measure_ingest(
    database_url: str, port: int, messages: list[tuple[str, bytes, int]], config: IngestConfig
) -> Measurement:
    """From the first message received to the last row committed, after a reconnection.

    One message is one sample is one row. The service (and its storing process) is started
    and connected before the messages are published, so its start-up is not measured.
    """
    rows = len(messages)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("TRUNCATE telemetry_streetlight")
    # At the first message: (wall clock, our CPU, the storing process's CPU).
    at_first_message: list[tuple[float, float, float]] = []

    def clock() -> datetime:
        if not at_first_message:
            pid = service.storing_process_pid
            child_cpu = 0.0 if pid is None else process_cpu_seconds(pid)
            at_first_message.append((time.perf_counter(), time.process_time(), child_cpu))
        return datetime.now(UTC)

    first = IngestService(config)  # makes the persistent session exist
    runner = threading.Thread(target=first.run)
    runner.start()
    if not first.ready.wait(60):
        raise RuntimeError("ingest did not get ready")
    first.stop()
    runner.join()
    publish(port, messages)
    service = IngestService(config, clock=clock)
    runner = threading.Thread(target=service.run)
    runner.start()
    stored = service.metrics.stored.labels("telemetry")
    deadline = time.monotonic() + 600
    while stored._value.get() < rows:
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingest stored {stored._value.get()} of {rows} rows")
        time.sleep(0.002)
    finished = time.perf_counter()
    pid = service.storing_process_pid
    if pid is None:
        raise RuntimeError("ingest has no storing process")
    started, cpu, child_cpu = at_first_message[0]
    cpu_used = time.process_time() - cpu + process_cpu_seconds(pid) - child_cpu
    write_seconds = service.metrics.write_seconds._sum.get()
    service.stop()
    runner.join()
    if _telemetry_rows(database_url) != rows:
        raise RuntimeError("ingest stored a different number of rows than were sent")
    return Measurement(rows / (finished - started), cpu_used, rows / write_seconds)


def measure_writer(
    database_url: str,
    inventory: SiteInventory,
    messages: list[tuple[str, bytes, int]],
    batch_messages: int,
) -> Measurement:
    """The ingest writer alone (BatchWriter.write: partitions, COPY with its idempotent
    fallback, events, commit) over the same batches, decoded beforehand as (c) is."""
    registry = {
        device.id: Registration(inventory.site.id, device.device_class)
        for device in inventory.devices
    }
    now = datetime.now(UTC)
    batches = [
        classify(
            [
                Inbound(topic, payload, now)
                for topic, payload, _ in messages[start : start + batch_messages]
            ],
            registry,
        ).batch
        for start in range(0, len(messages), batch_messages)
    ]
    rows = sum(batch.telemetry_row_count() for batch in batches)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("TRUNCATE telemetry_streetlight")
        writer = BatchWriter(connection)
        cpu, started = time.process_time(), time.perf_counter()
        stored = sum(writer.write(batch).telemetry_stored for batch in batches)
        elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
    if stored != rows:
        raise RuntimeError(f"the writer stored {stored} of {rows} rows")
    return Measurement(rows / elapsed, cpu_used)


def measure_copy(
    database_url: str,
    messages: list[tuple[str, bytes, int]],
    batch_messages: int,
) -> Measurement:
    """Raw binary COPY of the same rows into the same (emptied) table, batch by batch."""
    from protocol.decoding import Telemetry, decode

    now = datetime.now(UTC)
    metrics = tuple(CATALOGUE[DeviceClass.STREETLIGHT].metrics)
    batches: list[list[tuple[object, ...]]] = []
    for start in range(0, len(messages), batch_messages):
        rows: list[tuple[object, ...]] = []
        for topic, payload, _ in messages[start : start + batch_messages]:
            decoded = decode(topic, payload, now)
            if not isinstance(decoded, Telemetry):
                raise TypeError(f"benchmark message refused: {decoded}")
            device_id = decoded.topic.device_id
            rows.extend(
                (ts, device_id, *[values.get(m) for m in metrics]) for ts, values in decoded.samples
            )
        batches.append(rows)
    total = sum(len(rows) for rows in batches)
    statement = (
        f"COPY telemetry_streetlight (ts, device_id, {', '.join(metrics)}) FROM STDIN"
        " (FORMAT BINARY)"
    )
    types = ["timestamptz", "text", *["float8"] * len(metrics)]
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("TRUNCATE telemetry_streetlight")
        cpu, started = time.process_time(), time.perf_counter()
        for rows in batches:
            with (
                connection.transaction(),
                connection.cursor() as cursor,
                cursor.copy(statement) as copy,
            ):
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
    return Measurement(total / elapsed, cpu_used)


def run(
    count: int,
    *,
    devices: int,
    batch_messages: int,
    receive_maximum: int,
    repeats: int,
    database_url: str | None,
    progress: Progress,
    timescaledb: bool = False,
) -> IngestBenchResult:
    inventory = bench_site(devices)
    messages = build_messages(inventory, count)
    values = sum(v for _, _, v in messages)
    broker_runs: list[Measurement] = []
    ingest_runs: list[Measurement] = []
    copy_runs: list[Measurement] = []
    writer_runs: list[Measurement] = []
    with bench_services(database_url, progress, "ingest", timescaledb) as services:
        port, url = services.mqtt_port, services.database_url
        backend = migrated_and_provisioned(url, inventory, progress=progress)
        config = IngestConfig(
            url,
            "127.0.0.1",
            port,
            batch_max_messages=batch_messages,
            receive_maximum=receive_maximum,
            maintenance_interval_s=3600,
        )
        for repeat in range(1, repeats + 1):
            progress(f"round {repeat}/{repeats}: (a) no-op subscriber, {count:,} messages")
            broker_runs.append(
                measure_broker(port, messages, receive_maximum, f"bench-noop-{repeat}")
            )
            progress(f"round {repeat}/{repeats}: (b) full ingest, the same messages")
            round_config = replace(config, client_id=f"bench-ingest-{repeat}")
            ingest_runs.append(measure_ingest(url, port, messages, round_config))
            progress(f"round {repeat}/{repeats}: (c) raw COPY and the writer alone, alternately")
            # Each load lasts a fraction of a second: alternate three of each, keep the medians.
            copies, writes = [], []
            for _ in range(3):
                copies.append(measure_copy(url, messages, batch_messages))
                writes.append(measure_writer(url, inventory, messages, batch_messages))
            copy_runs.append(median_of(copies))
            writer_runs.append(median_of(writes))
    broker, ingest, copy = median_of(broker_runs), median_of(ingest_runs), median_of(copy_runs)
    ratios = sorted(
        b.per_second / a.per_second for a, b in zip(broker_runs, ingest_runs, strict=True)
    )
    writer_ratios = sorted(
        w.per_second / c.per_second for w, c in zip(writer_runs, copy_runs, strict=True)
    )
    writer = median_of(writer_runs)
    in_service = sorted(m.writer_rows_per_s for m in ingest_runs)[len(ingest_runs) // 2]
    return IngestBenchResult(
        backend=backend,
        messages=count,
        rows=count,
        values=values,
        repeats=repeats,
        broker_msgs_per_s=broker.per_second,
        broker_cpu_s=broker.cpu_s,
        ingest_msgs_per_s=ingest.per_second,
        ingest_rows_per_s=ingest.per_second,
        ingest_cpu_s=ingest.cpu_s,
        writer_rows_per_s=writer.per_second,
        writer_cpu_s=writer.cpu_s,
        writer_in_service_rows_per_s=in_service,
        copy_rows_per_s=copy.per_second,
        copy_cpu_s=copy.cpu_s,
        # Each round measures a and b (c and the writer) one right after the other: the
        # median of the rounds' ratios is steadier than the ratio of the medians.
        ingest_over_broker=ratios[len(ratios) // 2],
        writer_over_copy=writer_ratios[len(writer_ratios) // 2],
        broker_range=spread(broker_runs),
        ingest_range=spread(ingest_runs),
        writer_range=spread(writer_runs),
        copy_range=spread(copy_runs),
        ingest_over_broker_per_round=tuple(ratios),
        writer_over_copy_per_round=tuple(writer_ratios),
    )


def report(result: IngestBenchResult) -> str:
    def verdict(ratio: float) -> str:
        return "meets the 0.8 target" if ratio >= 0.8 else "BELOW the 0.8 target"

    def span(bounds: tuple[float, float]) -> str:
        return f"[{bounds[0]:,.0f} .. {bounds[1]:,.0f}]"

    def rounds(ratios: tuple[float, ...]) -> str:
        return ", ".join(f"{r:.2f}" for r in ratios)

    return "\n".join(
        [
            f"backend: {result.backend}   messages: {result.messages:,}"
            f"   rows (samples): {result.rows:,}"
            f"   values: {result.values:,}   median of {result.repeats} rounds [min .. max]",
            "ratios: the median of the rounds' ratios (each round measures both in a row)",
            f"(a) broker, no-op subscriber : {result.broker_msgs_per_s:>9,.0f} msg/s"
            f"  {span(result.broker_range)}   client CPU {result.broker_cpu_s:5.2f} s",
            f"(b) full ingest, committed   : {result.ingest_msgs_per_s:>9,.0f} msg/s"
            f"  {span(result.ingest_range)}   client CPU {result.ingest_cpu_s:5.2f} s",
            f"    its writer, in service   : {result.writer_in_service_rows_per_s:>9,.0f} rows/s"
            "  (sharing the 2 cores with the broker and the MQTT side)",
            f"    its writer, alone        : {result.writer_rows_per_s:>9,.0f} rows/s"
            f" {span(result.writer_range)}   client CPU {result.writer_cpu_s:5.2f} s",
            f"(c) raw binary COPY          : {result.copy_rows_per_s:>9,.0f} rows/s"
            f" {span(result.copy_range)}   client CPU {result.copy_cpu_s:5.2f} s",
            f"b/a = {result.ingest_over_broker:.2f} ({verdict(result.ingest_over_broker)}),"
            f" per round: {rounds(result.ingest_over_broker_per_round)}",
            f"writer/c = {result.writer_over_copy:.2f} ({verdict(result.writer_over_copy)}),"
            f" per round: {rounds(result.writer_over_copy_per_round)}",
        ]
    )
