"""Decode what a device published, or say precisely why not.

:func:`decode` takes the topic, the raw bytes and the time the platform received them, and
returns either a decoded message or a :class:`Rejected` naming the field and what was wrong.
It never raises on any input. Telemetry is checked value by value: a sample whose battery
sensor reads 140 % still delivers its lamp power, and the bad value is rejected on its own.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import msgspec

from protocol.catalogue import CATALOGUE, Metric, ValueKind
from protocol.errors import TopicError
from protocol.payloads import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    CommandAckPayload,
    CommandOutcome,
    DeviceStatus,
    EventPayload,
    Severity,
    StatePayload,
    TelemetryPayload,
    peek_version,
)
from protocol.topics import Channel, DeviceClass, DeviceTopic


class RejectReason(StrEnum):
    TOO_LARGE = "too_large"
    BAD_TOPIC = "bad_topic"
    WRONG_DIRECTION = "wrong_direction"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    SCHEMA = "schema"
    BAD_TIMESTAMP = "bad_timestamp"
    UNKNOWN_METRIC = "unknown_metric"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_MISMATCH = "device_mismatch"
    UNKNOWN_COMMAND = "unknown_command"
    """A command acknowledgement answering no command the platform sent to that device."""
    STORAGE_REJECTED = "storage_rejected"
    INTERNAL_ERROR = "internal_error"
    """Handling the message met a bug of the platform: set aside rather than crash-loop."""


@dataclass(frozen=True, slots=True)
class AcceptanceWindow:
    """How far a sample's timestamp may lie from the time it was received."""

    max_age: timedelta = timedelta(days=90)
    """Older samples are refused: a spool replays at most this far back."""
    max_ahead: timedelta = timedelta(minutes=5)
    """Newer samples are refused: the device's clock is wrong."""


DEFAULT_WINDOW: Final = AcceptanceWindow()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message (or one value of it) the platform refuses, with the reason."""

    reason: RejectReason
    detail: str


CheckedSample = tuple[datetime, dict[str, float]]
"""A sample's time and its accepted values, metric name to value (flags as 1.0 and 0.0)."""


@dataclass(frozen=True, slots=True)
class Telemetry:
    topic: DeviceTopic
    seq: int
    samples: list[CheckedSample]
    """Samples with at least one accepted value, in the order sent."""
    rejected_values: tuple[Rejected, ...]
    """Values refused while the rest of the message was accepted."""


@dataclass(frozen=True, slots=True)
class Event:
    topic: DeviceTopic
    seq: int
    ts: datetime
    kind: str
    severity: Severity
    message: str
    data_json: bytes


@dataclass(frozen=True, slots=True)
class State:
    topic: DeviceTopic
    ts: datetime
    status: DeviceStatus
    reason: str | None
    boot_id: str | None
    firmware: str | None


@dataclass(frozen=True, slots=True)
class CommandAck:
    topic: DeviceTopic
    command_id: str
    ts: datetime
    outcome: CommandOutcome
    reason: str


Decoded = Telemetry | Event | State | CommandAck

AnyPayload = TelemetryPayload | EventPayload | StatePayload | CommandAckPayload
_decoders: Final[dict[Channel, msgspec.json.Decoder[Any]]] = {
    Channel.TELEMETRY: msgspec.json.Decoder(TelemetryPayload),
    Channel.EVENT: msgspec.json.Decoder(EventPayload),
    Channel.STATE: msgspec.json.Decoder(StatePayload),
    Channel.COMMAND_ACK: msgspec.json.Decoder(CommandAckPayload),
}
_json_encoder: Final = msgspec.json.Encoder()


def _fast_limits(metrics: Mapping[str, Metric]) -> dict[str, tuple[float, float, bool, bool]]:
    """name -> (minimum, maximum, is_flag, must_be_whole), for the hot path of decoding."""
    return {
        name: (
            metric.minimum,
            metric.maximum,
            metric.kind is ValueKind.FLAG,
            metric.kind in (ValueKind.COUNT, ValueKind.BITS),
        )
        for name, metric in metrics.items()
    }


