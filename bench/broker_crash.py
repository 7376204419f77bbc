"""``smartcity bench broker-crash``: what a Mosquitto crash loses from a device without a
replay window, per autosave setting.

Mosquitto acknowledges a QoS 1 message (PUBACK) once it holds it in memory, and writes its
persistence file only at autosave (``broker_config/mosquitto.conf``). While ingest is
connected and keeping up, a message reaches it within milliseconds and ingest stores it
whatever the broker does next. While ingest is away or behind, messages wait in the broker's
memory, and a crash loses what it acknowledged since its last save. Each run:

1. a private Mosquitto, rendered from ``broker_config/`` with the autosave setting under test
   (open, on loopback: the listeners do not matter here);
2. a persistent-session QoS 1 subscriber standing in for ingest (MQTT 5, ``clean_start``
   false, session expiry 7 days, ingest's topic filter) subscribes, and then either goes
   away (``away``: disconnects; the broker queues for its session), or stays connected and
   acknowledges nothing (``behind``: a receive window of ``behind_receive_maximum``
   messages, full at once, as ingest's is while its database is away), or stays connected
   and acknowledges everything (``connected``: ingest keeping up); the broker is made to
   save (SIGUSR1), so the session is on disk as a real ingest's long-lived one is;
3. a bare paho QoS 1 publisher (MQTT 3.1.1), as third-party firmware with no replay window,
   publishes numbered streetlight messages at ``rate`` and records which the broker
   acknowledged, and when;
4. after a seeded random delay, the broker is SIGKILLed; the start of its last complete save
   is read from the persistence file (its birth time, statx); it is restarted on that file
   and the subscriber reconnects and drains its session.

Lost: acknowledged to the publisher and never delivered to the subscriber (a connected
subscriber's messages received before the crash count as delivered: ingest holds them). The
loss window is given as lost / rate and as the time from the start of the broker's last
complete save to the kill (what a device's replay window must cover); the broker's disk
writes as ``write_bytes`` of ``/proc/<pid>/io`` while the publisher ran. Runs go round-robin
over the settings, each run with the same delay for every setting, so they share the
machine's load; the platform's default (``autosave_interval 2``) is always measured too, as
the reference.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import platform
import random
import shutil
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.synthetic import demo_values
from broker_config import DEFAULT_AUTOSAVE, Autosave
from edge_agents.spool import DEFAULT_REPLAY_WINDOW
from protocol.sites import Device
from protocol.topics import Channel, DeviceClass, subscription
from runtime.local_services import LocalMosquitto, free_port

Progress = Callable[[str], None]

SITE: Final = "bench"
DEVICES: Final = 100
"""Streetlights the publisher's messages are spread over (one topic each)."""
CONSUMER_ID: Final = "bench-crash-ingest"
PUBLISHER_ID: Final = "bench-crash-device"
SESSION_EXPIRY_S: Final = 7 * 86_400
PERSISTENCE_FILE: Final = "mosquitto.db"
SAVE_LOG_LINE: Final = "Saving in-memory database"
DEFAULT_SETTINGS: Final = (
    DEFAULT_AUTOSAVE,
    Autosave(1),
    Autosave(100, on_changes=True),
    Autosave(1000, on_changes=True),
)
MB: Final = 1_000_000


class Consumer(StrEnum):
    """What the subscriber standing in for ingest does while the publisher runs."""

    AWAY = "away"
    BEHIND = "behind"
    CONNECTED = "connected"
    """Connected and acknowledging everything at once: ingest keeping up."""


def parse_consumer(text: str) -> Consumer:
    """A :class:`Consumer` by its name, or a ValueError naming the known ones."""
    try:
        return Consumer(text)
    except ValueError:
        known = ", ".join(consumer.value for consumer in Consumer)
        raise ValueError(f"consumer {text!r}: not one of {known}") from None


def parse_setting(text: str) -> Autosave:
    """``interval=N`` (a save every N + 1 s) or ``changes=N`` (``autosave_on_changes``)."""
    return Autosave.parse(text)


