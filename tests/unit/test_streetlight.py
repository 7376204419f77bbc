"""Solar streetlight physics: panel rating, battery curve, energy balance, disconnect."""

from __future__ import annotations

import numpy as np
from numpy.testing import assert_allclose

from simulators.streetlight import (
    MODEL_40W,
    battery_voltage,
    cell_temperature,
    panel_power,
    step,
)


def test_a_panel_gives_its_rated_power_at_standard_test_conditions() -> None:
    # Cell at 25 C under 1,000 W/m^2 needs the air at 25 - 25 * 1000 / 800 = -6.25 C.
    air = np.array([-6.25])
    assert_allclose(cell_temperature(np.array([1_000.0]), air, 45.0), [25.0])
    assert_allclose(panel_power(np.array([1_000.0]), air, MODEL_40W), [150.0])


def test_a_hot_or_dirty_panel_gives_less() -> None:
    sun = np.array([900.0])
    cool = panel_power(sun, np.array([5.0]), MODEL_40W)
    hot = panel_power(sun, np.array([37.0]), MODEL_40W)
    dirty = panel_power(sun, np.array([5.0]), MODEL_40W, soiling=0.7)
    # 32 K hotter air makes the cell 32 K hotter: -0.37 %/K.
    assert_allclose(
        hot / cool, (1 - 0.0037 * (cool_cell(5) + 32 - 25)) / (1 - 0.0037 * (cool_cell(5) - 25))
    )
    assert_allclose(dirty, cool * 0.7)
    assert panel_power(np.array([0.0]), np.array([20.0]), MODEL_40W)[0] == 0.0


def cool_cell(air: float) -> float:
    return air + 25 * 900 / 800


def test_battery_voltage_follows_the_lifepo4_curve() -> None:
    soc = np.linspace(0, 100, 101)
    volts = battery_voltage(soc, np.zeros_like(soc))
    assert np.all(np.diff(volts) >= 0)
    assert_allclose(battery_voltage(np.array([50.0]), np.array([0.0])), [13.2])
    assert battery_voltage(np.array([50.0]), np.array([10.0]))[0] > 13.2, "charging raises it"


def test_energy_is_conserved_at_every_step_for_a_whole_fleet() -> None:
    rng = np.random.default_rng(5)
    lights = 200
    soc = rng.uniform(0, 100, lights)
    disconnected = np.zeros(lights, dtype=bool)
    hours = 5 / 60
    for _ in range(2_000):  # about a week in 5-minute steps
        panel = rng.uniform(0, 150, lights) * (rng.random(lights) < 0.5)
        demand = rng.uniform(0, 40, lights) * (rng.random(lights) < 0.5)
        new_soc, disconnected, lamp, energy = step(
            soc, disconnected, panel, demand, rating=MODEL_40W, hours=hours
        )
        balance = energy.stored + energy.delivered + energy.losses + energy.curtailed
        assert_allclose(balance, energy.harvested, atol=1e-9)
        assert_allclose(energy.stored, (new_soc - soc) / 100 * MODEL_40W.battery_wh, atol=1e-9)
        assert_allclose(lamp * hours, energy.delivered, atol=1e-12)
        assert np.all((new_soc >= 0) & (new_soc <= 100))
        assert np.all(energy.losses >= -1e-12)
        assert np.all(energy.curtailed >= -1e-12)
        soc = new_soc


def test_the_lamp_is_cut_at_low_charge_and_comes_back_only_after_recharging() -> None:
    soc, cut = np.array([12.0]), np.array([False])
    hours = 0.25
    lamp_states: list[float] = []
    while soc[0] > 5 and len(lamp_states) < 100:  # night: no sun, lamp asked at full power
        soc, cut, lamp, _ = step(
            soc, cut, np.array([0.0]), np.array([40.0]), rating=MODEL_40W, hours=hours
        )
        lamp_states.append(lamp[0])
    assert cut[0], "disconnected near empty"
    assert soc[0] > 5, "the disconnect keeps a reserve"
    assert lamp_states[-1] == 0.0
    # Morning sun: the lamp stays off while recharging up to the reconnect level.
    while soc[0] < MODEL_40W.reconnect_soc:
        soc, cut, lamp, _ = step(
            soc, cut, np.array([150.0]), np.array([40.0]), rating=MODEL_40W, hours=hours
        )
        assert lamp[0] == 0.0 or soc[0] >= MODEL_40W.reconnect_soc
    soc, cut, lamp, _ = step(
        soc, cut, np.array([0.0]), np.array([40.0]), rating=MODEL_40W, hours=hours
    )
    assert not cut[0]
    assert lamp[0] == 40.0


def test_a_full_battery_curtails_the_harvest() -> None:
    soc, _, _, energy = step(
        np.array([100.0]),
        np.array([False]),
        np.array([150.0]),
        np.array([0.0]),
        rating=MODEL_40W,
        hours=1.0,
    )
    assert soc[0] == 100.0
    assert_allclose(energy.curtailed, [150.0 * 0.96])
