"""Agents (zoneinfo) and schedules and simulations (pandas) read the same local time."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pandas as pd

import protocol  # noqa: F401 - chooses the time zone database


def test_zoneinfo_and_pandas_agree_on_moroccan_time_for_years_ahead() -> None:
    moments = pd.date_range("2025-01-01", "2031-01-01", freq="6h", tz="UTC")
    by_pandas = moments.tz_convert("Africa/Casablanca")
    zone = ZoneInfo("Africa/Casablanca")
    disagreements = [
        moment
        for moment, local in zip(moments.to_pydatetime(), by_pandas, strict=True)
        if moment.astimezone(zone).utcoffset() != local.utcoffset()
    ]
    assert disagreements == []