_LIMITS: Final = {cls: _fast_limits(spec.metrics) for cls, spec in CATALOGUE.items()}


def decode(
    topic: str,
    payload: bytes,
    received_at: datetime,
    window: AcceptanceWindow = DEFAULT_WINDOW,
) -> Decoded | Rejected:
    """Decode one message published by a device. Never raises."""
    try:
        return _decode(topic, payload, received_at, window)
    except Exception as error:  # noqa: BLE001 - a payload must never take the service down
        # For instance a JSON document nested thousands deep exhausts the recursion limit.
        return Rejected(
            RejectReason.MALFORMED, f"could not be decoded: {type(error).__name__}: {error}"[:500]
        )


def _decode(
    topic: str, payload: bytes, received_at: datetime, window: AcceptanceWindow
) -> Decoded | Rejected:
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejected(
            RejectReason.TOO_LARGE,
            f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}",
        )
    try:
        device_topic = parse_topic(topic)
    except TopicError as error:
        return Rejected(RejectReason.BAD_TOPIC, str(error))
    decoder = _decoders.get(device_topic.channel)
    if decoder is None:
        return Rejected(
            RejectReason.WRONG_DIRECTION,
            f"channel {device_topic.channel!r} carries platform-to-device messages",
        )
    try:
        body: AnyPayload = decoder.decode(payload)
    except msgspec.ValidationError as error:
        return _schema_rejection(payload, str(error))
    except msgspec.DecodeError as error:
        return Rejected(RejectReason.MALFORMED, f"not valid JSON: {error}")
    if body.v != PROTOCOL_VERSION:
        return _version_rejection(body.v)
    if isinstance(body, TelemetryPayload):
        return _telemetry(device_topic, body, received_at, window)
    timestamp_problem = _timestamp_problem("$.ts", body.ts, received_at, window)
    if timestamp_problem is not None:
        return timestamp_problem
    if isinstance(body, EventPayload):
        return Event(
            device_topic,
            body.seq,
            body.ts,
            body.kind,
            body.severity,
            body.message,
            _json_encoder.encode(body.data),
        )
    if isinstance(body, StatePayload):
        return State(device_topic, body.ts, body.status, body.reason, body.boot_id, body.firmware)
    return CommandAck(device_topic, body.id, body.ts, body.outcome, body.reason)


@functools.lru_cache(maxsize=65_536)
def parse_topic(topic: str) -> DeviceTopic:
    """Topics repeat (one set per device): parse each once. Errors are not cached."""
    return DeviceTopic.parse(topic)


def _schema_rejection(payload: bytes, error: str) -> Rejected:
    version = peek_version(payload)
    if version is not None and version != PROTOCOL_VERSION:
        return _version_rejection(version)
    return Rejected(RejectReason.SCHEMA, error)


def _version_rejection(version: object) -> Rejected:
    return Rejected(
        RejectReason.UNSUPPORTED_VERSION,
        f"$.v is {version!r}; this platform speaks version {PROTOCOL_VERSION}",
    )


def _timestamp_problem(
    path: str, ts: datetime, received_at: datetime, window: AcceptanceWindow
) -> Rejected | None:
    if ts.tzinfo is None:
        return Rejected(
            RejectReason.BAD_TIMESTAMP,
            f"{path} has no UTC offset; write it like 2026-11-28T18:00:00Z",
        )
    if ts > received_at + window.max_ahead:
        return Rejected(
            RejectReason.BAD_TIMESTAMP,
            f"{path} {ts.isoformat()} is ahead of the platform's clock "
            f"({received_at.isoformat()}) by more than {window.max_ahead}: check the device clock",
        )
    if ts < received_at - window.max_age:
        return Rejected(
            RejectReason.BAD_TIMESTAMP,
            f"{path} {ts.isoformat()} is older than the accepted {window.max_age.days} days",
        )
    return None


