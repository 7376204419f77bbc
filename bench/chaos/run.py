"""The chaos run itself: warm-up, each fault with steady traffic, cool-down, the books."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.chaos.commander import Commander
from bench.chaos.config import COOL_DOWN, KNOCK_SETTLE_S, WARM_UP, ChaosConfig, Progress
from bench.chaos.fleet import ChaosFleet, RecordingCity, SampleBook, pick_devices
from bench.chaos.report import AlertsCheck, ChaosReport, CommandsCheck, IncidentCheck, PhaseFigures
from bench.chaos.services import ServiceProcess
from bench.fault_proxy import Direction, FaultProxy
from edge_agents.drivers import Reading
from protocol.catalogue import CATALOGUE
from protocol.faults import FaultType
from protocol.topics import DeviceClass
from runtime.limits import raise_open_file_limit
from runtime.local_services import LocalMosquitto, LocalPostgres, free_port
from simulators.city import grid_time
from simulators.faults import FaultEvent
from simulators.runner import FleetRunner, RunnerSettings
from storage.migrate import migrate
from storage.registry import upsert_site


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
