"""Variable message sign physics: power, dimming, cabinet heat, pixel wear, fault word."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from protocol.catalogue import SIGN_FAULT_BITS
from simulators.signage import (
    PARKING_GUIDANCE_FULL_COLOUR,
    SIGN_RATINGS,
    VMS_2_LINE_AMBER,
    VMS_3_LINE_AMBER,
    SignRating,
    ambient_illuminance,
    enclosure_temperature_step,
    fan_thermostat,
    fault_bits,
    led_power,
    over_temperature_derate,
    pixel_failures_step,
    pixel_fault,
    power_fault,
    supply_voltage,
    temperature_fault,
)

ALL_RATINGS = [VMS_3_LINE_AMBER, VMS_2_LINE_AMBER, PARKING_GUIDANCE_FULL_COLOUR]


def test_every_signage_model_of_the_sefrou_site_has_a_rating() -> None:
    assert set(SIGN_RATINGS) == {
        "vms-3-line-amber",
        "vms-2-line-amber",
        "parking-full-colour",
    }


@pytest.mark.parametrize("rating", ALL_RATINGS)
def test_led_power_equals_the_rating_at_full_brightness_with_every_pixel_lit(
    rating: SignRating,
) -> None:
    assert_allclose(led_power(np.array([100.0]), 1.0, rating), [rating.led_w + rating.standby_w])
    assert_allclose(led_power(np.array([100.0]), 0.0, rating), [rating.standby_w])


def test_led_power_scales_with_brightness_and_lit_fraction() -> None:
    rating = VMS_3_LINE_AMBER
    brightness = np.array([0.0, 25.0, 50.0, 100.0, 50.0])
    lit = np.array([0.3, 0.3, 0.3, 0.3, 0.6])
    led = led_power(brightness, lit, rating) - rating.standby_w
    assert_allclose(led, rating.led_w * brightness / 100 * lit)
    assert_allclose(led[4], 2 * led[2])
    assert np.all(np.diff(led[:4]) > 0)


def test_failed_pixels_draw_nothing() -> None:
    rating = VMS_2_LINE_AMBER
    half = np.array([rating.pixel_count // 2], dtype=np.int64)
    power = led_power(np.array([100.0]), 1.0, rating, failed_pixels=half)
    assert_allclose(power, [rating.standby_w + rating.led_w / 2])


def steady_state(
    air: float, electrical: float, ghi: float, resistance: float, rating: SignRating
) -> float:
    return air + resistance * (electrical + rating.absorptance * rating.sun_area * ghi)


@pytest.mark.parametrize("rating", ALL_RATINGS)
def test_the_cabinet_settles_at_the_analytic_steady_state(rating: SignRating) -> None:
    air, ghi, electrical = np.array([30.0]), np.array([800.0]), np.array([400.0])
    temperature = np.array([10.0])
    for _ in range(200):  # 200 h, far beyond the time constant
        temperature = enclosure_temperature_step(
            temperature, air, ghi, electrical, rating=rating, seconds=3_600.0, fan_on=False
        )
    expected = steady_state(30.0, 400.0, 800.0, rating.thermal_resistance, rating)
    assert_allclose(temperature, [expected])


@pytest.mark.parametrize("seconds", [1.0, 60.0, 600.0, 1_800.0, 7_200.0])
def test_the_time_constant_is_r_times_c_whatever_the_step(seconds: float) -> None:
    rating = VMS_3_LINE_AMBER
    tau = rating.thermal_resistance * rating.heat_capacity
    air, ghi, electrical = np.array([20.0]), np.array([0.0]), np.array([500.0])
    expected_steady = steady_state(20.0, 500.0, 0.0, rating.thermal_resistance, rating)
    start = np.array([20.0])
    steps = 50
    temperature = start
    for _ in range(steps):
        temperature = enclosure_temperature_step(
            temperature, air, ghi, electrical, rating=rating, seconds=seconds, fan_on=False
        )
    elapsed = steps * seconds
    expected = expected_steady + (start - expected_steady) * np.exp(-elapsed / tau)
    assert_allclose(temperature, expected, rtol=1e-12)


def test_after_one_time_constant_63_percent_of_the_rise_is_done() -> None:
    rating = VMS_2_LINE_AMBER
    tau = rating.thermal_resistance * rating.heat_capacity
    air = np.array([15.0])
    rise = enclosure_temperature_step(
        air, air, np.array([0.0]), np.array([600.0]), rating=rating, seconds=tau, fan_on=False
    )
    assert_allclose((rise - 15.0) / (rating.thermal_resistance * 600.0), [1 - np.exp(-1)])


def test_the_fan_and_an_open_door_lower_the_thermal_resistance() -> None:
    rating = VMS_3_LINE_AMBER
    air, ghi, power = np.full(3, 30.0), np.full(3, 1_000.0), np.full(3, 300.0)
    temperature = np.full(3, 30.0)
    fan = np.array([False, True, False])
    door = np.array([False, False, True])
    for _ in range(100):
        temperature = enclosure_temperature_step(
            temperature, air, ghi, power, rating=rating, seconds=3_600.0, fan_on=fan, door_open=door
        )
    resistances = [
        rating.thermal_resistance,
        rating.fan_thermal_resistance,
        rating.door_open_thermal_resistance,
    ]
    assert_allclose(
        temperature, [steady_state(30.0, 300.0, 1_000.0, r, rating) for r in resistances]
    )
    assert temperature[0] > temperature[1] > temperature[2]


def test_without_an_explicit_fan_state_the_thermostat_decides() -> None:
    rating = VMS_3_LINE_AMBER
    hot, cool = rating.fan_on_temperature + 10, rating.fan_on_temperature - 10
    temperature = np.array([hot, cool])
    air, ghi, power = np.full(2, 25.0), np.zeros(2), np.zeros(2)
    automatic = enclosure_temperature_step(
        temperature, air, ghi, power, rating=rating, seconds=600.0
    )
    explicit = enclosure_temperature_step(
        temperature, air, ghi, power, rating=rating, seconds=600.0, fan_on=np.array([True, False])
    )
    assert_allclose(automatic, explicit)


def test_the_fan_thermostat_has_hysteresis() -> None:
    rating = VMS_3_LINE_AMBER
    start, stop = rating.fan_on_temperature, rating.fan_on_temperature - rating.fan_hysteresis
    between = (start + stop) / 2
    temperature = np.array([start, between, between, stop - 1])
    was_on = np.array([False, False, True, True])
    assert_array_equal(fan_thermostat(temperature, was_on, rating), [True, False, True, False])


@pytest.mark.parametrize("rating", ALL_RATINGS)
def test_the_noon_sun_heats_a_sign_above_the_air(rating: SignRating) -> None:
    air = np.array([35.0])
    temperature = air.copy()
    standby = np.array([rating.standby_w])
    for _ in range(24 * 6):  # a summer noon held for a day, 10-minute steps, fan on
        temperature = enclosure_temperature_step(
            temperature,
            air,
            np.array([1_000.0]),
            standby,
            rating=rating,
            seconds=600.0,
            fan_on=True,
        )
    assert temperature[0] > air[0] + 5
    at_night = enclosure_temperature_step(
        air, air, np.array([0.0]), standby, rating=rating, seconds=3_600.0, fan_on=True
    )
    assert at_night[0] < temperature[0]


def test_ambient_light_follows_daylight_and_street_lighting() -> None:
    lux = ambient_illuminance(np.array([0.0, 100.0, 1_000.0]))
    assert 0 <= lux[0] <= 10, "night: street lighting only"
    assert 100 * 100 <= lux[1] <= 100 * 120
    assert 100_000 <= lux[2] <= 120_000


def test_over_temperature_derating_caps_brightness() -> None:
    rating = VMS_3_LINE_AMBER
    temperature = np.array(
        [
            20.0,
            rating.derate_temperature,
            (rating.derate_temperature + rating.critical_temperature) / 2,
            rating.critical_temperature,
            rating.critical_temperature + 20,
        ]
    )
    cap = over_temperature_derate(temperature, rating)
    floor = rating.derate_floor
    assert_allclose(cap, [100.0, 100.0, (100.0 + floor) / 2, floor, floor])
    wanted = np.full(5, 100.0)
    assert np.all(np.minimum(wanted, cap)[2:] < 100.0)


def test_pixel_failures_accumulate_within_the_matrix() -> None:
    pixels = np.array([100, 3_456, 6_144], dtype=np.int64)
    failed = np.zeros(3, dtype=np.int64)
    rng = np.random.default_rng(11)
    history = [failed]
    for _ in range(200):  # an absurd failure rate to reach the bound quickly
        failed = pixel_failures_step(failed, pixels, 24.0, 1e-2, rng)
        history.append(failed)
    stacked = np.array(history)
    assert np.all(np.diff(stacked, axis=0) >= 0), "never decreasing"
    assert np.all(stacked <= pixels), "never above the pixel count"
    assert failed[0] == 100, "a small matrix fails entirely"
    assert stacked.dtype == np.int64


def test_pixel_failures_are_reproducible_with_the_same_seed() -> None:
    def run(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        failed = np.zeros(2, dtype=np.int64)
        counts: list[int] = []
        for _ in range(50):
            failed = pixel_failures_step(failed, VMS_3_LINE_AMBER.pixel_count, 720.0, 1e-5, rng)
            counts.extend(failed.tolist())
        return counts

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_pixel_failure_rate_matches_its_expectation() -> None:
    pixels = np.full(1_000, 10_000, dtype=np.int64)
    failed = pixel_failures_step(
        np.zeros(1_000, dtype=np.int64), pixels, 1_000.0, 1e-5, np.random.default_rng(2)
    )
    expected = 10_000 * (1 - np.exp(-1e-5 * 1_000))
    assert_allclose(failed.mean(), expected, rtol=0.02)


def test_supply_voltage_is_nominal_with_small_noise_or_zero_when_lost() -> None:
    supply_ok = np.array([True] * 999 + [False])
    volts = supply_voltage(supply_ok, np.random.default_rng(1))
    assert volts[-1] == 0.0
    assert np.all(np.abs(volts[:-1] - 230.0) < 15.0)
    assert abs(volts[:-1].mean() - 230.0) < 0.5
    assert_array_equal(power_fault(volts), ~supply_ok)


def bit(name: str) -> int:
    return 1 << SIGN_FAULT_BITS.index(name)


def test_fault_bits_names_are_the_catalogue_bits() -> None:
    assert list(inspect.signature(fault_bits).parameters) == list(SIGN_FAULT_BITS)


@pytest.mark.parametrize("name", SIGN_FAULT_BITS)
def test_each_fault_sets_its_own_bit(name: str) -> None:
    word = fault_bits(**{name: np.array([True, False])})
    assert_array_equal(word, [bit(name), 0])


def test_fault_bits_combine_per_sign() -> None:
    rating = VMS_3_LINE_AMBER
    failed = np.array([0, rating.pixel_count // 10, 0], dtype=np.int64)
    temperature = np.array([30.0, 30.0, rating.critical_temperature + 1])
    volts = np.array([0.0, 231.0, 229.0])
    word = fault_bits(
        pixel=pixel_fault(failed, rating.pixel_count),
        temperature=temperature_fault(temperature, rating),
        power=power_fault(volts),
        photocell=np.array([False, True, False]),
    )
    assert_array_equal(word, [bit("power"), bit("pixel") | bit("photocell"), bit("temperature")])
    assert word.dtype == np.int64
    assert fault_bits().shape == ()
    assert int(fault_bits()) == 0


def test_a_few_failed_pixels_are_no_pixel_fault_yet() -> None:
    pixels = VMS_3_LINE_AMBER.pixel_count
    few, many = np.array([3], dtype=np.int64), np.array([pixels // 100], dtype=np.int64)
    assert not pixel_fault(few, pixels)[0]
    assert pixel_fault(many, pixels)[0]


def test_a_rating_refuses_inconsistent_thresholds() -> None:
    with pytest.raises(ValueError, match="critical_temperature"):
        SignRating(
            pixel_count=100,
            led_w=100.0,
            standby_w=10.0,
            thermal_resistance=0.01,
            fan_thermal_resistance=0.005,
            door_open_thermal_resistance=0.002,
            heat_capacity=1e5,
            sun_area=1.0,
            absorptance=0.9,
            fan_on_temperature=35.0,
            fan_hysteresis=5.0,
            derate_temperature=60.0,
            critical_temperature=50.0,
        )
