"""The HVAC control service end to end: a simulated town hall whose zones are real edge agents
on a real broker, accelerated, commanded by the service, with its commands and alerts in a
real database.

- commands go out, the agents apply and acknowledge them, the ``commands`` table says so, and
  the zones follow: heated from before opening, set back after closing (the heating stops and
  the rooms cool down);
- a zone that loses its link leaves its commands unanswered: resent, then given up, and an
  alert; a stuck valve that heats a set-back zone is an alert too;
- a command that arrives after its expiry is refused by the agent and never applied;
- the zones are the registry's: one added while the service runs is commanded, one
  decommissioned is sent nothing more;
- on a summer night a zone with motorised windows is ventilated with the night's air and its
  blinds kept down, and the windows shut when it opens.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import psycopg
import pytest
from typer.testing import CliRunner

from alerts import store
from alerts.catalogue import COMMAND_REFUSED, COMMAND_UNANSWERED, HVAC_NOT_FOLLOWING
from alerts.lifecycle import Alert, Status
from control import hvac_service
from control.commanding import CommandPolicy
from control.hvac import Decision, Memory, Observation, Zones, controlled_zones, decide
from control.hvac_service import ControlConfig, HvacControlService
from control.opening import calendar_for, open_grid, outlook
from control.strategy import PACKAGED_STRATEGY, Hvac, load_strategy
from protocol.decoding import AcceptanceWindow
from protocol.faults import FaultType
from protocol.payloads import CommandPayload
from protocol.sites import SiteInventory, parse_site
from protocol.topics import DeviceClass
from runtime.local_services import LocalMosquitto
from simulators.city import SimulatedCity
from simulators.faults import FaultEvent
from simulators.runner import FleetRunner, RunnerSettings, SimulationClock
from smartcity.cli import app
from storage.registry import upsert_site
from tests.integration.helpers import (
    add_device,
    commands_to,
    decommission,
    publisher,
    reading,
    running,
    wait_until,
)
from tests.simulation_helpers import Recorder

pytestmark = pytest.mark.integration
BUILDING = DeviceClass.BUILDING

SITE = """
site: {id: simtown, name: Simtown, timezone: Africa/Casablanca,
       latitude: 33.83, longitude: -4.84, altitude: 850}
buildings:
  - {id: hall, name: Town hall, kind: town_hall, latitude: 33.83, longitude: -4.84,
     zones: [{id: offices, area_m2: 200}, {id: archives, area_m2: 80}]}
"""
SUMMER_SITE = SITE.replace(
    "longitude: -4.84,\n",
    "longitude: -4.84,\n     motorised_windows: true, external_blinds: true,\n",
)
OFFICES, ARCHIVES = "hall-offices", "hall-archives"
LOCAL = timedelta(hours=1)
"""Morocco's offset from UTC in January (no Ramadan)."""
DAY = datetime(2026, 1, 20, tzinfo=UTC)
"""A Tuesday in January; the town hall opens 08:30-16:30 local time."""
SPEED = 3_600.0
"""Simulated seconds per wall-clock second: an hour a second."""
SEED = 11


def local(hour: float) -> datetime:
    """``hour`` of the test day, local time, as UTC."""
    return DAY + timedelta(hours=hour) - LOCAL


@dataclass
class Run:
    runner: FleetRunner
    service: HvacControlService
    recorder: Recorder
    database_url: str


