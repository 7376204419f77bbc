import pytest

from protocol.catalogue import (
    CATALOGUE,
    CHARGE_CONTROLLER_STATUS_BITS,
    SIGN_FAULT_BITS,
    Metric,
    ValueKind,
)
from protocol.topics import DeviceClass

REQUIRED = {
    DeviceClass.STREETLIGHT: {
        "pv_voltage",
        "pv_current",
        "pv_power",
        "battery_voltage",
        "battery_soc",
        "battery_temperature",
        "charge_current",
        "lamp_power",
        "lamp_on",
        "dimming_level",
        "ambient_light",
        "tilt",
        "controller_status",
    },
    DeviceClass.SIGNAGE: {
        "power",
        "supply_voltage",
        "enclosure_temperature",
        "ambient_light",
        "brightness_level",
        "message_id",
        "failed_pixels",
        "door_open",
        "fault_bits",
    },
    DeviceClass.BUILDING: {
        "air_temperature",
        "humidity",
        "co2",
        "occupancy",
        "window_open",
        "heating_active",
        "cooling_active",
        "valve_position",
        "supply_water_temperature",
        "energy",
        "power",
        "outdoor_temperature",
        "vents_open",
        "blinds_down",
    },
}


@pytest.mark.parametrize("device_class", list(DeviceClass))
def test_every_class_has_the_metrics_the_contract_requires(device_class: DeviceClass) -> None:
    spec = CATALOGUE[device_class]
    assert set(spec.metrics) == REQUIRED[device_class]
    assert spec.expected_interval_s > 0
    for metric in spec.metrics.values():
        assert metric.minimum < metric.maximum


def test_sign_fault_bits_cover_the_ntcip_summary() -> None:
    assert SIGN_FAULT_BITS == (
        "communications",
        "power",
        "pixel",
        "photocell",
        "temperature",
        "controller",
    )
    assert CATALOGUE[DeviceClass.SIGNAGE].metrics["fault_bits"].maximum == 63
    status = CATALOGUE[DeviceClass.STREETLIGHT].metrics["controller_status"]
    assert status.maximum == 2 ** len(CHARGE_CONTROLLER_STATUS_BITS) - 1


def test_inconsistent_metric_definitions_are_refused() -> None:
    with pytest.raises(ValueError, match="minimum above maximum"):
        Metric("x", "V", 10, 1)
    with pytest.raises(ValueError, match=r"flag ranges over 0\.\.1"):
        Metric("x", "", 0, 2, ValueKind.FLAG)
    with pytest.raises(ValueError, match="cover exactly its named bits"):
        Metric("x", "", 0, 7, ValueKind.BITS, bits=("a", "b"))
