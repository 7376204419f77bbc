"""``smartcity bench broker-crash``'s counting: losses, acknowledgement times, settings and the
summary table (the run against a real Mosquitto is tests/integration/test_bench_broker_crash.py)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from bench.broker_crash import (
    DEFAULT_SETTINGS,
    CrashBenchConfig,
    CrashRun,
    acknowledgement_times,
    count_losses,
    crash_delays,
    last_save,
    lost_span,
    message_number,
    parse_setting,
    summarize,
)
from broker_config import DEFAULT_AUTOSAVE, Autosave, BrokerConfigError


def test_lost_is_acknowledged_and_never_delivered() -> None:
    losses = count_losses(acknowledged=range(10), deliveries=[0, 1, 2, 2, 5, 11])
    assert losses.acknowledged == 10
    assert losses.delivered == 4  # 0, 1, 2, 5: each message once, however often it came
    assert losses.lost == 6
    assert losses.delivered_unacknowledged == 1  # 11: in flight at the kill, yet saved
    assert losses.duplicates == 1


@pytest.mark.parametrize(
    ("acknowledged", "deliveries", "lost", "unacknowledged", "duplicates"),
    [
        (range(5), [0, 1, 2, 3, 4], 0, 0, 0),
        (range(5), [], 5, 0, 0),
        (range(5), [4, 4, 3, 5, 6], 3, 2, 1),
        ([], [1, 1], 0, 1, 1),
    ],
)
def test_counts_add_up(
    acknowledged: range | list[int],
    deliveries: list[int],
    lost: int,
    unacknowledged: int,
    duplicates: int,
) -> None:
    losses = count_losses(acknowledged, deliveries)
    assert losses.acknowledged == losses.delivered + losses.lost
    assert (losses.lost, losses.delivered_unacknowledged, losses.duplicates) == (
        lost,
        unacknowledged,
        duplicates,
    )


def test_an_acknowledgement_goes_to_the_message_its_packet_id_was_given_to() -> None:
    # Packet ids wrap: messages 0 and 3 both went out as id 1; the PUBACKs came out of order.
    packet_ids = [1, 2, 3, 1]
    acknowledgements = [(2, 10.0), (1, 11.0), (3, 12.0), (1, 13.0)]
    assert acknowledgement_times(packet_ids, acknowledgements) == {
        0: 11.0,
        1: 10.0,
        2: 12.0,
        3: 13.0,
    }


def test_an_acknowledgement_of_nothing_published_is_ignored() -> None:
    assert acknowledgement_times([1], [(1, 5.0), (1, 6.0), (9, 7.0)]) == {0: 5.0}


def test_the_lost_span_runs_from_the_first_lost_acknowledgement_to_the_kill() -> None:
    acknowledged_at = {0: 100.0, 1: 100.5, 2: 101.0, 3: 101.5}
    assert lost_span(acknowledged_at, [0, 1], killed_at=102.0) == pytest.approx(1.0)
    assert lost_span(acknowledged_at, [0, 1, 2, 3], killed_at=102.0) is None


def test_settings_are_written_as_mosquitto_counts_them() -> None:
    assert parse_setting("interval=1") == Autosave(1)
    assert parse_setting("changes=100") == Autosave(100, on_changes=True)
    for wrong in ("interval=0", "changes=", "every=3", "100"):
        with pytest.raises(BrokerConfigError, match="interval=N"):
            parse_setting(wrong)


def test_the_default_is_always_measured_first_and_once() -> None:
    config = CrashBenchConfig(settings=(Autosave(1), DEFAULT_AUTOSAVE, Autosave(1)))
    assert config.compared == (DEFAULT_AUTOSAVE, Autosave(1))
    assert CrashBenchConfig().compared == DEFAULT_SETTINGS


def test_every_setting_is_crashed_after_the_same_seeded_delays() -> None:
    delays = crash_delays(seed=3, runs=5, low_s=4, high_s=12)
    assert delays == crash_delays(seed=3, runs=5, low_s=4, high_s=12)
    assert delays != crash_delays(seed=4, runs=5, low_s=4, high_s=12)
    assert all(4 <= delay <= 12 for delay in delays)
    with pytest.raises(ValueError, match="low <= high"):
        crash_delays(seed=3, runs=5, low_s=5, high_s=4)


def test_the_message_number_is_read_back_from_the_payload() -> None:
    assert message_number(b'{"v":1,"seq":4711,"samples":[]}') == 4711


def _crash(setting: str, lost: int, since_save_s: float | None, written: int) -> CrashRun:
    return CrashRun(
        setting=setting,
        consumer="away",
        run=1,
        delay_s=5.0,
        rate_asked=800.0,
        published=4_000,
        acknowledged=4_000,
        delivered=4_000 - lost,
        lost=lost,
        delivered_unacknowledged=0,
        duplicates=0,
        session_present=True,
        publish_s=5.0,
        lost_span_s=since_save_s,
        since_save_s=since_save_s,
        killed_mid_save=False,
        saves=2,
        last_save_s=0.01,
        written_bytes=written,
        file_bytes=1_000_000,
    )


def test_the_summary_gives_lost_and_disk_writes_against_the_default() -> None:
    runs = [
        _crash("interval=2", 800, 1.0, 5_000_000),
        _crash("interval=2", 2_000, 2.6, 5_000_000),
        _crash("interval=2", 1_200, 1.5, 5_000_000),
        _crash("changes=100", 50, 0.07, 60_000_000),
        _crash("changes=100", 90, 0.12, 40_000_000),
    ]
    default, changes = summarize(runs)
    assert (default.setting, default.runs, default.lost) == ("interval=2", 3, (800, 1_200, 2_000))
    assert default.lost_over_rate_s == pytest.approx(2.5)
    assert default.since_save_s == pytest.approx(2.6)
    assert default.write_rate == pytest.approx(1_000_000)
    assert default.write_ratio == pytest.approx(1.0)
    assert changes.write_ratio == pytest.approx(10.0)
    assert changes.saves_per_s == pytest.approx(0.4)
    assert default.agents_covered
    assert changes.agents_covered


def test_a_window_longer_than_the_agents_replay_window_is_not_covered() -> None:
    (summary,) = summarize([_crash("changes=1000", 100, 12.5, 0)])
    assert summary.agents_covered is False
    (lost_session,) = summarize([replace(_crash("interval=2", 0, None, 0), session_present=False)])
    assert lost_session.sessions_lost == 1


def test_a_save_is_dated_from_the_birth_of_its_file(tmp_path: Path) -> None:
    before = time.time()
    staging = tmp_path / "mosquitto.db.new"
    staging.write_bytes(b"x" * 1000)
    staging.rename(tmp_path / "mosquitto.db")
    stamp = last_save(tmp_path / "mosquitto.db")
    assert stamp is not None
    assert stamp.size == 1000
    if stamp.started_at is not None:  # statx and a file system that records births
        assert before - 0.05 <= stamp.started_at <= stamp.finished_at
    assert last_save(tmp_path / "absent.db") is None
