"""Overload: ingest offered several times what it can store, for minutes, on one machine.

1. **Calibration.** The ingest process(es) make their persistent sessions, go away while
   ``calibration_messages`` are published, come back and drain them alone: from the first
   message received to the last row stored, that is ingest's sustainable rate R here (what
   ``smartcity bench ingest`` calls (b)).
2. **Overload.** A publisher offers ``ratio`` x R messages a second (QoS 1, one 13-value
   streetlight sample each, from ``devices`` devices) for ``minutes``. Every second the
   benchmark samples the resident memory of every ingest process (its MQTT process and its
   storing process; psutil when installed, else /proc), ingest's own counters (/metrics), the
   backlog for ingest (messages the broker acknowledged to the publisher and has not yet
   delivered to ingest) and, every 10 s, Mosquitto's own counters ($SYS: messages in its store,
   messages it dropped).
3. **Drain.** Publishing stops; the benchmark waits until every acknowledged message is stored
   (or until nothing has moved for ``stall_s``: messages the broker dropped never come).
4. **Count.** Rows in the database against messages the broker acknowledged: lost (must be 0),
   doubled (must be 0: the primary key makes it impossible, and the count proves it), and the
   redeliveries ingest absorbed.

The publisher writes pre-built MQTT 3.1.1 PUBLISH packets on a plain socket, at most ``window``
unacknowledged, as a fleet of devices would: paho spends 60-100 us of CPU a message (that, not
the database, bounds ingest), which would make the publisher, not ingest, the bottleneck.
Everything runs on this machine: the publisher, the broker, ingest and PostgreSQL share its
cores, so ingest stores less during the overload than when it drains alone.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import bench_site
from bench.services import bench_services, migrated_and_provisioned, scraped_metrics
from bench.synthetic import demo_values
from ingest.config import DEFAULT_MAX_HELD_BYTES
from protocol.sites import Device, SiteInventory
from runtime.local_services import free_port

Progress = Callable[[str], None]

SAMPLE_S: Final = 1.0
SHARE_GROUP: Final = "overload"
CLIENT_ID: Final = "bench-overload-ingest"
_VALUE_VARIANTS: Final = 8
"""Distinct value sets per device, cycled (the values do not matter, their checks do)."""
_STEP_S: Final = 1
"""Seconds between two samples of one device: (device, time) is unique for every message."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The state of things ``at_s`` seconds into the overload (or the drain after it)."""

    at_s: float
    phase: str
    sent: int
    """Messages the broker acknowledged to the publisher so far (this phase and before)."""
    received: int
    """Messages ingest received (all its workers)."""
    stored: int
    """Rows ingest stored (one a message)."""
    backlog: int
    """Acknowledged by the broker to the publisher, not yet received by ingest."""
    rss_bytes: int
    """Resident memory of every ingest process (MQTT and storing processes)."""
    held_bytes: int
    """Payload bytes ingest received and has not yet stored (its own gauge)."""
    broker_stored: int | None
    """Mosquitto's $SYS/broker/store/messages/count at its last report (every 10 s)."""


@dataclass(frozen=True, slots=True)
class OverloadResult:
    machine: str
    workers: int
    devices: int
    payload_bytes: int
    calibration_messages: int
    calibration_rate: float
    """Messages a second ingest stores draining a backlog alone: R."""
    ratio_asked: float
    target_rate: float
    minutes: float
    sent: int
    offered_rate: float
    """Messages the broker acknowledged a second during the overload."""
    offered_ratio: float
    """offered_rate / calibration_rate: the overload actually achieved."""
    stored_rate_under_load: float
    """Rows a second ingest stored during the overload (sharing the cores with the publisher)."""
    stored: int
    lost: int
    doubled: int
    redeliveries_absorbed: int
    broker_dropped: int | None
    """$SYS/broker/publish/messages/dropped at the end: what Mosquitto threw away (queue full)."""
    peak_backlog: int
    peak_broker_stored: int | None
    rss_idle_bytes: int
    rss_peak_bytes: int
    held_peak_bytes: int
    held_bound_bytes: int
    """SMARTCITY_INGEST_MAX_HELD_BYTES of each worker: the payload ingest may hold."""
    drain_s: float
    drained: bool
    ingest_warnings: tuple[str, ...]
    """What ingest logged at WARNING or above, each message once with its count."""
    samples: tuple[Sample, ...] = field(repr=False)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# ----------------------------------------------------------------------------- publisher


