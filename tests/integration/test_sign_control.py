"""Sign brightness as the strategy wants it: signs on a real broker get the policy's photocell
curve, apply it, and light by it; the commands table says so."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from control.commanding import CommandPolicy
from control.sign_service import SignConfig, SignControlService
from control.strategy import PACKAGED_STRATEGY, load_strategy, parse_strategy
from protocol.decoding import AcceptanceWindow
from protocol.sites import parse_site
from runtime.local_services import LocalMosquitto
from simulators.city import SimulatedCity
from simulators.runner import FleetRunner, RunnerSettings, SimulationClock
from storage.registry import upsert_site
from tests.simulation_helpers import Recorder

pytestmark = pytest.mark.integration

SITE = """
site: {id: signtown, name: Signtown, timezone: Africa/Casablanca,
       latitude: 33.83, longitude: -4.84, altitude: 850}
models:
  vms-2-line-amber: {class: signage, pixels: 2304, max_power_w: 840}
devices:
  - {id: sign-1, class: signage, model: vms-2-line-amber, latitude: 33.827, longitude: -4.823}
  - {id: sign-2, class: signage, model: vms-2-line-amber, latitude: 33.829, longitude: -4.825}
"""
START = datetime(2025, 12, 15, 17, 0, tzinfo=UTC)  # after dusk: the photocell's dark end
UNTIL = START + timedelta(hours=2)
SPEED = 1_800.0


def test_signs_get_the_policys_photocell_curve_and_light_by_it(
    database_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    inventory = parse_site(SITE)
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, inventory)
    packaged = load_strategy(PACKAGED_STRATEGY)
    dim_signs = parse_strategy(
        packaged.text.replace(
            "lighting: {}", "lighting: {sign_minimum_level: 5, sign_maximum_level: 60}"
        )
    )
    service = SignControlService(
        SignConfig(
            database_url,
            inventory.site.id,
            dim_signs,
            mqtt_port=broker.port,
            event_time=True,
            commands=CommandPolicy(ack_timeout_s=1.0),
            window=AcceptanceWindow(max_age=timedelta(days=3_650), max_ahead=timedelta(days=1)),
        )
    )
    recorder = Recorder(broker.port, client_id="sign-test-recorder")
    service_thread = threading.Thread(target=service.run, name="sign-control")
    service_thread.start()
    city = SimulatedCity(inventory, start=START, seed=3)
    runner = FleetRunner(city, RunnerSettings("127.0.0.1", broker.port, tmp_path / "spools"))
    try:
        assert service.ready.wait(20)
        runner.pump(0.3)
        runner.run(SimulationClock(START, SPEED), lambda: False, until=UNTIL)
        runner.pump(1.0)
        time.sleep(0.5)
    finally:
        runner.stop(drain_s=0.5)
        service.stop()
        service_thread.join(30)
        recorder.close()
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT device_id, action, params, source, outcome FROM commands ORDER BY device_id"
        ).fetchall()
    assert [(device, action, source, outcome) for device, action, _, source, outcome in rows] == [
        ("sign-1", "set_brightness", "sign-control", "applied"),
        ("sign-2", "set_brightness", "sign-control", "applied"),
    ], "one command each: kept until replaced, never renewed"
    assert all(params == {"lowest": 5.0, "highest": 60.0} for _, _, params, _, _ in rows)
    for sign in ("sign-1", "sign-2"):
        levels = [
            float(sample.values["brightness_level"])
            for message in recorder.telemetry(sign)
            for sample in message.samples
            if "brightness_level" in sample.values
        ]
        assert 15.0 in levels, "the agent's own dark end before the command"
        assert levels.index(5.0) > levels.index(15.0), "the policy's dark end after it"
        assert levels[-1] == pytest.approx(5.0)
