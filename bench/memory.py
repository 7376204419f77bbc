"""``smartcity bench memory``: each service's resident memory, at rest and at Sefrou's load.

Three phases, on a private Mosquitto and PostgreSQL with the site's registry:

1. **At rest**: each service started alone (``smartcity ingest``, ``rules run``, ``energy
   control``, ``energy lighting``, ``energy signs``, ``api``, ``broker``), an empty stream, its
   resident memory read from ``/proc`` ``settle_s`` after start; every Python process of the
   service counts (ingest's two and the resource tracker; the broker command's own process,
   not the Mosquitto it starts). Each start is repeated ``runs`` times; the median is shown.
2. **Ingest under a burst**: ``smartcity ingest`` while the messages of ``smartcity bench
   ingest`` (20,000 by default, from 200 lights) are published as fast as the broker takes
   them; the peak of its processes' resident memory, sampled every 0.1 s.
3. **The platform at the site's load**: the simulated city in real time (every device its
   own agent, in a process of its own that is not counted) and every service at once; for
   ``load_s`` (counted once the stored rows reach 90 % of the city's rate; 300 s by default,
   the lights' whole 5-minute reporting cycle), each service's memory, the broker's and the
   database's (all the cluster's processes) sampled every second: each part's peak, and the
   platform's total at the sampled moment when it was highest. The
   broker command runs too, for its access sync; the devices use the bench's Mosquitto,
   which is counted as the broker. Resident sizes count shared pages once per process; the
   proportional set size (PSS) shares them out, so the platform's total is given as PSS.

The reference, measured in the same run: a bare paho QoS 1 subscriber on the same broker
(the smallest a city team's own flow could be in Python).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import psycopg

from bench.chaos.services import ServiceProcess
from bench.ingest import bench_site, build_messages, publish
from bench.services import bench_services, migrated_and_provisioned, scraped_metrics
from protocol.catalogue import CATALOGUE
from protocol.sites import SiteInventory
from protocol.topics import DeviceClass
from runtime.local_services import free_port

Progress = Callable[[str], None]
MIB: Final = 1024 * 1024

BARE_SUBSCRIBER: Final = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
client.on_connect = lambda c, *_: c.subscribe("sc/+/+/+/telemetry", qos=1)
client.connect("127.0.0.1", int(sys.argv[1]))
client.loop_forever()
"""


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    argv: tuple[str, ...]
    """After ``smartcity``; ``{api_port}``, ``{port}``... are filled in at start."""


def services() -> tuple[Service, ...]:
    return (
        Service("ingest (all its processes)", ("ingest",)),
        Service("rules engine", ("rules", "run")),
        Service("HVAC control", ("energy", "control")),
        Service("lighting control", ("energy", "lighting")),
        Service("sign control", ("energy", "signs")),
        Service("API", ("api", "--host", "127.0.0.1", "--port", "{api_port}")),
        Service(
            "broker access sync (its Python process)",
            ("broker", "--port", "{port}", "--device-port", "0", "--tls-port", "0"),
        ),
    )


@dataclass(frozen=True, slots=True)
class Memory:
    rss: float
    """Resident set size [bytes]."""
    pss: float
    """Proportional set size [bytes]: shared pages divided among the processes sharing them."""


def total(memories: Iterable[Memory]) -> Memory:
    found = list(memories)
    return Memory(sum(m.rss for m in found), sum(m.pss for m in found))


def peaks(samples: Sequence[Mapping[str, Memory]]) -> tuple[dict[str, Memory], Memory]:
    """Each part's peak (resident and PSS, each its own highest) over ``samples`` (each a
    moment: part -> memory), and the total of the moment whose summed PSS was highest."""
    peak: dict[str, Memory] = {}
    busiest = Memory(0.0, 0.0)
    for moment in samples:
        for name, memory in moment.items():
            was = peak.get(name, Memory(0.0, 0.0))
            peak[name] = Memory(max(was.rss, memory.rss), max(was.pss, memory.pss))
        now = total(moment.values())
        if now.pss > busiest.pss:
            busiest = now
    return peak, busiest