def crash_delays(seed: int, runs: int, low_s: float, high_s: float) -> list[float]:
    """The time from the first publish to the kill of each run [s]: the same for every
    setting, so that the settings are compared on the same runs."""
    if not 0 < low_s <= high_s:
        raise ValueError(f"crash delays {low_s} .. {high_s} s: need 0 < low <= high")
    rng = random.Random(seed)
    return [rng.uniform(low_s, high_s) for _ in range(runs)]


# ----------------------------------------------------------------------------- counting


@dataclass(frozen=True, slots=True)
class Losses:
    acknowledged: int
    """Messages the broker acknowledged to the publisher."""
    delivered: int
    """Of those, delivered to the subscriber (before the crash or after the restart)."""
    lost: int
    """Acknowledged and never delivered: acknowledged == delivered + lost."""
    delivered_unacknowledged: int
    """Delivered though the publisher never saw their acknowledgement (in flight at the kill)."""
    duplicates: int
    """Deliveries beyond the first of a message (QoS 1 is at least once)."""


def count_losses(acknowledged: Collection[int], deliveries: Sequence[int]) -> Losses:
    """Compare the messages acknowledged with those delivered (each by its number)."""
    delivered = set(deliveries)
    acknowledged_set = set(acknowledged)
    kept = len(acknowledged_set & delivered)
    return Losses(
        acknowledged=len(acknowledged_set),
        delivered=kept,
        lost=len(acknowledged_set) - kept,
        delivered_unacknowledged=len(delivered - acknowledged_set),
        duplicates=len(deliveries) - len(delivered),
    )


def acknowledgement_times(
    packet_ids: Sequence[int], acknowledgements: Sequence[tuple[int, float]]
) -> dict[int, float]:
    """Message number -> when its acknowledgement arrived, from the packet id each message was
    published with (``packet_ids[n]`` for message n) and the acknowledgements in the order
    they came (packet id, time). Packet ids wrap at 65,535; the k-th acknowledgement of an id
    is that of the k-th message published with it."""
    by_packet: dict[int, list[int]] = defaultdict(list)
    for number, packet_id in enumerate(packet_ids):
        by_packet[packet_id].append(number)
    seen: Counter[int] = Counter()
    times: dict[int, float] = {}
    for packet_id, at in acknowledgements:
        numbers = by_packet.get(packet_id, [])
        if seen[packet_id] < len(numbers):
            times[numbers[seen[packet_id]]] = at
        seen[packet_id] += 1
    return times


def lost_span(
    acknowledged_at: dict[int, float], deliveries: Collection[int], killed_at: float
) -> float | None:
    """From the acknowledgement of the first message lost to the kill [s]; None if none was."""
    delivered = set(deliveries)
    lost_times = [at for number, at in acknowledged_at.items() if number not in delivered]
    return killed_at - min(lost_times) if lost_times else None


# ----------------------------------------------------------------------------- the broker's files


class _StatxTimestamp(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("_", ctypes.c_int32))


class _Statx(ctypes.Structure):
    _fields_ = (
        ("stx_mask", ctypes.c_uint32),
        ("stx_blksize", ctypes.c_uint32),
        ("stx_attributes", ctypes.c_uint64),
        ("stx_nlink", ctypes.c_uint32),
        ("stx_uid", ctypes.c_uint32),
        ("stx_gid", ctypes.c_uint32),
        ("stx_mode", ctypes.c_uint16),
        ("_spare0", ctypes.c_uint16),
        ("stx_ino", ctypes.c_uint64),
        ("stx_size", ctypes.c_uint64),
        ("stx_blocks", ctypes.c_uint64),
        ("stx_attributes_mask", ctypes.c_uint64),
        ("stx_atime", _StatxTimestamp),
        ("stx_btime", _StatxTimestamp),
        ("stx_ctime", _StatxTimestamp),
        ("stx_mtime", _StatxTimestamp),
        ("_rest", ctypes.c_uint8 * 256),  # more than the kernel's struct has left
    )


_STATX_BTIME: Final = 0x800
_STATX_BASIC_STATS: Final = 0x7FF
_AT_FDCWD: Final = -100


