"""Fuzzing the device decoder (protocol/decoding.py), the payloads and the topic scheme.

decode() promises never to raise and to say precisely why a message is refused: every input
here, however broken, must come back as a decoded message whose values are all storable, or
as a Rejected with a reason and a detail. Valid messages, encoded with the payload structs the
agents use, must decode to exactly what was sent.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Final

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from protocol.catalogue import CATALOGUE, Metric, ValueKind
from protocol.decoding import (
    DEFAULT_WINDOW,
    CommandAck,
    Decoded,
    Event,
    Rejected,
    RejectReason,
    State,
    Telemetry,
    check_value,
    decode,
)
from protocol.errors import TopicError
from protocol.payloads import (
    CommandAckPayload,
    CommandOutcome,
    DeviceStatus,
    EventPayload,
    Sample,
    Severity,
    StatePayload,
    TelemetryPayload,
    encode,
    peek_version,
)
from protocol.topics import DEVICE_TO_PLATFORM, Channel, DeviceClass, DeviceTopic
from tests.unit.fuzz_strategies import (
    FUZZ,
    NASTY_TIMESTAMP_TEXTS,
    Document,
    aware_datetimes_near,
    deep_json,
    documents,
    identifiers,
    json_scalars,
    mutated,
    nasty_scalars,
    outcome,
    topics,
)

NOW: Final = datetime(2026, 11, 28, 18, tzinfo=UTC)
SITE: Final = "sc/sefrou"
TOPIC_OF_CLASS: Final = {
    DeviceClass.STREETLIGHT: f"{SITE}/streetlight/sl-menzel-n-001",
    DeviceClass.SIGNAGE: f"{SITE}/signage/sign-fes-road",
    DeviceClass.BUILDING: f"{SITE}/building/town-hall-reception",
}

# Valid messages of each device-to-platform channel, as docs/protocol.md shows them.
VALID_TELEMETRY: Final[dict[DeviceClass, dict[str, Document]]] = {
    DeviceClass.STREETLIGHT: {
        "v": 1,
        "seq": 7,
        "samples": [
            {
                "ts": "2026-11-28T17:55:00Z",
                "values": {"battery_soc": 81.5, "lamp_on": True, "controller_status": 3},
            },
            {"ts": "2026-11-28T18:55:00+01:00", "values": {"lamp_power": 35.5, "tilt": 0}},
        ],
    },
    DeviceClass.SIGNAGE: {
        "v": 1,
        "seq": 0,
        "samples": [
            {
                "ts": "2026-11-28T17:59:00Z",
                "values": {"power": 410.0, "message_id": 12, "door_open": False},
            }
        ],
    },
    DeviceClass.BUILDING: {
        "v": 1,
        "seq": 2**40,
        "samples": [
            {
                "ts": "2026-11-28T17:59:30.250+00:00",
                "values": {"air_temperature": 19.5, "occupancy": 14, "window_open": False},
            }
        ],
    },
}
VALID_OTHER: Final[dict[Channel, dict[str, Document]]] = {
    Channel.EVENT: {
        "v": 1,
        "seq": 3,
        "ts": "2026-11-28T17:58:00Z",
        "kind": "door_opened",
        "severity": "warning",
        "message": "cabinet door opened",
        "data": {"by": "crew", "count": 2, "nested": {"list": [1, 2.5, None]}},
    },
    Channel.STATE: {
        "v": 1,
        "status": "offline",
        "ts": "2026-11-28T17:00:00Z",
        "reason": "connection_lost",
        "boot_id": "b-1",
        "firmware": "smartcity-agent/1",
        "seq": 5,
    },
    Channel.COMMAND_ACK: {
        "v": 1,
        "id": "cmd-42_A",
        "ts": "2026-11-28T17:59:59Z",
        "outcome": "rejected",
        "reason": "unknown action",
    },
}
ALMOST_VALID: Final = [
    (f"{TOPIC_OF_CLASS[device_class]}/telemetry", document)
    for device_class, document in VALID_TELEMETRY.items()
] + [
    (f"{TOPIC_OF_CLASS[device_class]}/{channel}", document)
    for channel, document in VALID_OTHER.items()
    for device_class in DeviceClass
]


def check(result: Decoded | Rejected) -> None:
    """What every decoding must give: storable values, or a reason and a detail."""
    if isinstance(result, Rejected):
        assert isinstance(result.reason, RejectReason)
        assert result.detail.strip()
        if result.detail.startswith("could not be decoded"):
            # decode()'s last resort, documented for documents nested thousands deep; any other
            # exception reaching it is a case the decoder should name itself.
            assert "RecursionError" in result.detail, result.detail
        return
    assert result.topic.channel in DEVICE_TO_PLATFORM
    if isinstance(result, Telemetry):
        metrics = CATALOGUE[result.topic.device_class].metrics
        assert result.samples, "a Telemetry holds at least one accepted sample"
        for ts, values in result.samples:
            assert ts.tzinfo is not None
            assert NOW - DEFAULT_WINDOW.max_age <= ts <= NOW + DEFAULT_WINDOW.max_ahead
            assert values
            for name, value in values.items():
                assert type(value) is float
                assert math.isfinite(value)
                assert metrics[name].minimum <= value <= metrics[name].maximum
        assert all(rejected.detail.strip() for rejected in result.rejected_values)
    else:
        assert result.ts.tzinfo is not None


def json_bytes(document: Document) -> bytes:
    return json.dumps(document, allow_nan=True).encode()


# ------------------------------------------------------------------------------- arbitrary


@FUZZ
@given(topic=topics() | st.text(max_size=80), payload=st.binary(max_size=400))
def test_any_bytes_on_any_topic_decode_or_are_rejected(topic: str, payload: bytes) -> None:
    check(decode(topic, payload, NOW))


@FUZZ
@given(topic=topics(DEVICE_TO_PLATFORM), document=documents())
def test_any_json_document_decodes_or_is_rejected(topic: str, document: Document) -> None:
    check(decode(topic, json_bytes(document), NOW))


@FUZZ
@given(
    depth=st.integers(1, 200_000),
    topic=topics(DEVICE_TO_PLATFORM),
    inside=st.sampled_from(("", "v", "data", "samples", "x")),
)
@example(depth=5_000, topic=f"{SITE}/streetlight/sl-1/event", inside="data")
def test_deep_nesting_is_rejected_not_raised(depth: int, topic: str, inside: str) -> None:
    payload = deep_json(depth)
    if inside:
        payload = b'{"v": 1, "' + inside.encode() + b'": ' + payload + b"}"
    result = decode(topic, payload, NOW)
    check(result)


@FUZZ
@given(depth=st.integers(1, 100_000), field=st.sampled_from(("v", "x")))
@example(depth=5_000, field="v")  # was a RecursionError out of peek_version()
@example(depth=100_000, field="x")
def test_peek_version_never_raises(depth: int, field: str) -> None:
    """A deeply nested ``v`` is given back or is None (too deep), never a RecursionError."""
    version = peek_version(b'{"' + field.encode() + b'": ' + deep_json(depth) + b"}")
    assert version is None if field == "x" else version is None or isinstance(version, list)


@FUZZ
@given(payload=st.binary(max_size=200) | documents().map(json_bytes))
def test_peek_version_of_anything(payload: bytes) -> None:
    """Anything gives the ``v`` of a JSON object or None (what it cannot read), never an
    error, and never a value the document does not hold."""
    try:
        document = json.loads(payload)
    except ValueError:
        expected: object = None
    else:
        expected = document.get("v") if isinstance(document, dict) else None
    version = peek_version(payload)
    assert version is None or version == expected


# ------------------------------------------------------------------------------- almost valid


@FUZZ
@given(
    case=st.sampled_from(ALMOST_VALID).flatmap(
        lambda case: st.tuples(st.just(case[0]), mutated(case[1], json_scalars()))
    )
)
@example(  # a 400-digit integer: an OverflowError that took the whole message down
    case=(
        f"{TOPIC_OF_CLASS[DeviceClass.STREETLIGHT]}/telemetry",
        {
            "v": 1,
            "seq": 1,
            "samples": [
                {"ts": "2026-11-28T17:55:00Z", "values": {"lamp_power": 10**400, "tilt": 1}}
            ],
        },
    )
)
@example(
    case=(
        f"{TOPIC_OF_CLASS[DeviceClass.SIGNAGE]}/telemetry",
        {
            "v": 1,
            "seq": 1,
            "samples": [{"ts": "2026-11-28T17:55:00Z", "values": {"message_id": -(10**400)}}],
        },
    )
)
def test_almost_valid_messages_decode_or_are_rejected(case: tuple[str, Document]) -> None:
    topic, document = case
    check(decode(topic, json_bytes(document), NOW))


def test_a_huge_integer_is_refused_alone_and_the_rest_of_the_sample_kept() -> None:
    payload = json_bytes(
        {
            "v": 1,
            "seq": 1,
            "samples": [
                {"ts": "2026-11-28T17:55:00Z", "values": {"lamp_power": 10**400, "tilt": 1}}
            ],
        }
    )
    decoded = decode(f"{TOPIC_OF_CLASS[DeviceClass.STREETLIGHT]}/telemetry", payload, NOW)
    assert isinstance(decoded, Telemetry)
    assert decoded.samples[0][1] == {"tilt": 1.0}
    assert [rejected.reason for rejected in decoded.rejected_values] == [RejectReason.OUT_OF_RANGE]


@pytest.mark.parametrize("name", ["lamp_power", "lamp_on", "controller_status"])
@pytest.mark.parametrize("digits", [400, 4_000, 6_000])
def test_an_integer_of_hundreds_of_digits_is_refused_alone(name: str, digits: int) -> None:
    payload = (
        b'{"v": 1, "seq": 1, "samples": [{"ts": "2026-11-28T17:55:00Z", "values": '
        b'{"tilt": 1, "' + name.encode() + b'": -' + b"9" * digits + b"}}]}"
    )
    decoded = decode(f"{TOPIC_OF_CLASS[DeviceClass.STREETLIGHT]}/telemetry", payload, NOW)
    check(decoded)
    if digits > 4_300:  # msgspec refuses the message: more digits than Python converts
        assert isinstance(decoded, Rejected)
        assert decoded.reason is RejectReason.SCHEMA
        return
    assert isinstance(decoded, Telemetry), decoded
    assert decoded.samples[0][1] == {"tilt": 1.0}
    [rejected] = decoded.rejected_values
    assert rejected.detail.startswith(f"$.samples[0].values.{name}: ")
    assert len(rejected.detail) < 200


@FUZZ
@given(
    case=st.sampled_from(ALMOST_VALID),
    field=st.sampled_from(("ts", "samples[0].ts")),
    stamp=st.sampled_from(NASTY_TIMESTAMP_TEXTS) | st.text(max_size=40),
)
def test_odd_timestamps_decode_or_are_rejected(
    case: tuple[str, dict[str, Document]], field: str, stamp: str
) -> None:
    topic, valid = case
    document = json.loads(json.dumps(valid))
    if field == "ts" or "samples" not in document:
        document["ts"] = stamp
    else:
        document["samples"][0]["ts"] = stamp
    check(decode(topic, json_bytes(document), NOW))


@FUZZ
@given(
    device_class=st.sampled_from(DeviceClass),
    name=st.text(max_size=70)
    | st.sampled_from(sorted({m for s in CATALOGUE.values() for m in s.metrics})),
    raw=nasty_scalars() | documents(),
)
@example(device_class=DeviceClass.STREETLIGHT, name="lamp_power", raw=10**400)  # OverflowError
@example(device_class=DeviceClass.SIGNAGE, name="message_id", raw=-(10**400))
@example(device_class=DeviceClass.STREETLIGHT, name="lamp_on", raw=10**5_000)  # repr refused
def test_check_value_refuses_what_cannot_be_stored(
    device_class: DeviceClass, name: str, raw: object
) -> None:
    metrics = CATALOGUE[device_class].metrics
    checked = check_value(metrics, device_class, name, raw)
    if isinstance(checked, Rejected):
        assert checked.detail.startswith(f"{name}: ")
    else:
        metric = metrics[name]
        assert math.isfinite(checked)
        assert metric.minimum <= checked <= metric.maximum


# ------------------------------------------------------------------------------- round trips


def metric_values(metric: Metric) -> st.SearchStrategy[bool | int | float]:
    """Valid values of ``metric``, as a device would send them."""
    if metric.kind is ValueKind.FLAG:
        return st.booleans()
    if metric.kind in (ValueKind.COUNT, ValueKind.BITS):
        return st.integers(int(metric.minimum), int(metric.maximum))
    return st.floats(metric.minimum, metric.maximum)


def stored(value: bool | int | float) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    return float(value)


@st.composite
def sample_values(draw: st.DrawFn, device_class: DeviceClass) -> dict[str, bool | int | float]:
    metrics = CATALOGUE[device_class].metrics
    names = draw(st.lists(st.sampled_from(sorted(metrics)), min_size=1, max_size=len(metrics)))
    return {name: draw(metric_values(metrics[name])) for name in names}


def sample_times() -> st.SearchStrategy[datetime]:
    return aware_datetimes_near(NOW, DEFAULT_WINDOW.max_age, DEFAULT_WINDOW.max_ahead)


def device_topics(channel: Channel) -> st.SearchStrategy[DeviceTopic]:
    return st.builds(
        DeviceTopic, identifiers(), st.sampled_from(DeviceClass), identifiers(), st.just(channel)
    )


def short_texts(limit: int) -> st.SearchStrategy[str]:
    """Text up to a payload's limit [characters]: mostly short, sometimes exactly the limit."""
    return st.text(max_size=30) | st.text(min_size=1, max_size=3).map(
        lambda unit: (unit * limit)[:limit]
    )