@dataclass(frozen=True, slots=True)
class MemoryBenchResult:
    runs: int
    settle_s: float
    devices: int
    reference: Memory
    """A bare paho subscriber."""
    at_rest: dict[str, list[Memory]]
    burst_messages: int
    burst_peak: Memory
    burst_stored: int
    at_load: dict[str, Memory] = field(default_factory=dict)
    """Each part's peak over the load window."""
    at_load_busiest: Memory = Memory(0.0, 0.0)
    """The platform's total at the sampled moment when its PSS was highest."""
    load_s: float = 0.0
    messages_at_load: int = 0

    def as_dict(self) -> dict[str, object]:
        """The figures in MiB, for ``--json``."""

        def mib(memory: Memory) -> dict[str, float]:
            return {"rss_mib": round(memory.rss / MIB, 1), "pss_mib": round(memory.pss / MIB, 1)}

        return {
            "devices": self.devices,
            "reference_bare_subscriber": mib(self.reference),
            "at_rest_median_rss_mib": {
                name: round(median_rss(memories) / MIB, 1)
                for name, memories in self.at_rest.items()
            },
            "at_rest_runs": self.runs,
            "ingest_burst": {
                "messages": self.burst_messages,
                "stored": self.burst_stored,
                "peak": mib(self.burst_peak),
            },
            "at_load": {name: mib(memory) for name, memory in self.at_load.items()},
            "at_load_total_busiest": mib(self.at_load_busiest),
            "at_load_sum_of_peaks": mib(total(self.at_load.values())),
            "at_load_rows_per_s": round(self.messages_at_load / self.load_s, 1)
            if self.load_s
            else 0.0,
        }


# ----------------------------------------------------------------------------- /proc


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def process_tree(root: int, *, skip: Sequence[str] = ()) -> list[int]:
    """``root`` and its descendants, but not those whose command name is in ``skip`` (nor
    theirs)."""
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        if _command_name(pid) in skip:
            continue
        found.append(pid)
        todo += tree.get(pid, [])
    return found


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def memory_of(pids: Sequence[int]) -> Memory:
    """The processes' resident and proportional sizes together (those gone meanwhile: 0)."""
    rss = pss = 0.0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            name, _, value = line.partition(":")
            if name == "Rss":
                rss += int(value.split()[0]) * 1024
            elif name == "Pss":
                pss += int(value.split()[0]) * 1024
    return Memory(rss, pss)


# ----------------------------------------------------------------------------- processes


@dataclass
class Started:
    process: ServiceProcess
    skip: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.process.name

    def memory(self) -> Memory:
        return memory_of(process_tree(self.process.pid, skip=self.skip))

    def alive(self) -> bool:
        return self.process.running


@contextmanager
def started(
    name: str, argv: Sequence[str], env: dict[str, str], log: Path, skip: tuple[str, ...] = ()
) -> Iterator[Started]:
    process = ServiceProcess(name, argv, env, log)
    process.start()
    try:
        yield Started(process, skip)
    finally:
        process.stop()


def _smartcity(argv: Sequence[str], fill: dict[str, str]) -> list[str]:
    return [sys.executable, "-m", "smartcity.cli", *(part.format(**fill) for part in argv)]


def _environment(database_url: str, mqtt_port: int, workdir: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTCITY_", "DATABASE_"))}
    return {
        **base,
        "DATABASE_URL": database_url,
        "SMARTCITY_MQTT_HOST": "127.0.0.1",
        "SMARTCITY_MQTT_PORT": str(mqtt_port),
        "SMARTCITY_STATE_DIR": str(workdir / "state"),
    }


def _with_metrics_port(env: dict[str, str]) -> dict[str, str]:
    """Ingest serves its metrics, as in production, on a port of its own."""
    return {**env, "SMARTCITY_INGEST_METRICS_PORT": str(free_port())}


def _ready(ingest: Started, metrics_port: int, within_s: float = 120.0) -> None:
    """Wait until ingest says it is subscribed with the database reachable: a burst published
    before its first subscription would find no session to queue in, and be dropped."""
    deadline = time.monotonic() + within_s
    while scraped_metrics(metrics_port).get("smartcity_ingest_ready") != 1:
        if not ingest.alive():
            raise RuntimeError(f"ingest stopped (exit {ingest.process.exit_code})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingest was not ready within {within_s:.0f} s")
        time.sleep(0.2)


def _settled(service: Started, settle_s: float) -> Memory:
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} stopped (exit {service.process.exit_code})")
        time.sleep(0.2)
    return service.memory()


# ----------------------------------------------------------------------------- phases


