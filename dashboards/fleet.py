"""What the dashboards' SQL assumes about the devices, in one place.

The dashboards may import only ``storage`` (docs/DESIGN layout), so these figures are written
here rather than read from ``protocol`` and ``rules``; tests/unit/test_dashboards.py checks
each against its source so that they cannot drift apart.
"""

from __future__ import annotations

from typing import Final

SAMPLE_INTERVAL_S: Final = {"streetlight": 300, "signage": 60, "building": 60}
"""Each class's expected reporting interval [s] (protocol.catalogue): a sample of power
stands for this long when power is integrated into energy."""
METRICS: Final = {
    "streetlight": (
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
    ),
    "signage": (
        "power",
        "supply_voltage",
        "enclosure_temperature",
        "ambient_light",
        "brightness_level",
        "message_id",
        "failed_pixels",
        "door_open",
        "fault_bits",
    ),
    "building": (
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
    ),
}
"""Every class's metric columns (protocol.catalogue)."""
DEVICE_CLASSES: Final = tuple(METRICS)
LAMP_OUT_FRACTION: Final = 0.25
"""A lamp commanded on drawing less than this share of what its commanded level should draw
(rating x level / 100) is out (the ``lamp-out`` rule of rules/default_rules.yaml)."""
SILENT_AFTER_INTERVALS: Final = 3
"""A device that sent nothing for this many reporting intervals counts as offline."""
COMFORT_BAND_C: Final = (19.0, 26.0)
"""The default comfort band [C] (``hvac.comfort_band`` of control/default_strategy.yaml); the
buildings dashboard's ``comfort_low`` and ``comfort_high`` variables start there."""
