"""The edge agent against a real Mosquitto: session, spool replay, commands, local autonomy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agents.agent import Agent, AgentIdentity, AgentSettings
from edge_agents.network import NetworkLoop
from edge_agents.spool import Spool
from protocol.commands import DEFAULT_SCHEDULE, FROST_PROTECTION_C
from protocol.faults import FaultType
from protocol.payloads import (
    PROTOCOL_VERSION,
    CommandAckPayload,
    CommandPayload,
    EventPayload,
    StatePayload,
    encode,
)
from runtime.local_services import LocalMosquitto
from simulators.city import SimulatedCity
from simulators.faults import FaultEvent
from simulators.sky import Place, sun_elevation
from tests.simulation_helpers import Recorder, small_site

WINTER_NOON = datetime(2026, 1, 12, 12, tzinfo=UTC)


@dataclass
class Rig:
    """One agent on a simulated device, its broker and a recorder of what it publishes."""

    city: SimulatedCity
    agent: Agent
    network: NetworkLoop
    recorder: Recorder
    broker: LocalMosquitto

    def pump(self, seconds: float = 0.5) -> None:
        deadline = datetime.now(UTC) + timedelta(seconds=seconds)
        while datetime.now(UTC) < deadline:
            self.agent.maintain_connection()
            self.network.poll(0.02)

    def run_to(self, target: datetime, pump_every: int = 10) -> None:
        """Advance the city and the agent together, grid step by grid step."""
        grid = timedelta(seconds=self.city.step_s)
        steps = 0
        while self.city.now + grid <= target:
            self.city.advance(self.city.now + grid)
            self.agent.tick(self.city.now)
            self.network.poll(0)
            steps += 1
            if steps % pump_every == 0:
                self.agent.maintain_connection()

    def drained(self) -> bool:
        return self.agent.spool.stats().messages == 0


def make_rig(
    tmp_path: Path,
    broker: LocalMosquitto,
    device_id: str,
    *,
    start: datetime = WINTER_NOON,
    spool_max_bytes: int = 4 * 1024 * 1024,
    faults: tuple[FaultEvent, ...] = (),
    autonomy_after_s: int = 900,
    seed: int = 11,
) -> Rig:
    inventory = small_site()
    city = SimulatedCity(inventory, start=start, seed=seed, faults=faults)
    device = next(d for d in inventory.devices if d.id == device_id)
    identity = AgentIdentity(
        inventory.site.id,
        device.device_class,
        device.id,
        device.latitude or inventory.site.latitude,
        device.longitude or inventory.site.longitude,
        inventory.site.timezone,
    )
    agent = Agent(
        identity,
        AgentSettings(
            broker_host="127.0.0.1",
            broker_port=broker.port,
            reconnect_min_s=0.2,
            reconnect_max_s=0.5,
            autonomy_after_s=autonomy_after_s,
        ),
        city.driver(device_id),
        Spool(tmp_path / f"{device_id}.sqlite", spool_max_bytes, timedelta(days=7)),
    )
    network = NetworkLoop()
    network.attach(agent.client)
    recorder = Recorder(broker.port, persistent=True)
    rig = Rig(city, agent, network, recorder, broker)
    agent.tick(city.now)
    rig.pump(0.5)
    assert agent.connected, "the agent did not connect"
    return rig


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.recorder.close()
        rig.agent.spool.close()
        rig.network.close()


def test_birth_is_retained_and_telemetry_numbered_without_gaps(
    tmp_path: Path, broker: LocalMosquitto, rigs: list[Rig]
) -> None:
    rig = make_rig(tmp_path, broker, "sign-a")
    rigs.append(rig)
    rig.run_to(WINTER_NOON + timedelta(minutes=30))
    rig.pump(0.5)
    rig.recorder.wait_for(lambda: len(rig.recorder.telemetry("sign-a")) >= 29)
    births = [msgspec.json.decode(p, type=StatePayload) for p in rig.recorder.of("sign-a", "state")]
    assert births[0].status == "online"
    assert births[0].boot_id == rig.agent.boot_id
    sequence = [message.seq for message in rig.recorder.telemetry("sign-a")]
    assert sequence == list(range(len(sequence)))
    # A late subscriber still learns the device is online: the birth is retained.
    late = Recorder(broker.port, client_id="late")
    late.wait_for(lambda: bool(late.of("sign-a", "state")))
    assert late.retained("sign-a", "state")
    late.close()


def test_lost_link_publishes_the_last_will(
    tmp_path: Path, broker: LocalMosquitto, rigs: list[Rig]
) -> None:
    rig = make_rig(tmp_path, broker, "sl-main-001")
    rigs.append(rig)
    rig.agent.go_dark()
    rig.pump(0.5)
    rig.recorder.wait_for(lambda: len(rig.recorder.of("sl-main-001", "state")) >= 2)
    will = msgspec.json.decode(rig.recorder.of("sl-main-001", "state")[-1], type=StatePayload)
    assert (will.status, will.reason) == ("offline", "connection_lost")


def test_broker_down_for_an_hour_every_sample_arrives_once_and_in_order(
    tmp_path: Path, broker: LocalMosquitto, rigs: list[Rig]
) -> None:
    rig = make_rig(tmp_path, broker, "sign-a")
    rigs.append(rig)
    rig.run_to(WINTER_NOON + timedelta(minutes=10))
    rig.pump(0.5)
    broker.stop()  # mosquitto saves the recorder's session and queue
    rig.pump(0.3)
    rig.run_to(WINTER_NOON + timedelta(minutes=70))  # an hour of samples, all spooled
    assert not rig.agent.connected
    assert rig.agent.spool.stats().messages >= 59
    broker.start()
    rig.recorder.wait_for(rig.recorder.connected, timeout_s=10)
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while not rig.drained() and datetime.now(UTC) < deadline:
        rig.pump(0.2)
        rig.agent.tick(rig.city.now)
    assert rig.drained()
    rig.recorder.wait_for(
        lambda: len(rig.recorder.telemetry("sign-a")) >= rig.agent.counters.samples
    )
    received = rig.recorder.telemetry("sign-a")
    sequence = [message.seq for message in received]
    assert first_arrivals(sequence) == list(range(rig.agent.counters.samples)), "all, in order"
    repeated = len(sequence) - len(set(sequence))
    assert repeated <= rig.agent.counters.messages_replayed, "only the replay window came twice"
    stamps = [message.samples[0].ts for message in received]
    assert first_arrivals(stamps) == sorted(set(stamps))
    assert rig.agent.spool.stats().dropped_overflow == 0


def first_arrivals(received: list[Any]) -> list[Any]:
    """What arrived, in the order it first arrived: the replay window after a reconnection
    sends again what the broker acknowledged last (the platform stores it once)."""
    return list(dict.fromkeys(received))


def test_a_broker_crash_just_after_acknowledging_loses_nothing_the_agent_sent(
    tmp_path: Path, broker: LocalMosquitto, rigs: list[Rig]
) -> None:
    """Mosquitto acknowledges a message once it holds it in memory and writes it to disk every
    2 s (``autosave_interval``): a crash in between loses what it had not yet delivered. The
    agent keeps what the broker acknowledged in the last seconds and sends it again after it
    reconnects; the consumer (ingest), away during the crash, still gets every sample."""
    rig = make_rig(tmp_path, broker, "sign-a")
    rigs.append(rig)
    rig.run_to(WINTER_NOON + timedelta(minutes=5))
    rig.pump(0.5)
    before_crash = rig.recorder
    before_crash.close()  # the consumer away: the broker queues for its session
    wait_for_a_save(broker.data_dir / "mosquitto.db")
    rig.run_to(WINTER_NOON + timedelta(minutes=15))
    deadline = time.monotonic() + 1.0  # well inside the next autosave interval
    while not rig.drained() and time.monotonic() < deadline:
        rig.pump(0.02)
    assert rig.drained(), "the broker acknowledged every sample before it crashed"
    broker.kill()
    broker.start()
    rig.recorder = Recorder(broker.port, persistent=True)  # its session, as last saved
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and {
        message.seq for message in rig.recorder.telemetry("sign-a")
    } | {message.seq for message in before_crash.telemetry("sign-a")} != set(
        range(rig.agent.counters.samples)
    ):
        rig.pump(0.2)
    received = before_crash.telemetry("sign-a") + rig.recorder.telemetry("sign-a")
    assert {message.seq for message in received} == set(range(rig.agent.counters.samples)), (
        "every sample arrived, some twice (the platform stores each once)"
    )
    assert rig.agent.counters.messages_replayed > 0, "the replay window went out again"


def wait_for_a_save(persistence_file: Path, timeout_s: float = 10) -> None:
    """Return just after the broker has written its persistence file."""
    saved = persistence_file.stat().st_mtime_ns if persistence_file.exists() else None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if persistence_file.exists() and persistence_file.stat().st_mtime_ns != saved:
            return
        time.sleep(0.01)
    raise AssertionError(f"the broker did not write {persistence_file} in {timeout_s:.0f} s")


def test_a_full_spool_drops_the_oldest_counts_and_reports_it(
    tmp_path: Path, broker: LocalMosquitto, rigs: list[Rig]
) -> None:
    rig = make_rig(tmp_path, broker, "sign-a", spool_max_bytes=6_000)
    rigs.append(rig)
    rig.recorder.wait_for(lambda: len(rig.recorder.telemetry("sign-a")) == 1)
    broker.stop()
    rig.pump(0.3)
    rig.run_to(WINTER_NOON + timedelta(hours=1))
    stats = rig.agent.spool.stats()
    assert stats.bytes <= 6_000, "the bound holds"
    assert stats.dropped_overflow > 0
    kept = stats.messages
    broker.start()
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while not rig.drained() and datetime.now(UTC) < deadline:
        rig.pump(0.2)
        rig.agent.tick(rig.city.now)
    rig.recorder.wait_for(lambda: bool(rig.recorder.of("sign-a", "event")))
    event = msgspec.json.decode(rig.recorder.of("sign-a", "event")[0], type=EventPayload)
    assert event.kind == "spool_overflow"
    assert event.data["dropped_overflow"] == stats.dropped_overflow
    sequence = first_arrivals([message.seq for message in rig.recorder.telemetry("sign-a")])
    total = rig.agent.counters.samples
    first_kept = sequence[1]
    assert sequence == [0, *range(first_kept, total)], "the newest samples are the ones kept"
    assert total - first_kept <= kept
    dropped = rig.agent.spool.stats().dropped_overflow  # making room for the report, too
    assert dropped == first_kept - 1, "every sample is delivered or counted as dropped"


class CommandSender:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="platform")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, rig: Rig, device_id: str, command: CommandPayload | bytes) -> None:
        payload = command if isinstance(command, bytes) else encode(command)
        identity = rig.agent.identity
        self.client.publish(
            f"sc/{identity.site}/{identity.device_class}/{device_id}/cmd", payload, qos=1
        ).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _command(command_id: str, now: datetime, action: str, **params: object) -> CommandPayload:
    return CommandPayload(
        v=PROTOCOL_VERSION,
        id=command_id,
        issued_at=now,
        expires_at=now + timedelta(minutes=5),
        action=action,
        params=dict(params),
    )


def _acks(rig: Rig, device_id: str) -> dict[str, CommandAckPayload]:
    acks = [
        msgspec.json.decode(p, type=CommandAckPayload)
        for p in rig.recorder.of(device_id, "cmd_ack")
    ]
    return {ack.id: ack for ack in acks}


def test_commands_are_applied_acknowledged_or_refused_with_a_reason(
    tmp_path: Path, broker: LocalMosquitto, rigs: list[Rig]
) -> None:
    rig = make_rig(tmp_path, broker, "sl-main-001")
    rigs.append(rig)
    sender = CommandSender(broker.port)
    now = rig.city.now
    sender.send(rig, "sl-main-001", _command("dim-1", now, "set_dimming", level=40, hold_s=7200))
    sender.send(rig, "sl-main-001", _command("dim-1", now, "set_dimming", level=40, hold_s=7200))
    sender.send(rig, "sl-main-001", _command("bad-action", now, "open_valve"))
    sender.send(rig, "sl-main-001", _command("bad-level", now, "set_dimming", level=140))
    expired = CommandPayload(
        v=PROTOCOL_VERSION,
        id="too-late",
        issued_at=now - timedelta(hours=2),
        expires_at=now - timedelta(hours=1),
        action="set_dimming",
        params={"level": 10},
    )
    sender.send(rig, "sl-main-001", expired)
    sender.send(rig, "sl-main-001", b"{not json")
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while len(_acks(rig, "sl-main-001")) < 4 and datetime.now(UTC) < deadline:
        rig.pump(0.1)
    acks = _acks(rig, "sl-main-001")
    assert acks["dim-1"].outcome == "applied"
    assert acks["bad-action"].outcome == "rejected"
    assert "unknown action 'open_valve'" in acks["bad-action"].reason
    assert acks["bad-level"].outcome == "rejected"
    assert "level" in acks["bad-level"].reason
    assert acks["too-late"].outcome == "expired"
    assert rig.agent.counters.commands_applied == 1, "a redelivered command is applied once"
    rig.recorder.wait_for(lambda: bool(rig.recorder.of("sl-main-001", "event")))
    refused = msgspec.json.decode(rig.recorder.of("sl-main-001", "event")[-1], type=EventPayload)
    assert refused.kind == "command_refused"
    # Applied means applied: at noon the lamp is on at the commanded level.
    rig.run_to(now + timedelta(minutes=10))
    rig.pump(0.3)
    rig.recorder.wait_for(lambda: bool(rig.recorder.telemetry("sl-main-001")))
    sample = rig.recorder.telemetry("sl-main-001")[-1].samples[-1].values
    assert sample["lamp_on"] is True
    assert sample["dimming_level"] == 40
    assert 20 < sample["lamp_power"] < 28  # 40 % of a 60 W lamp
    sender.close()


def _sample_values(rig: Rig) -> list[tuple[datetime, dict[str, object]]]:
    return [
        (s.ts, s.values)
        for m in rig.recorder.telemetry(rig.agent.identity.device_id)
        for s in m.samples
    ]


def test_without_the_platform_lamps_switch_at_dusk_and_dawn(
    tmp_path: Path, broker: LocalMosquitto, rigs: list[Rig]
) -> None:
    rig = make_rig(tmp_path, broker, "sl-park-001")
    rigs.append(rig)
    broker.stop()
    rig.pump(0.3)
    rig.run_to(WINTER_NOON + timedelta(hours=22))  # through the night to the next morning
    broker.start()
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while not rig.drained() and datetime.now(UTC) < deadline:
        rig.pump(0.2)
        rig.agent.tick(rig.city.now)
    rig.recorder.wait_for(lambda: len(_sample_values(rig)) >= rig.agent.counters.samples)
    lit = [(ts, values["lamp_on"]) for ts, values in _sample_values(rig)]
    switched_on = next(ts for ts, on in lit if on)
    switched_off = next(ts for ts, on in lit if not on and ts > switched_on)
    # The reference: pvlib's sun position, with the schedule's threshold (-1 deg).
    times = pd.date_range(WINTER_NOON, periods=22 * 60, freq="min")
    dark = (
        sun_elevation(times, Place(33.8296, -4.8378, 850.0)) < DEFAULT_SCHEDULE.dark_below_elevation
    )
    dusk = times[int(np.argmax(dark))].to_pydatetime()
    dawn = times[len(dark) - int(np.argmax(dark[::-1]))].to_pydatetime()
    sampling = timedelta(minutes=5)  # a light reports every 5 minutes
    assert dusk <= switched_on <= dusk + sampling + timedelta(minutes=2)
    assert dawn <= switched_off <= dawn + sampling + timedelta(minutes=2)
    assert all(on for ts, on in lit if switched_on <= ts < switched_off)


def test_without_the_platform_a_zone_keeps_above_frost_protection(
    tmp_path: Path, broker: LocalMosquitto, rigs: list[Rig]
) -> None:
    """A January night, a window left open, heating commanded off, then the platform gone."""
    evening = datetime(2026, 1, 12, 18, tzinfo=UTC)
    window = FaultEvent(
        evening, "hall-archives", FaultType.WINDOW_OPEN, evening + timedelta(days=1)
    )
    rig = make_rig(
        tmp_path,
        broker,
        "hall-archives",
        start=evening,
        faults=(window,),
        autonomy_after_s=7 * 86_400,  # the "off" keeps holding: only frost protection acts
        seed=12,  # a clear night near 0 C
    )
    rigs.append(rig)
    sender = CommandSender(broker.port)
    sender.send(
        rig, "hall-archives", _command("off", evening, "set_hvac", mode="off", hold_s=7 * 86_400)
    )
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while "off" not in _acks(rig, "hall-archives") and datetime.now(UTC) < deadline:
        rig.pump(0.1)
    assert _acks(rig, "hall-archives")["off"].outcome == "applied"
    sender.close()
    broker.kill()
    rig.pump(0.3)
    index = rig.city.zones.ids.index("hall-archives")
    temperatures: list[float] = []
    heating: list[float] = []
    outdoor: list[float] = []
    grid = timedelta(seconds=rig.city.step_s)
    while rig.city.now < evening + timedelta(hours=14):
        rig.run_to(rig.city.now + grid)
        temperatures.append(float(rig.city.zones.temperature[index]))
        heating.append(rig.city.zones.values()["heating_active"][index])
        outdoor.append(rig.city.current.air_temperature)
    assert min(outdoor) < FROST_PROTECTION_C - 5, "the night is cold enough to need protection"
    assert max(heating) == 1.0, "frost protection heated"
    assert min(temperatures) >= FROST_PROTECTION_C - 1.0