def _remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


class Messages:
    """Message ``index`` of the run: device ``index % devices``, sample time
    ``start + (index // devices)`` seconds, as a ready MQTT PUBLISH packet (QoS 1)."""

    def __init__(self, inventory: SiteInventory, start: datetime) -> None:
        self._devices: Sequence[Device] = inventory.devices
        self._start_s = int(start.timestamp())
        self._topics = [
            _topic_field(f"sc/{inventory.site.id}/{d.device_class.value}/{d.id}/telemetry")
            for d in self._devices
        ]
        import random

        rng = random.Random(11)
        self._values = [
            [
                json.dumps(demo_values(d, start, rng), separators=(",", ":")).encode()
                for _ in range(_VALUE_VARIANTS)
            ]
            for d in self._devices
        ]
        self._stamp_second = -1
        self._stamp = b""

    def span(self, count: int) -> timedelta:
        """The time the samples of ``count`` messages cover."""
        return timedelta(seconds=_STEP_S * (count // len(self._devices) + 1))

    def payload(self, index: int) -> bytes:
        device, step = index % len(self._devices), index // len(self._devices)
        second = self._start_s + step * _STEP_S
        if second != self._stamp_second:
            moment = datetime.fromtimestamp(second, UTC)
            self._stamp, self._stamp_second = moment.strftime("%Y-%m-%dT%H:%M:%SZ").encode(), second
        values = self._values[device][step % _VALUE_VARIANTS]
        return b'{"v":1,"seq":%d,"samples":[{"ts":"%s","values":%s}]}' % (step, self._stamp, values)

    def packet(self, index: int) -> bytes:
        payload = self.payload(index)
        topic = self._topics[index % len(self._devices)]
        packet_id = struct.pack("!H", index % 65_535 + 1)
        body_length = len(topic) + 2 + len(payload)
        return b"".join((b"\x32", _remaining_length(body_length), topic, packet_id, payload))

    def topic(self, index: int) -> str:
        return self._topics[index % len(self._devices)][2:].decode()


def _topic_field(topic: str) -> bytes:
    encoded = topic.encode()
    return struct.pack("!H", len(encoded)) + encoded


class RawPublisher:
    """A QoS 1 MQTT 3.1.1 client on a plain socket: pre-built PUBLISH packets out, PUBACKs
    counted by a reader thread, at most ``window`` unacknowledged."""

    def __init__(self, port: int, client_id: str, window: int = 1_000) -> None:
        self.window = window
        self.sent = 0
        self.acknowledged = 0
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        name = client_id.encode()
        # MQTT 3.1.1 CONNECT: clean session, no keep-alive.
        variable = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack("!H", len(name)) + name
        self._socket.sendall(b"\x10" + _remaining_length(len(variable)) + variable)
        connack = self._read_exactly(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"the broker refused the publisher: CONNACK {connack.hex()}")
        self._socket.settimeout(None)
        self._reader = threading.Thread(target=self._read_acks, name="puback-reader", daemon=True)
        self._reader.start()

    def _read_exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self._socket.recv(count - len(data))
            if not chunk:
                raise RuntimeError("the broker closed the publisher's connection")
            data += chunk
        return data

    def _read_acks(self) -> None:
        pending = b""
        while True:
            try:
                chunk = self._socket.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            whole = len(pending) // 4  # PUBACK: 0x40 0x02 and the packet id
            if whole:
                if pending[0] != 0x40:
                    raise RuntimeError(f"unexpected packet from the broker: {pending[:4].hex()}")
                self.acknowledged += whole
                pending = pending[whole * 4 :]

    @property
    def in_flight(self) -> int:
        return self.sent - self.acknowledged

    def offer(
        self,
        messages: Messages,
        first: int,
        rate: float | None,
        seconds: float,
        *,
        until: int | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Publish from message ``first`` at ``rate`` a second (None: as fast as the broker
        takes them) for ``seconds`` or until message ``until``, never more than ``window``
        unacknowledged (a slower broker slows the publisher down, as it would devices);
        return the index after the last message sent."""
        started = time.perf_counter()
        index = first
        while not (stop and stop.is_set()) and (until is None or index < until):
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                break
            due = 2_000 if rate is None else int(elapsed * rate) - (index - first)
            if until is not None:
                due = min(due, until - index)
            count = min(due, self.window - self.in_flight, 2_000)
            if count <= 0:
                time.sleep(0.0005)
                continue
            self._socket.sendall(b"".join(messages.packet(i) for i in range(index, index + count)))
            self.sent += count
            index += count
        return index

    def wait_acknowledged(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.in_flight:
            raise RuntimeError(f"{self.in_flight} messages never acknowledged by the broker")

    def close(self) -> None:
        with suppress(OSError):
            self._socket.sendall(b"\xe0\x00")  # DISCONNECT
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._reader.join(5)


# ----------------------------------------------------------------------------- ingest


def resident_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (psutil, else /proc)."""
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return sum(_proc_rss(p) for p in (pid, *_descendants(pid)))
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
        return sum(int(member.memory_info().rss) for member in family)
    except psutil.Error:
        return 0


def _proc_rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class IngestProcess:
    """One `smartcity ingest` worker as its own OS process, with its /metrics endpoint."""

    name: str
    metrics_port: int
    process: subprocess.Popen[bytes]
    log_file: Path

    def metrics(self) -> dict[str, float]:
        """Each ingest metric's samples summed over their labels; empty while it does not
        answer."""
        return scraped_metrics(self.metrics_port, "smartcity_ingest_")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_ingest(
    database_url: str, mqtt_port: int, workdir: Path, name: str, shared: bool
) -> IngestProcess:
    smartcity = shutil.which("smartcity", path=str(Path(sys.executable).parent))
    command = [smartcity] if smartcity else [sys.executable, "-m", "smartcity.cli"]
    command.append("ingest")
    if shared:
        command += ["--share-group", SHARE_GROUP, "--worker", name]
    metrics_port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SMARTCITY_MQTT_", "SMARTCITY_INGEST_"))
    }
    env |= {
        "DATABASE_URL": database_url,
        "SMARTCITY_DATABASE_URL": database_url,
        "SMARTCITY_MQTT_HOST": "127.0.0.1",
        "SMARTCITY_MQTT_PORT": str(mqtt_port),
        "SMARTCITY_INGEST_METRICS_PORT": str(metrics_port),
        "SMARTCITY_INGEST_CLIENT_ID": CLIENT_ID,
    }
    log_file = workdir / f"ingest-{name}.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [*command, "--log-level", "WARNING"],
            env=env,
            stdout=log,
            stderr=log,
            cwd=workdir,
        )
    return IngestProcess(name, metrics_port, process, log_file)


class Fleet:
    """The ingest workers: started, stopped, their counters and memory summed."""

    def __init__(self, database_url: str, mqtt_port: int, workdir: Path, count: int) -> None:
        self._args = (database_url, mqtt_port, workdir)
        self.count = count
        self.workers: list[IngestProcess] = []

    def start(self) -> None:
        self.workers = [
            start_ingest(*self._args, str(index + 1), self.count > 1) for index in range(self.count)
        ]
        deadline = time.monotonic() + 60
        while not all(
            w.metrics().get("smartcity_ingest_broker_connected") == 1 for w in self.workers
        ):
            for worker in self.workers:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"ingest exited: {_tail(worker.log_file)}")
            if time.monotonic() > deadline:
                raise RuntimeError("ingest did not connect to the broker within 60 s")
            time.sleep(0.1)
        time.sleep(0.5)  # the subscriptions follow the connection

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def totals(self) -> dict[str, float]:
        summed: dict[str, float] = {}
        for worker in self.workers:
            for name, value in worker.metrics().items():
                summed[name] = summed.get(name, 0.0) + value
        return summed

    def resident_bytes(self) -> int:
        return sum(resident_bytes(worker.process.pid) for worker in self.workers)

    def warnings(self) -> tuple[str, ...]:
        """Each message the workers logged (WARNING and above), with how often."""
        seen: dict[str, int] = {}
        for worker in self.workers:
            with suppress(OSError):
                for line in worker.log_file.read_text(errors="replace").splitlines():
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(entry, dict) and "msg" in entry:
                        key = f"{entry.get('level')}: {entry['msg']}"
                        seen[key] = seen.get(key, 0) + 1
        return tuple(f"{count} x {message}" for message, count in seen.items())

    def check_alive(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is not None:
                raise RuntimeError(f"ingest worker {worker.name} exited: {_tail(worker.log_file)}")


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------------- broker $SYS


class BrokerCounters:
    """Mosquitto's $SYS/broker/... values as it publishes them (every sys_interval, 10 s)."""

    def __init__(self, port: int) -> None:
        self.values: dict[str, int] = {}
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-overload-sys", protocol=mqtt.MQTTv311
        )
        self._client.on_connect = lambda client, *_: client.subscribe("$SYS/broker/#", qos=0)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        with suppress(ValueError):
            self.values[message.topic.removeprefix("$SYS/broker/")] = int(message.payload)

    def get(self, name: str) -> int | None:
        return self.values.get(name)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# ----------------------------------------------------------------------------- the run


