"""The driver interface: how an agent reads its device and sets its outputs.

A driver hides the hardware (a Modbus charge controller, a sign controller, a building's
sensors and HVAC relays) or a simulator behind two calls. The agent never talks to hardware
itself, so the same agent code runs on a pole and in the simulated city.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

Reading = dict[str, float | int | bool]
"""Metric name (from :mod:`protocol.catalogue`) to value, as the device measured it."""

Outputs = Mapping[str, float]
"""What the agent's local controller wants the device to do now, by class:

- streetlight: ``lamp_level`` [%] (0 switches the lamp off);
- signage: ``brightness_level`` [%], ``message_id`` [-], ``lit_fraction`` (share of the
  pixels the message lights) [-];
- building zone: ``heating`` and ``cooling`` (1 on, 0 off), ``valve_position`` [%],
  ``supply_temperature`` [C] when the platform sets the heating water (else the boiler's
  curve), ``vents_open`` (1: open the motorised windows for night ventilation) and
  ``blinds_down`` (1: lower the external blinds); a zone without motorised windows or
  blinds ignores the last two.
"""


class Driver(Protocol):
    def read(self, now: datetime) -> Reading:
        """Measure the device now; raise :class:`edge_agents.errors.DriverError` on failure.

        A metric the device cannot measure at the moment is left out rather than invented.
        """
        ...

    def actuate(self, outputs: Outputs, now: datetime) -> None:
        """Set the device's outputs; raise :class:`edge_agents.errors.DriverError` on failure."""
        ...
