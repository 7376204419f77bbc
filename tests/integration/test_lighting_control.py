"""The lighting control service end to end: a street of simulated solar streetlights whose
agents are real edge agents on a real broker, accelerated, an evening in December planned
by the service, its commands and alerts in a real database.

- when the setting sun reaches the planning elevation every light it heard from gets its
  night's ``set_schedule``; the agents apply and acknowledge it, hold it, and light by it
  after dusk; the ``commands`` table says why each got what it got;
- a light with a low battery gets a dimmer night than a full one, and the days of harvest
  stored before the service started count;
- a new lighting policy replans the night at once;
- a light that lost its link leaves its command unanswered: resent, given up, an alert;
- a light never heard from gets nothing;
- the lights are the registry's: one added while the service runs is planned, one moved to
  another street follows that street's profile, one decommissioned is sent nothing more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import psycopg
import pytest

from alerts import store
from alerts.catalogue import COMMAND_UNANSWERED
from alerts.lifecycle import Alert, Status
from control.commanding import CommandPolicy
from control.lighting_policy import DEFAULT_LIGHTING
from control.lighting_service import (
    PLAN_ABOVE_GATE_DEG,
    LightingConfig,
    LightingControlService,
    planning_window,
)
from control.strategy import PACKAGED_STRATEGY, load_strategy, parse_strategy
from protocol.commands import SetSchedule
from protocol.decoding import AcceptanceWindow
from protocol.faults import FaultType
from protocol.payloads import CommandPayload
from protocol.sites import SiteInventory, parse_site
from protocol.topics import DeviceClass
from runtime.local_services import LocalMosquitto
from simulators.city import SimulatedCity
from simulators.faults import FaultEvent
from simulators.runner import FleetRunner, RunnerSettings, SimulationClock
from storage.registry import upsert_site
from storage.rollups import refresh_period
from storage.writer import BatchWriter, SampleRows, StorageBatch, telemetry_rows
from tests.integration.helpers import (
    add_device,
    change_device,
    commands_to,
    decommission,
    publisher,
    reading,
    running,
    wait_until,
)
from tests.simulation_helpers import Recorder

pytestmark = pytest.mark.integration
STREETLIGHT = DeviceClass.STREETLIGHT

SITE = """
site: {id: lighttown, name: Lighttown, timezone: Africa/Casablanca,
       latitude: 33.83, longitude: -4.84, altitude: 850}
models:
  sl-60w: {class: streetlight, panel_wp: 200, battery_ah: 101.5625, lamp_w: 60}
streetlight_runs:
  - {id_prefix: sl-main, street_group: main, name: Main road, count: 5, model: sl-60w,
     start: [33.8268, -4.8236], end: [33.8391, -4.8049]}
"""
FULL, LOW, PLAIN, SILENT, NEVER = (f"sl-main-{k:03d}" for k in range(1, 6))
CHARGE = {FULL: 95.0, LOW: 25.0}
"""Starting state of charge [%] of two lights (the others draw theirs)."""
ZONE = ZoneInfo("Africa/Casablanca")
START = datetime(2025, 12, 15, 16, 0, tzinfo=ZONE).astimezone(UTC)
UNTIL = datetime(2025, 12, 15, 20, 0, tzinfo=ZONE).astimezone(UTC)
LINK_LOST = datetime(2025, 12, 15, 17, 0, tzinfo=ZONE).astimezone(UTC)
SPEED = 3_600.0
"""Simulated seconds per wall-clock second: an hour a second."""
SEED = 7
"""December 2025: the simulated clock never runs ahead of the present."""
POLICY = CommandPolicy(ack_timeout_s=0.3)
"""0.3 s of the wall clock to answer: about 18 simulated minutes at an hour a second."""
STORED_WATTS = 25.0
"""The full light's stored panel power, every hour of the three days before [W]: 600 Wh/day."""


def store_history(database_url: str, device_id: str, watts: float) -> None:
    """Hourly ``pv_power`` readings of the three days before the test evening, as ingest would
    have stored them, and their hourly rollup."""
    first = START - timedelta(hours=16 + 72)  # local midnight, three days before
    samples: SampleRows = {
        (device_id, first + timedelta(hours=hour, minutes=30)): {"pv_power": watts}
        for hour in range(72)
    }
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = telemetry_rows(DeviceClass.STREETLIGHT, samples)
        BatchWriter(connection).write(StorageBatch(telemetry={DeviceClass.STREETLIGHT: rows}))
        refresh_period(connection, first, first + timedelta(hours=72))


