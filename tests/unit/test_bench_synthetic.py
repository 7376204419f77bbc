import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.synthetic import demo_values
from protocol.decoding import Telemetry, decode
from protocol.payloads import Sample, TelemetryPayload, encode
from protocol.sites import load_site
from protocol.topics import Channel, DeviceTopic

SEFROU = load_site(Path(__file__).parents[2] / "sites" / "sefrou.yaml")


def test_demo_values_are_valid_for_every_device_at_every_hour() -> None:
    rng = random.Random(3)
    start = datetime(2026, 11, 28, tzinfo=UTC)
    for device in SEFROU.devices[::7]:
        topic = DeviceTopic("sefrou", device.device_class, device.id, Channel.TELEMETRY)
        for hour in range(0, 24, 3):
            at = start + timedelta(hours=hour)
            payload = encode(TelemetryPayload(1, hour, [Sample(at, demo_values(device, at, rng))]))
            decoded = decode(str(topic), payload, at)
            assert isinstance(decoded, Telemetry), decoded
            assert decoded.rejected_values == ()
