"""A small built-in publisher: plausible telemetry from every device of a site.

It stands in for the simulators until they exist: values are smooth random walks inside each
metric's range, not physics. Each device's messages follow the real protocol (birth, last
will, sequence numbers, several samples a message).
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol.catalogue import CATALOGUE, Metric, ValueKind
from protocol.payloads import (
    PROTOCOL_VERSION,
    DeviceStatus,
    Sample,
    StatePayload,
    TelemetryPayload,
    encode,
)
from protocol.sites import Device, SiteInventory
from protocol.topics import Channel, DeviceTopic

log = logging.getLogger("smartcity.demo")


def demo_values(device: Device, now: datetime, rng: random.Random) -> dict[str, float | bool]:
    """One plausible sample of every metric of ``device``'s class at ``now`` (pure)."""
    hour = now.hour + now.minute / 60
    daylight = max(0.0, math.sin(math.pi * (hour - 7) / 11)) if 7 <= hour <= 18 else 0.0
    values: dict[str, float | bool] = {}
    for metric in CATALOGUE[device.device_class].metrics.values():
        values[metric.name] = _value(metric, daylight, rng)
    return values


def _value(metric: Metric, daylight: float, rng: random.Random) -> float | bool:
    if metric.kind is ValueKind.FLAG:
        return rng.random() < (0.9 if metric.name == "lamp_on" and daylight == 0 else 0.05)
    if metric.kind is ValueKind.BITS:
        return 0
    span = metric.maximum - metric.minimum
    typical = {
        "pv_power": 180 * daylight,
        "pv_voltage": 18 + 3 * daylight,
        "pv_current": 10 * daylight,
        "ambient_light": 60_000 * daylight,
        "battery_soc": 70.0,
        "battery_voltage": 13.1,
        "battery_temperature": 18.0,
        "air_temperature": 20.0,
        "humidity": 45.0,
        "co2": 600.0,
        "supply_voltage": 230.0,
        "enclosure_temperature": 25.0,
        "supply_water_temperature": 55.0,
        "energy": 12_000.0,
        "power": 40.0 if metric.unit == "kW" else 300.0,
    }.get(metric.name, metric.minimum + 0.1 * span)
    value = typical + rng.gauss(0, 0.01 * span)
    value = min(metric.maximum, max(metric.minimum, value))
    return float(round(value)) if metric.kind is ValueKind.COUNT else round(value, 3)


class DemoPublisher:
    """Publishes for every device of a site, one message per device per ``interval_s``."""

    def __init__(
        self,
        inventory: SiteInventory,
        host: str,
        port: int,
        *,
        interval_s: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        seed: int = 1,
    ) -> None:
        self.inventory = inventory
        self.interval_s = interval_s
        self.published = 0
        self._clock = clock
        self._rng = random.Random(seed)  # noqa: S311 - demo data
        self._stop = threading.Event()
        self._sequence: dict[str, int] = {}
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="smartcity-demo-publisher",
            protocol=mqtt.MQTTv5,
        )
        self._client.max_queued_messages_set(20_000)
        self._host, self._port = host, port

    def _topic(self, device: Device, channel: Channel) -> str:
        return str(DeviceTopic(self.inventory.site.id, device.device_class, device.id, channel))

    def run(self) -> None:
        self._client.connect(self._host, self._port)
        self._client.loop_start()
        started = self._clock()
        for device in self.inventory.devices:
            birth = StatePayload(PROTOCOL_VERSION, DeviceStatus.ONLINE, started, firmware="demo")
            self._client.publish(self._topic(device, Channel.STATE), encode(birth), 1, retain=True)
        devices = self.inventory.devices
        pause = self.interval_s / max(1, len(devices))
        try:
            while not self._stop.is_set():
                for device in devices:
                    if self._stop.wait(pause):
                        break
                    self._publish_telemetry(device)
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def _publish_telemetry(self, device: Device) -> None:
        now = self._clock()
        sequence = self._sequence.get(device.id, 0) + 1
        self._sequence[device.id] = sequence
        payload = TelemetryPayload(
            PROTOCOL_VERSION, sequence, [Sample(now, demo_values(device, now, self._rng))]
        )
        self._client.publish(self._topic(device, Channel.TELEMETRY), encode(payload), qos=1)
        self.published += 1

    def stop(self) -> None:
        self._stop.set()
