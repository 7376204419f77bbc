"""How long ingest's writes pause while the database's maintenance runs, at a steady rate.

The database first holds the last day's samples of a fleet (``--devices`` streetlights, one
sample every 5 minutes), all of its hours left for the rollups to recompute, as after a
restart or a backfill. Then a publisher sends one streetlight sample per message,
stamped with the time it is sent, at ``--rate`` for ``--seconds``, while ingest stores them:

- the reference: ingest with no maintenance during the run;
- measured: ingest running its maintenance every ``--interval`` seconds (the first one
  recomputes the whole day).

Every 20 ms the bench reads ingest's count of stored rows; a pause is a stretch during which
the count stood still while messages it had been sent were not stored yet. It reports the
longest pause and the 99th percentile of the time a message waited to be stored (from its
publication to the first reading of the counter that includes it), for both.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import bench_site
from bench.services import bench_services, migrated_and_provisioned
from bench.synthetic import demo_values
from ingest.service import IngestConfig, IngestService
from protocol.payloads import PROTOCOL_VERSION, Sample, TelemetryPayload, encode
from protocol.sites import SiteInventory
from protocol.topics import Channel, DeviceClass, DeviceTopic
from storage.rollups import uses_timescaledb
from storage.writer import BatchWriter, SampleRows, StorageBatch, telemetry_rows

Progress = Callable[[str], None]

POLL_S = 0.02
HISTORY_STEP = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Pauses:
    """One run: the longest pause of the stored-row count with messages waiting, and how long
    messages waited to be stored (median, 99th percentile, longest)."""

    messages: int
    longest_pause_s: float
    wait_p50_s: float
    wait_p99_s: float
    wait_max_s: float


@dataclass(frozen=True, slots=True)
class MaintenanceBenchResult:
    backend: str
    devices: int
    history_rows: int
    rate_per_s: float
    seconds: float
    interval_s: float
    reference: Pauses
    with_maintenance: Pauses
    rollup_hours_recomputed: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def longest_pause(readings: list[tuple[float, int]], sent: list[float]) -> float:
    """The longest time the stored count (``readings``: (time, count), in time order) stood
    still while a message sent before that time (``sent``: send times, in order) was not yet
    counted."""
    longest = 0.0
    still_since: float | None = None
    last_count = -1
    for at, count in readings:
        if count != last_count:
            still_since, last_count = at, count
            continue
        waiting = count < len(sent) and sent[count] < at
        if waiting and still_since is not None:
            longest = max(longest, at - max(still_since, sent[count]))
    return longest


def waits(readings: list[tuple[float, int]], sent: list[float]) -> list[float]:
    """For each message (stored in the order sent, one row each), the time from its sending
    to the first reading whose count includes it."""
    result: list[float] = []
    index = 0
    for at, count in readings:
        while index < min(count, len(sent)):
            result.append(max(0.0, at - sent[index]))
            index += 1
    return result


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def summarise(readings: list[tuple[float, int]], sent: list[float]) -> Pauses:
    waited = waits(readings, sent)
    return Pauses(
        messages=len(sent),
        longest_pause_s=longest_pause(readings, sent),
        wait_p50_s=_percentile(waited, 0.5),
        wait_p99_s=_percentile(waited, 0.99),
        wait_max_s=max(waited, default=0.0),
    )


def fill_last_day(url: str, inventory: SiteInventory, progress: Progress) -> int:
    """The last 24 hours of every device, a sample every 5 minutes; returns the rows."""
    rng = random.Random(11)
    first = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
    steps = int(timedelta(days=1) / HISTORY_STEP) - 2
    rows = 0
    with psycopg.connect(url, autocommit=True) as connection:
        writer = BatchWriter(connection)
        for device in inventory.devices:
            samples: SampleRows = {}
            for step in range(steps):
                at = first + step * HISTORY_STEP
                values = demo_values(device, at, rng)
                samples[(device.id, at)] = {name: float(value) for name, value in values.items()}
            rows_of_device = telemetry_rows(DeviceClass.STREETLIGHT, samples)
            batch = StorageBatch(telemetry={DeviceClass.STREETLIGHT: rows_of_device})
            rows += writer.write(batch).telemetry_stored
        progress(f"history: {rows:,} rows of the last day for {len(inventory.devices)} devices")
    return rows


def _dirty_the_last_day(url: str) -> None:
    """Plain PostgreSQL: every hour of the last day left for the next refresh to recompute."""
    with psycopg.connect(url, autocommit=True) as connection:
        if uses_timescaledb(connection):
            return
        connection.execute(
            "INSERT INTO rollup_dirty (device_class, bucket)"
            " SELECT 'streetlight', generate_series(date_trunc('hour', now() - INTERVAL '1 day',"
            " 'UTC'), now(), INTERVAL '1 hour') ON CONFLICT DO NOTHING"
        )


def run_once(
    port: int, inventory: SiteInventory, config: IngestConfig, rate: float, seconds: float
) -> Pauses:
    """Ingest running, a paced publisher, the stored count read every 20 ms."""
    service = IngestService(config)
    runner = threading.Thread(target=service.run, name="ingest")
    runner.start()
    if not service.ready.wait(60):
        raise RuntimeError("ingest did not get ready")
    stored = service.metrics.stored.labels("telemetry")
    base = int(stored._value.get())
    readings: list[tuple[float, int]] = []
    sent: list[float] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            readings.append((time.monotonic(), int(stored._value.get()) - base))
            time.sleep(POLL_S)

    reader = threading.Thread(target=read, name="reader")
    reader.start()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paced", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1_000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    rng = random.Random(5)
    devices = inventory.devices
    started = time.monotonic()
    count = int(rate * seconds)
    for index in range(count):
        due = started + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        device = devices[index % len(devices)]
        at = datetime.now(UTC)
        payload = encode(
            TelemetryPayload(PROTOCOL_VERSION, index, [Sample(at, demo_values(device, at, rng))])
        )
        topic = DeviceTopic(inventory.site.id, device.device_class, device.id, Channel.TELEMETRY)
        sent.append(time.monotonic())
        client.publish(str(topic), payload, qos=1)
    deadline = time.monotonic() + 120
    while int(stored._value.get()) - base < count:
        if time.monotonic() > deadline:
            raise RuntimeError("ingest did not store every message within 2 minutes")
        time.sleep(POLL_S)
    time.sleep(POLL_S * 2)
    done.set()
    reader.join()
    client.disconnect()
    client.loop_stop()
    service.stop()
    runner.join()
    return summarise(readings, sent)  # one message, one sample, one row


def run(
    *,
    devices: int,
    rate: float,
    seconds: float,
    interval_s: float,
    database_url: str | None,
    progress: Progress,
    timescaledb: bool = False,
) -> MaintenanceBenchResult:
    inventory = bench_site(devices)
    with bench_services(database_url, progress, "maintenance", timescaledb) as services:
        port, url = services.mqtt_port, services.database_url
        backend = migrated_and_provisioned(url, inventory, progress=progress)
        history = fill_last_day(url, inventory, progress)
        config = IngestConfig(url, "127.0.0.1", port, maintenance_interval_s=3600)
        progress(f"reference: {rate:g} msg/s for {seconds:g} s, no maintenance during the run")
        _dirty_the_last_day(url)
        reference = run_once(
            port, inventory, replace(config, client_id="bench-reference"), rate, seconds
        )
        progress(f"measured: the same, with maintenance every {interval_s:g} s")
        _dirty_the_last_day(url)
        measured_config = replace(
            config, client_id="bench-maintained", maintenance_interval_s=interval_s
        )
        measured = run_once(port, inventory, measured_config, rate, seconds)
        with psycopg.connect(url) as connection:
            row = connection.execute(
                "SELECT count(*) FROM telemetry_streetlight_hourly"
                " WHERE bucket < date_trunc('hour', now(), 'UTC') - INTERVAL '12 hours'"
            ).fetchone()
        recomputed = bool(row and row[0])
    return MaintenanceBenchResult(
        backend=backend,
        devices=devices,
        history_rows=history,
        rate_per_s=rate,
        seconds=seconds,
        interval_s=interval_s,
        reference=reference,
        with_maintenance=measured,
        rollup_hours_recomputed=recomputed,
    )


def report(result: MaintenanceBenchResult) -> str:
    def line(name: str, pauses: Pauses) -> str:
        return (
            f"  {name:<26} {pauses.messages:>8,} {pauses.longest_pause_s:>10.2f}"
            f" {pauses.wait_p50_s:>9.3f} {pauses.wait_p99_s:>9.3f} {pauses.wait_max_s:>9.2f}"
        )

    ratio = result.with_maintenance.longest_pause_s / max(result.reference.longest_pause_s, 1e-9)
    recomputed = "yes" if result.rollup_hours_recomputed else "NO"
    return "\n".join(
        [
            f"ingest writes while maintenance runs ({result.backend}; {result.devices} devices,"
            f" {result.history_rows:,} rows of the last day to roll up;"
            f" {result.rate_per_s:g} msg/s for {result.seconds:g} s)",
            "  run                        messages  pause max  wait p50  wait p99  wait max [s]",
            line("no maintenance (reference)", result.reference),
            line(f"maintenance every {result.interval_s:g} s", result.with_maintenance),
            f"  longest pause with maintenance / reference: {ratio:.2f}"
            f"; the last day's rollups recomputed: {recomputed}",
        ]
    )
