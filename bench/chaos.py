"""Chaos: the whole platform on a simulated fleet, faults one after the other, and the books.

The platform runs as in production, every part its own process: a private Mosquitto, a
private PostgreSQL, ``smartcity ingest`` and ``smartcity rules run --event-time`` as
subprocesses, and a subset of a site (``sites/sefrou.yaml`` by default) as real edge agents
driven by the simulated city (:mod:`simulators.runner`), accelerated. Ingest reaches the broker
and the database through :class:`bench.fault_proxy.FaultProxy` forwarders. Faults are then
injected one after the other, each preceded by steady traffic:

- ``broker-kill``: Mosquitto SIGKILLed, restarted on its persistence file;
- ``database-restart``: ``pg_ctl stop -m immediate`` (a crash), then start;
- ``ingest-kill``: the ingest process SIGKILLed, restarted;
- ``broker-kill-ingest-away``: ingest SIGKILLed, and while the broker queues for its session
  (in memory, saved to disk every 2 s) the broker is SIGKILLed too; both restarted;
- ``rules-kill``: a pole is knocked down, and while its alert's timer runs the rules engine is
  SIGKILLed, then restarted;
- ``agent-offline``: one streetlight's link is cut for an hour of device time (it keeps
  sampling into its spool), then comes back;
- ``broker-link-blackhole``: the link between ingest and the broker drops every byte, both
  ways, without closing; then it is reset (or, with ``blackhole_reset`` off, left until
  ingest notices by itself);
- ``database-link-blackhole``: from ingest's next ``COMMIT`` on, the database's replies
  vanish (the commit itself lands); then the link is reset (or left until ingest notices).

Commands are sent during every fault, the way the control services send them (recorded in
``commands``, published QoS 1, resent with the same id until answered), each one published
twice on purpose.

The books, afterwards: every sample an agent took (recorded as its driver was read) must be
stored exactly once with the values sent, none lost, none doubled; every alert raised once
(the injected incidents exactly one alert each, every alert's history a clean chain with no
transition repeated, no two alerts of a rule and device open at once); no command applied
twice by an agent (the agents' own counters against the distinct commands they answered
``applied``, and the stored acknowledgements).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bench.fault_proxy import Direction, FaultProxy
from control.commanding import Sent, action_of
from control.service import command_payload, insert_commands
from edge_agents.drivers import Reading
from protocol.catalogue import CATALOGUE
from protocol.commands import HvacMode, SetBrightness, SetDimming, SetHvac
from protocol.faults import FaultType
from protocol.payloads import CommandAckPayload
from protocol.sites import Device, SiteInventory
from protocol.topics import Channel, DeviceClass, DeviceTopic, subscription
from rules import PACKAGED_RULES
from runtime.limits import raise_open_file_limit
from runtime.local_services import LocalMosquitto, LocalPostgres, free_port
from simulators.city import SimulatedCity, SimulatedDriver, grid_time
from simulators.faults import FaultEvent
from simulators.runner import FleetRunner, RunnerSettings, SimulationClock
from storage.migrate import migrate
from storage.registry import upsert_site

ROOT: Final = Path(__file__).resolve().parents[1]
DEFAULT_SITE: Final = ROOT / "sites" / "sefrou.yaml"
FAULTS: Final = (
    "broker-kill",
    "database-restart",
    "ingest-kill",
    "broker-kill-ingest-away",
    "rules-kill",
    "agent-offline",
    "broker-link-blackhole",
    "database-link-blackhole",
)
WARM_UP: Final = "warm-up"
COOL_DOWN: Final = "cool-down"
COMMAND_SOURCE: Final = "chaos"
COMMANDER_ID: Final = "smartcity-chaos-commander"
KNOCK_SETTLE_S: Final = 0.5
"""Wall seconds between knocking a pole down and killing the rules engine: its readings are
in the engine, its alert's 10-minute timer is running."""