@contextmanager
def _running(fleet: Fleet) -> Iterator[Fleet]:
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


def run(  # noqa: PLR0915 - its phases read as one story
    *,
    minutes: float,
    ratio: float,
    devices: int,
    workers: int,
    calibration_messages: int,
    window: int,
    stall_s: float,
    drain_timeout_s: float,
    database_url: str | None,
    progress: Progress,
) -> OverloadResult:
    inventory = bench_site(devices)
    with bench_services(database_url, progress, "overload") as services:
        port, url = services.mqtt_port, services.database_url
        migrated_and_provisioned(url, inventory, progress=progress)
        # Sample times from 8 hours ago: a 10-minute run at 40,000 msg/s from 2,000 devices
        # covers 3.3 hours, inside ingest's acceptance window and never in the future.
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=8)
        messages = Messages(inventory, start)
        messages_per_calibration = max(calibration_messages, devices)
        fleet = Fleet(url, port, services.workdir, workers)
        sys_counters = BrokerCounters(port)
        try:
            calibration_rate, rss_idle = _calibrate(
                fleet, port, messages, messages_per_calibration, progress
            )
            target = ratio * calibration_rate
            progress(
                f"calibration: {calibration_rate:,.0f} msg/s stored; now offering"
                f" {target:,.0f} msg/s ({ratio:g}x) for {minutes:g} min"
            )
            samples: list[Sample] = []
            publisher = RawPublisher(port, "bench-overload-devices", window)
            stop = threading.Event()
            first = messages_per_calibration
            sent_before = messages_per_calibration

            def publish() -> None:
                publisher.offer(messages, first, target, minutes * 60, stop=stop)

            sender = threading.Thread(target=publish, name="overload-publisher", daemon=True)
            overload_started = time.perf_counter()
            totals_at_start = fleet.totals()
            stored_at_start = totals_at_start.get("smartcity_ingest_rows_stored_total", 0.0)
            sender.start()

            def sample(phase: str) -> Sample:
                totals = fleet.totals()
                received = int(totals.get("smartcity_ingest_messages_received_total", 0))
                sent = sent_before + publisher.acknowledged
                return Sample(
                    at_s=round(time.perf_counter() - overload_started, 2),
                    phase=phase,
                    sent=sent,
                    received=received,
                    stored=int(totals.get("smartcity_ingest_rows_stored_total", 0)),
                    backlog=max(0, sent - received),
                    rss_bytes=fleet.resident_bytes(),
                    held_bytes=int(totals.get("smartcity_ingest_held_bytes", 0)),
                    broker_stored=sys_counters.get("store/messages/count"),
                )

            next_report = time.perf_counter() + 30
            try:
                while sender.is_alive():
                    sender.join(SAMPLE_S)
                    samples.append(sample("overload"))
                    fleet.check_alive()
                    if time.perf_counter() >= next_report:
                        last = samples[-1]
                        progress(
                            f"  {last.at_s:6.0f} s: sent {last.sent:,}, stored {last.stored:,},"
                            f" backlog {last.backlog:,}, RSS {last.rss_bytes / 2**20:,.0f} MiB"
                        )
                        next_report += 30
            finally:
                stop.set()
                sender.join()
            overload_s = time.perf_counter() - overload_started
            publisher.wait_acknowledged()
            publisher.close()
            sent = sent_before + publisher.acknowledged
            stored_at_end = samples[-1].stored if samples else 0
            progress(f"drain: waiting for the backlog ({sent - stored_at_end:,} messages)")
            drain_started = time.perf_counter()
            drained = False
            last_change, last_stored = time.perf_counter(), -1
            while time.perf_counter() - drain_started < drain_timeout_s:
                time.sleep(SAMPLE_S)
                current = sample("drain")
                samples.append(current)
                if current.stored >= sent:
                    drained = True
                    break
                if current.stored != last_stored:
                    last_change, last_stored = time.perf_counter(), current.stored
                elif time.perf_counter() - last_change > stall_s:
                    break  # what the broker dropped never comes
                fleet.check_alive()
            drain_s = time.perf_counter() - drain_started
            time.sleep(1.0)
            final = fleet.totals()
            dropped = sys_counters.get("publish/messages/dropped")
        finally:
            fleet.stop()
            sys_counters.close()
        warnings = fleet.warnings()
        with psycopg.connect(url) as connection:
            row = connection.execute(
                "SELECT count(*), count(DISTINCT (device_id, ts)) FROM telemetry_streetlight"
            ).fetchone()
        rows, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
    overload_samples = [s for s in samples if s.phase == "overload"]
    stored_under_load = (
        (overload_samples[-1].stored - stored_at_start) / overload_s if overload_samples else 0.0
    )
    brokers = [s.broker_stored for s in samples if s.broker_stored is not None]
    return OverloadResult(
        machine=_machine(),
        workers=workers,
        devices=devices,
        payload_bytes=len(messages.payload(first)),
        calibration_messages=messages_per_calibration,
        calibration_rate=calibration_rate,
        ratio_asked=ratio,
        target_rate=target,
        minutes=minutes,
        sent=sent,
        offered_rate=(sent - sent_before) / overload_s,
        offered_ratio=(sent - sent_before) / overload_s / calibration_rate,
        stored_rate_under_load=stored_under_load,
        stored=distinct,
        lost=sent - distinct,
        doubled=rows - distinct,
        redeliveries_absorbed=int(final.get("smartcity_ingest_duplicate_rows_total", 0)),
        broker_dropped=dropped,
        peak_backlog=max((s.backlog for s in samples), default=0),
        peak_broker_stored=max(brokers) if brokers else None,
        rss_idle_bytes=rss_idle,
        rss_peak_bytes=max((s.rss_bytes for s in samples), default=0),
        held_peak_bytes=max((s.held_bytes for s in samples), default=0),
        held_bound_bytes=workers * DEFAULT_MAX_HELD_BYTES,
        drain_s=drain_s,
        drained=drained,
        ingest_warnings=warnings,
        samples=tuple(samples),
    )


