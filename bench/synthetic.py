"""Synthetic telemetry for benchmarks: plausible values inside each metric's range.

Not physics (the simulated city is in simulators/): smooth random values that every decoder
check accepts, cheap enough to generate millions of messages for the ingest benchmark.
"""

from __future__ import annotations

import math
import random
from datetime import datetime

from protocol.catalogue import CATALOGUE, Metric, ValueKind
from protocol.sites import Device


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