Progress = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    inventory: SiteInventory
    """The site; a subset of it runs (see the three counts below)."""
    streetlights: int = 12
    signs: int = 2
    zones: int = 2
    speed: float = 600.0
    """Device seconds per wall second."""
    lead_s: float = 2.0
    """Steady traffic before each fault [wall s]."""
    outage_s: float = 2.0
    """How long the broker, the database, ingest and the rules engine stay down [wall s]."""
    blackhole_s: float = 3.0
    """How long a link stays blackholed [wall s]."""
    blackhole_reset: bool = True
    """End a blackhole with a reset of its connections; off: wait until ingest gives up the
    dead connection by itself (the broker link: its MQTT keepalive, up to about a minute; the
    database link: its storing process's watchdog, 5 minutes)."""
    offline_device_s: float = 3_600.0
    """How long the agent of ``agent-offline`` is cut off [device s]."""
    commands_per_fault: int = 3
    resend_after_s: float = 2.0
    """An unanswered command is published again (same id) after this [wall s]."""
    recover_timeout_s: float = 60.0
    drain_timeout_s: float = 60.0
    faults: tuple[str, ...] = FAULTS
    seed: int = 1
    durable: bool = True
    """fsync on in the private PostgreSQL. Off (throwaway clusters) it still writes each
    commit before acknowledging it (synchronous_commit on): with it off, a crash of the
    server loses the commits of its last few hundred milliseconds, which ingest has already
    acknowledged to the broker."""
    rules_file: Path = PACKAGED_RULES
    keep_workdir: bool = False

    def __post_init__(self) -> None:
        unknown = [name for name in self.faults if name not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault {', '.join(unknown)}; known: {', '.join(FAULTS)}")
        if self.speed < 1:
            raise ValueError("speed must be at least 1")
        needed = 2 if {"rules-kill", "agent-offline"} <= set(self.faults) else 1
        if self.streetlights < needed:
            raise ValueError(f"at least {needed} streetlights are needed for these faults")


# ----------------------------------------------------------------------------- report


@dataclass(slots=True)
class PhaseFigures:
    name: str
    samples_sent: int = 0
    """Telemetry messages the agents produced in the phase (one sample each)."""
    stored: int = 0
    """Of those, stored (each (device, ts) found, with the values sent)."""
    duplicated: int = 0
    """Rows beyond the first per (device, metric, ts), and rows no agent sent."""
    lost: int = 0
    """Samples sent and not stored (or stored with other values)."""
    recovery_s: float | None = None
    """From the end of the fault until every sample taken before it was stored [wall s]."""
    absorbed: int | None = None
    """Duplicate rows ingest received and absorbed (redeliveries the fault caused)."""
    commands: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class IncidentCheck:
    rule_id: str
    subject: str
    alerts: int
    history: str
    """The single alert's transitions, e.g. ``firing -> resolved``."""

    @property
    def ok(self) -> bool:
        return self.alerts == 1


@dataclass(slots=True)
class AlertsCheck:
    raised: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    incidents: list[IncidentCheck] = field(default_factory=list)
    duplicate_transitions: int = 0
    broken_histories: list[str] = field(default_factory=list)
    """Alerts whose transitions do not chain (a step applied twice, or skipped)."""
    overlapping: list[str] = field(default_factory=list)
    """Rule and device pairs with two alerts open at once."""

    @property
    def ok(self) -> bool:
        return (
            all(incident.ok for incident in self.incidents)
            and self.duplicate_transitions == 0
            and not self.broken_histories
            and not self.overlapping
        )


@dataclass(slots=True)
class CommandsCheck:
    sent: int = 0
    publishes: int = 0
    applied: int = 0
    """Distinct commands answered ``applied``."""
    agent_applications: int = 0
    """What the agents' own counters say they applied."""
    applied_twice: int = 0
    unanswered: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.applied_twice == 0 and not self.unanswered


@dataclass(slots=True)
class ChaosReport:
    devices: dict[str, int]
    speed: float
    wall_s: float
    device_span_s: float
    phases: list[PhaseFigures]
    alerts: AlertsCheck
    commands: CommandsCheck
    dead_letters: dict[str, int] = field(default_factory=dict)
    spool_drops: int = 0
    unexpected_rows: int = 0
    """Stored rows with a (device, ts) no agent sampled."""

    @property
    def total(self) -> PhaseFigures:
        total = PhaseFigures("total")
        for phase in self.phases:
            total.samples_sent += phase.samples_sent
            total.stored += phase.stored
            total.duplicated += phase.duplicated
            total.lost += phase.lost
            total.commands += phase.commands
            if phase.absorbed is not None:
                total.absorbed = (total.absorbed or 0) + phase.absorbed
        return total

    @property
    def ok(self) -> bool:
        total = self.total
        return (
            total.lost == 0
            and total.duplicated == 0
            and self.unexpected_rows == 0
            and self.alerts.ok
            and self.commands.ok
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "devices": self.devices,
            "speed": self.speed,
            "wall_s": round(self.wall_s, 1),
            "device_span_s": round(self.device_span_s),
            "phases": [asdict(phase) for phase in self.phases],
            "total": asdict(self.total),
            "alerts": {**asdict(self.alerts), "ok": self.alerts.ok},
            "commands": {**asdict(self.commands), "ok": self.commands.ok},
            "dead_letters": self.dead_letters,
            "spool_drops": self.spool_drops,
            "unexpected_rows": self.unexpected_rows,
            "ok": self.ok,
        }


def report(result: ChaosReport) -> str:
    devices = ", ".join(f"{count} {kind}" for kind, count in result.devices.items())
    faults = [p for p in result.phases if p.name not in (WARM_UP, COOL_DOWN)]
    lines = [
        f"chaos: {sum(result.devices.values())} devices ({devices}) at {result.speed:g}x,"
        f" {len(faults)} faults, {result.wall_s:.0f} s wall,"
        f" {result.device_span_s / 3600:.1f} h of device time",
        f"  {'phase':<25}{'sent':>8}{'stored':>8}{'dupl.':>7}{'lost':>6}"
        f"{'recovered':>11}{'absorbed':>10}{'cmds':>6}  detail",
    ]
    for phase in [*result.phases, result.total]:
        recovered = "-" if phase.recovery_s is None else f"{phase.recovery_s:.1f} s"
        absorbed = "-" if phase.absorbed is None else str(phase.absorbed)
        row = (
            f"  {phase.name:<25}{phase.samples_sent:>8}{phase.stored:>8}{phase.duplicated:>7}"
            f"{phase.lost:>6}{recovered:>11}{absorbed:>10}{phase.commands:>6}  {phase.detail}"
        )
        lines.append(row.rstrip())
    alerts = result.alerts
    rules = ", ".join(f"{rule} {count}" for rule, count in sorted(alerts.by_rule.items()))
    lines.append(f"  alerts: {alerts.raised} raised ({rules or 'none'})")
    for incident in alerts.incidents:
        verdict = "once" if incident.ok else f"{incident.alerts} ALERTS"
        lines.append(
            f"    {incident.rule_id}@{incident.subject}: {verdict} ({incident.history or '-'})"
        )
    lines.append(
        f"    repeated transitions {alerts.duplicate_transitions},"
        f" broken histories {len(alerts.broken_histories)}, overlapping {len(alerts.overlapping)}"
        + "".join(f"\n    ! {line}" for line in [*alerts.broken_histories, *alerts.overlapping])
    )
    commands = result.commands
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(commands.outcomes.items()))
    lines.append(
        f"  commands: {commands.sent} sent ({commands.publishes} publishes), answered:"
        f" {outcomes or 'none'}; applied by the agents {commands.agent_applications} times,"
        f" {commands.applied_twice} applied twice, {len(commands.unanswered)} unanswered"
        + (f" ({', '.join(commands.unanswered[:5])})" if commands.unanswered else "")
    )
    letters = ", ".join(f"{k} {v}" for k, v in sorted(result.dead_letters.items()))
    lines.append(
        f"  refused (dead letters): {letters or 'none'}; dropped by agent spools:"
        f" {result.spool_drops}; stored rows no agent sent: {result.unexpected_rows}"
    )
    lines.append(
        "  verdict: "
        + (
            "nothing lost, nothing doubled, every alert once, no command applied twice"
            if result.ok
            else "FAILED (see above)"
        )
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the fleet


class SampleBook:
    """Every sample the agents took, as their drivers were read: the ground truth."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.samples: list[tuple[str, datetime, Reading]] = []
        self._times: list[float] = []

    def sampled(self, device_id: str, at: datetime, reading: Reading) -> None:
        with self._lock:
            self.samples.append((device_id, at, dict(reading)))
            self._times.append(at.timestamp())

    def count_before(self, moment: datetime) -> int:
        """Samples taken before ``moment`` (the fleet samples in time order)."""
        with self._lock:
            return bisect.bisect_left(self._times, moment.timestamp())


class _RecordingDriver(SimulatedDriver):
    def __init__(self, city: RecordingCity, device_id: str) -> None:
        super().__init__(city, device_id)
        self._book = city.book

    def read(self, now: datetime) -> Reading:
        reading = super().read(now)  # raises (and nothing is sampled) when it cannot read
        self._book.sampled(self.device_id, now, reading)
        return reading


class RecordingCity(SimulatedCity):
    """The simulated city, its drivers noting every reading their agent samples."""

    def __init__(self, *args: Any, book: SampleBook, **kwargs: Any) -> None:
        self.book = book
        super().__init__(*args, **kwargs)

    def driver(self, device_id: str) -> SimulatedDriver:
        super().driver(device_id)  # an unknown device raises KeyError
        return _RecordingDriver(self, device_id)


class ChaosFleet:
    """The fleet runner on a thread of its own (an agent's spool is bound to the thread that
    opened it); :meth:`call` runs work on that thread."""

    def __init__(
        self, city: SimulatedCity, settings: RunnerSettings, start: datetime, speed: float
    ) -> None:
        self.city = city
        self.settings = settings
        self.start_at = start
        self.speed = speed
        self._calls: deque[tuple[Callable[[FleetRunner], Any], Future[Any]]] = deque()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.frozen = False
        """Device time stops (the agents keep their network going): for the final drain."""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="chaos-fleet", daemon=True)

    @property
    def now(self) -> datetime:
        return self.city.now

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)
        if self.error is not None:
            raise RuntimeError("the simulated fleet did not start") from self.error

    def call(self, work: Callable[[FleetRunner], T], timeout_s: float = 30) -> T:
        if self.error is not None or not self._thread.is_alive():
            raise RuntimeError("the simulated fleet failed") from self.error
        future: Future[T] = Future()
        self._calls.append((work, future))
        return future.result(timeout_s)

    def _loop(self) -> None:
        try:
            runner = FleetRunner(self.city, self.settings)
            clock = SimulationClock(self.start_at, self.speed)
        except BaseException as error:
            self.error = error
            self._ready.set()
            raise
        self._ready.set()
        try:
            while not self._stop.is_set():
                while self._calls:
                    work, future = self._calls.popleft()
                    try:
                        future.set_result(work(runner))
                    except Exception as error:  # noqa: BLE001 - handed to the caller
                        future.set_exception(error)
                if not self.frozen:
                    runner.step_to(clock.now())
                runner.connect_some()
                runner.network.poll(0.02)
        except BaseException as error:
            self.error = error
            raise
        finally:
            while self._calls:
                self._calls.popleft()[1].set_exception(RuntimeError("the fleet stopped"))
            runner.stop(drain_s=2.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def pick_devices(inventory: SiteInventory, lights: int, signs: int, zones: int) -> SiteInventory:
    """A small city from a site: lights three by three from its streets (so a street has
    several members), and its first signs and building zones."""
    by_street: dict[str, list[Device]] = defaultdict(list)
    for device in inventory.by_class(DeviceClass.STREETLIGHT):
        by_street[device.street_group or ""].append(device)
    chosen: list[str] = []
    for members in by_street.values():
        if len(chosen) >= lights:
            break
        chosen += [d.id for d in members[: min(3, lights - len(chosen))]]
    if len(chosen) < lights:
        raise ValueError(f"the site has fewer than {lights} streetlights")
    chosen += [d.id for d in inventory.by_class(DeviceClass.SIGNAGE)[:signs]]
    chosen += [d.id for d in inventory.by_class(DeviceClass.BUILDING)[:zones]]
    return inventory.only(*chosen)


# ----------------------------------------------------------------------------- commands


@dataclass(slots=True)
class _Command:
    sent: Sent
    topic: str
    phase: str
    publishes: int = 0
    last_published: float = 0.0
    recorded: bool = False


class Commander:
    """Sends commands as the control services do: recorded in ``commands``, published QoS 1
    on a persistent session, sent again (same id) until answered. Each command is also
    published a second time at once, as a redelivery would bring it."""

    def __init__(
        self, port: int, database_url: str, fleet: ChaosFleet, resend_after_s: float
    ) -> None:
        self.database_url = database_url
        self.fleet = fleet
        self.resend_after_s = resend_after_s
        self.commands: dict[str, _Command] = {}
        self.answers: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._db: psycopg.Connection | None = None
        self._decoder = msgspec.json.Decoder(CommandAckPayload)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=COMMANDER_ID, protocol=mqtt.MQTTv5
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3_600
        self._client.connect_async(
            "127.0.0.1", port, keepalive=30, clean_start=False, properties=properties
        )
        self._client.loop_start()

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if not reason.is_failure:
            client.subscribe(subscription(Channel.COMMAND_ACK), qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: Any) -> None:
        try:
            ack = self._decoder.decode(message.payload)
        except msgspec.DecodeError:
            return
        with self._lock:
            self.answers[ack.id].append((ack.outcome.value, ack.ts))

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def send(self, devices: Sequence[Device], site: str, phase: str, rng: random.Random) -> int:
        now = self.fleet.now
        for device in devices:
            number = len(self.commands) + 1
            params: SetDimming | SetBrightness | SetHvac
            if device.device_class is DeviceClass.STREETLIGHT:
                params = SetDimming(level=float(rng.randint(10, 15)), hold_s=600)
            elif device.device_class is DeviceClass.SIGNAGE:
                params = SetBrightness(level=float(rng.randint(40, 60)), hold_s=600)
            else:
                params = SetHvac(
                    mode=HvacMode.AUTO, heating_setpoint=19.0, cooling_setpoint=27.0, hold_s=600
                )
            sent = Sent(
                f"chaos-{number:04d}",
                device.id,
                action_of(params),
                params,
                issued_at=now,
                expires_at=now + timedelta(hours=12),
                last_sent_at=now,
                why=f"chaos: {phase}",
            )
            topic = str(DeviceTopic(site, device.device_class, device.id, Channel.COMMAND))
            command = _Command(sent, topic, phase)
            self.commands[sent.id] = command
            self._record()
            self._publish(command)
            self._publish(command)  # the same command again: the agent must not apply it twice
        return len(devices)

    def _publish(self, command: _Command) -> None:
        self._client.publish(command.topic, command_payload(command.sent), qos=1)
        command.publishes += 1
        command.last_published = time.monotonic()

    def _record(self) -> None:
        """Record the commands not yet in ``commands`` (later, while the database is away)."""
        waiting = [c for c in self.commands.values() if not c.recorded]
        if not waiting:
            return
        try:
            if self._db is None or self._db.closed or self._db.broken:
                self._db = psycopg.connect(self.database_url, connect_timeout=2)
            insert_commands(self._db, [c.sent for c in waiting], COMMAND_SOURCE)
            self._db.commit()
        except psycopg.Error:
            if self._db is not None:
                self._db.close()
            self._db = None
            return
        for command in waiting:
            command.recorded = True

    def service(self) -> None:
        """Send again what is unanswered; record what could not be recorded."""
        self._record()
        wall = time.monotonic()
        with self._lock:
            answered = set(self.answers)
        for command in self.commands.values():
            due = wall - command.last_published >= self.resend_after_s
            if command.sent.id not in answered and due and self.connected:
                self._publish(command)

    def unanswered(self) -> list[str]:
        with self._lock:
            return [i for i in self.commands if i not in self.answers]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        if self._db is not None:
            self._db.close()


# ----------------------------------------------------------------------------- services


class ServiceProcess:
    """``smartcity ingest`` or ``smartcity rules run``, as a process of its own."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> None:
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as output:
            self._process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C on the bench is ours to pass on
            )

    def logged_since_start(self, marker: str) -> bool:
        return self.logged_since(self._log_offset, marker)

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def logged_since(self, offset: int, marker: str) -> bool:
        if not self.log.exists():
            return False
        with self.log.open("rb") as log:
            log.seek(offset)
            return marker.encode() in log.read()

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # an orphaned child of our own process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