def _at_rest(
    env: dict[str, str], workdir: Path, runs: int, settle_s: float, progress: Progress
) -> tuple[Memory, dict[str, list[Memory]]]:
    bare = [sys.executable, "-c", BARE_SUBSCRIBER, env["SMARTCITY_MQTT_PORT"]]
    with started("bare subscriber", bare, env, workdir / "bare.log") as reference:
        reference_memory = _settled(reference, settle_s)
    progress(f"reference, a bare paho subscriber: {reference_memory.rss / MIB:.1f} MiB")
    found: dict[str, list[Memory]] = {}
    for service in services():
        found[service.name] = []
        for run in range(runs):
            fill = {"api_port": str(free_port()), "port": str(free_port())}
            argv = _smartcity(service.argv, fill)
            log = workdir / f"{service.argv[0]}-{service.argv[-1]}.log"
            own = _with_metrics_port(env)
            with started(service.name, argv, own, log, skip=("mosquitto",)) as running:
                found[service.name].append(_settled(running, settle_s))
            shown = found[service.name][-1].rss / MIB
            progress(f"{service.name}, start {run + 1} of {runs}: {shown:.1f} MiB")
    return reference_memory, found


def _telemetry_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT count(*) FROM telemetry_streetlight").fetchone()
    return 0 if row is None else int(row[0])


def _burst(
    env: dict[str, str], workdir: Path, burst: int, progress: Progress
) -> tuple[Memory, int]:
    """Ingest's peak memory while it stores ``burst`` messages published as fast as they go."""
    messages = build_messages(bench_site(200), burst)
    before = _telemetry_rows(env["DATABASE_URL"])
    argv = _smartcity(("ingest",), {})
    own = _with_metrics_port(env)
    with started("ingest", argv, own, workdir / "ingest-burst.log") as ingest:
        _ready(ingest, int(own["SMARTCITY_INGEST_METRICS_PORT"]))
        peak = Memory(0.0, 0.0)
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.1):
                now = ingest.memory()
                peak = Memory(max(peak.rss, now.rss), max(peak.pss, now.pss))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        progress(f"publishing {burst:,} messages to ingest")
        publish(int(env["SMARTCITY_MQTT_PORT"]), messages)
        deadline = time.monotonic() + 600
        while _telemetry_rows(env["DATABASE_URL"]) - before < burst:
            if time.monotonic() > deadline or not ingest.alive():
                break
            time.sleep(0.2)
        stop.set()
        sampler.join()
    return peak, _telemetry_rows(env["DATABASE_URL"]) - before


def _postgres_pids(workdir: Path) -> list[int]:
    for pid_file in workdir.rglob("postmaster.pid"):
        return process_tree(int(pid_file.read_text().split()[0]))
    return []


