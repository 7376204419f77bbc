"""A poison message: one that makes a service's handler raise an error nobody expected (a bug
met by that message). Each service records it, acknowledges it so the broker never delivers
it again, and goes on with the next message; it is not redelivered after a restart.

The error is injected by wrapping the service's own handler: the message, the broker, the
database and the rest of the service are real.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from control.service import CommandingService
from control.sign_service import SignConfig, SignControlService
from control.strategy import PACKAGED_STRATEGY, load_strategy
from ingest.config import IngestConfig
from ingest.pipeline import classify
from ingest.store_process import Storer
from protocol.decoding import AcceptanceWindow
from protocol.sites import SiteInventory
from protocol.topics import DeviceClass
from rules import PACKAGED_RULES
from rules.service import RulesConfig, RulesService
from runtime.local_services import LocalMosquitto
from runtime.mqtt_session import Received
from storage.set_aside import set_aside_messages
from tests.integration.helpers import (
    provision_test_site,
    publisher,
    running,
    scalar,
    wait_until,
)

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = AcceptanceWindow(max_age=timedelta(days=3_650), max_ahead=timedelta(days=1))


def reading(device_class: DeviceClass, seq: int, values: dict[str, float | bool]) -> bytes:
    sample = {"ts": (NOW - timedelta(minutes=10 - seq)).isoformat(), "values": values}
    return json.dumps({"v": 1, "seq": seq, "samples": [sample]}).encode()


def light_reading(seq: int) -> bytes:
    values: dict[str, float | bool] = {"lamp_on": False, "lamp_power": 0.0, "battery_soc": 80.0}
    return reading(DeviceClass.STREETLIGHT, seq, values)


def sign_reading(seq: int) -> bytes:
    return reading(DeviceClass.SIGNAGE, seq, {"brightness_level": 40.0, "ambient_light": 100.0})


def lights(inventory: SiteInventory) -> tuple[str, str]:
    first, second, *_ = (device.id for device in inventory.by_class(DeviceClass.STREETLIGHT))
    return first, second


def failing_for(device_id: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler`` (a method taking a message), raising for ``device_id``'s messages."""

    def handle(self: object, message: Received) -> Any:
        if f"/{device_id}/" in message.topic:
            raise RuntimeError(f"a bug met by {device_id}'s message")
        return handler(self, message)

    return handle


def test_the_rules_engine_sets_a_poison_message_aside_and_goes_on(
    database_url: str, broker: LocalMosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned, healthy = lights(provision_test_site(database_url))
    monkeypatch.setattr(RulesService, "_evaluate", failing_for(poisoned, RulesService._evaluate))
    config = RulesConfig(
        database_url, PACKAGED_RULES, mqtt_port=broker.port, tick_s=0.5, window=WINDOW
    )
    topic = "sc/sefrou/streetlight/{}/telemetry"
    engine = RulesService(config)
    with running(engine, "rules"), publisher(broker.port) as client:
        client.publish_all([(topic.format(poisoned), light_reading(1))])
        client.publish_all([(topic.format(healthy), light_reading(1))])
        wait_until(lambda: engine.messages_applied >= 1, what="the next message applied")
        wait_until(lambda: engine.messages_set_aside == 1, what="the poison set aside")
    with psycopg.connect(database_url) as connection:
        [aside] = set_aside_messages(connection, "rules")
    assert aside.topic == topic.format(poisoned)
    assert aside.payload == light_reading(1)
    assert aside.error == f"RuntimeError: a bug met by {poisoned}'s message"

    # Acknowledged: the engine's next run (same session) is not given it again. A redelivery
    # comes before the new message, so it would be set aside before that one is applied.
    again = RulesService(config)
    with running(again, "rules again"), publisher(broker.port) as client:
        client.publish_all([(topic.format(healthy), light_reading(2))])
        wait_until(lambda: again.messages_applied >= 1, what="the new message applied")
    assert again.messages_set_aside == 0
    assert scalar(database_url, "SELECT count(*) FROM set_aside_messages") == 1


def test_a_control_service_sets_a_poison_message_aside_and_goes_on(
    database_url: str, broker: LocalMosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = provision_test_site(database_url)
    [sign] = inventory.by_class(DeviceClass.SIGNAGE)
    handled: list[str] = []
    take = CommandingService._take

    def take_and_note(self: CommandingService[Any, Any], message: Received) -> None:
        take(self, message)
        handled.append(message.topic)

    monkeypatch.setattr(CommandingService, "_take", failing_for(sign.id, take_and_note))
    config = SignConfig(
        database_url,
        inventory.site.id,
        load_strategy(PACKAGED_STRATEGY),
        mqtt_port=broker.port,
        client_id="poison-signs",
        window=WINDOW,
    )
    ack_topic = f"sc/sefrou/signage/{sign.id}/cmd_ack"
    telemetry = f"sc/sefrou/signage/{sign.id}/telemetry"
    service = SignControlService(config)
    with running(service, "signs"), publisher(broker.port) as client:
        # The sign's reading fails; a command acknowledgement of another device goes on.
        client.publish_all([(telemetry, sign_reading(1))])
        client.publish_all([(ack_topic.replace(sign.id, "sign-other"), b"{}")])
        wait_until(lambda: len(handled) >= 1, what="the next message handled")
        wait_until(lambda: service.messages_set_aside == 1, what="the poison set aside")
    with psycopg.connect(database_url) as connection:
        [aside] = set_aside_messages(connection, SignControlService.kind.source)
    assert (aside.topic, aside.payload) == (telemetry, sign_reading(1))
    assert aside.error.startswith("RuntimeError: a bug met by")

    handled.clear()
    again = SignControlService(config)
    with running(again, "signs again"), publisher(broker.port) as client:
        client.publish_all([(ack_topic.replace(sign.id, "sign-other"), b"{}")])
        wait_until(lambda: len(handled) >= 1, what="the new message handled")
    assert again.messages_set_aside == 0
    assert scalar(database_url, "SELECT count(*) FROM set_aside_messages") == 1


def test_ingest_dead_letters_a_message_that_makes_storing_fail_and_stores_the_rest(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    poisoned, healthy = lights(provision_test_site(database_url))

    def classify_failing(messages: Any, *args: Any) -> Any:
        if any(f"/{poisoned}/" in message.topic for message in messages):
            raise RuntimeError(f"a bug met by {poisoned}'s message")
        return classify(messages, *args)  # the real one

    monkeypatch.setattr("ingest.store_process.classify", classify_failing)
    config = IngestConfig(database_url, window=WINDOW)
    here, there = multiprocessing.Pipe()
    storer = Storer(config, there, multiprocessing.Event())
    topic = "sc/sefrou/streetlight/{}/telemetry"
    batch = [
        (topic.format(poisoned), light_reading(1), NOW),
        (topic.format(healthy), light_reading(1), NOW),
        (topic.format(healthy), light_reading(2), NOW),
    ]
    try:
        stored = storer.store(7, batch)
    finally:
        storer.close()
        here.close()
    assert (stored.telemetry_rows, stored.dead_letters) == (2, 1)
    assert dict(stored.rejections) == {"internal_error": 1}
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT topic, reason, detail FROM dead_letters").fetchone()
    assert row == (
        topic.format(poisoned),
        "internal_error",
        f"RuntimeError: a bug met by {poisoned}'s message",
    )