@dataclass
class Run:
    runner: FleetRunner
    service: LightingControlService
    recorder: Recorder


@contextmanager
def lit_street(
    database_url: str, broker: LocalMosquitto, workdir: Path, faults: Sequence[FaultEvent]
) -> Iterator[Run]:
    """The street simulated from 16:00 to 20:00 local time at an hour a second, its agents
    on the broker, the lighting service running; yields once the simulation reached 20:00."""
    inventory: SiteInventory = parse_site(SITE)
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, inventory)
    store_history(database_url, FULL, STORED_WATTS)
    # The fifth light is in the site file but not on the street (not installed yet).
    street = inventory.only(FULL, LOW, PLAIN, SILENT)
    city = SimulatedCity(street, start=START, seed=SEED, faults=faults)
    for device_id, soc in CHARGE.items():
        city.lights.soc[city.lights.ids.index(device_id)] = soc
    recorder = Recorder(broker.port, client_id="lighting-test-recorder")
    config = LightingConfig(
        database_url,
        inventory.site.id,
        load_strategy(PACKAGED_STRATEGY),
        mqtt_port=broker.port,
        event_time=True,
        commands=POLICY,
        window=AcceptanceWindow(max_age=timedelta(days=3_650), max_ahead=timedelta(days=1)),
    )
    service = LightingControlService(config)
    service_thread = threading.Thread(target=service.run, name="lighting-control")
    service_thread.start()
    runners: list[FleetRunner] = []
    reached, done = threading.Event(), threading.Event()

    def simulate() -> None:
        runner = FleetRunner(city, RunnerSettings("127.0.0.1", broker.port, workdir / "spools"))
        runners.append(runner)
        try:
            runner.pump(0.3)  # the agents connect and subscribe to their commands
            runner.run(SimulationClock(START, SPEED), done.is_set, until=UNTIL)
            reached.set()
            while not done.is_set():  # the street stands still; answers still go out
                runner.pump(0.05)
        finally:
            runner.stop(drain_s=0.5)

    city_thread = threading.Thread(target=simulate, name="simulated-street")
    try:
        assert service.ready.wait(20), "the lighting service did not subscribe"
        city_thread.start()
        assert reached.wait((UNTIL - START).total_seconds() / SPEED * 3 + 30), "too slow"
        time.sleep(0.5)  # the last readings and answers reach the service
        yield Run(runners[0], service, recorder)
    finally:
        done.set()
        if city_thread.is_alive():
            city_thread.join(30)
        service.stop()
        service_thread.join(30)
        recorder.close()
    assert not service_thread.is_alive(), "the lighting service did not stop"


def commands(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, device_id, action, params, source, reason, issued_at, expires_at,"
            " attempts, outcome, outcome_at, outcome_reason FROM commands ORDER BY issued_at, id"
        )
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def alerts(database_url: str) -> list[Alert]:
    with psycopg.connect(database_url) as connection:
        return [alert for alert, _ in store.alerts(connection, limit=1_000)]


def dimming(recorder: Recorder, device_id: str, after: datetime) -> list[float]:
    return [
        float(sample.values["dimming_level"])
        for message in recorder.telemetry(device_id)
        for sample in message.samples
        if sample.ts >= after and "dimming_level" in sample.values
    ]