@contextmanager
def controlled_city(
    database_url: str,
    broker: LocalMosquitto,
    workdir: Path,
    *,
    start: datetime,
    until: datetime,
    faults: Sequence[FaultEvent] = (),
    speed: float = SPEED,
    event_time: bool = True,
    lag: timedelta | None = None,
    commands: CommandPolicy | None = None,
    period_s: float = 300.0,
    site: str = SITE,
) -> Iterator[Run]:
    """The town hall simulated from ``start`` to ``until`` at ``speed``, its agents on the
    broker (in their own thread: their spools are SQLite), the control service running;
    yields once the simulation reached ``until``. lag: the service runs on a clock this far
    behind the city's, instead of on the readings' time."""
    inventory: SiteInventory = parse_site(site)
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, inventory)
    city = SimulatedCity(inventory, start=start, seed=SEED, faults=faults)
    recorder = Recorder(broker.port, client_id="control-test-recorder")
    config = ControlConfig(
        database_url,
        inventory.site.id,
        load_strategy(PACKAGED_STRATEGY),
        mqtt_port=broker.port,
        event_time=event_time,
        period_s=period_s,
        commands=commands or CommandPolicy(),
        # The test day is in the past; a clock behind the zones sees their readings ahead.
        window=AcceptanceWindow(max_age=timedelta(days=3_650), max_ahead=timedelta(days=1)),
    )
    if lag is None:
        service = HvacControlService(config)
    else:
        behind = lag
        service = HvacControlService(config, clock=lambda: city.now - behind)
    service_thread = threading.Thread(target=service.run, name="hvac-control")
    service_thread.start()
    runners: list[FleetRunner] = []
    connected, reached, done = threading.Event(), threading.Event(), threading.Event()

    def simulate() -> None:
        runner = FleetRunner(city, RunnerSettings("127.0.0.1", broker.port, workdir / "spools"))
        runners.append(runner)
        try:
            runner.pump(0.3)  # the agents connect and subscribe to their commands
            connected.set()
            runner.run(SimulationClock(start, speed), done.is_set, until=until)
            reached.set()
            while not done.is_set():  # the city stands still; answers still go out
                runner.pump(0.05)
        finally:
            runner.stop(drain_s=0.5)

    city_thread = threading.Thread(target=simulate, name="simulated-city")
    try:
        assert service.ready.wait(20), "the control service did not subscribe"
        city_thread.start()
        assert reached.wait((until - start).total_seconds() / speed * 3 + 30), "too slow"
        time.sleep(0.5)  # the last readings and answers reach the service
        yield Run(runners[0], service, recorder, database_url)
    finally:
        done.set()
        if city_thread.is_alive():
            city_thread.join(30)
        service.stop()
        service_thread.join(30)
        recorder.close()
    assert not service_thread.is_alive(), "the control service did not stop"


def commands(database_url: str, device_id: str | None = None) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, device_id, action, params, source, reason, issued_at, expires_at,"
            " attempts, last_sent_at, outcome, outcome_at, outcome_reason FROM commands"
            " WHERE device_id = coalesce(%s, device_id) ORDER BY issued_at, id",
            (device_id,),
        )
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def alerts(database_url: str) -> list[Alert]:
    with psycopg.connect(database_url) as connection:
        return [alert for alert, _ in store.alerts(connection, limit=1_000)]


def series(recorder: Recorder, device_id: str, metric: str) -> list[tuple[datetime, float]]:
    return sorted(
        (sample.ts, float(sample.values[metric]))
        for message in recorder.telemetry(device_id)
        for sample in message.samples
        if metric in sample.values
    )


def between(points: list[tuple[datetime, float]], first: datetime, last: datetime) -> list[float]:
    return [value for ts, value in points if first <= ts <= last]


def stretches(
    points: list[tuple[datetime, float]], gap: timedelta
) -> list[list[tuple[datetime, float]]]:
    """``points`` (in time order) cut wherever two follow each other more than ``gap`` apart."""
    runs: list[list[tuple[datetime, float]]] = [[]]
    for point in points:
        if runs[-1] and point[0] - runs[-1][-1][0] > gap:
            runs.append([])
        runs[-1].append(point)
    return runs


def recording_decisions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Observation, Decision]]:
    """Every decision the control service takes from now on, with what it saw."""
    decided: list[tuple[Observation, Decision]] = []

    def recorded(hvac: Hvac, zones: Zones, seen: Observation, memory: Memory) -> Any:
        memory, decision = decide(hvac, zones, seen, memory)
        decided.append((seen, decision))
        return memory, decision

    monkeypatch.setattr(hvac_service, "decide", recorded)
    return decided


