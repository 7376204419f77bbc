"""Building physics against analytic values: RC steady states, time constants, heat balance."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from numpy.testing import assert_allclose

from simulators.building import (
    AIR_HEAT_CAPACITY,
    BLINDS_SOLAR_CUT,
    BRICK_MASONRY,
    INSULATED_MASONRY,
    OUTDOOR_CO2,
    PERSON_CO2,
    STONE_MASONRY,
    Coupling,
    FloatArray,
    ZoneParameters,
    accumulate_energy,
    advance,
    boiler_supply_temperature,
    building_coupling,
    co2_step,
    concatenate_zones,
    cooling_electric_power,
    heating_power,
    hvac,
    internal_gains,
    moisture_step,
    relative_humidity,
    step,
    supply_water_step,
    uncoupled,
    vapour_density,
    ventilation_rate,
    zone_parameters,
)

OUTDOOR = 5.0  # [C]


def zones(capacitance: list[float], ua: list[float], *, window_ua: float = 300.0) -> ZoneParameters:
    """Zones with round numbers, so the analytic values are easy to state."""
    count = len(capacitance)
    return ZoneParameters(
        floor_area=np.full(count, 100.0),
        volume=np.full(count, 300.0),
        capacitance=np.array(capacitance),
        ua=np.array(ua),
        ventilation=np.full(count, 0.05),
        window_ua=np.full(count, window_ua),
        solar_aperture=np.full(count, 5.0),
        glazing_aperture=np.full(count, 2.0),
        rated_heating=np.full(count, 10_000.0),
        max_cooling=np.full(count, 8_000.0),
        eer=np.full(count, 3.0),
    )


ONE_ZONE = zones([3.6e7], [1_000.0])  # time constant C / UA = 36,000 s = 10 h


def run(
    temperature: FloatArray,
    params: ZoneParameters,
    coupling: Coupling,
    *,
    seconds: float,
    steps: int,
    heating: FloatArray | float = 0.0,
    window_open: bool = False,
) -> FloatArray:
    for _ in range(steps):
        temperature = step(
            temperature,
            outdoor_temperature=OUTDOOR,
            ghi=0.0,
            heating_power=heating,
            cooling_power=0.0,
            internal_gains=0.0,
            window_open=window_open,
            params=params,
            coupling=coupling,
            seconds=seconds,
        )
    return temperature


def test_lowered_blinds_keep_their_share_of_the_glazing_s_sun_out() -> None:
    """In the steady state a zone sits at outdoor + sun gains / UA: lowered blinds take
    BLINDS_SOLAR_CUT of the glazing's aperture (2 of the 5 m^2) off the gains."""
    ghi = 600.0

    def settled(blinds_down: bool) -> float:
        temperature = np.array([OUTDOOR])
        for _ in range(400):
            temperature = step(
                temperature,
                outdoor_temperature=OUTDOOR,
                ghi=ghi,
                heating_power=0.0,
                cooling_power=0.0,
                internal_gains=0.0,
                window_open=False,
                params=ONE_ZONE,
                coupling=uncoupled(1),
                seconds=3_600,
                blinds_down=blinds_down,
            )
        return float(temperature[0])

    assert settled(False) == pytest.approx(OUTDOOR + 5.0 * ghi / 1_000.0, rel=1e-9)
    shaded = OUTDOOR + (5.0 - BLINDS_SOLAR_CUT * 2.0) * ghi / 1_000.0
    assert settled(True) == pytest.approx(shaded, rel=1e-9)


def test_the_glazing_is_part_of_the_solar_aperture() -> None:
    params = zone_parameters(np.array([100.0, 300.0]), BRICK_MASONRY)
    assert np.all(params.glazing_aperture > 0)
    assert np.all(params.glazing_aperture < params.solar_aperture)


def test_constant_heating_settles_at_outdoor_plus_heat_over_conductance() -> None:
    heat = 6_000.0
    expected = OUTDOOR + heat / 1_000.0
    settled = run(np.array([12.0]), ONE_ZONE, uncoupled(1), seconds=3_600, steps=400, heating=heat)
    assert_allclose(settled, [expected], rtol=1e-12)
    # Started there, it stays there.
    still = run(np.array([expected]), ONE_ZONE, uncoupled(1), seconds=60, steps=10, heating=heat)
    assert_allclose(still, [expected], rtol=1e-12)


