"""A small simulated site and a subscriber that records what its devices publish."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol.payloads import TelemetryPayload
from protocol.sites import SiteInventory, parse_site
from protocol.topics import DeviceTopic

SMALL_SITE = """
site: {id: simtown, name: Simtown, timezone: Africa/Casablanca,
       latitude: 33.83, longitude: -4.84, altitude: 850}
models:
  sl-60w: {class: streetlight, panel_wp: 200, battery_ah: 101.5625, lamp_w: 60}
  sl-30w: {class: streetlight, panel_wp: 120, battery_ah: 62.5, lamp_w: 30}
  vms-2-line-amber: {class: signage, pixels: 2304, max_power_w: 840}
streetlight_runs:
  - {id_prefix: sl-main, street_group: main, name: Main road, count: 6, model: sl-60w,
     start: [33.8268, -4.8236], end: [33.8391, -4.8049]}
  - {id_prefix: sl-park, street_group: park, name: Park, count: 4, model: sl-30w,
     place_kind: garden, start: [33.8296, -4.8378], end: [33.8305, -4.8360]}
devices:
  - {id: sign-a, class: signage, model: vms-2-line-amber, latitude: 33.827, longitude: -4.823}
  - {id: sign-b, class: signage, model: vms-2-line-amber, latitude: 33.842, longitude: -4.833}
buildings:
  - {id: hall, name: Town hall, kind: town_hall, latitude: 33.83, longitude: -4.84,
     zones: [{id: offices, area_m2: 200}, {id: archives, area_m2: 80}]}
"""


def small_site() -> SiteInventory:
    return parse_site(SMALL_SITE, source="<small site>")


@dataclass
class Recorder:
    """Subscribes to every device topic and keeps each message, in arrival order."""

    port: int
    client_id: str = "recorder"
    persistent: bool = False
    """Keep the session (and its queue) in the broker across disconnections and restarts."""
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=not self.persistent,
        )
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.reconnect_delay_set(1, 1)
        self._client.connect("127.0.0.1", self.port)
        self._client.subscribe("sc/#", qos=1)
        self._client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("the recorder could not subscribe")

    def connected(self) -> bool:
        return self._client.is_connected()

    def retained(self, device_id: str, channel: str) -> bool:
        with self._lock:
            return any(
                retain
                for topic, _, retain in self.messages
                if DeviceTopic.parse(topic).device_id == device_id
                and DeviceTopic.parse(topic).channel == channel
            )

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def of(self, device_id: str, channel: str) -> list[bytes]:
        with self._lock:
            return [
                payload
                for topic, payload, _ in self.messages
                if DeviceTopic.parse(topic).device_id == device_id
                and DeviceTopic.parse(topic).channel == channel
            ]

    def telemetry(self, device_id: str) -> list[TelemetryPayload]:
        return [
            msgspec.json.decode(p, type=TelemetryPayload) for p in self.of(device_id, "telemetry")
        ]

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError("timed out waiting for messages")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
