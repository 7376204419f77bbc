"""Sign brightness by ambient light, as the strategy wants it: the signs' photocell curve set
from the lighting policy (docs/lighting.md).

Every sign follows ambient light on its own (:func:`protocol.commands.photocell_brightness`),
from 15 % in the dark to 100 % in full sun. A lighting policy may want other ends
(``sign_minimum_level``, ``sign_maximum_level``): this service sends each sign it hears from a
``set_brightness`` without a level, which moves the ends of its curve until the next one, and
sends it again when the policy changes or a sign did not apply it. Commands, acknowledgements,
resends, alerts and the signs themselves (the registry's, followed while it runs) are those of
every commanding service (:mod:`control.service`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from control.commanding import DevicePace, due, issue
from control.lighting_policy import LightingPolicy
from control.service import (
    CommandingService,
    Counters,
    ServiceConfig,
    ServiceKind,
)
from control.strategy import Strategy
from protocol.commands import SetBrightness
from protocol.sites import Device
from protocol.topics import DeviceClass
from runtime.mqtt_session import utc_now

log = logging.getLogger("smartcity.signs")


def wanted_brightness(policy: LightingPolicy) -> SetBrightness:
    """The command that gives a sign the policy's photocell curve."""
    return SetBrightness(lowest=policy.sign_minimum_level, highest=policy.sign_maximum_level)


@dataclass(frozen=True)
class SignConfig(ServiceConfig):
    client_id: str = "smartcity-sign-control"
    check_every_s: float = 300.0
    """Seconds between two looks at which signs need a command (device time with
    ``event_time``)."""


class SignControlService(CommandingService[SignConfig, Counters]):
    kind = ServiceKind("sign-control", DeviceClass.SIGNAGE, log, "sign control", "signs")

    def __init__(self, config: SignConfig, *, clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(config, Counters(), clock=clock, pace=DevicePace())
        self.policy = LightingPolicy.from_mapping(config.strategy.lighting)
        self.heard: set[str] = set()
        """The signs in service heard from: those that get a command."""
        self._next_look: datetime | None = None
        self._open()

    def _take_up(self, before: Mapping[str, Device]) -> None:
        """A sign added is commanded once heard from; one gone is no longer."""
        del before
        self.heard &= self.devices.keys()

    def use_strategy(self, strategy: Strategy) -> None:
        LightingPolicy.from_mapping(strategy.lighting)  # a bad one is refused here
        super().use_strategy(strategy)

    def _apply_strategy(self, strategy: Strategy) -> None:
        self.config = replace(self.config, strategy=strategy)
        self.policy = LightingPolicy.from_mapping(strategy.lighting)
        self._next_look = None

    def _act(self, now: datetime, scale: float) -> None:
        handed = self._handed_over()
        if handed is not None:
            self._apply_strategy(handed)
        if self._next_look is not None and now < self._next_look:
            return
        self._next_look = now + timedelta(seconds=self.config.check_every_s)
        if self.config.follow_active_strategy:
            strategy = self._newly_activated()
            if strategy is not None:
                self._apply_strategy(strategy)
        wanted = wanted_brightness(self.policy)
        batch = [
            issue(
                f"sign-{uuid.uuid4().hex[:20]}",
                device,
                wanted,
                now,
                self.config.commands,
                scale=scale,
                why=f"photocell {wanted.lowest:g}-{wanted.highest:g} %: {reason}",
            )
            for device in sorted(self.heard)
            if (reason := due(self.book.latest.get(device), wanted, now, self.config.commands))
        ]
        if batch:
            self._record_and_publish(batch)

    def _reading(self, device_id: str, taken: datetime, values: dict[str, float]) -> None:
        del taken, values
        if device_id not in self.heard:
            self.heard.add(device_id)
            self._next_look = None  # a sign heard for the first time is commanded at once
