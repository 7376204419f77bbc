"""Sign brightness as the strategy wants it: signs on a real broker get the policy's photocell
curve, apply it, and light by it; the commands table says so. The signs are the registry's:
one added while the service runs is commanded, one decommissioned no longer is."""

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
from protocol.topics import DeviceClass
from runtime.local_services import LocalMosquitto
from simulators.city import SimulatedCity
from simulators.runner import FleetRunner, RunnerSettings, SimulationClock
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


def sign_reading(device_id: str) -> tuple[str, bytes]:
    values = {"brightness_level": 40.0, "ambient_light": 100.0}
    return reading("signtown", DeviceClass.SIGNAGE, device_id, datetime.now(UTC), values)


def test_a_sign_added_while_it_runs_is_commanded_and_one_decommissioned_no_longer(
    database_url: str, broker: LocalMosquitto
) -> None:
    """No restart: a sign provisioned as the API does and reporting is commanded within
    seconds; decommissioned, its command awaiting an answer is given up, never resent, and
    its readings get it nothing more. Nobody answers here: commands wait for theirs."""
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, parse_site(SITE))
    config = SignConfig(
        database_url,
        "signtown",
        load_strategy(PACKAGED_STRATEGY),
        mqtt_port=broker.port,
        commands=CommandPolicy(ack_timeout_s=3.0),
        registry_check_s=0.5,
    )
    service = SignControlService(config)
    recorder = Recorder(broker.port, client_id="sign-registry-recorder")
    try:
        with running(service, "sign-control"), publisher(broker.port) as client:
            assert set(service.devices) == {"sign-1", "sign-2"}
            add_device(
                database_url, "sign-3", DeviceClass.SIGNAGE, "signtown", model="vms-2-line-amber"
            )
            started = time.monotonic()

            def commanded(device_id: str) -> bool:
                client.publish_all([sign_reading(device_id)])  # it reports, as a device does
                return bool(commands_to(database_url, device_id))

            wait_until(lambda: commanded("sign-3"), 15, "the added sign commanded")
            assert time.monotonic() - started < 10
            [sent] = commands_to(database_url, "sign-3")
            assert (sent["source"], sent["action"], sent["outcome"]) == (
                "sign-control",
                "set_brightness",
                None,
            )

            decommission(database_url, "sign-3")
            wait_until(
                lambda: commands_to(database_url, "sign-3")[0]["outcome"] is not None,
                10,
                "the decommissioned sign's command given up",
            )
            # It keeps talking; sign-1 is heard after it, commanded, and resent its command
            # once unanswered: by then sign-3's would have been resent too.
            client.publish_all([sign_reading("sign-3"), sign_reading("sign-1")])

            def resent_to_sign_1() -> bool:
                rows = commands_to(database_url, "sign-1")
                return bool(rows) and rows[0]["attempts"] >= 2

            wait_until(resent_to_sign_1, 15, "sign-1's command resent")
    finally:
        recorder.close()
    [given_up] = commands_to(database_url, "sign-3")
    assert given_up["outcome"] == "unanswered"
    assert given_up["outcome_reason"] == "device no longer in service; not sent again"
    assert given_up["attempts"] == 1, "never resent"
    assert len(recorder.of("sign-3", "cmd")) == 1, "one command went out, before"
    with psycopg.connect(database_url) as connection:
        alerts = connection.execute("SELECT rule_id FROM alerts WHERE subject = 'sign-3'")
        assert alerts.fetchall() == [], "giving up on a decommissioned sign is no fault of it"
