"""Pure part of ingest: turn received messages into one storage batch.

No I/O and no clock: the time each message was received travels with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from protocol.decoding import (
    DEFAULT_WINDOW,
    AcceptanceWindow,
    CheckedSample,
    Event,
    Rejected,
    RejectReason,
    State,
    Telemetry,
    decode,
    parse_topic,
)
from protocol.errors import TopicError
from protocol.topics import DeviceClass
from storage.registry import Registration
from storage.writer import DeadLetter, ReceivedAck, SampleRows, StorageBatch, telemetry_rows


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as it came off the broker."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(slots=True)
class Classified:
    batch: StorageBatch = field(default_factory=StorageBatch)
    rejections: Counter[str] = field(default_factory=Counter)
    unknown_devices: set[str] = field(default_factory=set)


def classify(
    messages: Iterable[Inbound],
    registry: Mapping[str, Registration],
    window: AcceptanceWindow = DEFAULT_WINDOW,
) -> Classified:
    """Decode messages, check their sender against the registry and sort them for storage."""
    result = Classified()
    batch = result.batch
    samples: dict[DeviceClass, SampleRows] = {}
    for message in messages:
        # The sender is checked first: a device publishing under another class or site is
        # the problem to report, not the metrics it then sends.
        decoded = _check_sender(message.topic, registry, result) or decode(
            message.topic, message.payload, message.received_at, window
        )
        if isinstance(decoded, Rejected):
            _dead_letter(result, message, _device_of(message.topic), decoded)
        elif isinstance(decoded, Telemetry):
            device_id = decoded.topic.device_id
            _merge_samples(
                samples.setdefault(decoded.topic.device_class, {}), device_id, decoded.samples
            )
            if decoded.rejected_values:
                partial = Rejected(
                    decoded.rejected_values[0].reason,
                    f"{len(decoded.rejected_values)} value(s) refused, the rest stored: "
                    + "; ".join(r.detail for r in decoded.rejected_values),
                )
                _dead_letter(result, message, device_id, partial)
        elif isinstance(decoded, Event):
            batch.events.append((decoded, message.received_at))
        elif isinstance(decoded, State):
            batch.states.append((decoded, message.received_at))
        else:
            batch.command_acks.append(
                ReceivedAck(decoded, message.received_at, message.topic, message.payload)
            )
    batch.telemetry = {cls: telemetry_rows(cls, rows) for cls, rows in samples.items()}
    return result


def _merge_samples(
    rows: SampleRows,
    device_id: str,
    samples: list[CheckedSample],
) -> None:
    """One row per (device, time): samples of the same instant merge, the first value of a
    metric wins (a redelivered copy brings the same values)."""
    for ts, values in samples:
        key = (device_id, ts)
        existing = rows.get(key)
        if existing is None:
            rows[key] = values
        else:
            for metric, value in values.items():
                existing.setdefault(metric, value)


def _check_sender(
    topic_text: str, registry: Mapping[str, Registration], result: Classified
) -> Rejected | None:
    try:
        topic = parse_topic(topic_text)
    except TopicError:
        return None  # the decoder explains it
    registration = registry.get(topic.device_id)
    if registration is None:
        result.unknown_devices.add(topic.device_id)
        return Rejected(
            RejectReason.UNKNOWN_DEVICE,
            f"device {topic.device_id!r} is not in the registry: provision it first "
            "(smartcity provision SITE_FILE)",
        )
    if (registration.site_id, registration.device_class) != (topic.site, topic.device_class):
        return Rejected(
            RejectReason.DEVICE_MISMATCH,
            f"device {topic.device_id!r} is registered as a {registration.device_class} of "
            f"site {registration.site_id!r}, but published as a {topic.device_class} of "
            f"site {topic.site!r}",
        )
    return None


def _dead_letter(
    result: Classified, message: Inbound, device_id: str | None, rejected: Rejected
) -> None:
    result.rejections[rejected.reason.value] += 1
    result.batch.dead_letters.append(
        DeadLetter(
            message.received_at,
            message.topic,
            device_id,
            rejected.reason.value,
            rejected.detail,
            message.payload,
        )
    )


def _device_of(topic: str) -> str | None:
    """The device id level of a topic, if it has one, for dead letters of bad topics."""
    levels = topic.split("/")
    return levels[3][:64] if len(levels) == 5 else None
