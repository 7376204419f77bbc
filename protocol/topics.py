"""The MQTT topic scheme.

Every topic has five levels::

    sc/{site}/{device_class}/{device_id}/{channel}

The device id sits at a fixed level (the fourth) so a broker ACL pattern such as
``sc/+/+/%u/telemetry`` can bind a device's credentials to its own topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import TopicError

ROOT = "sc"
IDENTIFIER_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
"""Site and device ids: lower-case letters, digits and inner hyphens, 1-64 characters."""


class DeviceClass(StrEnum):
    STREETLIGHT = "streetlight"
    SIGNAGE = "signage"
    BUILDING = "building"


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    """Device to platform: timestamped metric samples (QoS 1)."""
    EVENT = "event"
    """Device to platform: discrete happenings (door opened, fault raised) (QoS 1)."""
    STATE = "state"
    """Device to platform, retained: birth (online) and last will or goodbye (offline)."""
    COMMAND = "cmd"
    """Platform to device: a command with an id and an expiry (QoS 1)."""
    COMMAND_ACK = "cmd_ack"
    """Device to platform: the outcome of a command (QoS 1)."""


DEVICE_TO_PLATFORM = (Channel.TELEMETRY, Channel.EVENT, Channel.STATE, Channel.COMMAND_ACK)


def check_identifier(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid site or device id, else raise :class:`TopicError`."""
    if not IDENTIFIER_PATTERN.fullmatch(value):
        raise TopicError(
            f"{kind} {value!r} is not a valid identifier: use 1-64 lower-case letters, "
            "digits and inner hyphens (for example 'sl-0001')"
        )
    return value


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A concrete topic of one device; validates itself on construction."""

    site: str
    device_class: DeviceClass
    device_id: str
    channel: Channel

    def __post_init__(self) -> None:
        check_identifier("site", self.site)
        check_identifier("device id", self.device_id)

    def __str__(self) -> str:
        return f"{ROOT}/{self.site}/{self.device_class}/{self.device_id}/{self.channel}"

    @classmethod
    def parse(cls, topic: str) -> DeviceTopic:
        """Parse a topic string; raise :class:`TopicError` saying which level is wrong."""
        levels = topic.split("/")
        if len(levels) != 5:
            raise TopicError(
                f"topic {topic!r} has {len(levels)} levels; expected 5: "
                f"{ROOT}/<site>/<class>/<device_id>/<channel>"
            )
        root, site, device_class, device_id, channel = levels
        if root != ROOT:
            raise TopicError(f"topic {topic!r} must start with {ROOT!r}")
        try:
            parsed_class = DeviceClass(device_class)
        except ValueError:
            known = ", ".join(c.value for c in DeviceClass)
            raise TopicError(
                f"unknown device class {device_class!r} in topic; expected one of {known}"
            ) from None
        try:
            parsed_channel = Channel(channel)
        except ValueError:
            known = ", ".join(c.value for c in Channel)
            raise TopicError(
                f"unknown channel {channel!r} in topic; expected one of {known}"
            ) from None
        return cls(site, parsed_class, device_id, parsed_channel)


def subscription(channel: Channel, site: str = "+") -> str:
    """The wildcard filter a service subscribes to for one channel of every device."""
    return f"{ROOT}/{site}/+/+/{channel}"