# ----------------------------------------------------------------------------- the run


@dataclass
class _Phase:
    name: str
    started: datetime
    """Device time at the start of the phase."""
    recovery_s: float | None = None
    detail: str = ""
    absorbed_before: int = 0
    absorbed: int | None = None


class _Chaos:
    """One run: the services, the fleet, the faults; see the module docstring."""

    WATCHDOG_WAIT_S: Final = 420.0
    """Longer than ingest's storing-process watchdog (300 s)."""

    def __init__(
        self,
        config: ChaosConfig,
        stack: contextlib.ExitStack,
        *,
        broker: LocalMosquitto,
        postgres: LocalPostgres,
        database_url: str,
        workdir: Path,
        progress: Progress,
    ) -> None:
        self.config = config
        self.broker = broker
        self.postgres = postgres
        self.database_url = database_url
        self.workdir = workdir
        self.say = progress
        self.rng = random.Random(config.seed)
        self.inventory = pick_devices(
            config.inventory, config.streetlights, config.signs, config.zones
        )
        self.lights = [
            d for d in self.inventory.devices if d.device_class is DeviceClass.STREETLIGHT
        ]
        self.knocked = self.lights[0]
        self.offline = self.lights[-1]
        self.phases: list[_Phase] = []
        with psycopg.connect(database_url) as connection:
            upsert_site(connection, self.inventory)
        self.mqtt_link = stack.enter_context(FaultProxy(broker.port, name="ingest-broker"))
        self.db_link = stack.enter_context(FaultProxy(postgres.port, name="ingest-database"))
        proxied_url = urlunsplit(
            urlsplit(database_url)._replace(
                netloc=f"{urlsplit(database_url).username}@127.0.0.1:{self.db_link.port}"
            )
        )
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("SMARTCITY_", "DATABASE_"))
        }
        self.metrics_port = free_port()
        self.ingest = ServiceProcess(
            "ingest",
            [sys.executable, "-m", "smartcity.cli", "ingest"],
            {
                **base,
                "DATABASE_URL": proxied_url,
                "SMARTCITY_MQTT_HOST": "127.0.0.1",
                "SMARTCITY_MQTT_PORT": str(self.mqtt_link.port),
                "SMARTCITY_INGEST_METRICS_PORT": str(self.metrics_port),
                "SMARTCITY_INGEST_BATCH_MAX_SECONDS": "0.2",
            },
            workdir / "ingest.log",
        )
        self.rules = ServiceProcess(
            "rules",
            [
                sys.executable,
                "-m",
                "smartcity.cli",
                "rules",
                "run",
                "--event-time",
                "--rules",
                str(config.rules_file),
            ],
            {
                **base,
                "DATABASE_URL": database_url,
                "SMARTCITY_MQTT_HOST": "127.0.0.1",
                "SMARTCITY_MQTT_PORT": str(broker.port),
            },
            workdir / "rules.log",
        )
        stack.callback(self.ingest.stop)
        stack.callback(self.rules.stop)
        self.book = SampleBook()
        budget_s = 600 + 20 * (config.lead_s + config.outage_s + config.blackhole_s) * len(
            config.faults
        )
        span = timedelta(
            seconds=min(80 * 86_400, config.speed * budget_s + 2 * config.offline_device_s)
        )
        self.start = grid_time(datetime.now(UTC) - span, 60)
        city = RecordingCity(self.inventory, start=self.start, seed=config.seed, book=self.book)
        settings = RunnerSettings("127.0.0.1", broker.port, workdir / "spools", keepalive_s=30)
        self.fleet = ChaosFleet(city, settings, self.start, config.speed)
        stack.callback(self.fleet.stop)
        self.commander: Commander | None = None
        self._blackhole_detail = ""
        self._blackholed_at = 0
        self._offline_until = self.start
        self._carried_duplicates = 0
        self._last_duplicates = 0

    # -------------------------------------------------------------- waiting

    def wait(self, seconds: float) -> None:
        """Let time pass, serving the commander and watching the fleet."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.1, left))
            self.service()

    def service(self) -> None:
        if self.fleet.error is not None:
            raise RuntimeError("the simulated fleet failed") from self.fleet.error
        if self.commander is not None:
            self.commander.service()

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Wall seconds until ``condition``; RuntimeError after ``timeout_s``."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(0.1)
            self.service()
        return time.monotonic() - started

    def stored_between(self, first: datetime, end: datetime) -> int | None:
        """Telemetry rows stamped in [first, end); None while the database is away."""
        query = " + ".join(
            f"(SELECT count(*) FROM telemetry_{c.value} WHERE ts >= %(a)s AND ts < %(b)s)"  # noqa: S608 - class names
            for c in DeviceClass
        )
        try:
            with psycopg.connect(self.database_url, connect_timeout=2) as connection:
                row = connection.execute(f"SELECT {query}", {"a": first, "b": end}).fetchone()
        except psycopg.Error:
            return None
        return None if row is None else int(row[0])

    def caught_up(self, first: datetime, end: datetime) -> bool:
        """Every sample taken in [first, end) is stored (a loss before ``first`` aside)."""
        stored = self.stored_between(first, end)
        expected = self.book.count_before(end) - self.book.count_before(first)
        return stored is not None and stored >= expected

    def online(self) -> int:
        return self.fleet.call(lambda runner: runner.online())

    def absorbed(self) -> int:
        """Duplicate rows ingest has absorbed so far (redeliveries), over its restarts."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                text = response.read().decode()
        except OSError:
            return self._carried_duplicates + self._last_duplicates
        for line in text.splitlines():
            if line.startswith("smartcity_ingest_duplicate_rows_total "):
                self._last_duplicates = int(float(line.split()[1]))
        return self._carried_duplicates + self._last_duplicates

    def backlog(self) -> int:
        return self.fleet.call(lambda runner: runner.backlog())

    # -------------------------------------------------------------- the run

    def run(self) -> ChaosReport:
        config = self.config
        started = time.monotonic()
        self.say(
            f"{len(self.inventory.devices)} devices from {self.inventory.site.id}; device time"
            f" from {self.start:%Y-%m-%d %H:%M} UTC at {config.speed:g}x"
        )
        self.ingest.start()
        self.rules.start()
        self.wait_for(
            lambda: self.ingest.logged_since_start("connected to broker"), 60, "ingest to connect"
        )
        self.wait_for(
            lambda: self.rules.logged_since_start("rule states restored"), 60, "the rules engine"
        )
        time.sleep(1.0)  # both subscriptions in place: the broker keeps everything for them
        raise_open_file_limit()
        self.fleet.start()
        self.phases.append(_Phase(WARM_UP, self.fleet.now))
        devices = len(self.inventory.devices)
        self.wait_for(lambda: self.online() == devices, 60, "every agent to connect")
        self.commander = Commander(
            self.broker.port, self.database_url, self.fleet, config.resend_after_s
        )
        self.wait_for(lambda: self.commander is not None and self.commander.connected, 30, "mqtt")
        self.wait(config.lead_s)
        for fault in config.faults:
            self.fault(fault)
        self.phases.append(_Phase(COOL_DOWN, self.fleet.now))
        self.wait(config.lead_s)
        self.drain()
        result = self.books(time.monotonic() - started)
        self.say("books closed")
        return result

    def fault(self, name: str) -> None:
        config = self.config
        phase = _Phase(name, self.fleet.now, absorbed_before=self.absorbed())
        self.phases.append(phase)
        self.say(f"{name}: {config.lead_s:g} s of steady traffic")
        self.wait(config.lead_s)
        inject, heal, extra = self._faults()[name]
        phase.detail = inject()
        self.commands(name)
        healed = heal()
        healed_at = time.monotonic()
        phase.detail += self._blackhole_detail
        self._blackhole_detail = ""
        try:
            self.wait_for(
                lambda: self.caught_up(phase.started, healed),
                config.recover_timeout_s,
                "every sample of the phase to be stored",
            )
            if extra is not None:
                self.wait_for(extra, config.recover_timeout_s, f"{name} to settle")
            phase.recovery_s = round(time.monotonic() - healed_at, 2)
            self.say(f"{name}: recovered in {phase.recovery_s:.1f} s")
        except RuntimeError as error:
            phase.detail += f"; NOT RECOVERED: {error}"
            self.say(f"{name}: {error}")
        time.sleep(0.5)  # the last redeliveries counted
        phase.absorbed = self.absorbed() - phase.absorbed_before

    def commands(self, phase: str) -> None:
        if self.commander is None or self.config.commands_per_fault <= 0:
            return
        pool = [d for d in self.inventory.devices if d.id != self.knocked.id]
        chosen = self.rng.sample(pool, min(self.config.commands_per_fault, len(pool)))
        if phase == "agent-offline" and self.offline not in chosen:
            chosen[-1] = self.offline
        self.commander.send(chosen, self.inventory.site.id, phase, self.rng)

    def _faults(
        self,
    ) -> dict[str, tuple[Callable[[], str], Callable[[], datetime], Callable[[], bool] | None]]:
        return {
            "broker-kill": (self._kill_broker, self._restart_broker, self._all_online),
            "database-restart": (self._stop_database, self._start_database, None),
            "ingest-kill": (self._kill_ingest, self._restart_ingest, None),
            "rules-kill": (self._kill_rules, self._restart_rules, self._pole_down_seen),
            "agent-offline": (self._cut_agent, self._agent_back, self._offline_agent_drained),
            "broker-link-blackhole": (self._blackhole_broker, self._heal_broker_link, None),
            "database-link-blackhole": (self._blackhole_database, self._heal_database_link, None),
            "broker-kill-ingest-away": (self._kill_both, self._restart_both, self._all_online),
        }

    def _all_online(self) -> bool:
        return self.online() == len(self.inventory.devices)

    def _kill_broker(self) -> str:
        self.broker.kill()
        return "SIGKILL, restarted from its persistence file"

    def _restart_broker(self) -> datetime:
        self.wait(self.config.outage_s)
        self.broker.start()
        return self.fleet.now

    def _kill_both(self) -> str:
        self._kill_ingest()
        self.wait(self.config.outage_s)  # the broker queues for ingest's session meanwhile
        self.broker.kill()
        return "ingest SIGKILLed; its queue growing in the broker, the broker SIGKILLed too"

    def _restart_both(self) -> datetime:
        self.wait(self.config.outage_s)
        self.broker.start()
        self.ingest.start()
        return self.fleet.now

    def _stop_database(self) -> str:
        self.postgres.stop("immediate")
        return "pg_ctl stop -m immediate, then start"

    def _start_database(self) -> datetime:
        self.wait(self.config.outage_s)
        self.postgres.start()
        return self.fleet.now

    def _kill_ingest(self) -> str:
        self.absorbed()
        self.ingest.kill()
        self._carried_duplicates += self._last_duplicates  # the new process counts from 0
        self._last_duplicates = 0
        return "SIGKILL, restarted"

    def _restart_ingest(self) -> datetime:
        self.wait(self.config.outage_s)
        self.ingest.start()
        return self.fleet.now

    def _kill_rules(self) -> str:
        knocked = self.knocked.id
        self.fleet.call(
            lambda runner: runner.city.add_fault(
                FaultEvent(runner.city.now, knocked, FaultType.KNOCK_DOWN)
            )
        )
        self.wait(KNOCK_SETTLE_S)
        self.rules.kill()
        return f"SIGKILL while the alert of {knocked} (knocked down) was pending, restarted"

    def _restart_rules(self) -> datetime:
        self.wait(self.config.outage_s)
        self.rules.start()
        return self.fleet.now

    def _pole_down_seen(self) -> bool:
        return self._alert_count("pole-down", self.knocked.id) > 0

    def _alert_count(self, rule_id: str, subject: str) -> int:
        try:
            with psycopg.connect(self.database_url, connect_timeout=2) as connection:
                row = connection.execute(
                    "SELECT count(*) FROM alerts WHERE rule_id = %s AND subject = %s",
                    (rule_id, subject),
                ).fetchone()
        except psycopg.Error:
            return 0
        return 0 if row is None else int(row[0])

    def _cut_agent(self) -> str:
        device = self.offline.id
        length = timedelta(seconds=self.config.offline_device_s)

        def cut(runner: FleetRunner) -> datetime:
            start = runner.city.now + timedelta(seconds=runner.city.step_s)
            runner.city.add_fault(
                FaultEvent(start, device, FaultType.COMMUNICATION_LOSS, start + length)
            )
            return start + length

        self._offline_until = self.fleet.call(cut)
        self.wait_for(
            lambda: not self.fleet.call(lambda runner: runner.agents[device].connected),
            10,
            f"{device} to go offline",
        )
        return f"{device} cut off for {length.total_seconds() / 3600:g} h of device time"

    def _agent_back(self) -> datetime:
        until = self._offline_until + timedelta(minutes=1)
        self.wait_for(
            lambda: self.fleet.now >= until,
            self.config.offline_device_s / self.config.speed * 3 + 30,
            "the offline hour to pass",
        )
        return self.fleet.now

    def _offline_agent_drained(self) -> bool:
        device = self.offline.id

        def drained(runner: FleetRunner) -> bool:
            agent = runner.agents[device]
            return agent.connected and agent.spool.stats().messages == 0

        return self.fleet.call(drained) and self._alert_resolved("light-offline", device)

    def _alert_resolved(self, rule_id: str, subject: str) -> bool:
        try:
            with psycopg.connect(self.database_url, connect_timeout=2) as connection:
                row = connection.execute(
                    "SELECT count(*) FROM alerts WHERE rule_id = %s AND subject = %s"
                    " AND status IN ('firing', 'acknowledged')",
                    (rule_id, subject),
                ).fetchone()
        except psycopg.Error:
            return False
        return row is not None and int(row[0]) == 0

    def _blackhole_broker(self) -> str:
        self._blackholed_at = self.ingest.log_size()
        self.mqtt_link.blackhole(Direction.BOTH)
        return "ingest-broker link drops every byte, both ways" + (
            ", then reset" if self.config.blackhole_reset else ", until a side gives up"
        )

    def _heal_broker_link(self) -> datetime:
        self.wait(self.config.blackhole_s)
        if not self.config.blackhole_reset:
            given_up = self.wait_for(
                lambda: self.ingest.logged_since(self._blackholed_at, "disconnected from broker"),
                150,
                "ingest to give the dead connection up",
            )
            self._blackhole_detail = (
                f"; ingest gave it up {self.config.blackhole_s + given_up:.0f} s after it began"
            )
        self.mqtt_link.restore()
        return self.fleet.now

    def _blackhole_database(self) -> str:
        self._blackholed_at = self.ingest.log_size()
        self.db_link.blackhole(Direction.REPLIES, after=b"COMMIT")
        return "from ingest's next COMMIT the database's replies vanish" + (
            ", then reset" if self.config.blackhole_reset else ", until ingest gives up"
        )

    def _heal_database_link(self) -> datetime:
        self.wait(self.config.blackhole_s)
        triggered = self.db_link.triggered
        if not self.config.blackhole_reset and triggered:
            # The proxy's kernel acknowledges every byte, so neither TCP keepalives nor the
            # user timeout see anything wrong: only ingest's watchdog can.
            given_up = self.wait_for(
                lambda: self.ingest.logged_since(self._blackholed_at, "presuming it hung"),
                self.WATCHDOG_WAIT_S,
                "ingest to give the silent database connection up",
            )
            self._blackhole_detail = (
                f"; ingest gave it up {self.config.blackhole_s + given_up:.0f} s after it began"
            )
        self.db_link.restore()
        if not triggered:
            self._blackhole_detail = "; NO COMMIT was sent meanwhile"
        return self.fleet.now

    def drain(self) -> None:
        """Stop device time and let everything sampled reach the database."""
        self.fleet.frozen = True
        end = self.fleet.now + timedelta(seconds=1)
        timeout = self.config.drain_timeout_s
        self.say("draining: device time stopped, waiting for every sample to be stored")
        try:
            self.wait_for(lambda: self.backlog() == 0 and self._all_online(), timeout, "spools")
            self.wait_for(
                lambda: self.caught_up(self.phases[-1].started, end),
                timeout,
                "ingest to store everything",
            )
            self.wait_for(
                lambda: self.commander is None or not self.commander.unanswered(),
                timeout,
                "every command to be answered",
            )
        except RuntimeError as error:
            self.say(f"drain: {error}")
        time.sleep(1.0)  # anything doubled or late would show up now

    # -------------------------------------------------------------- the books

    def books(self, wall_s: float) -> ChaosReport:
        phases = [
            PhaseFigures(p.name, recovery_s=p.recovery_s, absorbed=p.absorbed, detail=p.detail)
            for p in self.phases
        ]
        starts = [p.started.timestamp() for p in self.phases]

        def phase_of(moment: datetime) -> PhaseFigures:
            return phases[max(0, bisect.bisect_right(starts, moment.timestamp()) - 1)]

        stored, doubled, letters = self._stored()
        expected = {(device, at): reading for device, at, reading in self.book.samples}
        for (device, at), reading in expected.items():
            figures = phase_of(at)
            figures.samples_sent += 1
            row = stored.get((device, at))
            if row is not None and _same(reading, row):
                figures.stored += 1
            else:
                figures.lost += 1
        for (_, _, at), extra in doubled.items():
            phase_of(at).duplicated += extra
        unexpected = [key for key in stored if key not in expected]
        for _, at in unexpected:
            phase_of(at).duplicated += 1
        commands = self._commands_check(phases)
        drops = self.fleet.call(
            lambda runner: sum(
                s.dropped_overflow + s.dropped_expired
                for s in (agent.spool.stats() for agent in runner.agents.values())
            )
        )
        counts = Counter(d.device_class for d in self.inventory.devices)
        return ChaosReport(
            devices={
                "streetlights": counts[DeviceClass.STREETLIGHT],
                "signs": counts[DeviceClass.SIGNAGE],
                "building zones": counts[DeviceClass.BUILDING],
            },
            speed=self.config.speed,
            wall_s=wall_s,
            device_span_s=(self.fleet.now - self.start).total_seconds(),
            phases=phases,
            alerts=self._alerts_check(),
            commands=commands,
            dead_letters=letters,
            spool_drops=drops,
            unexpected_rows=len(unexpected),
        )

    def _stored(
        self,
    ) -> tuple[
        dict[tuple[str, datetime], dict[str, float]],
        dict[tuple[str, str, datetime], int],
        dict[str, int],
    ]:
        """Stored rows by (device, ts); extra rows per (device, metric, ts); dead letters."""
        rows: dict[tuple[str, datetime], dict[str, float]] = {}
        with psycopg.connect(self.database_url) as connection:
            for device_class in DeviceClass:
                metrics = list(CATALOGUE[device_class].metrics)
                columns = ", ".join(f'"{m}"' for m in metrics)
                query = f"SELECT device_id, ts, {columns} FROM telemetry_{device_class.value}"  # noqa: S608
                for device_id, ts, *values in connection.execute(query):
                    rows[(device_id, ts)] = {
                        m: float(v) for m, v in zip(metrics, values, strict=True) if v is not None
                    }
            doubled = {
                (device_id, metric, ts): int(count) - 1
                for device_id, metric, ts, count in connection.execute(
                    "SELECT device_id, metric, ts, count(*) FROM telemetry"
                    " GROUP BY device_id, metric, ts HAVING count(*) > 1"
                )
            }
            letters = {
                str(reason): int(count)
                for reason, count in connection.execute(
                    "SELECT reason, count(*) FROM dead_letters GROUP BY reason"
                )
            }
        return rows, doubled, letters

    def _alerts_check(self) -> AlertsCheck:
        check = AlertsCheck()
        with psycopg.connect(self.database_url) as connection:
            alerts = connection.execute(
                "SELECT alert_id, rule_id, subject, fired_at, resolved_at, closed_at"
                " FROM alerts ORDER BY alert_id"
            ).fetchall()
            steps: dict[int, list[tuple[datetime, str | None, str, str]]] = defaultdict(list)
            for alert_id, at, before, after, note in connection.execute(
                "SELECT alert_id, at, from_status, to_status, note FROM alert_transitions"
                " ORDER BY transition_id"
            ):
                steps[alert_id].append((at, before, after, note))
        check.raised = len(alerts)
        check.by_rule = dict(Counter(rule for _, rule, *_ in alerts))
        histories: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
        spans: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = defaultdict(list)
        for alert_id, rule, subject, fired, resolved, closed in alerts:
            history = steps[alert_id]
            check.duplicate_transitions += len(history) - len(set(history))
            chain: list[str] = []
            expected: str | None = None
            for _, before, after, _ in history:
                if before != expected:
                    check.broken_histories.append(
                        f"alert {alert_id} {rule}@{subject}: {before} -> {after} after"
                        f" {expected or 'nothing'}"
                    )
                chain.append(after)
                expected = after
            histories[(rule, subject)].append((fired, " -> ".join(chain)))
            spans[(rule, subject)].append((fired, resolved or closed))
        for (rule, subject), intervals in spans.items():
            intervals.sort(key=lambda span: span[0])
            for (_, end), (start, _) in itertools.pairwise(intervals):
                if end is None or start < end:
                    check.overlapping.append(f"{rule}@{subject}: two alerts open at {start}")
        # The injected incidents, each within its phase (device time, as the engine's): a
        # device may have had other, earlier alerts (all of them missing after a broker
        # outage, for instance), which are checked as every alert is, above.
        incidents = [
            ("rules-kill", "pole-down", self.knocked.id),
            ("agent-offline", "light-offline", self.offline.id),
        ]
        for phase_name, rule, subject in incidents:
            window = self._window(phase_name)
            if window is None:
                continue
            found = [
                history
                for fired, history in histories.get((rule, subject), [])
                if window[0] <= fired < window[1]
            ]
            check.incidents.append(
                IncidentCheck(rule, subject, len(found), found[0] if len(found) == 1 else "")
            )
        return check

    def _window(self, phase_name: str) -> tuple[datetime, datetime] | None:
        """The device time a phase spans, if it ran."""
        ends = [phase.started for phase in self.phases[1:]] + [self.fleet.now]
        for phase, end in zip(self.phases, ends, strict=True):
            if phase.name == phase_name:
                return phase.started, end
        return None

    def _commands_check(self, phases: list[PhaseFigures]) -> CommandsCheck:
        check = CommandsCheck()
        commander = self.commander
        if commander is None:
            return check
        by_name = {phase.name: phase for phase in phases}
        for command in commander.commands.values():
            by_name[command.phase].commands += 1
        with psycopg.connect(self.database_url) as connection:
            acks = connection.execute(
                "SELECT command_id, device_id, outcome, count(DISTINCT ts) FROM command_acks"
                " GROUP BY command_id, device_id, outcome"
            ).fetchall()
        applied_by_device: dict[str, set[str]] = defaultdict(set)
        outcomes: dict[str, set[str]] = defaultdict(set)
        for command_id, device_id, outcome, answers in acks:
            outcomes[command_id].add(str(outcome))
            if outcome == "applied":
                applied_by_device[device_id].add(command_id)
                check.applied_twice += int(answers) - 1
        with commander._lock:
            for command_id, answers_seen in commander.answers.items():
                for outcome, _ in answers_seen:
                    outcomes[command_id].add(outcome)
                    if outcome == "applied" and command_id in commander.commands:
                        device = commander.commands[command_id].sent.device_id
                        applied_by_device[device].add(command_id)
        counters = self.fleet.call(
            lambda runner: {d: a.counters.commands_applied for d, a in runner.agents.items()}
        )
        twice_by_counters = sum(
            max(0, applied - len(applied_by_device.get(device_id, set())))
            for device_id, applied in counters.items()
        )
        check.applied_twice = max(check.applied_twice, twice_by_counters)
        check.sent = len(commander.commands)
        check.publishes = sum(c.publishes for c in commander.commands.values())
        check.applied = sum(len(ids) for ids in applied_by_device.values())
        check.agent_applications = sum(counters.values())
        check.unanswered = [i for i in commander.commands if not outcomes.get(i)]
        check.outcomes = dict(
            Counter(outcome for i in commander.commands for outcome in outcomes.get(i, ()))
        )
        return check


