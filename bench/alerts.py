"""``smartcity bench alerts``: how fast a fault becomes an alert, and how fast backtests run.

Latency: the rules engine runs against a private broker and a scratch database holding the
Sefrou site, with a notification route to a local webhook. A background load publishes
healthy readings of every device at the city's rate (or a multiple); meanwhile, one at a
time, a light reports its pole knocked down: three readings five minutes apart (the rule
``pole-down`` holds for 10 minutes), the third published now. The latency is from that
publish to the notification handed to the sender, which the engine does only after the alert
is committed. Reported: p50, p99 and max at 1x and at 10x the city's load.

Backtest: the default rules over ``--days`` of generated history of the whole fleet: rows
evaluated (readings x rules) per second, and the time it took.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from alerts.routing import NotificationConfig, parse_notification_config
from alerts.wording import AlertNotice
from bench.services import BenchServices, bench_services, migrated_and_provisioned
from protocol.catalogue import CATALOGUE
from protocol.sites import Device, SiteInventory
from protocol.topics import Channel, DeviceClass, DeviceTopic
from rules import PACKAGED_RULES
from rules.backtest import backtest
from rules.model import load_rules, parse_rules
from rules.service import RulesConfig, RulesService
from simulators.history import HistoryOptions, generate_history
from whatif.lighting import PlatformLighting

Progress = Callable[[str], None]
FAULT_LIGHTS: Final = 300
"""Lights kept out of the background load to report the faults (one fault each)."""

TRIVIAL_RULES: Final = """
rules:
  - {id: t-light, class: streetlight, title: {en: T}, when: tilt > 1000}
  - {id: t-sign, class: signage, title: {en: T}, when: power > 1000000}
  - {id: t-zone, class: building, title: {en: T}, when: co2 > 1000000}
"""
"""The backtest's baseline: reading the same history and deriving its context, with one
condition a class that never holds."""

HEALTHY: Final[dict[DeviceClass, dict[str, float | bool]]] = {
    DeviceClass.STREETLIGHT: {
        "lamp_on": False,
        "lamp_power": 0.0,
        "battery_soc": 80.0,
        "battery_voltage": 13.2,
        "pv_power": 0.0,
        "pv_voltage": 0.0,
        "pv_current": 0.0,
        "charge_current": 0.0,
        "tilt": 0.4,
        "controller_status": 0,
    },
    DeviceClass.SIGNAGE: {
        "power": 300.0,
        "supply_voltage": 230.0,
        "enclosure_temperature": 28.0,
        "failed_pixels": 0,
        "door_open": False,
        "fault_bits": 0,
    },
    DeviceClass.BUILDING: {
        "air_temperature": 21.0,
        "humidity": 45.0,
        "window_open": False,
        "heating_active": False,
        "cooling_active": False,
        "valve_position": 20.0,
    },
}


@dataclass(frozen=True)
class LatencyFigures:
    load: float
    """Multiple of the city's message rate."""
    messages_per_second: float
    faults: int
    alerted: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    broker_p50_ms: float
    """Baseline: the same publish to a plain subscriber of the same broker."""
    broker_p99_ms: float

    @property
    def p99_ratio(self) -> float:
        return self.p99_ms / self.broker_p99_ms if self.broker_p99_ms else float("nan")


@dataclass(frozen=True)
class BacktestFigures:
    days: float
    devices: int
    readings: int
    rows_evaluated: int
    seconds: float
    rows_per_second: float
    history_seconds: float
    baseline_seconds: float
    """Baseline: the same history read and evaluated against one trivial rule per class."""
    baseline_rows_per_second: float


def city_rate(inventory: SiteInventory) -> float:
    """Readings per second the whole site sends."""
    return sum(
        1 / CATALOGUE[device.device_class].expected_interval_s for device in inventory.devices
    )


def _payload(ts: datetime, seq: int, values: dict[str, float | bool]) -> bytes:
    sample = {"ts": ts.isoformat(timespec="milliseconds"), "values": values}
    return json.dumps({"v": 1, "seq": seq, "samples": [sample]}).encode()


def _topic(site: str, device: Device) -> str:
    return str(DeviceTopic(site, device.device_class, device.id, Channel.TELEMETRY))


class _Load(threading.Thread):
    """Publishes healthy readings of ``devices`` round robin at ``rate`` per second."""

    def __init__(self, client: mqtt.Client, site: str, devices: Sequence[Device], rate: float):
        super().__init__(name="bench-load", daemon=True)
        self.client, self.site, self.devices, self.rate = client, site, devices, rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            due = start + self.sent / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
                continue
            device = self.devices[self.sent % len(self.devices)]
            values = HEALTHY[device.device_class]
            now = datetime.now(UTC)
            self.client.publish(_topic(self.site, device), _payload(now, self.sent, values), 1)
            self.sent += 1