names = st.from_regex(r"\A[a-z][a-z0-9_]{0,30}\Z")
command_ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
sequence_numbers = st.integers(0, 2**63 - 1)


@FUZZ
@given(data=st.data(), topic=device_topics(Channel.TELEMETRY), seq=sequence_numbers)
def test_valid_telemetry_decodes_to_exactly_what_was_sent(
    data: st.DataObject, topic: DeviceTopic, seq: int
) -> None:
    samples = data.draw(
        st.lists(
            st.builds(Sample, sample_times(), sample_values(topic.device_class)),
            min_size=1,
            max_size=3,
        )
    )
    decoded = decode(str(topic), encode(TelemetryPayload(1, seq, samples)), NOW)
    assert isinstance(decoded, Telemetry), decoded
    assert decoded.topic == topic
    assert decoded.seq == seq
    assert decoded.rejected_values == ()
    assert decoded.samples == [
        (sample.ts, {name: stored(value) for name, value in sample.values.items()})
        for sample in samples
    ]


event_data = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=10,
    ),
    max_size=5,
)


@FUZZ
@given(
    topic=device_topics(Channel.EVENT),
    payload=st.builds(
        EventPayload,
        v=st.just(1),
        seq=sequence_numbers,
        ts=sample_times(),
        kind=names,
        severity=st.sampled_from(Severity),
        message=short_texts(2_000),
        data=event_data,
    ),
)
def test_valid_events_decode_to_exactly_what_was_sent(
    topic: DeviceTopic, payload: EventPayload
) -> None:
    decoded = decode(str(topic), encode(payload), NOW)
    assert isinstance(decoded, Event), decoded
    assert (decoded.topic, decoded.seq, decoded.ts, decoded.kind) == (
        topic,
        payload.seq,
        payload.ts,
        payload.kind,
    )
    assert (decoded.severity, decoded.message) == (payload.severity, payload.message)
    assert msgspec.json.decode(decoded.data_json) == payload.data


