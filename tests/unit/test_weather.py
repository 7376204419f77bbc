"""Sefrou's air temperature: hot dry summer afternoons, cold winter nights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from simulators.sky import FES_REGION, SEFROU, daily_clearness
from simulators.weather import SEFROU_CLIMATE, air_temperature, temperature_anomaly

TIMES = pd.date_range("2026-01-01", "2027-01-01", freq="30min", tz="UTC", inclusive="left")
DAYS = pd.date_range("2026-01-01", periods=365, freq="D")


def simulated_year(seed: int) -> np.ndarray:
    """Half-hourly temperatures of 2026, shaped (365 days, 48 half hours)."""
    rng = np.random.default_rng(seed)
    clearness = daily_clearness(DAYS.day_of_year.to_numpy().astype(np.int64), FES_REGION, rng)
    return air_temperature(
        TIMES, SEFROU, SEFROU_CLIMATE, clearness, temperature_anomaly(365, SEFROU_CLIMATE, rng)
    ).reshape(365, 48)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_summer_afternoons_are_hot_and_winter_nights_near_freezing(seed: int) -> None:
    year = simulated_year(seed)
    months = DAYS.month.to_numpy()
    july_afternoons = year.max(axis=1)[months == 7].mean()
    january_nights = year.min(axis=1)[months == 1].mean()
    assert 33 <= july_afternoons <= 37
    assert -1 <= january_nights <= 4
    assert year.min() < 0, "frost happens"


def test_the_warmest_hour_is_mid_afternoon() -> None:
    by_half_hour = simulated_year(4).mean(axis=0)
    warmest_utc_hour = int(np.argmax(by_half_hour)) / 2
    assert 15 <= warmest_utc_hour <= 16  # 15:00 solar time is about 15:20 UTC


def test_same_seed_same_weather() -> None:
    assert_allclose(simulated_year(9), simulated_year(9), rtol=0)


def test_too_few_clearness_days_is_refused() -> None:
    times = pd.date_range("2026-01-01", periods=72, freq="1h", tz="UTC")
    with pytest.raises(ValueError, match="1 days; 3 needed"):
        air_temperature(times, SEFROU, SEFROU_CLIMATE, np.array([0.8]), np.array([0.0]))
