"""The agent's store-and-forward spool: order, bounds, expiry, persistence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agents.spool import Spool, SpoolError

T0 = datetime(2026, 11, 28, 18, tzinfo=UTC)
TOPIC = "sc/sefrou/streetlight/sl-1/telemetry"


def payload(index: int, size: int = 100) -> bytes:
    return f"{index:08d}".encode().ljust(size, b".")


def test_messages_come_back_oldest_first_and_leave_when_acknowledged(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool.db", max_bytes=10_000, max_age=timedelta(days=1)) as spool:
        for index in range(5):
            spool.append(TOPIC, payload(index), 1, T0 + timedelta(seconds=index))
        first = spool.oldest(3)
        assert [m.payload[:8] for m in first] == [b"00000000", b"00000001", b"00000002"]
        assert first[0].spooled_at == T0
        spool.remove([m.id for m in first])
        assert [m.payload[:8] for m in spool.oldest(10)] == [b"00000003", b"00000004"]
        assert spool.stats().messages == 2
        assert spool.stats().bytes == 200


def test_a_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool.db", max_bytes=1_000, max_age=timedelta(days=1)) as spool:
        for index in range(15):
            spool.append(TOPIC, payload(index), 1, T0)
        kept = spool.oldest(100)
        assert [m.payload[:8] for m in kept] == [payload(i)[:8] for i in range(5, 15)]
        stats = spool.stats()
        assert (stats.messages, stats.bytes, stats.dropped_overflow) == (10, 1_000, 5)


def test_old_messages_expire_and_are_counted(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool.db", max_bytes=10_000, max_age=timedelta(hours=1)) as spool:
        spool.append(TOPIC, payload(1), 1, T0)
        spool.append(TOPIC, payload(2), 1, T0 + timedelta(minutes=50))
        assert spool.expire(T0 + timedelta(minutes=70)) == 1
        assert [m.payload[:8] for m in spool.oldest(10)] == [b"00000002"]
        assert spool.stats().dropped_expired == 1
        assert spool.stats().bytes == 100


def test_the_spool_and_its_counts_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path, max_bytes=300, max_age=timedelta(days=1)) as spool:
        for index in range(4):
            spool.append(TOPIC, payload(index), 1, T0)
    with Spool(path, max_bytes=300, max_age=timedelta(days=1)) as reopened:
        assert [m.payload[:8] for m in reopened.oldest(10)] == [payload(i)[:8] for i in (1, 2, 3)]
        stats = reopened.stats()
        assert (stats.bytes, stats.dropped_overflow) == (300, 1)


def test_a_message_larger_than_the_spool_is_refused_with_a_reason(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool.db", max_bytes=50, max_age=timedelta(days=1)) as spool:
        spool.append(TOPIC, b"x" * 40, 1, T0)
        with pytest.raises(SpoolError, match="100-byte message cannot fit a 50-byte spool"):
            spool.append(TOPIC, b"y" * 100, 1, T0)
        assert spool.stats().messages == 1, "the refusal dropped nothing"


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=60))
def test_any_sequence_keeps_the_bound_and_the_newest_messages(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int]
) -> None:
    path = tmp_path_factory.mktemp("spool") / "spool.db"
    with Spool(path, max_bytes=1_000, max_age=timedelta(days=1)) as spool:
        for index, size in enumerate(sizes):
            spool.append(TOPIC, payload(index, max(size, 8)), 1, T0)
        kept = spool.oldest(1_000)
        stats = spool.stats()
    assert stats.bytes == sum(len(m.payload) for m in kept) <= 1_000
    indexes = [int(m.payload[:8]) for m in kept]
    assert indexes == list(range(len(sizes) - len(kept), len(sizes))), "a newest suffix"
    assert stats.dropped_overflow == len(sizes) - len(kept)
