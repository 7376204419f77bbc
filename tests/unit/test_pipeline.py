from datetime import UTC, datetime

from ingest.pipeline import Inbound, classify
from protocol.catalogue import CATALOGUE
from protocol.topics import DeviceClass
from storage.registry import Registration
from storage.writer import telemetry_rows

NOW = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
REGISTRY = {
    "sl-1": Registration("sefrou", DeviceClass.STREETLIGHT),
    "sign-1": Registration("sefrou", DeviceClass.SIGNAGE),
}
GOOD = b'{"v":1,"seq":1,"samples":[{"ts":"2026-11-28T17:00:00Z","values":{"tilt":2}}]}'


def inbound(topic: str, payload: bytes) -> Inbound:
    return Inbound(topic, payload, NOW)


def test_messages_are_sorted_into_rows_and_dead_letters() -> None:
    result = classify(
        [
            inbound("sc/sefrou/streetlight/sl-1/telemetry", GOOD),
            inbound("sc/sefrou/streetlight/sl-9/telemetry", GOOD),
            inbound("sc/sefrou/signage/sl-1/telemetry", GOOD),
            inbound("sc/fes/streetlight/sl-1/telemetry", GOOD),
            inbound("sc/sefrou/streetlight/sl-1/telemetry", b"garbage"),
            inbound("nonsense", b"{}"),
        ],
        REGISTRY,
    )
    assert result.batch.telemetry == {
        DeviceClass.STREETLIGHT: telemetry_rows(
            DeviceClass.STREETLIGHT,
            {("sl-1", datetime(2026, 11, 28, 17, tzinfo=UTC)): {"tilt": 2.0}},
        )
    }
    letters = [(d.device_id, d.reason) for d in result.batch.dead_letters]
    assert letters == [
        ("sl-9", "unknown_device"),
        ("sl-1", "device_mismatch"),
        ("sl-1", "device_mismatch"),
        ("sl-1", "malformed"),
        (None, "bad_topic"),
    ]
    assert result.unknown_devices == {"sl-9"}
    assert result.rejections == {
        "unknown_device": 1,
        "device_mismatch": 2,
        "malformed": 1,
        "bad_topic": 1,
    }


def test_a_partly_bad_message_stores_its_good_values_and_records_the_rest() -> None:
    payload = (
        b'{"v":1,"seq":1,"samples":[{"ts":"2026-11-28T17:00:00Z",'
        b'"values":{"tilt":2,"battery_soc":-5}}]}'
    )
    result = classify([inbound("sc/sefrou/streetlight/sl-1/telemetry", payload)], REGISTRY)
    assert result.batch.telemetry_row_count() == 1
    [letter] = result.batch.dead_letters
    assert letter.reason == "out_of_range"
    assert letter.detail.startswith("1 value(s) refused, the rest stored:")
    assert letter.payload == payload


def test_samples_of_the_same_instant_merge_and_the_first_value_wins() -> None:
    def message(values: str) -> bytes:
        return (
            b'{"v":1,"seq":1,"samples":[{"ts":"2026-11-28T17:00:00Z","values":%s}]}'
            % values.encode()
        )

    topic = "sc/sefrou/streetlight/sl-1/telemetry"
    result = classify(
        [
            inbound(topic, message('{"tilt": 2}')),
            inbound(topic, message('{"tilt": 3, "battery_soc": 50}')),
        ],
        REGISTRY,
    )
    [row] = result.batch.telemetry[DeviceClass.STREETLIGHT]
    metrics = list(CATALOGUE[DeviceClass.STREETLIGHT].metrics)
    assert row[:2] == (datetime(2026, 11, 28, 17, tzinfo=UTC), "sl-1")
    stored = {
        metric: value for metric, value in zip(metrics, row[2:], strict=True) if value is not None
    }
    assert stored == {"tilt": 2.0, "battery_soc": 50.0}
