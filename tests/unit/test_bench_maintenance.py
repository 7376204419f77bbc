"""bench maintenance's arithmetic: pauses and waits from the stored-row readings."""

from __future__ import annotations

import pytest

from bench.maintenance import longest_pause, summarise, waits


def test_a_count_standing_still_with_nothing_waiting_is_no_pause() -> None:
    sent = [0.0, 0.1]
    readings = [(0.05, 1), (0.2, 2), (5.0, 2)]  # everything stored by 0.2 s, then idle
    assert longest_pause(readings, sent) == 0.0


def test_a_pause_runs_from_when_a_message_waits_to_when_the_count_moves() -> None:
    sent = [0.0, 1.0, 1.1]
    readings = [(0.1, 1), (0.5, 1), (2.0, 1), (4.0, 1), (4.2, 3)]
    # message 2 (index 1) was sent at 1.0 and the count stood at 1 until 4.2: the last
    # reading before it moved is 4.0
    assert longest_pause(readings, sent) == pytest.approx(3.0)


def test_each_message_waits_until_the_first_reading_that_counts_it() -> None:
    sent = [0.0, 0.5, 1.0]
    readings = [(0.2, 1), (0.7, 1), (1.5, 3)]
    assert waits(readings, sent) == pytest.approx([0.2, 1.0, 0.5])


def test_the_summary_names_the_longest_wait_and_the_percentiles() -> None:
    sent = [float(i) for i in range(100)]
    readings = [(i + 0.1, i + 1) for i in range(99)] + [(104.0, 100)]
    pauses = summarise(readings, sent)
    assert pauses.messages == 100
    assert pauses.wait_max_s == pytest.approx(5.0)
    assert pauses.wait_p50_s == pytest.approx(0.1)
