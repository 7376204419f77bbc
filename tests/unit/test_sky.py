"""Sun and sky over Sefrou, against analytic values, pvlib and the region's climate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest
from numpy.testing import assert_allclose

from simulators.sky import (
    FES_REGION,
    SEFROU,
    clear_sky_ghi,
    cloudy_ghi,
    daily_clearness,
    sun_elevation,
)

OBLIQUITY = 23.44  # [deg]


def day(date: str, freq: str = "1min") -> pd.DatetimeIndex:
    return pd.date_range(f"{date} 00:00", f"{date} 23:59", freq=freq, tz="UTC")


@pytest.mark.parametrize(
    ("date", "declination"),
    [("2026-06-21", OBLIQUITY), ("2026-12-21", -OBLIQUITY)],
    ids=["summer solstice", "winter solstice"],
)
def test_the_noon_sun_stands_where_geometry_puts_it(date: str, declination: float) -> None:
    highest = sun_elevation(day(date), SEFROU).max()
    assert_allclose(highest, 90 - abs(SEFROU.latitude - declination), atol=0.2)


@pytest.mark.parametrize("date", ["2026-06-21", "2026-12-21"])
def test_clear_sky_irradiance_is_pvlibs_for_sefrou(date: str) -> None:
    times = day(date, "10min")
    reference = pvlib.location.Location(33.83, -4.84, altitude=850).get_clearsky(times)
    assert_allclose(clear_sky_ghi(times, SEFROU), reference["ghi"].to_numpy(), rtol=1e-12)


def test_clear_noon_irradiance_is_plausible_in_both_seasons() -> None:
    assert 950 < clear_sky_ghi(day("2026-06-21"), SEFROU).max() < 1_100
    assert 550 < clear_sky_ghi(day("2026-12-21"), SEFROU).max() < 700
    assert clear_sky_ghi(day("2026-12-21"), SEFROU).min() == 0.0, "night"


def annual_kwh_per_m2(seed: int) -> float:
    times = pd.date_range("2026-01-01", "2027-01-01", freq="10min", tz="UTC", inclusive="left")
    ghi = cloudy_ghi(times, SEFROU, FES_REGION, np.random.default_rng(seed))
    return float(ghi.sum() * (10 / 60) / 1_000)


def test_a_simulated_year_receives_the_regions_irradiation() -> None:
    years = [annual_kwh_per_m2(seed) for seed in range(6)]
    # The region's 1,800-1,900 kWh/m^2 is a long-term mean; single years vary by a few %.
    assert 1_800 <= np.mean(years) <= 1_900
    assert all(1_750 <= year <= 1_950 for year in years)


def test_cloudy_days_come_in_runs_and_winter_is_cloudier() -> None:
    days = np.tile(np.arange(1, 366, dtype=np.int64), 10)
    clearness = daily_clearness(days, FES_REGION, np.random.default_rng(7))
    assert clearness.min() >= 0.08
    assert clearness.max() <= 1.0
    anomaly = clearness - clearness.mean()
    lag_one = np.corrcoef(anomaly[:-1], anomaly[1:])[0, 1]
    assert lag_one > 0.4, "persistent weather, not independent days"
    january = clearness[(days >= 1) & (days <= 31)].mean()
    july = clearness[(days >= 182) & (days <= 212)].mean()
    assert january < july - 0.15


def test_the_same_seed_gives_the_same_sky() -> None:
    times = day("2026-01-15", "15min")
    first = cloudy_ghi(times, SEFROU, FES_REGION, np.random.default_rng(42))
    again = cloudy_ghi(times, SEFROU, FES_REGION, np.random.default_rng(42))
    other = cloudy_ghi(times, SEFROU, FES_REGION, np.random.default_rng(43))
    assert_allclose(first, again, rtol=0)
    assert not np.allclose(first, other)


def test_times_without_a_time_zone_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        sun_elevation(pd.date_range("2026-01-01", periods=3, freq="1h"), SEFROU)
