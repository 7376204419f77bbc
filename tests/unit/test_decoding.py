"""The decoder accepts what the contract allows and refuses everything else, saying why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.decoding import (
    CommandAck,
    Event,
    Rejected,
    RejectReason,
    State,
    Telemetry,
    decode,
)
from protocol.payloads import (
    MAX_PAYLOAD_BYTES,
    CommandOutcome,
    DeviceStatus,
    Sample,
    Severity,
    TelemetryPayload,
    encode,
)

NOW = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
LIGHT = "sc/sefrou/streetlight/sl-0001/"


def telemetry(samples: list[dict[str, object]], seq: int = 7) -> bytes:
    return json.dumps({"v": 1, "seq": seq, "samples": samples}).encode()


def test_telemetry_with_several_samples_decodes_to_exact_readings() -> None:
    payload = telemetry(
        [
            {"ts": "2026-11-28T17:55:00Z", "values": {"battery_soc": 81.5, "lamp_on": True}},
            {"ts": "2026-11-28T18:55:00+01:00", "values": {"battery_soc": 81.25}},
        ]
    )
    decoded = decode(LIGHT + "telemetry", payload, NOW)
    assert isinstance(decoded, Telemetry)
    assert decoded.seq == 7
    assert decoded.topic.device_id == "sl-0001"
    assert decoded.samples == [
        (datetime(2026, 11, 28, 17, 55, tzinfo=UTC), {"battery_soc": 81.5, "lamp_on": 1.0}),
        (datetime(2026, 11, 28, 17, 55, tzinfo=UTC), {"battery_soc": 81.25}),
    ]
    assert decoded.rejected_values == ()


def test_encoded_payload_structs_decode_back() -> None:
    payload = encode(TelemetryPayload(1, 3, [Sample(NOW, {"pv_power": 120.0})]))
    decoded = decode(LIGHT + "telemetry", payload, NOW)
    assert isinstance(decoded, Telemetry)
    assert decoded.samples == [(NOW, {"pv_power": 120.0})]


def test_bad_values_are_refused_one_by_one_while_good_ones_are_kept() -> None:
    payload = telemetry(
        [
            {
                "ts": "2026-11-28T17:55:00Z",
                "values": {"battery_soc": 140, "lamp_power": 35.5, "colour": 3, "lamp_on": 1},
            }
        ]
    )
    decoded = decode(LIGHT + "telemetry", payload, NOW)
    assert isinstance(decoded, Telemetry)
    assert [values for _, values in decoded.samples] == [{"lamp_power": 35.5}]
    reasons = {r.reason: r.detail for r in decoded.rejected_values}
    assert reasons[RejectReason.OUT_OF_RANGE] == (
        "$.samples[0].values.battery_soc: 140 % is outside the valid range [0, 100] %"
    )
    assert "colour: not a metric of class streetlight" in reasons[RejectReason.UNKNOWN_METRIC]
    assert "lamp_on: expected true or false, got int 1" in reasons[RejectReason.WRONG_TYPE]


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "detail"),
    [
        (LIGHT + "telemetry", b"{not json", RejectReason.MALFORMED, "not valid JSON"),
        (LIGHT + "telemetry", b"\xff\xfe", RejectReason.MALFORMED, "not valid JSON"),
        (LIGHT + "telemetry", b"[1, 2]", RejectReason.SCHEMA, "Expected `object`"),
        (
            LIGHT + "telemetry",
            b'{"v": 2, "seq": 1, "samples": []}',
            RejectReason.UNSUPPORTED_VERSION,
            "$.v is 2",
        ),
        (LIGHT + "telemetry", b'{"v": "1", "seq": 1}', RejectReason.UNSUPPORTED_VERSION, "'1'"),
        (
            LIGHT + "telemetry",
            b'{"v": 1, "seq": -1, "samples": []}',
            RejectReason.SCHEMA,
            "`$.seq`",
        ),
        (
            LIGHT + "telemetry",
            b'{"v": 1, "seq": 1, "samples": []}',
            RejectReason.SCHEMA,
            "`$.samples`",
        ),
        (
            LIGHT + "telemetry",
            b'{"v":1,"seq":1,"samples":[{"ts":"2026-11-28T17:00:00Z","values":{"tilt":1}}],"x":1}',
            RejectReason.SCHEMA,
            "unknown field `x`",
        ),
        (
            LIGHT + "telemetry",
            b'{"v":1,"seq":1,"samples":[{"ts":"yesterday","values":{"tilt":1}}]}',
            RejectReason.SCHEMA,
            "`$.samples[0].ts`",
        ),
        (
            LIGHT + "telemetry",
            b'{"v":1,"seq":1,"samples":[{"ts":"2026-11-28T17:00:00","values":{"tilt":1}}]}',
            RejectReason.BAD_TIMESTAMP,
            "no UTC offset",
        ),
        (
            LIGHT + "telemetry",
            b'{"v":1,"seq":1,"samples":[{"ts":"2026-11-28T19:00:00Z","values":{"tilt":1}}]}',
            RejectReason.BAD_TIMESTAMP,
            "ahead of the platform's clock",
        ),
        (
            LIGHT + "telemetry",
            b'{"v":1,"seq":1,"samples":[{"ts":"2025-01-01T00:00:00Z","values":{"tilt":1}}]}',
            RejectReason.BAD_TIMESTAMP,
            "older than the accepted 90 days",
        ),
        (
            LIGHT + "telemetry",
            b'{"v":1,"seq":1,"samples":[{"ts":"2026-11-28T17:00:00Z","values":{"tilt":1e999}}]}',
            RejectReason.SCHEMA,
            "Number out of range",
        ),
        (
            LIGHT + "telemetry",
            b'{"v":1,"seq":1,"samples":[{"ts":"2026-11-28T17:00:00Z","values":{"tilt":"3"}}]}',
            RejectReason.WRONG_TYPE,
            "tilt: expected a number, got string '3'",
        ),
        (LIGHT + "telemetry", b" " * (MAX_PAYLOAD_BYTES + 1), RejectReason.TOO_LARGE, "limit"),
        ("sc/sefrou/streetlight", b"{}", RejectReason.BAD_TOPIC, "has 3 levels"),
        (LIGHT + "cmd", b"{}", RejectReason.WRONG_DIRECTION, "platform-to-device"),
        (
            "sc/sefrou/signage/sign-1/telemetry",
            b'{"v":1,"seq":1,"samples":[{"ts":"2026-11-28T17:00:00Z","values":{"failed_pixels":2.5}}]}',
            RejectReason.WRONG_TYPE,
            "expected a whole number",
        ),
        (
            LIGHT + "event",
            b'{"v":1,"seq":1,"ts":"2026-11-28T17:00:00Z","kind":"Door Open"}',
            RejectReason.SCHEMA,
            "`$.kind`",
        ),
        (
            LIGHT + "state",
            b'{"v":1,"status":"sleeping","ts":"2026-11-28T17:00:00Z"}',
            RejectReason.SCHEMA,
            "`$.status`",
        ),
    ],
)
def test_bad_messages_are_rejected_with_a_precise_reason(
    topic: str, payload: bytes, reason: RejectReason, detail: str
) -> None:
    decoded = decode(topic, payload, NOW)
    assert isinstance(decoded, Rejected)
    assert decoded.reason is reason
    assert detail in decoded.detail


def test_event_state_and_ack_decode() -> None:
    event = decode(
        "sc/sefrou/signage/sign-1/event",
        b'{"v":1,"seq":4,"ts":"2026-11-28T17:00:00Z","kind":"door_opened",'
        b'"severity":"warning","data":{"by":"crew-3"}}',
        NOW,
    )
    assert isinstance(event, Event)
    assert (event.kind, event.severity, json.loads(event.data_json)) == (
        "door_opened",
        Severity.WARNING,
        {"by": "crew-3"},
    )
    state = decode(
        LIGHT + "state",
        b'{"v":1,"status":"offline","ts":"2026-11-28T06:00:00Z","reason":"connection_lost"}',
        NOW,
    )
    assert isinstance(state, State)
    assert (state.status, state.reason) == (DeviceStatus.OFFLINE, "connection_lost")
    ack = decode(
        LIGHT + "cmd_ack",
        b'{"v":1,"id":"c-42","ts":"2026-11-28T17:59:00Z","outcome":"rejected","reason":"expired"}',
        NOW,
    )
    assert isinstance(ack, CommandAck)
    assert (ack.command_id, ack.outcome) == ("c-42", CommandOutcome.REJECTED)


def test_a_sample_is_accepted_at_the_edges_of_the_window() -> None:
    edges = [NOW - timedelta(days=90), NOW + timedelta(minutes=5)]
    payload = telemetry([{"ts": ts.isoformat(), "values": {"tilt": 0}} for ts in edges])
    decoded = decode(LIGHT + "telemetry", payload, NOW)
    assert isinstance(decoded, Telemetry)
    assert [ts for ts, _ in decoded.samples] == edges


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
topics = st.sampled_from(
    [LIGHT + c for c in ("telemetry", "event", "state", "cmd_ack", "cmd")]
) | st.text(max_size=60)


def _assert_accepted_or_explained(result: object) -> None:
    if isinstance(result, Rejected):
        assert isinstance(result.reason, RejectReason)
        assert result.detail
    else:
        assert isinstance(result, Telemetry | Event | State | CommandAck)


@settings(max_examples=400, deadline=None)
@given(topic=topics, payload=st.binary(max_size=300))
def test_random_bytes_never_escape_the_decoder(topic: str, payload: bytes) -> None:
    _assert_accepted_or_explained(decode(topic, payload, NOW))


@settings(max_examples=400, deadline=None)
@given(topic=topics, document=json_values)
def test_random_json_never_escapes_the_decoder(topic: str, document: object) -> None:
    _assert_accepted_or_explained(decode(topic, json.dumps(document).encode(), NOW))


sample_values = st.dictionaries(
    st.sampled_from(["battery_soc", "tilt", "lamp_on", "pv_power", "nonsense", "dimming_level"]),
    st.one_of(st.booleans(), st.integers(-1000, 1000), st.floats(-1e6, 1e6), st.text(max_size=3)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(values=sample_values)
def test_every_value_is_either_stored_or_rejected_never_both_never_neither(
    values: dict[str, object],
) -> None:
    payload = telemetry([{"ts": "2026-11-28T17:00:00Z", "values": values}])
    decoded = decode(LIGHT + "telemetry", payload, NOW)
    if isinstance(decoded, Rejected):
        assert decoded.detail.count("values.") == len(values)
        return
    assert isinstance(decoded, Telemetry)
    stored = {metric for _, values in decoded.samples for metric in values}
    refused = {r.detail.split("values.")[1].split(":")[0] for r in decoded.rejected_values}
    assert stored | refused == set(values)
    assert not stored & refused


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v":1,"seq":1,"samples":[{"ts":"2026-11-28T17:00:00Z","values":{"tilt":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}}]}",
        b'{"v":1,"seq":1,"ts":"2026-11-28T17:00:00Z","kind":"x","data":{"a":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}}",
    ],
    ids=["telemetry value", "event data"],
)
def test_a_payload_nested_thousands_deep_is_rejected_not_raised(payload: bytes) -> None:
    channel = "telemetry" if b"samples" in payload else "event"
    decoded = decode(LIGHT + channel, payload, NOW)
    assert isinstance(decoded, Rejected)
    assert decoded.reason in {RejectReason.MALFORMED, RejectReason.WRONG_TYPE, RejectReason.SCHEMA}