class _Handed:
    """When the engine handed each device's first notification to the sender."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self._changed = threading.Condition()

    def __call__(self, notice: AlertNotice, _at: datetime) -> None:
        with self._changed:
            self.at.setdefault(notice.device_id, time.monotonic())
            self._changed.notify_all()

    def wait_for(self, device_id: str, timeout_s: float) -> float | None:
        with self._changed:
            self._changed.wait_for(lambda: device_id in self.at, timeout=timeout_s)
            return self.at.get(device_id)


@contextmanager
def _webhook() -> Iterator[int]:
    """A local webhook that accepts every notification; yields its port."""

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the benchmark counts, it does not log requests."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _engine(database_url: str, mqtt_port: int, handed: _Handed) -> Iterator[RulesService]:
    with _webhook() as port:
        routing = parse_notification_config(
            "link_base: https://smartcity.invalid/console\nroutes:\n"
            f"  - {{name: bench, urls: ['json://127.0.0.1:{port}/alerts'], language: fr}}\n"
            "retry: {attempts: 1}\n"
        )
        with _running(database_url, mqtt_port, routing, handed) as engine:
            yield engine


@contextmanager
def _running(
    database_url: str, mqtt_port: int, routing: NotificationConfig, handed: _Handed
) -> Iterator[RulesService]:
    config = RulesConfig(
        database_url, PACKAGED_RULES, mqtt_port=mqtt_port, notifications=routing, tick_s=1.0
    )
    engine = RulesService(config, on_handed_off=handed)
    thread = threading.Thread(target=engine.run, name="rules", daemon=True)
    thread.start()
    try:
        if not engine.ready.wait(30):
            raise RuntimeError("the rules engine did not subscribe")
        yield engine
    finally:
        engine.stop()
        thread.join(30)


@contextmanager
def _device_client(mqtt_port: int) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-devices")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()


class _Watcher:
    """A plain subscriber to the lights' telemetry: when each message reached it (the
    broker's own latency, the baseline of the engine's)."""

    def __init__(self, mqtt_port: int) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-watcher")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", mqtt_port)
        self.client.subscribe("sc/+/streetlight/+/telemetry", qos=1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the watcher could not subscribe")

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.arrivals.setdefault(message.topic, []).append(time.monotonic())

    def first_after(self, topic: str, moment: float, timeout_s: float = 10) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                later = [t for t in self.arrivals.get(topic, ()) if t >= moment]
            if later:
                return min(later)
            time.sleep(0.001)
        return None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _knock_down(
    client: mqtt.Client, site: str, device: Device, handed: _Handed, watcher: _Watcher
) -> tuple[float, float] | None:
    """Report ``device``'s pole down for ten minutes; seconds from the last publish to the
    notification handed over, and to a plain subscriber (None if no alert within 10 s)."""
    now = datetime.now(UTC)
    tilted = {**HEALTHY[DeviceClass.STREETLIGHT], "tilt": 80.0}
    for step in (2, 1):
        earlier = now - timedelta(minutes=5 * step)
        client.publish(_topic(site, device), _payload(earlier, 2 - step, tilted), 1)
    time.sleep(0.05)
    sent = time.monotonic()
    client.publish(_topic(site, device), _payload(now, 2, tilted), 1)
    at = handed.wait_for(device.id, timeout_s=10)
    seen = watcher.first_after(_topic(site, device), sent)
    if at is None or seen is None:
        return None
    return at - sent, seen - sent


def _figures(
    load: float, rate: float, faults: int, latencies: Sequence[tuple[float, float]]
) -> LatencyFigures:
    if not latencies:
        return LatencyFigures(load, round(rate, 1), faults, 0, *(5 * [float("nan")]))
    alert_ms = np.array([alert for alert, _ in latencies]) * 1000
    broker_ms = np.array([broker for _, broker in latencies]) * 1000
    return LatencyFigures(
        load,
        round(rate, 1),
        faults,
        len(latencies),
        round(float(np.percentile(alert_ms, 50)), 1),
        round(float(np.percentile(alert_ms, 99)), 1),
        round(float(alert_ms.max()), 1),
        round(float(np.percentile(broker_ms, 50)), 1),
        round(float(np.percentile(broker_ms, 99)), 1),
    )


def measure_latency(
    inventory: SiteInventory,
    services: BenchServices,
    *,
    loads: Sequence[float],
    faults_per_load: int,
    progress: Progress,
) -> list[LatencyFigures]:
    lights = inventory.by_class(DeviceClass.STREETLIGHT)
    faulty = iter(lights[:FAULT_LIGHTS])
    background = [d for d in inventory.devices if d not in lights[:FAULT_LIGHTS]]
    handed = _Handed()
    rng = random.Random(7)
    figures = []
    watcher = _Watcher(services.mqtt_port)
    with (
        _engine(services.database_url, services.mqtt_port, handed),
        _device_client(services.mqtt_port) as client,
    ):
        for load in loads:
            rate = load * city_rate(inventory)
            progress(f"load {load:g}x: {rate:,.1f} readings/s, {faults_per_load} faults")
            background_load = _Load(client, inventory.site.id, background, rate)
            background_load.start()
            latencies = []
            for _ in range(faults_per_load):
                time.sleep(rng.uniform(0.2, 0.6))
                latency = _knock_down(client, inventory.site.id, next(faulty), handed, watcher)
                if latency is not None:
                    latencies.append(latency)
            background_load.stop.set()
            background_load.join(5)
            figures.append(_figures(load, rate, faults_per_load, latencies))
    watcher.close()
    return figures


def measure_backtest(
    inventory: SiteInventory, database_url: str, days: float, progress: Progress
) -> BacktestFigures:
    end = datetime(2026, 2, 1, tzinfo=UTC)
    start = end - timedelta(days=days)
    progress(f"generating {days:g} days of history of {len(inventory.devices):,} devices")
    history = generate_history(
        HistoryOptions(
            inventory,
            start,
            end,
            seed=11,
            faults=(),
            run_name="bench-alerts",
            lighting=PlatformLighting(inventory),  # the lights run as live, on nightly plans
        ),
        database_url,
        progress=lambda _: None,
    )
    progress(f"history: {history.total_rows:,} rows in {history.seconds:.0f} s; backtesting")
    result = backtest(database_url, load_rules(PACKAGED_RULES), start, end)
    progress(f"default rules: {result.summary()}; now the baseline (one trivial rule a class)")
    baseline = backtest(database_url, parse_rules(TRIVIAL_RULES, "<baseline>"), start, end)
    return BacktestFigures(
        days,
        result.device_count,
        result.readings,
        result.rows_evaluated,
        round(result.seconds, 1),
        round(result.rows_per_second),
        round(history.seconds, 1),
        round(baseline.seconds, 1),
        round(baseline.rows_per_second),
    )


def run(
    inventory: SiteInventory,
    *,
    loads: Sequence[float],
    faults: int,
    days: float,
    database_url: str | None,
    progress: Progress,
) -> tuple[list[LatencyFigures], BacktestFigures | None]:
    with bench_services(database_url, progress, "alerts") as services:
        migrated_and_provisioned(services.database_url, inventory)
        latency = measure_latency(
            inventory, services, loads=loads, faults_per_load=faults, progress=progress
        )
        figures = (
            measure_backtest(inventory, services.database_url, days, progress) if days else None
        )
    return latency, figures


def report(latency: Sequence[LatencyFigures], figures: BacktestFigures | None) -> str:
    lines = ["fault-to-alert latency (publish -> alert stored and notification handed over):"]
    targets = {1.0: 1_000.0, 10.0: 2_000.0}
    for row in latency:
        target = targets.get(row.load)
        verdict = ""
        if target is not None:
            verdict = (
                f"  target p99 <= {target:,.0f} ms: {'met' if row.p99_ms <= target else 'MISSED'}"
            )
        lines.append(
            f"  {row.load:g}x ({row.messages_per_second:,.1f} readings/s): "
            f"{row.alerted}/{row.faults} alerted, p50 {row.p50_ms:.0f} ms, "
            f"p99 {row.p99_ms:.0f} ms, max {row.max_ms:.0f} ms{verdict}"
        )
        lines.append(
            f"      baseline, the broker to a plain subscriber: p50 {row.broker_p50_ms:.1f} ms, "
            f"p99 {row.broker_p99_ms:.1f} ms; engine p99 / broker p99 = {row.p99_ratio:.1f}"
        )
    if figures is not None:
        speed = "met" if figures.rows_per_second >= 1e6 else "MISSED"
        lines.append(
            f"backtest of {figures.days:g} days, {figures.devices:,} devices: "
            f"{figures.rows_evaluated:,} rows evaluated ({figures.readings:,} readings) in "
            f"{figures.seconds:.1f} s = {figures.rows_per_second:,.0f} rows/s "
            f"(target >= 1,000,000: {speed}); history generated in {figures.history_seconds:.0f} s"
        )
        lines.append(
            f"      baseline, one trivial rule a class: {figures.baseline_seconds:.1f} s "
            f"({figures.baseline_rows_per_second:,.0f} rows/s); the default rules take "
            f"{figures.seconds / figures.baseline_seconds:.2f}x its time"
        )
    return "\n".join(lines)


def to_json(latency: Sequence[LatencyFigures], figures: BacktestFigures | None) -> str:
    return json.dumps(
        {
            "latency": [{**asdict(row), "p99_ratio": round(row.p99_ratio, 2)} for row in latency],
            "backtest": asdict(figures) if figures is not None else None,
        }
    )