@pytest.mark.parametrize("seconds", [60, 300, 900])
def test_free_cooling_falls_by_e_in_one_time_constant(seconds: int) -> None:
    start = 20.0
    tau = 36_000
    cooled = run(np.array([start]), ONE_ZONE, uncoupled(1), seconds=seconds, steps=tau // seconds)
    assert_allclose(cooled - OUTDOOR, [(start - OUTDOOR) / math.e], rtol=1e-9)


def test_two_coupled_zones_settle_where_the_conductance_system_says() -> None:
    ua_1, ua_2, between = 800.0, 300.0, 150.0
    heat_1, heat_2 = 9_000.0, 0.0
    # A third zone, of another building, must neither disturb nor be disturbed.
    params = zones([2e7, 1.5e7, 1e7], [ua_1, ua_2, 500.0])
    coupling = building_coupling(np.array([0, 0, 1]), conductance=between)
    settled = run(
        np.array([10.0, 10.0, 10.0]),
        params,
        coupling,
        seconds=3_600,
        steps=700,
        heating=np.array([heat_1, heat_2, 2_500.0]),
    )
    # [ua_1 + G, -G; -G, ua_2 + G] T = [ua_1 T_out + Q_1, ua_2 T_out + Q_2], by Cramer's rule.
    load_1, load_2 = ua_1 * OUTDOOR + heat_1, ua_2 * OUTDOOR + heat_2
    det = (ua_1 + between) * (ua_2 + between) - between**2
    expected_1 = ((ua_2 + between) * load_1 + between * load_2) / det
    expected_2 = ((ua_1 + between) * load_2 + between * load_1) / det
    assert_allclose(settled, [expected_1, expected_2, OUTDOOR + 2_500.0 / 500.0], rtol=1e-9)
    assert expected_2 > OUTDOOR, "the unheated zone is warmed by its neighbour"


def test_coupled_zones_are_solved_exactly_whatever_the_step() -> None:
    params = zones([2e7, 1.5e7, 1e6], [800.0, 300.0, 200.0])
    coupling = building_coupling(np.array([0, 0, 0]), conductance=400.0)
    start = np.array([20.0, 12.0, 30.0])
    heating = np.array([3_000.0, 0.0, 500.0])
    fine = run(start, params, coupling, seconds=60, steps=600, heating=heating)
    coarse = run(start, params, coupling, seconds=900, steps=40, heating=heating)
    one = run(start, params, coupling, seconds=36_000, steps=1, heating=heating)
    assert_allclose(coarse, fine, rtol=1e-10)
    assert_allclose(one, fine, rtol=1e-10)


def test_a_stiff_zone_stays_stable_and_monotonic_with_long_steps() -> None:
    # An almost massless zone (time constant 10 s) next to a massive one, 900 s steps.
    params = zones([1e4, 4e7], [1_000.0, 500.0])
    coupling = building_coupling(np.array([0, 0]), conductance=200.0)
    temperature = np.array([40.0, 20.0])
    history = []
    for _ in range(20):
        temperature = run(temperature, params, coupling, seconds=900, steps=1)
        history.append(temperature)
    trace = np.array(history)
    assert np.all(np.isfinite(trace))
    assert np.all(np.diff(trace[:, 1]) <= 0), "no overshoot or oscillation"
    assert np.all((trace >= OUTDOOR) & (trace <= 40.0))


def test_a_site_steps_as_its_buildings_would_one_by_one() -> None:
    town_hall = zone_parameters(np.array([120.0, 200.0, 200.0, 150.0, 60.0]), STONE_MASONRY)
    station = zone_parameters(np.array([40.0]))
    slaughterhouse = zone_parameters(np.array([80.0, 40.0]))
    centre = zone_parameters(np.array([600.0, 250.0, 150.0, 150.0, 120.0]), INSULATED_MASONRY)
    buildings = [town_hall, station, slaughterhouse, centre]
    building_of_zone = np.repeat(np.arange(4), [5, 1, 2, 5])
    rng = np.random.default_rng(3)
    start = rng.uniform(10, 25, building_of_zone.size)
    heating = rng.uniform(0, 5_000, building_of_zone.size)
    window = rng.random(building_of_zone.size) < 0.3

    def step_zones(
        mine: npt.NDArray[np.bool_], params: ZoneParameters, coupling: Coupling
    ) -> FloatArray:
        return step(
            start[mine],
            outdoor_temperature=2.0,
            ghi=300.0,
            heating_power=heating[mine],
            cooling_power=0.0,
            internal_gains=500.0,
            window_open=window[mine],
            params=params,
            coupling=coupling,
            seconds=600,
        )

    everything = np.ones(building_of_zone.size, dtype=bool)
    together = step_zones(
        everything, concatenate_zones(buildings), building_coupling(building_of_zone)
    )
    one_by_one = [
        step_zones(
            building_of_zone == number,
            params,
            building_coupling(np.zeros(params.size, dtype=np.int64)),
        )
        for number, params in enumerate(buildings)
    ]
    assert_allclose(together, np.concatenate(one_by_one), rtol=1e-12)


def test_heat_added_is_stored_or_lost_through_the_envelope() -> None:
    params = zones([2e7, 1.5e7, 5e6, 1e7], [800.0, 300.0, 250.0, 400.0])
    coupling = building_coupling(np.array([0, 0, 0, 1]), conductance=250.0)
    rng = np.random.default_rng(11)
    start = np.array([14.0, 18.0, 22.0, 16.0])
    temperature = start
    added = lost = 0.0
    for _ in range(200):
        account = advance(
            temperature,
            outdoor_temperature=rng.uniform(-2, 15),
            ghi=rng.uniform(0, 800),
            heating_power=rng.uniform(0, 6_000, 4),
            cooling_power=rng.uniform(0, 1_000, 4),
            internal_gains=rng.uniform(0, 1_500, 4),
            window_open=rng.random(4) < 0.2,
            params=params,
            coupling=coupling,
            seconds=300,
        )
        assert_allclose(account.from_neighbours[:3].sum(), 0.0, atol=1e-6)
        assert_allclose(account.from_neighbours[3], 0.0, atol=1e-9)
        assert_allclose(
            account.stored,
            account.gains - account.envelope_loss + account.from_neighbours,
            rtol=1e-9,
            atol=1e-3,
        )
        temperature = account.temperature
        added += account.gains.sum()
        lost += account.envelope_loss.sum()
    stored = float((params.capacitance * (temperature - start)).sum())
    assert abs(stored) > 1e6, "the run moved some heat in or out of storage"
    assert_allclose(added, stored + lost, rtol=1e-9)


def test_an_open_window_loses_more_heat() -> None:
    heat = 6_000.0
    shut = run(np.array([20.0]), ONE_ZONE, uncoupled(1), seconds=900, steps=1, heating=heat)
    opened = run(
        np.array([20.0]),
        ONE_ZONE,
        uncoupled(1),
        seconds=900,
        steps=1,
        heating=heat,
        window_open=True,
    )
    assert opened[0] < shut[0]
    settled = run(
        np.array([20.0]),
        ONE_ZONE,
        uncoupled(1),
        seconds=3_600,
        steps=200,
        heating=heat,
        window_open=True,
    )
    assert_allclose(settled, [OUTDOOR + heat / (1_000.0 + 300.0)], rtol=1e-9)
    assert_allclose(ventilation_rate(True, ONE_ZONE), [0.05 + 300.0 / AIR_HEAT_CAPACITY])


def test_a_shut_valve_or_cold_water_heats_nothing() -> None:
    room = np.array([18.0, 18.0, 18.0])
    params = zones([1e7] * 3, [500.0] * 3)
    assert_allclose(heating_power(0.0, 70.0, room, params), [0.0, 0.0, 0.0])
    assert_allclose(heating_power(100.0, np.array([18.0, 10.0, 68.0]), room, params)[:2], [0, 0])
    # Rated output with the valve open and water 50 K above the room; half open, half.
    assert_allclose(heating_power(np.array([100.0, 50.0, 0.0]), 68.0, room, params), [1e4, 5e3, 0])
    plant = hvac(
        room,
        OUTDOOR,
        valve_position=0.0,
        supply_water_temperature=70.0,
        cooling_command=0.0,
        params=params,
    )
    assert not plant.heating_active.any()
    assert not plant.cooling_active.any()
    heated = run(room, params, uncoupled(3), seconds=900, steps=4, heating=plant.heating)
    unheated = run(room, params, uncoupled(3), seconds=900, steps=4)
    assert_allclose(heated, unheated, rtol=0)


def test_the_meter_counts_radiator_heat_plus_air_conditioner_electricity() -> None:
    params = zones([1e7, 1e7], [500.0, 500.0])
    room = np.array([20.0, 28.0])
    plant = hvac(
        room,
        35.0,
        valve_position=np.array([100.0, 0.0]),
        supply_water_temperature=70.0,
        cooling_command=np.array([0.0, 50.0]),
        params=params,
    )
    assert_allclose(plant.cooling, [0.0, 4_000.0])
    assert_allclose(plant.cooling_electric, [0.0, 4_000.0 / 3.0])  # rated EER at 35 C
    assert_allclose(plant.meter_power, [10.0, 4.0 / 3.0])
    assert plant.heating_active.tolist() == [True, False]
    assert plant.cooling_active.tolist() == [False, True]
    energy = np.zeros(2)
    for _ in range(4):  # an hour in 15-minute steps
        energy = accumulate_energy(energy, plant.meter_power, 900)
    assert_allclose(energy, [10.0, 4.0 / 3.0])
    hotter = cooling_electric_power(4_000.0, 40.0, params)
    assert np.all(hotter > 4_000.0 / 3.0), "air conditioning costs more on hotter afternoons"


def test_the_boiler_follows_its_heating_curve() -> None:
    assert_allclose(
        boiler_supply_temperature(np.array([-10.0, -3.0, 7.5, 18.0, 25.0])), [75, 75, 57.5, 40, 40]
    )
    supply = np.array([20.0, 60.0])
    warmed = supply_water_step(supply, np.array([True, False]), -3.0, 900, time_constant=900)
    assert_allclose(warmed, [75 - 55 / math.e, 20 + 40 / math.e])


def test_co2_settles_at_outdoor_plus_generation_over_ventilation() -> None:
    people = np.array([0, 10, 30])
    airflow = np.array([0.05, 0.05, 0.2])
    volume = np.array([300.0, 300.0, 900.0])
    co2 = np.full(3, 1_500.0)
    for _ in range(200):
        co2 = co2_step(co2, people, ventilation=airflow, volume=volume, seconds=900)
    assert_allclose(co2, OUTDOOR_CO2 + people * PERSON_CO2 * 1e6 / airflow, rtol=1e-9)
    assert_allclose(co2[1], 1_420.0)  # 10 people in 180 m^3/h: a stuffy meeting room


def test_humidity_is_plausible() -> None:
    assert_allclose(vapour_density(20.0, 100.0), 0.01729, rtol=5e-3)  # tables: 17.3 g/m^3
    assert_allclose(relative_humidity(12.0, vapour_density(12.0, 65.0)), 65.0)
    # Winter air at 5 C and 80 %RH heated to 20 C is dry, and people add moisture.
    outdoor = vapour_density(5.0, 80.0)
    empty = np.array([outdoor])
    busy = np.array([outdoor])
    for _ in range(100):
        empty = moisture_step(
            empty,
            np.array([0]),
            outdoor_density=outdoor,
            ventilation=np.array([0.05]),
            volume=np.array([300.0]),
            seconds=900,
        )
        busy = moisture_step(
            busy,
            np.array([20]),
            outdoor_density=outdoor,
            ventilation=np.array([0.05]),
            volume=np.array([300.0]),
            seconds=900,
        )
    assert 25 < relative_humidity(20.0, empty)[0] < 35
    assert 40 < relative_humidity(20.0, busy)[0] < 70


def test_internal_gains_from_people_and_lights_when_occupied() -> None:
    gains = internal_gains(np.array([0, 10]), np.array([100.0, 100.0]))
    assert_allclose(gains, [100.0, 10 * 100.0 + 14.0 * 100])


def test_zone_parameters_of_moroccan_masonry_are_plausible() -> None:
    area = np.array([100.0])
    old, common, new = (
        zone_parameters(area, construction)
        for construction in (STONE_MASONRY, BRICK_MASONRY, INSULATED_MASONRY)
    )
    assert old.ua[0] > common.ua[0] > new.ua[0]
    for params in (old, common, new):
        per_m2 = params.ua[0] / 100
        assert 2 < per_m2 < 6, "loss per m^2 of floor of a single-storey zone [W/(m^2 K)]"
        assert 10 < params.capacitance[0] / params.ua[0] / 3_600 < 30, "time constant [h]"
        assert 60 < params.rated_heating[0] / 100 < 160, "radiators [W/m^2]"
        assert 70 < params.max_cooling[0] / 100 < 160, "air conditioning [W/m^2]"
        assert_allclose(params.volume, [300.0])
    unheated = zone_parameters(area, heated=False, cooled=np.array([False]))
    assert unheated.rated_heating[0] == 0.0
    assert unheated.max_cooling[0] == 0.0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="capacitance has 2 zones, 1 expected"):
        ZoneParameters(**{**_fields(ONE_ZONE), "capacitance": np.array([1.0, 2.0])})
    with pytest.raises(ValueError, match="ua must be positive"):
        ZoneParameters(**{**_fields(ONE_ZONE), "ua": np.array([0.0])})
    with pytest.raises(ValueError, match="symmetric with a zero diagonal"):
        Coupling(np.array([[0.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="the parameters have 1"):
        run(np.array([1.0, 2.0]), ONE_ZONE, uncoupled(2), seconds=60, steps=1)
    assert not ONE_ZONE.ua.flags.writeable


def _fields(params: ZoneParameters) -> dict[str, FloatArray]:
    return {name: getattr(params, name) for name in ZoneParameters.__dataclass_fields__}
