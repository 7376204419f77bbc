"""Durations as written in rule and strategy files."""

from __future__ import annotations

from datetime import timedelta

import pytest

from protocol.durations import parse_duration


def test_durations_read_in_their_unit() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("+1.5d") == timedelta(days=1.5)


def test_a_duration_too_long_for_a_timedelta_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("99999999999d")


def test_a_duration_without_unit_says_what_to_write() -> None:
    with pytest.raises(ValueError, match=r"write e\.g\. 30m"):
        parse_duration("30")