@dataclass(frozen=True, slots=True)
class SaveStamp:
    """The persistence file as the broker's last complete save left it."""

    size: int
    finished_at: float
    """When it was renamed into place (its inode's change time) [s since the epoch]."""
    started_at: float | None
    """When the save created it (its birth time); None where statx cannot tell."""


def last_save(path: Path) -> SaveStamp | None:
    """Mosquitto writes ``<file>.new`` and renames it over ``<file>``: the file's birth time
    is the start of the save (the broker serves no one while it saves, so everything it had
    acknowledged by then is in it), its change time the rename."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    started_at = _birth_time(path)
    return SaveStamp(status.st_size, status.st_ctime_ns / 1e9, started_at)


def _birth_time(path: Path) -> float | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    statx = getattr(libc, "statx", None)
    if statx is None:
        return None
    result = _Statx()
    mask = _STATX_BASIC_STATS | _STATX_BTIME
    if statx(_AT_FDCWD, os.fsencode(path), 0, mask, ctypes.byref(result)) != 0:
        return None
    if not result.stx_mask & _STATX_BTIME:
        return None
    seconds: int = result.stx_btime.tv_sec
    nanoseconds: int = result.stx_btime.tv_nsec
    return seconds + nanoseconds / 1e9


def written_bytes(pid: int) -> int:
    """Bytes the process caused to be written to storage (``/proc/<pid>/io``)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/io has no write_bytes (kernel without task I/O accounting)")


def saves_logged(log_file: Path) -> int:
    try:
        return log_file.read_text(errors="replace").count(SAVE_LOG_LINE)
    except FileNotFoundError:
        return 0


# ----------------------------------------------------------------------------- clients


def _streetlight_payloads(start: datetime) -> list[bytes]:
    """One 13-value sample per device, the message number spliced in as ``seq``."""
    rng = random.Random(7)
    payloads = []
    for device in range(DEVICES):
        light = Device(f"sl-bench-{device:03d}", DeviceClass.STREETLIGHT, "", "", None, None)
        values = json.dumps(demo_values(light, start, rng), separators=(",", ":"))
        stamp = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        payloads.append(f'"samples":[{{"ts":"{stamp}","values":{values}}}]}}'.encode())
    return payloads


class Publisher:
    """A bare paho QoS 1 client, as third-party firmware: MQTT 3.1.1, a clean session, and
    no replay window (what the broker acknowledged, it forgets)."""

    def __init__(self, port: int) -> None:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        self._payloads = _streetlight_payloads(start)
        self._topics = [
            f"sc/{SITE}/streetlight/sl-bench-{device:03d}/telemetry" for device in range(DEVICES)
        ]
        self.packet_ids: list[int] = []
        """The packet id of message n, at index n."""
        self.acknowledgements: list[tuple[int, float]] = []
        """(packet id, time.time()) as PUBACKs arrive (appended by paho's thread)."""
        self._connected = threading.Event()
        self.disconnected = threading.Event()
        """Set once paho has read everything the broker sent before its connection ended."""
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=PUBLISHER_ID, protocol=mqtt.MQTTv311
        )
        self._client.on_connect = lambda *_: self._connected.set()
        self._client.on_disconnect = lambda *_: self.disconnected.set()
        self._client.on_publish = self._on_publish
        self._client.connect("127.0.0.1", port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise RuntimeError("the publisher could not connect to the bench's broker")

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        packet_id: int,
        _reason: object,
        _properties: object,
    ) -> None:
        self.acknowledgements.append((packet_id, time.time()))

    def message(self, number: int) -> tuple[str, bytes]:
        device = number % DEVICES
        return self._topics[device], b'{"v":1,"seq":%d,' % number + self._payloads[device]

    def publish_for(self, rate: float, seconds: float) -> float:
        """Publish messages 0, 1, 2... at ``rate`` a second for ``seconds``; the seconds it
        took (paho queues what exceeds its in-flight window, as firmware would)."""
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + 1 - len(self.packet_ids)
            for _ in range(due):
                topic, payload = self.message(len(self.packet_ids))
                self.packet_ids.append(self._client.publish(topic, payload, qos=1).mid)
            time.sleep(min(0.002, max(0.0, seconds - elapsed)))
        return time.monotonic() - started

    def close(self) -> None:
        self._client.loop_stop()
        with suppress(OSError):
            self._client.disconnect()