@FUZZ
@given(
    topic=device_topics(Channel.STATE),
    payload=st.builds(
        StatePayload,
        v=st.just(1),
        status=st.sampled_from(DeviceStatus),
        ts=sample_times(),
        reason=st.none() | names,
        boot_id=st.none() | short_texts(200),
        firmware=st.none() | short_texts(200),
        seq=st.none() | sequence_numbers,
    ),
)
def test_valid_states_decode_to_exactly_what_was_sent(
    topic: DeviceTopic, payload: StatePayload
) -> None:
    decoded = decode(str(topic), encode(payload), NOW)
    assert decoded == State(
        topic, payload.ts, payload.status, payload.reason, payload.boot_id, payload.firmware
    )


@FUZZ
@given(
    topic=device_topics(Channel.COMMAND_ACK),
    payload=st.builds(
        CommandAckPayload,
        v=st.just(1),
        id=command_ids,
        ts=sample_times(),
        outcome=st.sampled_from(CommandOutcome),
        reason=short_texts(2_000),
    ),
)
def test_valid_acknowledgements_decode_to_exactly_what_was_sent(
    topic: DeviceTopic, payload: CommandAckPayload
) -> None:
    decoded = decode(str(topic), encode(payload), NOW)
    assert decoded == CommandAck(topic, payload.id, payload.ts, payload.outcome, payload.reason)


