"""The metric catalogue: what each device class reports, in which unit, within which range.

A value outside its metric's valid range is physically impossible for that device (a broken
sensor, a wiring fault or a firmware bug), not merely unusual: the platform refuses to store it.
Ranges are therefore wide; what is *abnormal* is for the rules engine to judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from protocol.topics import DeviceClass


class ValueKind(StrEnum):
    MEASURE = "measure"
    """A real number."""
    COUNT = "count"
    """A non-negative whole number (pixels, people, a message id)."""
    FLAG = "flag"
    """A boolean, sent as JSON ``true``/``false``, stored as 1/0."""
    BITS = "bits"
    """A status word; each bit has a documented meaning, stored as its integer value."""


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    minimum: float
    maximum: float
    kind: ValueKind = ValueKind.MEASURE
    description: str = ""
    bits: tuple[str, ...] = ()
    """For :attr:`ValueKind.BITS`: the meaning of bit 0, bit 1, ..."""

    def __post_init__(self) -> None:
        if self.minimum > self.maximum:
            raise ValueError(f"metric {self.name}: minimum above maximum")
        if self.kind is ValueKind.FLAG and (self.minimum, self.maximum) != (0, 1):
            raise ValueError(f"metric {self.name}: a flag ranges over 0..1")
        if self.kind is ValueKind.BITS and self.maximum != 2 ** len(self.bits) - 1:
            raise ValueError(f"metric {self.name}: maximum must cover exactly its named bits")


@dataclass(frozen=True, slots=True)
class DeviceClassSpec:
    device_class: DeviceClass
    expected_interval_s: int
    """How often a healthy device of this class reports telemetry [s]."""
    metrics: MappingProxyType[str, Metric] = field(repr=False)
    description: str = ""

    @property
    def longest_counted_gap_s(self) -> float:
        """The most time one reading stands for when energy is summed over readings [s]: two
        intervals (a missed reading is bridged, a longer silence is not counted)."""
        return 2.0 * self.expected_interval_s


def _flag(name: str, description: str) -> Metric:
    return Metric(name, "", 0, 1, ValueKind.FLAG, description)


def _bits(name: str, description: str, bits: tuple[str, ...]) -> Metric:
    return Metric(name, "", 0, 2 ** len(bits) - 1, ValueKind.BITS, description, bits)


CHARGE_CONTROLLER_STATUS_BITS: Final = (
    "battery_over_voltage",
    "battery_under_voltage",
    "battery_over_temperature",
    "battery_under_temperature",
    "pv_over_voltage",
    "pv_reverse_polarity",
    "load_short_circuit",
    "load_over_current",
    "low_voltage_disconnect",
    "charge_mosfet_fault",
    "controller_over_temperature",
    "rtc_fault",
)
"""Bits of ``controller_status``, after the EPEVER Tracer battery/charging/load status words."""

SIGN_FAULT_BITS: Final = (
    "communications",
    "power",
    "pixel",
    "photocell",
    "temperature",
    "controller",
)
"""Bits of ``fault_bits``, in the spirit of NTCIP 1203's ``shortErrorStatus``."""

_STREETLIGHT: Final = (
    Metric("pv_voltage", "V", 0, 60, description="solar panel voltage"),
    Metric("pv_current", "A", 0, 20, description="solar panel current"),
    Metric("pv_power", "W", 0, 600, description="solar panel power"),
    Metric("battery_voltage", "V", 0, 32, description="battery terminal voltage (12 or 24 V)"),
    Metric("battery_soc", "%", 0, 100, description="battery state of charge"),
    Metric("battery_temperature", "C", -30, 80, description="battery temperature"),
    Metric("charge_current", "A", 0, 40, description="current into the battery"),
    Metric("lamp_power", "W", 0, 200, description="LED lamp power"),
    _flag("lamp_on", "lamp switched on"),
    Metric("dimming_level", "%", 0, 100, description="commanded lamp output, 100 = full"),
    Metric("ambient_light", "lx", 0, 150_000, description="illuminance at the luminaire"),
    Metric("tilt", "deg", 0, 90, description="pole tilt from vertical"),
    _bits("controller_status", "charge controller status word", CHARGE_CONTROLLER_STATUS_BITS),
)

_SIGNAGE: Final = (
    Metric("power", "W", 0, 5_000, description="panel power draw"),
    Metric("supply_voltage", "V", 0, 300, description="mains supply voltage"),
    Metric("enclosure_temperature", "C", -30, 100, description="temperature inside the cabinet"),
    Metric("ambient_light", "lx", 0, 150_000, description="photocell illuminance"),
    Metric("brightness_level", "%", 0, 100, description="LED brightness, 100 = full"),
    Metric("message_id", "", 0, 65_535, ValueKind.COUNT, "id of the message on display"),
    Metric("failed_pixels", "", 0, 1_000_000, ValueKind.COUNT, "pixels reported failed"),
    _flag("door_open", "cabinet door open"),
    _bits("fault_bits", "fault summary", SIGN_FAULT_BITS),
)

_BUILDING: Final = (
    Metric("air_temperature", "C", -30, 60, description="zone air temperature"),
    Metric("humidity", "%RH", 0, 100, description="zone relative humidity"),
    Metric("co2", "ppm", 0, 10_000, description="zone CO2 concentration"),
    Metric("occupancy", "", 0, 5_000, ValueKind.COUNT, "people counted in the zone"),
    _flag("window_open", "a window contact of the zone is open"),
    _flag("heating_active", "the zone is being heated"),
    _flag("cooling_active", "the zone is being cooled"),
    Metric("valve_position", "%", 0, 100, description="heating valve opening"),
    Metric("supply_water_temperature", "C", 0, 100, description="heating supply water"),
    Metric("energy", "kWh", 0, 1e9, description="energy meter reading (cumulative)"),
    Metric("power", "kW", 0, 10_000, description="energy meter instantaneous power"),
    Metric("outdoor_temperature", "C", -30, 60, description="outdoor air, the building's sensor"),
    _flag("vents_open", "the zone's motorised windows are open (night ventilation)"),
    _flag("blinds_down", "the zone's external blinds are lowered"),
)


def _spec(
    device_class: DeviceClass, interval_s: int, metrics: tuple[Metric, ...], description: str
) -> DeviceClassSpec:
    by_name = {metric.name: metric for metric in metrics}
    if len(by_name) != len(metrics):
        raise ValueError(f"duplicate metric names in {device_class}")
    return DeviceClassSpec(device_class, interval_s, MappingProxyType(by_name), description)


CATALOGUE: Final[MappingProxyType[DeviceClass, DeviceClassSpec]] = MappingProxyType(
    {
        DeviceClass.STREETLIGHT: _spec(
            DeviceClass.STREETLIGHT, 300, _STREETLIGHT, "solar streetlight with charge controller"
        ),
        DeviceClass.SIGNAGE: _spec(
            DeviceClass.SIGNAGE, 60, _SIGNAGE, "electronic signage panel on the road network"
        ),
        DeviceClass.BUILDING: _spec(
            DeviceClass.BUILDING, 60, _BUILDING, "sensors and HVAC of one zone of a building"
        ),
    }
)