def _calibrate(
    fleet: Fleet, port: int, messages: Messages, count: int, progress: Progress
) -> tuple[float, int]:
    """Ingest's drain rate, alone, over ``count`` messages queued while it was away; and its
    idle resident memory."""
    with _running(fleet):
        pass  # the persistent sessions (and the shared subscriptions) now exist
    progress(f"calibration: {count:,} messages queued while ingest is away")
    publisher = RawPublisher(port, "bench-overload-calibration")
    try:
        publisher.offer(messages, 0, None, 3600, until=count)
        publisher.wait_acknowledged()
    finally:
        publisher.close()
    progress("calibration: ingest drains them alone")
    fleet.start()
    rss_idle = fleet.resident_bytes()
    first_at: float | None = None
    deadline = time.monotonic() + 600
    while True:
        totals = fleet.totals()
        now = time.perf_counter()
        if first_at is None and totals.get("smartcity_ingest_messages_received_total", 0) > 0:
            first_at = now
        stored = totals.get("smartcity_ingest_rows_stored_total", 0)
        if stored >= count:
            break
        fleet.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"calibration: ingest stored {stored:.0f} of {count}")
        time.sleep(0.02)
    if first_at is None:
        raise RuntimeError("calibration: ingest received nothing")
    return count / (now - first_at), rss_idle


