"""Scale-out on one broker and one database (docs/scaling.md).

Ingest: two `smartcity ingest --share-group` processes split the stream through an MQTT shared
subscription; every message is stored once, and a worker SIGKILLed mid-stream loses nothing:
its share waits in its persistent session until it is back.

Rules: `smartcity rules run --partition I/N` workers each look after the devices hashing to
them; every alert is raised once, by the worker owning its device, and the root causes
(a street, the site) are judged from every worker's missing devices.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import psycopg
import pytest

from bench.services import scraped_metrics
from protocol.payloads import DeviceStatus, StatePayload, encode
from rules.partition import Partition, partition_of
from rules.service import RulesConfig, RulesService
from runtime.local_services import LocalMosquitto, free_port
from tests.integration.helpers import (
    Publisher,
    provision_test_site,
    publisher,
    scalar,
    streetlight_stream,
    wait_until,
)
from tests.integration.test_resilience import assert_stored_exactly_once, publish_in_background
from tests.integration.test_rules_engine import (
    FIVE_MINUTES,
    NIGHT,
    TEST_RULES,
    dark,
    notified_rules,
    open_alerts,
    running_engine,
)

pytestmark = pytest.mark.integration
log = logging.getLogger("tests.scale_out")
"""The figures observed (pytest --log-cli-level=INFO shows them)."""
ROOT = Path(__file__).resolve().parents[2]
SHARE_GROUP = "ingest"
LIGHTS = [f"sl-{index:03d}" for index in range(1, 21)]
"""The streetlights of the test site (street group menzel)."""

# ----------------------------------------------------------------------------- ingest


@dataclass
class IngestWorker:
    name: str
    log: Path
    metrics_port: int
    process: subprocess.Popen[bytes]

    def connections(self) -> int:
        return self.log.read_text().count("connected to broker") if self.log.exists() else 0

    def metric(self, name: str) -> float:
        """The sum of a Prometheus metric's samples (over its labels)."""
        served = scraped_metrics(self.metrics_port)
        if not served:
            raise AssertionError(f"worker {self.name} serves no metrics on {self.metrics_port}")
        return served.get(name, 0.0)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_worker(database_url: str, port: int, name: str, logs: Path) -> IngestWorker:
    """`smartcity ingest --share-group ingest --worker NAME` as its own OS process."""
    metrics_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SMARTCITY_MQTT_PORT": str(port),
        "SMARTCITY_INGEST_METRICS_PORT": str(metrics_port),
        "SMARTCITY_INGEST_BATCH_MAX_MESSAGES": "200",
    }
    smartcity = shutil.which("smartcity", path=str(Path(sys.executable).parent))
    assert smartcity, "the smartcity command is installed beside this Python"
    log_file = logs / f"ingest-{name}.log"
    command = [smartcity, "ingest", "--share-group", SHARE_GROUP, "--worker", name]
    with log_file.open("ab") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    return IngestWorker(name, log_file, metrics_port, process)


def wait_connected(worker: IngestWorker, connections: int = 1) -> None:
    wait_until(lambda: worker.connections() >= connections, 30, f"worker {worker.name}")
    # Ready: its shared subscription is in place and its database reachable.
    wait_until(lambda: worker.metric("smartcity_ingest_ready") == 1, 30, "it to be ready")


@contextmanager
def ingest_workers(
    database_url: str, port: int, logs: Path, names: Sequence[str]
) -> Iterator[dict[str, IngestWorker]]:
    workers = {name: start_worker(database_url, port, name, logs) for name in names}
    try:
        for worker in workers.values():
            wait_connected(worker)
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()


def settled(workers: Iterable[IngestWorker], acknowledged: int = 0) -> bool:
    """Every worker holds nothing more (no message received and not yet acknowledged) and,
    together, they acknowledged at least ``acknowledged`` messages: their counters are final."""
    found = [
        (
            worker.metric("smartcity_ingest_held_bytes"),
            worker.metric("smartcity_ingest_queue_depth"),
            worker.metric("smartcity_ingest_messages_acknowledged_total"),
        )
        for worker in workers
    ]
    idle = all(held == 0 and depth == 0 for held, depth, _ in found)
    return idle and sum(done for _, _, done in found) >= acknowledged


def stored_rows(database_url: str) -> int:
    return scalar(database_url, "SELECT count(*) FROM telemetry")


