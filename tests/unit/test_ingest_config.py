from ingest.config import IngestConfig
from protocol.payloads import MAX_PAYLOAD_BYTES


def test_the_receive_maximum_asked_of_the_broker_fits_the_memory_bound() -> None:
    config = IngestConfig("postgresql://x", receive_maximum=4_000, max_held_bytes=1024**3)
    assert config.effective_receive_maximum == 4_000
    tight = IngestConfig("postgresql://x", max_held_bytes=10 * MAX_PAYLOAD_BYTES)
    assert tight.effective_receive_maximum == 10
    assert IngestConfig("postgresql://x", max_held_bytes=1).effective_receive_maximum == 1