def message_number(payload: bytes) -> int:
    return int(json.loads(payload)["seq"])


class Subscriber:
    """The stand-in for ingest: MQTT 5, a persistent session, QoS 1 on ingest's filter."""

    def __init__(
        self, port: int, *, acknowledge: bool = True, receive_maximum: int | None = None
    ) -> None:
        self.received: list[int] = []
        self.last_received_at = time.monotonic()
        self.session_present = False
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.disconnected = threading.Event()
        """Set once paho has read everything the broker sent before its connection ended."""
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=CONSUMER_ID,
            protocol=mqtt.MQTTv5,
            manual_ack=not acknowledge,
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.on_disconnect = lambda *_: self.disconnected.set()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        if receive_maximum is not None:
            properties.ReceiveMaximum = receive_maximum
        self._client.connect("127.0.0.1", port, clean_start=False, properties=properties)
        self._client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise RuntimeError("the subscriber could not connect to the bench's broker")

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        _reason: object,
        _properties: object,
    ) -> None:
        self.session_present = flags.session_present
        self._connected.set()

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        self.received.append(message_number(bytes(message.payload)))
        self.last_received_at = time.monotonic()

    def subscribe(self) -> None:
        self._client.subscribe(subscription(Channel.TELEMETRY), qos=1)
        if not self._subscribed.wait(10):
            raise RuntimeError("the subscriber's subscription was never acknowledged")

    def drain(self, quiet_s: float, timeout_s: float = 120) -> None:
        """Wait until nothing has arrived for ``quiet_s``."""
        deadline = time.monotonic() + timeout_s
        self.last_received_at = time.monotonic()
        while time.monotonic() - self.last_received_at < quiet_s:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the subscriber's session still delivers after {timeout_s} s")
            time.sleep(0.05)

    def close(self) -> None:
        """Disconnect normally: the broker keeps the session (and queues for it)."""
        with suppress(OSError):
            self._client.disconnect()
        self._client.loop_stop()

    def abandon(self) -> None:
        """Stop using the connection (the broker is gone)."""
        self._client.loop_stop()


# ----------------------------------------------------------------------------- one run


@dataclass(frozen=True, slots=True)
class CrashRun:
    setting: str
    consumer: str
    run: int
    delay_s: float
    """From the first publish to the kill."""
    rate_asked: float
    published: int
    acknowledged: int
    delivered: int
    lost: int
    delivered_unacknowledged: int
    duplicates: int
    session_present: bool
    """Whether the subscriber found its session after the restart (False: all was lost)."""
    publish_s: float
    lost_span_s: float | None
    """From the acknowledgement of the first message lost to the kill."""
    since_save_s: float | None
    """From the start of the last complete save to the kill: what was acknowledged in it is
    lost."""
    killed_mid_save: bool
    saves: int
    """Saves the broker logged while the publisher ran."""
    last_save_s: float | None
    """How long the last complete save took (creation to rename)."""
    written_bytes: int
    """The broker's write_bytes while the publisher ran."""
    file_bytes: int
    """The persistence file the restart read."""

    @property
    def lost_over_rate_s(self) -> float:
        return self.lost / self.rate_asked

    @property
    def write_rate(self) -> float:
        """Bytes the broker wrote a second while the publisher ran."""
        return self.written_bytes / self.publish_s


@contextmanager
def _broker(data_dir: Path, autosave: Autosave) -> Iterator[LocalMosquitto]:
    broker = LocalMosquitto(data_dir, free_port(), autosave=autosave)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