def test_zones_are_commanded_acknowledge_and_follow_the_strategy(
    database_url: str, broker: LocalMosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A working day of the town hall, 05:00 to 19:30, in about 15 s."""
    decided = recording_decisions(monkeypatch)
    with controlled_city(
        database_url, broker, tmp_path, start=local(5.0), until=local(19.5)
    ) as run:
        sent = commands(database_url)
        published = {
            msgspec.json.decode(payload, type=CommandPayload).id
            for device in (OFFICES, ARCHIVES)
            for payload in run.recorder.of(device, "cmd")
        }
        temperature = series(run.recorder, OFFICES, "air_temperature")
        heating = series(run.recorder, OFFICES, "heating_active")
        agents = [run.runner.agents[device] for device in (OFFICES, ARCHIVES)]
        counters = run.service.counters
        restarted = HvacControlService(run.service.config)
        try:
            latest, awaiting = restarted.latest_commands(), restarted.awaiting()
        finally:
            restarted.close()
    hvac = load_strategy(PACKAGED_STRATEGY).hvac

    assert {row["device_id"] for row in sent} == {OFFICES, ARCHIVES}
    assert {(row["source"], row["action"]) for row in sent} == {("hvac-control", "set_hvac")}
    assert {row["id"] for row in sent} <= published, "every command went out on MQTT"
    answered = [row for row in sent if row["outcome"] is not None]
    assert {row["outcome"] for row in answered} == {"applied"}
    assert len(answered) >= len(sent) - 2, "only the last commands may still await"
    assert {row["attempts"] for row in sent} == {1}, "no resend was needed"
    assert counters.acknowledgements == len(answered)
    for row in answered:
        assert row["issued_at"] < row["expires_at"]
        assert row["issued_at"] - timedelta(minutes=5) <= row["outcome_at"] <= row["expires_at"]
        assert row["params"]["hold_s"] == hvac.hold
    assert sum(agent.counters.commands_applied for agent in agents) == len(answered)
    newest = {row["device_id"]: row["id"] for row in sent}
    assert {device: command.id for device, command in latest.items()} == newest, (
        "a restart carries on from the commands table"
    )
    assert {command.id for command in awaiting} == {r["id"] for r in sent if not r["outcome"]}
    assert all(agent.counters.commands_refused == 0 for agent in agents)

    def levels(first: datetime, last: datetime) -> set[str]:
        return {
            row["reason"].split(":")[0]
            for row in sent
            if row["device_id"] == OFFICES and first <= row["issued_at"] < last
        }

    # A command before the hold runs out: the zone never falls back to its own program.
    offices = [row["issued_at"] for row in sent if row["device_id"] == OFFICES]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(offices)]
    assert max(gaps) < hvac.hold
    assert "preheat" in levels(local(5.0), local(8.5)), "optimum start before opening"
    early = local(16.5) - timedelta(seconds=hvac.optimum_stop.max_early)
    assert levels(local(8.6), early) <= {"comfort", "standby", "presence"}
    assert levels(early, local(16.5)) <= {"comfort", "standby", "presence", "stop-early"}
    assert levels(local(16.6), local(19.5)) == {"setback"}
    for row in sent:
        level = row["reason"].split(":")[0]
        expected = {
            "setback": hvac.setback,
            "stop-early": hvac.setback,
            "standby": hvac.standby,
        }.get(level, hvac.comfort)
        assert row["params"]["heating_setpoint"] == expected.heating, row["reason"]

    # The zone follows: warm while open, heating off and cooling down after closing.
    assert median(between(temperature, local(12.0), local(16.5))) >= hvac.comfort_band.low
    assert any(between(heating, local(7.0), local(8.5))), "heating before opening"
    assert not any(between(heating, local(16.75), local(19.5))), "set back: no heating"
    at_closing = median(between(temperature, local(16.4), local(16.6)))
    evening = median(between(temperature, local(19.2), local(19.5)))
    assert evening < at_closing - 0.5
    assert alerts(database_url) == [], "a healthy building raises nothing"
    assert_replay_decides_the_same(decided, start=local(5.0), until=local(19.5))


def assert_replay_decides_the_same(
    decided: list[tuple[Observation, Decision]],
    *,
    start: datetime,
    until: datetime,
    site_text: str = SITE,
) -> None:
    """The what-if's decisions on what the live service saw: its own opening hours (those of
    the replay's time grid) and its own memory from the first decision on, as a what-if of
    the day would decide (issue 18: the live service runs the same decisions as the what-if)."""
    strategy = load_strategy(PACKAGED_STRATEGY)
    site = controlled_zones(parse_site(site_text).devices)
    step_s = 150
    times = pd.date_range(start, until, freq=f"{step_s}s", tz="UTC")
    unix_s = times.asi8 // 1_000_000_000
    grid = open_grid(strategy, site.places, unix_s, calendar_for(unix_s), "Africa/Casablanca")
    to_start, to_end = outlook(grid, step_s)
    memory = Memory.initial(site.zones.size)
    same = 0
    for seen, live in decided:
        at = min(round((seen.now - start).total_seconds() / step_s), len(times) - 1)
        replayed = replace(
            seen, scheduled=grid[:, at], hours_to_start=to_start[:, at], hours_to_end=to_end[:, at]
        )
        memory, decision = decide(strategy.hvac, site.zones, replayed, memory)
        if decision.level == live.level:
            same += 1
            assert np.array_equal(decision.heating_setpoint, live.heating_setpoint)
            assert np.array_equal(decision.cooling_setpoint, live.cooling_setpoint)
            assert np.array_equal(decision.ventilate_to, live.ventilate_to, equal_nan=True)
            assert np.array_equal(decision.shade, live.shade)
    assert len(decided) > 100
    # The replay's grid is 150 s; the live service's clock is the readings': a level may
    # change one decision apart at a boundary (opening, closing, a warm-up's start).
    assert same >= len(decided) - 6, f"{len(decided) - same} of {len(decided)} decisions differ"


def test_on_a_summer_night_the_zones_are_ventilated_and_shaded_and_shut_at_opening(
    database_url: str, broker: LocalMosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A July night of a town hall with motorised windows and external blinds, 18:00 to
    10:00 (Morocco is UTC+1 all summer): the service asks for night ventilation of the closed,
    empty zones and for the blinds down; the agents open the windows only while the outdoor
    air is cooler, the zones cool without their air conditioners, the windows are shut from
    opening; every command is applied and recorded, and the what-if decides the same."""
    decided = recording_decisions(monkeypatch)
    evening = datetime(2026, 7, 14, 17, tzinfo=UTC)  # 18:00 local, a Tuesday
    opening = evening + timedelta(hours=14, minutes=30)  # 08:30 local
    until = evening + timedelta(hours=16)
    with controlled_city(
        database_url, broker, tmp_path, start=evening, until=until, site=SUMMER_SITE
    ) as run:
        sent = commands(database_url)
        vents = series(run.recorder, OFFICES, "vents_open")
        blinds = series(run.recorder, OFFICES, "blinds_down")
        temperature = series(run.recorder, OFFICES, "air_temperature")
        outdoor = series(run.recorder, OFFICES, "outdoor_temperature")
        cooling = series(run.recorder, OFFICES, "cooling_active")
    hvac = load_strategy(PACKAGED_STRATEGY).hvac

    answered = [row for row in sent if row["outcome"] is not None]
    assert {row["outcome"] for row in answered} == {"applied"}
    assert len(answered) >= len(sent) - 2, "only the last commands may still await"
    night = [row for row in sent if row["issued_at"] < opening - timedelta(minutes=10)]
    day = [row for row in sent if row["issued_at"] >= opening + timedelta(minutes=10)]
    assert all(row["params"]["shade"] is True for row in sent), "blinds down all summer"
    ventilate_to = [row["params"].get("ventilate_to") for row in night]
    assert None not in ventilate_to, "closed and empty all night: always ventilated"
    assert min(ventilate_to) == hvac.night_ventilation.down_to
    assert day, "commands after opening"
    assert all("ventilate_to" not in row["params"] for row in day), "no ventilation while open"

    opened = [ts for ts, value in vents if value >= 0.5]
    assert opened, "the windows opened in the night"
    outside = dict(outdoor)
    inside = dict(temperature)
    for ts in opened:  # the agent opens them only to cooler air
        assert outside[ts] <= inside[ts] - 0.5, ts
    assert not any(between(vents, opening + timedelta(minutes=10), until)), "shut once open"
    applied = min(r["outcome_at"] for r in answered if r["device_id"] == OFFICES)
    applied += timedelta(minutes=2)
    assert all(value >= 0.5 for value in between(blinds, applied, until)), "from the command on"
    # The windows alone cool the zone for an hour or more at a stretch (the air conditioner
    # may pull it down too, before opening, when the optimum start says so); it opens
    # comfortable.
    air_conditioned = {ts for ts, value in cooling if value >= 0.5}
    aired = [
        (ts, inside[ts])
        for ts in opened
        if ts < opening and ts not in air_conditioned and ts in inside
    ]
    longest = max(stretches(aired, timedelta(minutes=2)), key=len)
    assert longest[-1][0] - longest[0][0] >= timedelta(hours=1), "an hour aired, no cooling"
    assert longest[0][1] - longest[-1][1] >= 0.5, "the night air cooled it"
    at_opening = median(between(temperature, opening - timedelta(minutes=5), opening))
    assert at_opening <= hvac.comfort_band.high - 1.0, "comfortable at opening"
    assert_replay_decides_the_same(decided, start=evening, until=until, site_text=SUMMER_SITE)


def test_unanswered_and_not_followed_commands_raise_alerts(
    database_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    """The archives lose their link from 16:45 to 18:30; the offices' valve sticks open at
    17:00, after the town hall closed."""
    faults = [
        FaultEvent(local(16.75), ARCHIVES, FaultType.COMMUNICATION_LOSS, local(18.5)),
        FaultEvent(local(17.0), OFFICES, FaultType.STUCK_VALVE),
    ]
    # 0.3 s of the wall clock to answer: 18 simulated minutes at an hour a second.
    policy = CommandPolicy(ack_timeout_s=0.3)
    with controlled_city(
        database_url,
        broker,
        tmp_path,
        start=local(15.0),
        until=local(20.0),
        faults=faults,
        commands=policy,
    ):
        archives = commands(database_url, ARCHIVES)
        found = alerts(database_url)
    unanswered = [row for row in archives if row["outcome"] == "unanswered"]
    assert unanswered, "the archives' commands went unanswered"
    for row in unanswered:
        assert row["attempts"] == policy.max_attempts, "resent, then given up"
        assert row["outcome_reason"] == f"no answer to {policy.max_attempts} sends"
        assert local(16.75) <= row["issued_at"] < local(18.5)
    assert any(
        row["outcome"] == "applied" and row["outcome_at"] >= local(18.5) for row in archives
    ), "commanded again once back"
    by_rule = {(alert.rule_id, alert.subject): alert for alert in found}
    silent = by_rule[COMMAND_UNANSWERED, ARCHIVES]
    assert silent.severity.value == "warning"
    assert unanswered[0]["id"] in (silent.cause or "")
    assert silent.status is Status.RESOLVED, "the zone answers again: resolved"
    stuck = by_rule[HVAC_NOT_FOLLOWING, OFFICES]
    assert stuck.status is Status.FIRING
    assert "heating on" in (stuck.cause or "")
    assert local(17.0) <= stuck.started_at
    assert stuck.fired_at - stuck.started_at >= timedelta(minutes=15)
    assert stuck.fired_at <= local(17.75)
    assert stuck.last_notified_at is None, "held: the rules engine notifies it"
    assert set(by_rule) == {(COMMAND_UNANSWERED, ARCHIVES), (HVAC_NOT_FOLLOWING, OFFICES)}


def test_a_command_past_its_expiry_is_refused_and_never_applied(
    database_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    """The service's clock runs an hour behind the zones': every command arrives expired."""
    with controlled_city(
        database_url,
        broker,
        tmp_path,
        start=local(9.0),
        until=local(9.1),
        speed=120.0,
        event_time=False,
        lag=timedelta(hours=1),
        period_s=60.0,
    ) as run:
        wait_until(lambda: run.service.counters.alerts_raised > 0, 10, "the alert")
        sent = commands(database_url)
        agents = [run.runner.agents[device] for device in (OFFICES, ARCHIVES)]
        found = alerts(database_url)
    answered = [row for row in sent if row["outcome"] is not None]
    assert len(answered) >= 2 * CommandPolicy().expired_alert_after
    assert {row["outcome"] for row in answered} == {"expired"}
    assert all(row["outcome_reason"].startswith("command expired at") for row in answered)
    assert all(agent.counters.commands_applied == 0 for agent in agents)
    assert all(agent.local.hold is None for agent in agents), "the zones run their own program"
    refused = {alert.subject: alert for alert in found if alert.rule_id == COMMAND_REFUSED}
    assert set(refused) == {OFFICES, ARCHIVES}
    assert "commands in a row expired" in (refused[OFFICES].cause or "")


# ----------------------------------------------------------------------------- registry


@contextmanager
def hall_commanded(database_url: str, broker: LocalMosquitto) -> Iterator[Callable[[str], None]]:
    """The town hall's zones reporting on the wall clock, a decision every second, each zone
    commanded once; yields how a zone reports. Nobody answers: commands await theirs."""
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, parse_site(SITE))
    config = ControlConfig(
        database_url,
        "simtown",
        load_strategy(PACKAGED_STRATEGY),
        mqtt_port=broker.port,
        period_s=1.0,
        commands=CommandPolicy(ack_timeout_s=3.0),
        registry_check_s=0.5,
    )
    service = HvacControlService(config)
    with running(service, "hvac-control"), publisher(broker.port) as client:

        def report(device_id: str) -> None:
            values = {"air_temperature": 18.0, "occupancy": 0.0, "outdoor_temperature": 8.0}
            now = datetime.now(UTC)
            client.publish_all([reading("simtown", BUILDING, device_id, now, values)])

        for zone in (OFFICES, ARCHIVES):
            report(zone)
        wait_until(
            lambda: all(commands_to(database_url, zone) for zone in (OFFICES, ARCHIVES)),
            15,
            "both zones commanded",
        )
        yield report


def test_a_zone_added_while_it_runs_is_commanded(database_url: str, broker: LocalMosquitto) -> None:
    """No restart: a zone provisioned as the API does is decided for and commanded once it
    reports, within seconds."""
    with hall_commanded(database_url, broker) as report:
        add_device(database_url, "hall-lobby", BUILDING, "simtown", building="hall",
                   zone="lobby", metadata={"building_kind": "town_hall"})  # fmt: skip
        began = time.monotonic()

        def commanded() -> bool:
            report("hall-lobby")  # it reports, as a zone does
            return bool(commands_to(database_url, "hall-lobby"))

        wait_until(commanded, 15, "the added zone commanded")
        assert time.monotonic() - began < 10
    [sent] = commands_to(database_url, "hall-lobby")
    assert (sent["source"], sent["action"]) == ("hvac-control", "set_hvac")
    assert sent["reason"].endswith(": first")


def test_a_zone_decommissioned_is_sent_nothing_more(
    database_url: str, broker: LocalMosquitto
) -> None:
    """Its command awaiting an answer is given up at once and never resent; its readings get
    it nothing at the decisions that follow, while the other zone's command is resent."""
    with hall_commanded(database_url, broker) as report:
        decommission(database_url, ARCHIVES)
        wait_until(
            lambda: commands_to(database_url, ARCHIVES)[0]["outcome"] is not None,
            30,
            "its command given up",
        )
        report(ARCHIVES)
        report(OFFICES)
        wait_until(
            lambda: commands_to(database_url, OFFICES)[0]["attempts"] >= 2,
            45,  # a resend comes at the next decision; a loaded machine delays it
            "the other zone's command resent",
        )
    [given_up] = commands_to(database_url, ARCHIVES)
    assert given_up["outcome"] == "unanswered"
    assert given_up["outcome_reason"] == "device no longer in service; not sent again"
    assert given_up["attempts"] == 1, "never resent"


def test_a_site_missing_from_the_registry_is_named_and_the_command_exits_2(
    database_url: str,
) -> None:
    """The zones are the registry's: a site never provisioned is an error, not an idle
    service."""
    result = CliRunner().invoke(
        app,
        ["energy", "control", "--site", "atlantis"],
        env={"DATABASE_URL": database_url, "SMARTCITY_DATABASE_URL": None},
    )
    assert result.exit_code == 2
    assert "site 'atlantis' is not in the registry: provision it first" in result.output
