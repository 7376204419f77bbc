"""The fault types of the platform's devices: what the simulators inject (with ground truth),
what a rule's ``detects`` names and what a backtest scores against.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from protocol.topics import DeviceClass


class FaultType(StrEnum):
    # solar streetlights
    LAMP_FAILURE = "lamp_failure"
    DAY_BURNING = "day_burning"
    CYCLING_DRIVER = "cycling_driver"
    PANEL_SOILING = "panel_soiling"
    PANEL_SHADING = "panel_shading"
    BATTERY_FADE = "battery_fade"
    CHARGE_CONTROLLER_FAULT = "charge_controller_fault"
    TILT = "tilt"
    KNOCK_DOWN = "knock_down"
    # any device
    COMMUNICATION_LOSS = "communication_loss"
    POWER_LOSS = "power_loss"
    # signage panels
    PIXEL_FAILURES = "pixel_failures"
    OVER_TEMPERATURE = "over_temperature"
    DOOR_OPEN = "door_open"
    SUPPLY_FAILURE = "supply_failure"
    # building zones
    STUCK_VALVE = "stuck_valve"
    SENSOR_DRIFT = "sensor_drift"
    WINDOW_OPEN = "window_open"
    SIMULTANEOUS_HEATING_COOLING = "simultaneous_heating_cooling"
    SHORT_CYCLING = "short_cycling"
    HEATING_FAILURE = "heating_failure"


_ANY: Final = frozenset(DeviceClass)
FAULT_CLASSES: Final[dict[FaultType, frozenset[DeviceClass]]] = {
    **{
        fault: frozenset({DeviceClass.STREETLIGHT})
        for fault in (
            FaultType.LAMP_FAILURE,
            FaultType.DAY_BURNING,
            FaultType.CYCLING_DRIVER,
            FaultType.PANEL_SOILING,
            FaultType.PANEL_SHADING,
            FaultType.BATTERY_FADE,
            FaultType.CHARGE_CONTROLLER_FAULT,
            FaultType.TILT,
            FaultType.KNOCK_DOWN,
        )
    },
    FaultType.COMMUNICATION_LOSS: _ANY,
    FaultType.POWER_LOSS: _ANY,
    **{
        fault: frozenset({DeviceClass.SIGNAGE})
        for fault in (
            FaultType.PIXEL_FAILURES,
            FaultType.OVER_TEMPERATURE,
            FaultType.DOOR_OPEN,
            FaultType.SUPPLY_FAILURE,
        )
    },
    **{
        fault: frozenset({DeviceClass.BUILDING})
        for fault in (
            FaultType.STUCK_VALVE,
            FaultType.SENSOR_DRIFT,
            FaultType.WINDOW_OPEN,
            FaultType.SIMULTANEOUS_HEATING_COOLING,
            FaultType.SHORT_CYCLING,
            FaultType.HEATING_FAILURE,
        )
    },
}
"""The device classes each fault can strike."""