def _save_now(broker: LocalMosquitto, timeout_s: float = 10) -> None:
    """Make the broker write its persistence file (SIGUSR1) and wait until it has."""
    pid = broker.pid
    if pid is None:
        raise RuntimeError("the bench's broker is not running")
    file = broker.data_dir / PERSISTENCE_FILE
    before = saves_logged(broker.layout.log_file)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while saves_logged(broker.layout.log_file) <= before or not file.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the bench's broker did not save when asked (SIGUSR1)")
        time.sleep(0.01)
    while (broker.data_dir / f"{PERSISTENCE_FILE}.new").exists():  # the rename is the end
        time.sleep(0.01)


def crash_once(
    data_dir: Path,
    autosave: Autosave,
    consumer: Consumer,
    *,
    run: int,
    rate: float,
    delay_s: float,
    drain_quiet_s: float = 1.0,
    behind_receive_maximum: int = 100,
) -> CrashRun:
    """One run: set up the session, publish, SIGKILL the broker, restart it, drain."""
    file = data_dir / PERSISTENCE_FILE
    with _broker(data_dir, autosave) as broker:
        pid = broker.pid
        if pid is None:
            raise RuntimeError("the bench's broker is not running")
        ingest = Subscriber(
            broker.port,
            acknowledge=consumer is not Consumer.BEHIND,
            receive_maximum=behind_receive_maximum if consumer is Consumer.BEHIND else None,
        )
        ingest.subscribe()
        if consumer is Consumer.AWAY:
            ingest.close()
        _save_now(broker)
        saves_before = saves_logged(broker.layout.log_file)
        written_before = written_bytes(pid)
        publisher = Publisher(broker.port)
        try:
            publish_s = publisher.publish_for(rate, delay_s)
            written = written_bytes(pid) - written_before
            killed_at = time.time()
            broker.kill()
            # What the broker sent before it died (PUBACKs, messages) is still read.
            publisher.disconnected.wait(10)
            if consumer is not Consumer.AWAY:
                ingest.disconnected.wait(10)
        finally:
            publisher.close()
            if consumer is not Consumer.AWAY:
                ingest.abandon()
        killed_mid_save = (data_dir / f"{PERSISTENCE_FILE}.new").exists()
        saves = saves_logged(broker.layout.log_file) - saves_before
        stamp = last_save(file)
        received_before = list(ingest.received) if consumer is not Consumer.AWAY else []

        broker.start()
        drained = Subscriber(broker.port)
        try:
            drained.drain(drain_quiet_s)
        finally:
            drained.close()
    acknowledged_at = acknowledgement_times(publisher.packet_ids, publisher.acknowledgements)
    deliveries = received_before + drained.received
    losses = count_losses(acknowledged_at.keys(), deliveries)
    started_at = stamp.started_at if stamp is not None else None
    return CrashRun(
        setting=autosave.label,
        consumer=consumer.value,
        run=run,
        delay_s=delay_s,
        rate_asked=rate,
        published=len(publisher.packet_ids),
        acknowledged=losses.acknowledged,
        delivered=losses.delivered,
        lost=losses.lost,
        delivered_unacknowledged=losses.delivered_unacknowledged,
        duplicates=losses.duplicates,
        session_present=drained.session_present,
        publish_s=publish_s,
        lost_span_s=lost_span(acknowledged_at, deliveries, killed_at),
        since_save_s=killed_at - started_at if started_at is not None else None,
        killed_mid_save=killed_mid_save,
        saves=saves,
        last_save_s=(
            stamp.finished_at - started_at if stamp is not None and started_at is not None else None
        ),
        written_bytes=written,
        file_bytes=stamp.size if stamp is not None else 0,
    )


# ----------------------------------------------------------------------------- the bench