def _mosquitto_pids(workdir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _command_name(int(entry.name)) == "mosquitto":
            try:
                command_line = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(workdir).encode() in command_line:
                found.append(int(entry.name))
    return found


def city_rate(inventory: SiteInventory) -> float:
    """Readings per second the site's devices send at their expected intervals."""
    return sum(
        1 / CATALOGUE[device.device_class].expected_interval_s for device in inventory.devices
    )


def _wait_for_the_city(database_url: str, expected: float, progress: Progress) -> None:
    """Until the rows stored over 20 s come to 90 % of the city's rate (every agent
    connected and publishing), for at most 5 minutes."""
    progress(f"waiting for the city's {expected:.1f} readings/s to be stored")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        before = _all_rows(database_url)
        time.sleep(20)
        rate = (_all_rows(database_url) - before) / 20
        progress(f"  {rate:.1f} rows/s stored")
        if rate >= 0.9 * expected:
            return
    raise RuntimeError("the simulated city did not reach its rate in 5 minutes")


def _at_load(  # noqa: PLR0917 - the phase's settings
    env: dict[str, str],
    workdir: Path,
    site: Path,
    inventory: SiteInventory,
    load_s: float,
    progress: Progress,
) -> tuple[dict[str, Memory], Memory, int]:
    with ExitStack() as stack:
        simulate = _smartcity(("simulate", "--site", str(site)), {})
        stack.enter_context(started("simulator", simulate, env, workdir / "simulate.log"))
        running = [
            stack.enter_context(
                started(
                    service.name,
                    _smartcity(
                        service.argv, {"api_port": str(free_port()), "port": str(free_port())}
                    ),
                    _with_metrics_port(env),
                    workdir / f"load-{service.argv[0]}-{service.argv[-1]}.log",
                    skip=("mosquitto",),  # the broker command's own; devices use the bench's
                )
            )
            for service in services()
        ]
        _wait_for_the_city(env["DATABASE_URL"], city_rate(inventory), progress)
        before = _all_rows(env["DATABASE_URL"])
        progress(f"the city in real time with every service; sampling for {load_s:.0f} s")
        deadline = time.monotonic() + load_s
        samples: list[dict[str, Memory]] = []
        while time.monotonic() < deadline:
            for service in running:
                if not service.alive():
                    raise RuntimeError(f"{service.name} stopped under load")
            moment = {service.name: service.memory() for service in running}
            moment["Mosquitto"] = memory_of(_mosquitto_pids(workdir))
            moment["PostgreSQL (every process of the cluster)"] = memory_of(_postgres_pids(workdir))
            samples.append(moment)
            time.sleep(1.0)
        found, busiest = peaks(samples)
        stored = _all_rows(env["DATABASE_URL"]) - before
    return found, busiest, stored


def _all_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        counts = [
            connection.execute(f"SELECT count(*) FROM telemetry_{device_class}").fetchone()  # noqa: S608 - our table names
            for device_class in DeviceClass
        ]
    return sum(int(row[0]) for row in counts if row is not None)


def run(
    inventory: SiteInventory,
    site: Path,
    server_url: str | None,
    *,
    runs: int = 5,
    settle_s: float = 12.0,
    burst: int = 20_000,
    load_s: float = 300.0,
    progress: Progress,
) -> MemoryBenchResult:
    with bench_services(server_url, progress, prefix="memory") as bench:
        migrated_and_provisioned(bench.database_url, inventory, bench_site(200), progress=progress)
        env = _environment(bench.database_url, bench.mqtt_port, bench.workdir)
        reference, at_rest = _at_rest(env, bench.workdir, runs, settle_s, progress)
        peak, stored = _burst(env, bench.workdir, burst, progress)
        at_load, busiest, messages = (
            _at_load(env, bench.workdir, site, inventory, load_s, progress)
            if load_s > 0
            else ({}, Memory(0.0, 0.0), 0)
        )
    return MemoryBenchResult(
        runs=runs,
        settle_s=settle_s,
        devices=len(inventory.devices),
        reference=reference,
        at_rest=at_rest,
        burst_messages=burst,
        burst_peak=peak,
        burst_stored=stored,
        at_load=at_load,
        at_load_busiest=busiest,
        load_s=load_s,
        messages_at_load=messages,
    )


# ----------------------------------------------------------------------------- report


def median_rss(memories: Sequence[Memory]) -> float:
    return statistics.median(memory.rss for memory in memories)


def report(result: MemoryBenchResult) -> str:
    reference = result.reference.rss / MIB
    lines = [
        f"machine: {os.cpu_count()} cores; {result.devices:,} devices in the registry",
        f"reference: a bare paho QoS 1 subscriber, {reference:.1f} MiB resident",
        "",
        f"at rest ({result.settle_s:g} s after start, median of {result.runs} starts):",
    ]
    for name, memories in result.at_rest.items():
        values = sorted(memory.rss / MIB for memory in memories)
        median = median_rss(memories) / MIB
        lines.append(
            f"  {name:<42} {median:7.1f} MiB  ({values[0]:.1f} .. {values[-1]:.1f};"
            f" {median / reference:.1f}x the reference)"
        )
    peak = result.burst_peak.rss / MIB
    lines += [
        "",
        f"ingest storing a burst of {result.burst_messages:,} messages (bench ingest's):"
        f" peak {peak:.1f} MiB resident, {result.burst_peak.pss / MIB:.1f} MiB PSS;"
        f" {result.burst_stored:,} rows stored",
    ]
    if result.at_load:
        rate = result.messages_at_load / result.load_s if result.load_s else 0.0
        lines += [
            "",
            f"the platform at the site's real-time load, sampled each second for"
            f" {result.load_s:.0f} s ({rate:.1f} rows/s stored); each part's peak:",
        ]
        for name, memory in result.at_load.items():
            lines.append(
                f"  {name:<42} {memory.rss / MIB:7.1f} MiB resident,"
                f" {memory.pss / MIB:7.1f} MiB PSS"
            )
        summed = total(result.at_load.values())
        busiest = result.at_load_busiest
        lines += [
            f"  {'sum of the peaks':<42} {summed.rss / MIB:7.1f} MiB resident,"
            f" {summed.pss / MIB:7.1f} MiB PSS",
            f"  {'total at the busiest moment':<42} {busiest.rss / MIB:7.1f} MiB resident,"
            f" {busiest.pss / MIB:7.1f} MiB PSS",
        ]
    return "\n".join(lines)