@FUZZ
@given(
    topic=device_topics(Channel.TELEMETRY),
    ts=st.datetimes(timezones=st.just(UTC)),
)
def test_samples_outside_the_window_are_rejected_with_their_time(
    topic: DeviceTopic, ts: datetime
) -> None:
    payload = encode(TelemetryPayload(1, 0, [Sample(ts, {"ambient_light": 1.0})]))
    decoded = decode(str(topic), payload, NOW)
    check(decoded)
    inside = NOW - DEFAULT_WINDOW.max_age <= ts <= NOW + DEFAULT_WINDOW.max_ahead
    assert isinstance(decoded, Telemetry) == inside
    if not inside:
        assert isinstance(decoded, Rejected)
        assert decoded.reason is RejectReason.BAD_TIMESTAMP


# ------------------------------------------------------------------------------- topics


@FUZZ
@given(
    text=st.text(max_size=100)
    | topics()
    | st.lists(
        st.sampled_from(("sc", "sefrou", "streetlight", "telemetry", "", "+", "#", "a"))
    ).map("/".join)
)
@example(text="sc/\ud800/streetlight/sl-1/telemetry")
@example(text="sc/a/streetlight/b/telemetry\x00")
def test_any_topic_parses_or_raises_topic_error(text: str) -> None:
    parsed = outcome(lambda: DeviceTopic.parse(text), TopicError)
    if parsed is not None:
        assert str(parsed) == text


@FUZZ
@given(
    site=identifiers(),
    device_class=st.sampled_from(DeviceClass),
    device_id=identifiers(),
    channel=st.sampled_from(Channel),
)
def test_topics_round_trip(
    site: str, device_class: DeviceClass, device_id: str, channel: Channel
) -> None:
    topic = DeviceTopic(site, device_class, device_id, channel)
    assert DeviceTopic.parse(str(topic)) == topic
