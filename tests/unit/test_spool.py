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
        spool.acknowledge([m.id for m in first], T0)
        assert [m.payload[:8] for m in spool.oldest(10)] == [b"00000003", b"00000004"]
        assert spool.stats().messages == 2
        assert spool.stats().bytes == 200


def spooled(spool: Spool, count: int, at: datetime = T0) -> list[int]:
    for index in range(count):
        spool.append(TOPIC, payload(index), 1, at)
    return [message.id for message in spool.oldest(count)]


def indexes(spool: Spool) -> list[int]:
    return [int(message.payload[:8]) for message in spool.oldest(1_000)]


def test_what_was_acknowledged_comes_back_ahead_of_newer_messages_after_a_reconnection(
    tmp_path: Path,
) -> None:
    with Spool(tmp_path / "spool.db", 10_000, timedelta(days=1), timedelta(seconds=10)) as spool:
        ids = spooled(spool, 5)
        spool.acknowledge(ids[:3], T0)
        assert indexes(spool) == [3, 4]
        assert spool.requeue_acknowledged(T0) == 3
        assert indexes(spool) == [0, 1, 2, 3, 4], "in the order they were first spooled"
        assert (spool.stats().messages, spool.stats().bytes) == (2, 200), "outside the bound"
        assert spool.requeue_acknowledged(T0) == 0, "marked once"
        spool.acknowledge(ids[:3], T0 + timedelta(seconds=1))
        assert indexes(spool) == [3, 4], "acknowledged again: back in the window"
        assert spool.requeue_acknowledged(T0) == 3


def test_the_replay_window_is_never_dropped_to_make_room_nor_counted_as_lost(
    tmp_path: Path,
) -> None:
    with Spool(tmp_path / "spool.db", 1_200, timedelta(days=1), timedelta(seconds=10)) as spool:
        spool.acknowledge(spooled(spool, 3), T0)
        spool.requeue_acknowledged(T0)
        for index in range(3, 16):
            spool.append(TOPIC, payload(index), 1, T0)
        assert indexes(spool) == [0, 1, 2, *range(4, 16)], "the window, then the newest that fit"
        assert spool.stats().dropped_overflow == 1


def test_the_replay_window_is_measured_from_the_newest_acknowledgement_not_from_now(
    tmp_path: Path,
) -> None:
    with Spool(tmp_path / "spool.db", 10_000, timedelta(days=1), timedelta(seconds=10)) as spool:
        ids = spooled(spool, 4)
        spool.acknowledge(ids[:1], T0)
        spool.acknowledge(ids[1:2], T0 + timedelta(seconds=5))
        spool.acknowledge(ids[2:3], T0 + timedelta(seconds=12))  # pushes out the first only
        assert spool.requeue_acknowledged(T0 + timedelta(days=0.5)) == 2
        assert indexes(spool) == [1, 2, 3], "an idle device keeps its last ones however long"


def test_a_link_dropping_every_few_seconds_does_not_keep_the_window_from_ageing(
    tmp_path: Path,
) -> None:
    with Spool(tmp_path / "spool.db", 100_000, timedelta(days=1), timedelta(seconds=10)) as spool:
        sent = 0
        for reconnection in range(20):  # 5 messages, then the link drops, every 5 s
            now = T0 + timedelta(seconds=5 * reconnection)
            spool.requeue_acknowledged(now)
            for index in range(sent, sent + 5):
                spool.append(TOPIC, payload(index), 1, now)
            sent += 5
            spool.acknowledge([message.id for message in spool.oldest(1_000)], now)
        assert spool.requeue_acknowledged(now) == 10, "the last 10 s: two rounds of 5, not 100"
        assert indexes(spool) == list(range(90, 100))


def test_the_replay_window_has_a_bound_of_its_own(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool.db", 2_000, timedelta(days=1), timedelta(seconds=10)) as spool:
        spool.acknowledge(spooled(spool, 12), T0)  # 1,200 bytes, a quarter of 2,000 is 500
        assert spool.requeue_acknowledged(T0) == 5
        assert indexes(spool) == [7, 8, 9, 10, 11], "the newest kept"
        assert spool.stats().dropped_overflow == 0, "delivered once: no loss"


def test_a_message_the_broker_refused_is_never_sent_again(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool.db", 10_000, timedelta(days=1)) as spool:
        ids = spooled(spool, 2)
        spool.remove(ids[:1])
        spool.acknowledge(ids[1:], T0)
        spool.requeue_acknowledged(T0)
        assert indexes(spool) == [1]


def test_a_zero_replay_window_forgets_at_the_acknowledgement(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool.db", 10_000, timedelta(days=1), timedelta(0)) as spool:
        spool.acknowledge(spooled(spool, 2), T0)
        assert spool.requeue_acknowledged(T0) == 0
        assert indexes(spool) == []


def test_the_replay_window_survives_a_restart_and_expires_without_counting_a_loss(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.db"
    with Spool(path, 10_000, timedelta(hours=1)) as spool:
        spool.append(TOPIC, payload(0), 1, T0)
        spool.append(TOPIC, payload(1), 1, T0 + timedelta(minutes=30))
        spool.acknowledge([m.id for m in spool.oldest(2)], T0 + timedelta(minutes=30))
    with Spool(path, 10_000, timedelta(hours=1)) as reopened:
        assert reopened.requeue_acknowledged(T0 + timedelta(minutes=70)) == 1
        assert indexes(reopened) == [1], "older than the spool keeps: delivered once, let go"
        assert reopened.stats().dropped_expired == 0


def test_a_negative_replay_window_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="replay_window cannot be negative"):
        Spool(tmp_path / "spool.db", 10_000, timedelta(days=1), timedelta(seconds=-1))


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