def test_each_light_gets_its_night_dimmed_to_its_battery_and_a_silent_one_an_alert(
    database_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    """An evening of December, 16:00 to 20:00 local time, in about 10 s. The fourth light
    loses its link at 17:00; the fifth never reports."""
    faults = [FaultEvent(LINK_LOST, SILENT, FaultType.COMMUNICATION_LOSS)]
    with lit_street(database_url, broker, tmp_path, faults) as run:
        sent = commands(database_url)
        published = {
            msgspec.json.decode(payload, type=CommandPayload).id
            for device in (FULL, LOW, PLAIN, SILENT)
            for payload in run.recorder.of(device, "cmd")
        }
        held = {device: run.runner.agents[device].local.schedule for device in (FULL, LOW, PLAIN)}
        counters = run.service.counters
        after_dusk = datetime(2025, 12, 15, 18, 45, tzinfo=ZONE)
        lamps = {device: dimming(run.recorder, device, after_dusk) for device in (FULL, LOW)}
        # A brighter policy activated at 20:00 replans the night at once.
        packaged = PACKAGED_STRATEGY.read_text(encoding="utf-8")
        brighter = packaged.replace("lighting: {}", "lighting: {minimum_level: 40}")
        before = commands(database_url)
        run.service.use_strategy(parse_strategy(brighter))
        wait_until(
            lambda: any(
                row["reason"].endswith("; replanned") and row["outcome"] == "applied"
                for row in commands(database_url)
                if row["device_id"] == LOW
            ),
            15,
            "the replanned schedule applied",
        )
        everything = commands(database_url)
        replanned = [row for row in everything if row not in before]
        restarted = LightingControlService(run.service.config)
        try:
            latest = restarted.latest_commands()
        finally:
            restarted.close()
        found = alerts(database_url)
    site = parse_site(SITE).site
    window = planning_window(DEFAULT_LIGHTING, START.date(), site, PLAN_ABOVE_GATE_DEG)
    by_device: dict[str, list[dict[str, Any]]] = {}
    for row in sent:
        by_device.setdefault(row["device_id"], []).append(row)

    # Who got what, when: one command each at the planning time; nothing for the unheard.
    assert set(by_device) == {FULL, LOW, PLAIN, SILENT}, "never heard from: no command"
    assert {(row["source"], row["action"]) for row in sent} == {
        ("lighting-control", "set_schedule")
    }
    assert {row["id"] for row in sent} <= published, "every command went out on MQTT"
    for device in (FULL, LOW, PLAIN):
        [row] = by_device[device]
        assert window.opens <= row["issued_at"] < window.opens + timedelta(minutes=15)
        assert row["outcome"] == "applied", row
        assert row["reason"].endswith("; tonight's plan")
        schedule = msgspec.convert(row["params"], SetSchedule)
        assert held[device] == schedule, "the agent holds the schedule it acknowledged"
    assert counters.acknowledgements >= 3
    newest = {row["device_id"]: row["id"] for row in everything}
    assert {device: command.id for device, command in latest.items()} == newest, (
        "a restart carries on from the commands table"
    )

    # A low battery gets a dimmer night than a full one, and the lamps follow.
    def levels(device: str) -> list[float]:
        [row] = by_device[device]
        return [step["level"] for step in row["params"]["steps"]]

    assert max(levels(LOW)) < max(levels(FULL))
    assert max(levels(LOW)) <= DEFAULT_LIGHTING.minimum_level
    [low] = by_device[LOW]
    assert low["reason"].startswith(("minimum 20 %", "short: ")), low["reason"]
    [full] = by_device[FULL]
    assert full["reason"].startswith(("dimmed to ", "full profile")), full["reason"]
    assert "battery 9" in full["reason"]
    assert "harvest 600 Wh/day" in full["reason"], "the stored days' harvest"
    assert lamps[LOW], "lit after dusk"
    assert lamps[FULL], "lit after dusk"
    assert median(lamps[LOW]) < median(lamps[FULL])

    # A new policy: replanned from the latest charge, the lights whose night it changes told.
    new_low = [row for row in replanned if row["device_id"] == LOW]
    assert new_low, replanned
    assert min(step["level"] for step in new_low[-1]["params"]["steps"]) > max(levels(LOW))
    assert run.runner.agents[LOW].local.schedule == msgspec.convert(
        new_low[-1]["params"], SetSchedule
    )
    assert all(row["reason"].endswith("; replanned") for row in replanned)

    # The silent light: resent, given up, an alert on it.
    unanswered = [row for row in by_device[SILENT] if row["outcome"] == "unanswered"]
    assert unanswered, by_device[SILENT]
    assert unanswered[0]["attempts"] == POLICY.max_attempts
    assert unanswered[0]["outcome_reason"] == f"no answer to {POLICY.max_attempts} sends"
    assert counters.resends >= POLICY.max_attempts - 1
    [alert] = [a for a in found if a.rule_id == COMMAND_UNANSWERED]
    assert alert.subject == SILENT
    assert alert.status is Status.FIRING
    assert unanswered[0]["id"] in (alert.cause or "")
    assert {a.subject for a in found} == {SILENT}, "healthy lights raise nothing"


# ----------------------------------------------------------------------------- registry

STREETS = """
site: {id: lighttown, name: Lighttown, timezone: Africa/Casablanca,
       latitude: 33.83, longitude: -4.84, altitude: 850}
models:
  sl-60w: {class: streetlight, panel_wp: 200, battery_ah: 101.5625, lamp_w: 60}
streetlight_runs:
  - {id_prefix: sl-main, street_group: main, name: Main road, count: 3, model: sl-60w,
     start: [33.8268, -4.8236], end: [33.8391, -4.8049]}
  - {id_prefix: sl-plaza, street_group: plaza, name: Plaza, count: 3, model: sl-60w,
     place_kind: square, start: [33.8296, -4.8378], end: [33.8305, -4.8360]}
"""
STREET_LIGHTS = [f"sl-{street}-{k:03d}" for street in ("main", "plaza") for k in (1, 2, 3)]
IN_THE_WINDOW = datetime(2025, 12, 15, 16, 40, tzinfo=UTC)
"""A few minutes after the night's planning window opened, half an hour before dusk."""


@dataclass
class Streets:
    service: LightingControlService
    report: Callable[[str], None]
    """A light's reading now: full, at dusk (no harvest)."""


@contextmanager
def streets_planned(database_url: str, broker: LocalMosquitto) -> Iterator[Streets]:
    """Two streets' lights in the planning window, on a clock that runs from it; every light
    reported and got its night. Nobody answers: commands wait for their acknowledgement."""
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, parse_site(STREETS))
    started = datetime.now(UTC)

    def clock() -> datetime:
        return IN_THE_WINDOW + (datetime.now(UTC) - started)

    config = LightingConfig(
        database_url,
        "lighttown",
        load_strategy(PACKAGED_STRATEGY),
        mqtt_port=broker.port,
        commands=CommandPolicy(ack_timeout_s=3.0),
        window=AcceptanceWindow(max_age=timedelta(days=3_650), max_ahead=timedelta(days=1)),
        registry_check_s=0.5,
    )
    service = LightingControlService(config, clock=clock)
    with running(service, "lighting-control"), publisher(broker.port) as client:

        def report(device_id: str) -> None:
            values = {"battery_soc": 100.0, "pv_power": 0.0}
            client.publish_all([reading("lighttown", STREETLIGHT, device_id, clock(), values)])

        for device_id in STREET_LIGHTS:
            report(device_id)
        wait_until(
            lambda: all(commands_to(database_url, light) for light in STREET_LIGHTS),
            15,
            "every light's night sent",
        )
        yield Streets(service, report)


