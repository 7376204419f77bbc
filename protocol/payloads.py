"""Versioned JSON payloads of every channel, as msgspec structs.

The structs are the wire format: agents encode them, the platform decodes them. Field names
are short but whole words; timestamps are RFC 3339 strings with a UTC offset.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

import msgspec

PROTOCOL_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 256 * 1024
MAX_SAMPLES_PER_MESSAGE: Final = 1_000
MAX_VALUES_PER_SAMPLE: Final = 64

SequenceNumber = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
ShortText = Annotated[str, msgspec.Meta(max_length=200)]
LongText = Annotated[str, msgspec.Meta(max_length=2_000)]


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class DeviceStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class CommandOutcome(StrEnum):
    APPLIED = "applied"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"


class _Payload(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    v: int


class Sample(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    ts: datetime
    values: Annotated[dict[str, Any], msgspec.Meta(min_length=1, max_length=MAX_VALUES_PER_SAMPLE)]
    """Metric name to value; checked against the catalogue by the decoder, value by value."""


class TelemetryPayload(_Payload, frozen=True):
    seq: SequenceNumber
    samples: Annotated[list[Sample], msgspec.Meta(min_length=1, max_length=MAX_SAMPLES_PER_MESSAGE)]


class EventPayload(_Payload, frozen=True):
    seq: SequenceNumber
    ts: datetime
    kind: Name
    severity: Severity = Severity.INFO
    message: LongText = ""
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class StatePayload(_Payload, frozen=True):
    status: DeviceStatus
    ts: datetime
    """When the device said it; for a last will, when the session it closes began."""
    reason: Name | None = None
    """Why offline: connection_lost (the last will), shutdown, power_low, battery_depleted..."""
    boot_id: ShortText | None = None
    firmware: ShortText | None = None
    seq: SequenceNumber | None = None


class CommandPayload(_Payload, frozen=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    issued_at: datetime
    expires_at: datetime
    action: Name
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class CommandAckPayload(_Payload, frozen=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    ts: datetime
    outcome: CommandOutcome
    reason: LongText = ""


class _VersionOnly(msgspec.Struct):
    v: Any = None


_version_decoder: Final = msgspec.json.Decoder(_VersionOnly)


def peek_version(payload: bytes) -> object:
    """The ``v`` field of a JSON object, or None; never raises."""
    try:
        return _version_decoder.decode(payload).v
    except (msgspec.DecodeError, TypeError, RecursionError):  # nested thousands deep
        return None


_encoder: Final = msgspec.json.Encoder()


def encode(payload: _Payload) -> bytes:
    """Encode a payload struct to its JSON wire form."""
    return _encoder.encode(payload)