def _same(sent: Reading, stored: dict[str, float]) -> bool:
    """The stored row holds exactly what the agent sent (floats as sent: 3 decimals)."""
    if set(sent) != set(stored):
        return False
    for name, value in sent.items():
        wire = round(value, 3) if isinstance(value, float) else float(value)
        if abs(stored[name] - wire) > 1e-9 * max(1.0, abs(wire)):
            return False
    return True


@contextlib.contextmanager
def _private_services(
    config: ChaosConfig,
    broker: LocalMosquitto | None,
    postgres: LocalPostgres | None,
    workdir: Path,
    progress: Progress,
) -> Iterator[tuple[LocalMosquitto, LocalPostgres, str]]:
    own_broker = broker is None
    own_postgres = postgres is None
    broker = broker or LocalMosquitto(workdir / "broker", free_port())
    postgres = postgres or LocalPostgres(
        workdir / "postgres",
        free_port(),
        durable=config.durable,
        settings={"synchronous_commit": "on"},
    )
    scratch = f"smartcity_chaos_{os.getpid()}"
    try:
        if own_broker:
            broker.start()
        if own_postgres:
            progress(f"starting a private PostgreSQL in {postgres.data_dir}")
            postgres.start()
        with psycopg.connect(postgres.url(), autocommit=True) as connection:
            row = connection.execute("SHOW synchronous_commit").fetchone()
            if row is not None and row[0] == "off":
                raise ValueError(
                    "the PostgreSQL given has synchronous_commit off: a crash loses commits it"
                    " has acknowledged, so the chaos run would report losses of the server's;"
                    " start it with synchronous_commit on"
                )
            connection.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{scratch}"')
        url = postgres.url(scratch)
        migrate(url)
        yield broker, postgres, url
    finally:
        if own_broker:
            broker.kill()
        if own_postgres:
            postgres.stop("immediate")
        else:
            if not (postgres.data_dir / "postmaster.pid").exists():
                postgres.start()  # a fault left it stopped
            with (
                contextlib.suppress(psycopg.Error),
                psycopg.connect(postgres.url(), autocommit=True) as connection,
            ):
                connection.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def run(
    config: ChaosConfig,
    *,
    broker: LocalMosquitto | None = None,
    postgres: LocalPostgres | None = None,
    progress: Progress = lambda line: None,
) -> ChaosReport:
    """Run the chaos suite; see the module docstring.

    ``broker`` and ``postgres``: servers of the caller's that the run may kill, stop and
    restart (it works in a scratch database of its own); by default private ones are started
    (PostgreSQL with fsync as ``config.durable`` says) and removed afterwards.
    """
    workdir = Path(tempfile.mkdtemp(prefix="smartcity-chaos-", dir="/tmp"))
    workdir.chmod(0o755)
    try:
        with (
            _private_services(config, broker, postgres, workdir, progress) as services,
            contextlib.ExitStack() as stack,
        ):
            broker_, postgres_, url = services
            chaos = _Chaos(
                config,
                stack,
                broker=broker_,
                postgres=postgres_,
                database_url=url,
                workdir=workdir,
                progress=progress,
            )
            try:
                return chaos.run()
            finally:
                if chaos.commander is not None:
                    chaos.commander.close()
    finally:
        if config.keep_workdir:
            progress(f"logs and spools kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def to_json(result: ChaosReport) -> str:
    return json.dumps(result.as_dict(), default=str)