def test_a_light_added_is_planned_and_one_moved_follows_its_new_groups_profile(
    database_url: str, broker: LocalMosquitto
) -> None:
    """No restart: a light provisioned as the API does (no place kind of its own) is planned
    as its street's lights are; a road light moved to the plaza gets the plaza's night."""
    with streets_planned(database_url, broker) as streets:
        add_device(database_url, "sl-main-004", STREETLIGHT, "lighttown", model="sl-60w",
                   street_group="main")  # fmt: skip
        began = time.monotonic()

        def planned(device_id: str, count: int) -> bool:
            streets.report(device_id)  # it reports, as a light does
            return len(commands_to(database_url, device_id)) >= count

        wait_until(lambda: planned("sl-main-004", 1), 15, "the added light planned")
        assert time.monotonic() - began < 10
        change_device(database_url, "sl-main-001", street_group="plaza")
        wait_until(lambda: planned("sl-main-001", 2), 15, "the moved light planned again")
        [added] = commands_to(database_url, "sl-main-004")
        first, moved = commands_to(database_url, "sl-main-001")
        [road] = commands_to(database_url, "sl-main-002")
        [plaza] = commands_to(database_url, "sl-plaza-001")
    assert added["params"] == road["params"], "the road's night: same battery, same street"
    assert added["reason"].endswith("; tonight's plan")
    assert first["params"] == road["params"]
    assert moved["params"] == plaza["params"], "the plaza's night now"
    assert moved["params"] != road["params"]
    assert moved["reason"].endswith("; replanned")
    assert len(commands_to(database_url, "sl-main-002")) == 1, "the others keep theirs"


def test_a_light_decommissioned_is_sent_nothing_more(
    database_url: str, broker: LocalMosquitto
) -> None:
    """Its command awaiting an answer is given up at once, never resent; its readings get it
    nothing, while the others' commands are resent as usual."""
    gone = "sl-main-002"
    with streets_planned(database_url, broker) as streets:
        decommission(database_url, gone)
        wait_until(
            lambda: commands_to(database_url, gone)[0]["outcome"] is not None,
            10,
            "its command given up",
        )
        streets.report(gone)
        streets.report("sl-main-003")

        def resent() -> bool:
            return bool(commands_to(database_url, "sl-main-003")[0]["attempts"] >= 2)

        wait_until(resent, 15, "another light's command resent")
        assert gone not in streets.service.devices
        assert gone not in {light.device_id for light in streets.service.lights}
    [given_up] = commands_to(database_url, gone)
    assert given_up["outcome"] == "unanswered"
    assert given_up["outcome_reason"] == "device no longer in service; not sent again"
    assert given_up["attempts"] == 1, "never resent"