def _machine() -> str:
    model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model or platform.processor()}, {platform.system()}"


# ----------------------------------------------------------------------------- report


def report(result: OverloadResult) -> str:
    mib = 2**20

    def verdict(ok: bool) -> str:
        return "ok" if ok else "NOT OK"

    broker_dropped = "n/a" if result.broker_dropped is None else f"{result.broker_dropped:,}"
    broker_peak = "n/a" if result.peak_broker_stored is None else f"{result.peak_broker_stored:,}"
    lines = [
        f"machine: {result.machine}; {result.workers} ingest worker(s),"
        f" {result.devices:,} devices, {result.payload_bytes} B a message",
        f"calibration     : {result.calibration_rate:>9,.0f} msg/s stored, draining"
        f" {result.calibration_messages:,} queued messages alone (R)",
        f"overload        : {result.target_rate:>9,.0f} msg/s asked ({result.ratio_asked:g} x R)"
        f" for {result.minutes:g} min",
        f"  offered       : {result.offered_rate:>9,.0f} msg/s acknowledged by the broker"
        f" = {result.offered_ratio:.2f} x R",
        f"  stored        : {result.stored_rate_under_load:>9,.0f} msg/s meanwhile"
        f" = {result.stored_rate_under_load / result.calibration_rate:.2f} x R"
        " (the publisher shares the cores): offered/stored ="
        f" {result.offered_rate / max(result.stored_rate_under_load, 1e-9):.2f}",
        f"sent            : {result.sent:>12,} messages acknowledged by the broker",
        f"stored          : {result.stored:>12,} rows (one a message)",
        f"lost            : {result.lost:>12,}  {verdict(result.lost == 0)}"
        f"   (broker's dropped counter: {broker_dropped})",
        f"doubled         : {result.doubled:>12,}  {verdict(result.doubled == 0)}"
        f"   (redeliveries absorbed by ingest: {result.redeliveries_absorbed:,})",
        f"peak backlog    : {result.peak_backlog:>12,} messages waiting for ingest"
        f" (Mosquitto's store at its peak report: {broker_peak})",
        f"ingest memory   : RSS {result.rss_idle_bytes / mib:,.0f} MiB idle,"
        f" {result.rss_peak_bytes / mib:,.0f} MiB at peak (all its processes);"
        f" held payload at peak {result.held_peak_bytes / mib:,.1f} MiB"
        f" of a {result.held_bound_bytes / mib:,.0f} MiB bound"
        f"  {verdict(result.held_peak_bytes <= result.held_bound_bytes)}",
        f"drain           : {result.drain_s:,.1f} s after the publisher stopped"
        f" ({'drained' if result.drained else 'NOT drained: stalled or timed out'})",
    ]
    lines += [f"ingest logged   : {line}" for line in result.ingest_warnings]
    return "\n".join(lines)


def to_json(result: OverloadResult) -> str:
    data = result.as_dict()
    data["samples"] = [asdict(s) for s in result.samples]
    return json.dumps(data)