def _telemetry(
    device_topic: DeviceTopic,
    body: TelemetryPayload,
    received_at: datetime,
    window: AcceptanceWindow,
) -> Telemetry | Rejected:
    device_class = device_topic.device_class
    metrics = CATALOGUE[device_class].metrics
    limits = _LIMITS[device_class]
    samples: list[CheckedSample] = []
    rejected: list[Rejected] = []
    for index, sample in enumerate(body.samples):
        problem = _timestamp_problem(f"$.samples[{index}].ts", sample.ts, received_at, window)
        if problem is not None:
            rejected.append(problem)
            continue
        accepted: dict[str, float] = {}
        for name, raw in sample.values.items():
            # Fast path for the common case; anything unusual takes check_value, which also
            # says precisely what is wrong.
            bounds = limits.get(name)
            if bounds is not None:
                kind = type(raw)
                if bounds[2]:
                    if kind is bool:
                        accepted[name] = 1.0 if raw else 0.0
                        continue
                elif (
                    (kind is float or kind is int)
                    and bounds[0] <= raw <= bounds[1]
                    and (not bounds[3] or raw == int(raw))
                ):
                    accepted[name] = float(raw)
                    continue
            checked = check_value(metrics, device_class, name, raw)
            if isinstance(checked, Rejected):
                detail = f"$.samples[{index}].values.{checked.detail}"
                rejected.append(Rejected(checked.reason, detail))
            else:
                accepted[name] = checked
        if accepted:
            samples.append((sample.ts, accepted))
    if not samples:
        return Rejected(rejected[0].reason, "; ".join(r.detail for r in rejected))
    return Telemetry(device_topic, body.seq, samples, tuple(rejected))


def check_value(
    metrics: Mapping[str, Metric], device_class: DeviceClass, name: str, raw: object
) -> float | Rejected:
    """The stored value of one metric, or why it is refused (detail starts with the name)."""
    metric = metrics.get(name)
    if metric is None:
        return Rejected(
            RejectReason.UNKNOWN_METRIC,
            f"{name}: not a metric of class {device_class} (see docs/protocol.md)",
        )
    if metric.kind is ValueKind.FLAG:
        if isinstance(raw, bool):
            return 1.0 if raw else 0.0
        return Rejected(
            RejectReason.WRONG_TYPE, f"{name}: expected true or false, got {_describe(raw)}"
        )
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return Rejected(RejectReason.WRONG_TYPE, f"{name}: expected a number, got {_describe(raw)}")
    try:
        value = float(raw)
    except OverflowError:  # an integer of hundreds of digits: JSON sets no limit
        return Rejected(
            RejectReason.OUT_OF_RANGE, f"{name}: {_describe(raw)} is not a finite number"
        )
    if not math.isfinite(value):
        return Rejected(RejectReason.OUT_OF_RANGE, f"{name}: {raw!r} is not a finite number")
    if metric.kind in (ValueKind.COUNT, ValueKind.BITS) and not value.is_integer():
        return Rejected(RejectReason.WRONG_TYPE, f"{name}: expected a whole number, got {raw!r}")
    if not metric.minimum <= value <= metric.maximum:
        unit = f" {metric.unit}" if metric.unit else ""
        return Rejected(
            RejectReason.OUT_OF_RANGE,
            f"{name}: {raw!r}{unit} is outside the valid range "
            f"[{metric.minimum:g}, {metric.maximum:g}]{unit}",
        )
    return value


def _describe(raw: object) -> str:
    if raw is None:
        return "null"
    kind = {bool: "boolean", str: "string", list: "array", dict: "object"}.get(
        type(raw), type(raw).__name__
    )
    try:
        text = repr(raw)
    except ValueError:  # an integer of more than 4,300 digits: repr refuses (sys.int_info)
        text = "too long to show"
    return f"{kind} {text[:40]}{'...' if len(text) > 40 else ''}"