@dataclass(frozen=True, slots=True)
class CrashBenchConfig:
    settings: tuple[Autosave, ...] = DEFAULT_SETTINGS
    consumers: tuple[Consumer, ...] = (Consumer.AWAY, Consumer.BEHIND)
    runs: int = 5
    rate: float = 800.0
    """Messages a second from the publisher."""
    delay_min_s: float = 4.0
    delay_max_s: float = 12.0
    seed: int = 1
    drain_quiet_s: float = 1.0
    behind_receive_maximum: int = 100

    def __post_init__(self) -> None:
        if self.runs < 1 or self.rate <= 0:
            raise ValueError("runs must be at least 1 and the rate positive")
        if not self.consumers:
            raise ValueError("name at least one consumer (away, behind)")

    @property
    def compared(self) -> tuple[Autosave, ...]:
        """The settings, the platform's default first (the reference, always measured)."""
        others = [
            setting for setting in dict.fromkeys(self.settings) if setting != DEFAULT_AUTOSAVE
        ]
        return (DEFAULT_AUTOSAVE, *others)


@dataclass(frozen=True, slots=True)
class Summary:
    setting: str
    consumer: str
    runs: int
    lost: tuple[int, int, int]
    """Min, median, max."""
    lost_over_rate_s: float
    """The largest loss, in seconds of the asked rate."""
    since_save_s: float | None
    """The longest time from the start of the last complete save to a kill."""
    lost_span_s: float | None
    """The longest time from a lost message's acknowledgement to the kill."""
    saves_per_s: float
    write_rate: float
    """Median bytes a second the broker wrote while the publisher ran."""
    write_ratio: float | None
    """write_rate / the default's (same consumer)."""
    file_bytes: int
    """Median persistence file size at the kill."""
    achieved_rate: float
    """Median messages a second the broker acknowledged."""
    sessions_lost: int

    @property
    def agents_covered(self) -> bool | None:
        """Whether the agents' replay window covered every loss measured."""
        window = self.since_save_s if self.since_save_s is not None else self.lost_span_s
        if window is None:
            return None if self.lost[2] else True
        return window <= DEFAULT_REPLAY_WINDOW.total_seconds()


def summarize(runs: Sequence[CrashRun]) -> list[Summary]:
    """One line per (setting, consumer), in the order first met; ratios to the default's."""
    groups: dict[tuple[str, str], list[CrashRun]] = defaultdict(list)
    for crash in runs:
        groups[crash.setting, crash.consumer].append(crash)
    default_rate = {
        consumer: statistics.median(crash.write_rate for crash in group)
        for (setting, consumer), group in groups.items()
        if setting == DEFAULT_AUTOSAVE.label
    }
    summaries = []
    for (setting, consumer), group in groups.items():
        lost = sorted(crash.lost for crash in group)
        write_rate = statistics.median(crash.write_rate for crash in group)
        reference = default_rate.get(consumer)
        summaries.append(
            Summary(
                setting=setting,
                consumer=consumer,
                runs=len(group),
                lost=(lost[0], round(statistics.median(lost)), lost[-1]),
                lost_over_rate_s=max(crash.lost_over_rate_s for crash in group),
                since_save_s=_largest(crash.since_save_s for crash in group),
                lost_span_s=_largest(crash.lost_span_s for crash in group),
                saves_per_s=statistics.median(crash.saves / crash.publish_s for crash in group),
                write_rate=write_rate,
                write_ratio=write_rate / reference if reference else None,
                file_bytes=round(statistics.median(crash.file_bytes for crash in group)),
                achieved_rate=statistics.median(
                    crash.acknowledged / crash.publish_s for crash in group
                ),
                sessions_lost=sum(not crash.session_present for crash in group),
            )
        )
    return summaries