def wait_steady(database_url: str, quiet_s: float = 3.0, timeout_s: float = 60) -> int:
    """The row count once it has not moved for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    last, since = stored_rows(database_url), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = stored_rows(database_url)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    raise AssertionError(f"the row count kept moving for {timeout_s} s")


def test_two_ingest_workers_split_the_stream_and_store_every_message_once(
    database_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    provision_test_site(database_url)
    messages = streetlight_stream(6_000)
    with ingest_workers(database_url, broker.port, tmp_path, ["a", "b"]) as workers:
        with publisher(broker.port) as device:
            device.publish_all([(m.topic, m.payload) for m in messages], timeout_s=180)
        wait_until(lambda: stored_rows(database_url) >= 12_000, 120, "every row stored")
        wait_until(partial(settled, workers.values(), len(messages)), 60, "the counters final")
        shares = {
            name: worker.metric("smartcity_ingest_messages_acknowledged_total")
            for name, worker in workers.items()
        }
        rows = {
            name: worker.metric("smartcity_ingest_rows_stored_total")
            for name, worker in workers.items()
        }
    log.info("messages acknowledged by each worker: %s; rows stored: %s", shares, rows)
    assert_stored_exactly_once(database_url, messages)
    assert sum(shares.values()) == len(messages), "each message acknowledged by one worker"
    assert sum(rows.values()) == len(messages), "one row a sample in the class's table"
    # Mosquitto deals a shared subscription's messages round-robin: one each in turn.
    assert min(shares.values()) >= 0.4 * len(messages), f"both took a share: {shares}"


def test_a_worker_killed_mid_stream_keeps_its_share_until_it_is_back_and_nothing_is_lost(
    database_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    """Mosquitto 2.0 goes on dealing the killed worker's turn to its persistent session
    (round-robin over the group's sessions, connected or not): the survivor stores only its
    own share, the rest (with what was in flight to the killed worker) waits in the broker
    and is delivered when that worker reconnects under the same name."""
    provision_test_site(database_url)
    messages = streetlight_stream(8_000)
    total_rows = 2 * len(messages)
    before_kill, after_kill = messages[: len(messages) // 2], messages[len(messages) // 2 :]
    with ingest_workers(database_url, broker.port, tmp_path, ["a", "b"]) as workers:
        sender = publish_in_background(broker.port, before_kill)
        acknowledged = "smartcity_ingest_messages_acknowledged_total"
        wait_until(
            lambda: workers["b"].metric(acknowledged) >= 200 and stored_rows(database_url) > 2_000,
            60,
            "both workers mid-stream",
        )
        workers["b"].process.send_signal(signal.SIGKILL)
        workers["b"].process.wait()
        at_kill = stored_rows(database_url)
        sender.join(180)
        # The rest of the stream comes after the kill, however fast the first half went.
        sender = publish_in_background(broker.port, after_kill)
        sender.join(180)
        assert not sender.is_alive(), "the broker took every message"
        survivor_alone = wait_steady(database_url)
        survivor_share = workers["a"].metric(acknowledged)
        log.info(
            "rows at the kill: %d; stored with b dead, once steady: %d of %d;"
            " worker a acknowledged %.0f messages",
            at_kill,
            survivor_alone,
            total_rows,
            survivor_share,
        )
        assert at_kill < total_rows, "killed mid-stream, not after"
        assert survivor_alone < total_rows, "the dead worker's share waits for it"
        # Restarted under its name, b takes back its session and what it held.
        restarted_at = time.monotonic()
        workers["b"] = start_worker(database_url, broker.port, "b", tmp_path)
        wait_until(lambda: stored_rows(database_url) >= total_rows, 120, "b to catch up")
        catch_up_s = time.monotonic() - restarted_at
        wait_until(partial(settled, workers.values()), 60, "b done with what it held")
        took_back = workers["b"].metric(acknowledged)
        absorbed = workers["b"].metric("smartcity_ingest_duplicate_rows_total")
    log.info(
        "restarted b: caught up in %.1f s (start-up included), acknowledged %.0f messages,"
        " %.0f rows already stored (redelivered)",
        catch_up_s,
        took_back,
        absorbed,
    )
    assert took_back * 2 >= total_rows - survivor_alone, "b stored what it held"
    assert_stored_exactly_once(database_url, messages)


# ----------------------------------------------------------------------------- rules


def owner(subject: str, count: int) -> int:
    return partition_of(subject, count)  # lights and root causes go by their own name


def raised(log_file: Path) -> list[tuple[str, str]]:
    """(rule, subject) of every "alert raised" line of a worker's log."""
    found = []
    for line in log_file.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == "alert raised":
                found.append((entry["rule_id"], entry["subject"]))
    return found


def restored_in(log_file: Path) -> bool:
    return b"rule states restored" in log_file.read_bytes()


def ticks_in(log_file: Path) -> int:
    """How many periodic checks a worker (logging at DEBUG) has committed."""
    return log_file.read_bytes().count(b'"periodic check committed"')


def alert_counts(database_url: str) -> Counter[tuple[str, str]]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT rule_id, subject FROM alerts").fetchall()
    return Counter((rule_id, subject) for rule_id, subject in rows)


def devices_with_states(database_url: str, rule_id: str) -> set[str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT device_id FROM rule_states WHERE rule_id = %s", (rule_id,)
        ).fetchall()
    return {device for (device,) in rows}


@contextmanager
def engine_worker(
    database_url: str, port: int, rules: Path, partition: str, log_file: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SMARTCITY_DATABASE_URL": database_url,
        "SMARTCITY_MQTT_PORT": str(port),
    }
    command = [
        *(sys.executable, "-m", "smartcity.cli", "rules", "run", "--event-time"),
        *("--log-level", "DEBUG"),
    ]
    with log_file.open("ab") as output:
        process = subprocess.Popen(
            [*command, "--rules", str(rules), "--partition", partition],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def publish_until_every_light_is_seen(database_url: str, client: Publisher) -> None:
    """Reading 0 of every light, again until every worker has applied its own lights' (a
    worker still subscribing misses them; a reading applied twice is skipped by its time)."""
    deadline = time.monotonic() + 60
    while devices_with_states(database_url, "lamp-out") != set(LIGHTS):
        assert time.monotonic() < deadline, "the workers did not all subscribe"
        for light in LIGHTS:
            dark(client, light, 0)
        time.sleep(1.0)


def test_two_rules_workers_raise_each_alert_once_from_the_worker_owning_the_device(
    database_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    """`smartcity rules run --partition 0/2` and `1/2`: 20 lamps out, then 4 lights silent
    (offline detection, each worker's periodic check covering its own devices)."""
    provision_test_site(database_url)
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES, encoding="utf-8")
    logs = [tmp_path / "rules-0.log", tmp_path / "rules-1.log"]
    silent = ["sl-001", "sl-002", "sl-003", "sl-005"]  # two of each worker's
    assert {owner(light, 2) for light in silent} == {0, 1}
    with ExitStack() as stack:
        for index, worker_log in enumerate(logs):
            stack.enter_context(
                engine_worker(database_url, broker.port, rules, f"{index}/2", worker_log)
            )
        for worker_log in logs:
            wait_until(partial(restored_in, worker_log), 60, str(worker_log))
        client = stack.enter_context(publisher(broker.port))
        publish_until_every_light_is_seen(database_url, client)
        for index in range(1, 5):  # dark for 20 minutes: lamp-out on every light
            for light in LIGHTS:
                dark(client, light, index)
        wait_until(
            lambda: len(open_alerts(database_url, "lamp-out")) == len(LIGHTS), 30, "20 lamps out"
        )
        for index in range(5, 11):  # 30 more minutes; four lights say nothing more
            for light in LIGHTS:
                if light not in silent:
                    dark(client, light, index)
        wait_until(
            lambda: len(open_alerts(database_url, "light-offline")) == len(silent),
            30,
            "the silent lights missing (ticks every 5 s)",
        )
        # Two more ticks of each worker (the first may have begun before): nothing more,
        # nothing twice.
        wanted = [ticks_in(worker_log) + 2 for worker_log in logs]
        wait_until(
            lambda: all(map(int.__le__, wanted, map(ticks_in, logs))), 30, "two more ticks each"
        )
    expected = {("lamp-out", light) for light in LIGHTS} | {
        ("light-offline", light) for light in silent
    }
    counts = alert_counts(database_url)
    assert set(counts) == expected
    assert set(counts.values()) == {1}, "no alert doubled"
    by_worker = [raised(worker_log) for worker_log in logs]
    log.info("alerts raised by worker 0: %d, by worker 1: %d", *map(len, by_worker))
    for index, alerts in enumerate(by_worker):
        assert len(alerts) == len(set(alerts))
        assert set(alerts) == {a for a in expected if owner(a[1], 2) == index}, (
            f"worker {index} raised exactly the alerts of its own devices"
        )
    assert all(by_worker), "both workers had devices with faults"
    restored = [
        json.loads(line)
        for worker_log in logs
        for line in worker_log.read_text().splitlines()
        if '"rule states restored"' in line
    ]
    assert sorted(entry["partition"] for entry in restored) == ["0/2", "1/2"]
    assert sum(entry["devices"] for entry in restored) == 22, "20 lights, a sign, a zone"


@pytest.fixture
def partitioned_config(database_url: str, broker: LocalMosquitto, tmp_path: Path) -> RulesConfig:
    provision_test_site(database_url)
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES, encoding="utf-8")
    return RulesConfig(
        database_url,
        rules,
        mqtt_port=broker.port,
        tick_s=0.2,
        # Longer than a worker takes to see the others' missing devices (1 s) and tick.
        group_wait_s=3.0,
        event_time=True,
    )


@contextmanager
def partitioned_engines(config: RulesConfig, count: int) -> Iterator[list[RulesService]]:
    with ExitStack() as stack:
        engines = []
        for index in range(count):
            partition = Partition(index, count)
            worker = replace(
                config, partition=partition, client_id=partition.client_id(config.client_id)
            )
            engines.append(stack.enter_context(running_engine(worker)))
        yield engines


def test_a_street_failure_widening_to_the_site_across_three_workers_is_told_once(
    partitioned_config: RulesConfig,
) -> None:
    """The street's cause is raised by one worker and the site's by another, from the lights
    of all three going missing; the site's alert takes over the street's mutes; nobody is
    told of a single light; when the lights are back everything resolves once."""
    config = partitioned_config
    url = config.database_url
    lights = LIGHTS[:12]
    assert owner("street:menzel", 3) != owner("site:sefrou", 3), "two workers' causes"
    assert {owner(light, 3) for light in lights[:10]} == {0, 1, 2}
    will = StatePayload(
        v=1, status=DeviceStatus.OFFLINE, ts=NIGHT, reason="connection_lost", boot_id="b"
    )
    with partitioned_engines(config, 3) as engines, publisher(config.mqtt_port) as client:
        for light in lights:
            dark(client, light, 0)
        for light in lights[:10]:
            client.publish_all([(f"sc/sefrou/streetlight/{light}/state", encode(will))])
        wait_until(lambda: bool(open_alerts(url, "group-offline")), 20, "the street")
        for light in lights[10:]:
            client.publish_all([(f"sc/sefrou/streetlight/{light}/state", encode(will))])

        def causes() -> dict[str, str]:
            return {a.subject: a.status.value for a in open_alerts(url, "group-offline")}

        wait_until(lambda: causes().get("site:sefrou") == "firing", 20, "the site")
        wait_until(lambda: len(open_alerts(url, "light-offline")) == 12, 20, "12 lights")
        wait_until(lambda: causes().get("street:menzel") == "closed", 20, "street handed over")
        [site] = [a for a in open_alerts(url, "group-offline") if a.subject == "site:sefrou"]
        wait_until(
            lambda: (
                {a.muted_by for a in open_alerts(url, "light-offline")}
                == {f"suppressed:{site.alert_id}"}
            ),
            20,
            "every light muted by the site",
        )
        # Each light's alert is held for group_wait_s, then released by the next check: one
        # not muted by then would be told. Every engine checking once after that is enough.
        released_by = time.monotonic() + config.group_wait_s
        wait_until(
            lambda: all(engine.last_tick_at > released_by for engine in engines),
            config.group_wait_s + 30,
            "a check of every engine after the lights' alerts could be released",
        )
        assert notified_rules(url) == {"group-offline"}, "only the causes are told"
        for index, engine in enumerate(engines):
            own = {light for light in lights if owner(light, 3) == index}
            assert {device for _, device in engine.evaluator.presences} == own
            causes_raised = [s for s in ("street:menzel", "site:sefrou") if owner(s, 3) == index]
            assert engine.alerts_raised == len(own) + len(causes_raised), index
        assert alert_counts(url) == Counter(
            {("light-offline", light): 1 for light in lights}
            | {("group-offline", "street:menzel"): 1, ("group-offline", "site:sefrou"): 1}
        ), "every alert raised once"
        # The lights come back (a birth of the same boot: it was the link). On the way back
        # the street may count as failing again for a moment (10 of its 20 lights still
        # missing, no longer half the site): the engine's rule, partitioned or not.
        birth = StatePayload(v=1, status=DeviceStatus.ONLINE, ts=NIGHT + FIVE_MINUTES, boot_id="b")
        for light in lights:
            client.publish_all([(f"sc/sefrou/streetlight/{light}/state", encode(birth))])
        wait_until(
            lambda: {a.status.value for a in open_alerts(url, "light-offline")} == {"resolved"},
            20,
            "the lights resolved",
        )
        wait_until(
            lambda: not {a.status.value for a in open_alerts(url, "group-offline")} & {"firing"},
            20,
            "every cause over",
        )
    counts = alert_counts(url)
    assert {key: n for key, n in counts.items() if key[0] == "light-offline"} == {
        ("light-offline", light): 1 for light in lights
    }, "each light's alert raised once, resolved once"