def _largest(values: Iterator[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None


@dataclass(frozen=True, slots=True)
class CrashBenchResult:
    machine: str
    date: str
    config: CrashBenchConfig
    runs: tuple[CrashRun, ...]

    @property
    def summaries(self) -> list[Summary]:
        return summarize(self.runs)


def run(
    config: CrashBenchConfig, progress: Progress, workdir: Path | None = None
) -> CrashBenchResult:
    """Every setting and consumer ``config.runs`` times, round-robin."""
    delays = crash_delays(config.seed, config.runs, config.delay_min_s, config.delay_max_s)
    root = Path(tempfile.mkdtemp(prefix="bench-broker-crash-", dir=workdir))
    results = []
    try:
        for number, delay in enumerate(delays, start=1):
            for consumer in config.consumers:
                for autosave in config.compared:
                    data_dir = root / f"{number}-{consumer.value}-{autosave.label}"
                    crash = crash_once(
                        data_dir,
                        autosave,
                        consumer,
                        run=number,
                        rate=config.rate,
                        delay_s=delay,
                        drain_quiet_s=config.drain_quiet_s,
                        behind_receive_maximum=config.behind_receive_maximum,
                    )
                    shutil.rmtree(data_dir, ignore_errors=True)
                    results.append(crash)
                    progress(
                        f"run {number}/{config.runs} {consumer.value:<6} {autosave.label:<13}"
                        f" killed after {delay:.2f} s: {crash.acknowledged:,} acknowledged,"
                        f" {crash.lost:,} lost"
                    )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return CrashBenchResult(
        _machine(), datetime.now(UTC).date().isoformat(), config, tuple(results)
    )


def _machine() -> str:
    model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return f"{os.cpu_count()} cores, {model or platform.processor()}; {mosquitto}"


# ----------------------------------------------------------------------------- report


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(result: CrashBenchResult) -> str:
    config = result.config
    replay_s = DEFAULT_REPLAY_WINDOW.total_seconds()
    lines = [
        f"machine: {result.machine}; {result.date}",
        f"publisher: bare paho QoS 1, no replay window, {config.rate:g} msg/s asked;"
        f" killed {config.delay_min_s:g} .. {config.delay_max_s:g} s after its first message"
        f" (seed {config.seed}); {config.runs} run(s) per line",
        "lost: acknowledged by the broker, never delivered; lost/rate: the largest loss in"
        " seconds of traffic; since save: from the start of the broker's last complete save"
        " to the kill (largest)",
        "",
        f"{'setting':<15} {'ingest':<9} {'runs':>4}  {'lost min/med/max':>20}  {'lost/rate s':>11}"
        f"  {'since save s':>12}  {'saves/s':>7}  {'disk MB/s':>9}  {'x default':>9}"
        f"  {'file MB':>7}  {'acked/s':>7}  agents ({replay_s:g} s)",
    ]
    for summary in result.summaries:
        name = summary.setting + (" *" if summary.setting == DEFAULT_AUTOSAVE.label else "")
        lost = "/".join(f"{value:,}" for value in summary.lost)
        ratio = "-" if summary.write_ratio is None else f"{summary.write_ratio:.1f}"
        covered = {True: "covered", False: "NOT covered", None: "-"}[summary.agents_covered]
        if summary.sessions_lost:
            covered += f"; session lost {summary.sessions_lost}x"
        lines.append(
            f"{name:<15} {summary.consumer:<9} {summary.runs:>4}  {lost:>20}"
            f"  {summary.lost_over_rate_s:>11.2f}  {_seconds(summary.since_save_s):>12}"
            f"  {summary.saves_per_s:>7.2f}  {summary.write_rate / MB:>9.2f}  {ratio:>9}"
            f"  {summary.file_bytes / MB:>7.2f}  {summary.achieved_rate:>7,.0f}  {covered}"
        )
    lines += [
        "",
        "* the platform's default (broker_config/mosquitto.conf), the reference",
        f"agents: the platform's agents send again what was acknowledged in the {replay_s:g} s"
        " before a disconnection (spool.replay_window_s): covered when that is at least the"
        " time since the last save",
    ]
    return "\n".join(lines)


def to_json(result: CrashBenchResult) -> str:
    return json.dumps(
        {
            "machine": result.machine,
            "date": result.date,
            "config": {
                **asdict(result.config),
                "settings": [setting.label for setting in result.config.compared],
                "consumers": [consumer.value for consumer in result.config.consumers],
            },
            "summaries": [
                {**asdict(summary), "agents_covered": summary.agents_covered}
                for summary in result.summaries
            ],
            "runs": [
                {
                    **asdict(crash),
                    "lost_over_rate_s": crash.lost_over_rate_s,
                    "write_rate": crash.write_rate,
                }
                for crash in result.runs
            ],
        }
    )
