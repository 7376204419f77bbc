"""Municipal building physics: thermal zones, radiators on a boiler, split AC, air quality, meter.

Each zone is one node of a resistance-capacitance network: a thermal capacitance C [J/K]
(air, furniture and the internal mass of walls and slabs) losing heat to outdoors through a
conductance UA [W/K] (envelope plus ventilation and infiltration), exchanging heat with the
other zones of its building through inter-zone conductances [W/K], and receiving the sun
through a solar aperture [m^2] (the area of horizontal surface that would let as much heat in).
Functions work on numpy arrays with one element per zone, so the zones of every building of a
site step at once.

A zone's energy meter (the ``energy`` [kWh] and ``power`` [kW] metrics of the building device
class) counts the zone's HVAC energy: the heat its radiators deliver (thermal, as a heat meter
on the radiator circuit reads it) plus the electricity its split air conditioner draws. Boiler
fuel, lighting and plug loads are not on it; :func:`boiler_fuel_power` converts heat to fuel.

Inputs are held constant over a step (a zero-order hold), and within a step the network is
solved exactly, so any step length is stable and accurate for the model as stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]

AIR_HEAT_CAPACITY: Final = 1_200.0
"""Volumetric heat capacity of air, rho * c_p [J/(m^3 K)]."""
PERSON_SENSIBLE_HEAT: Final = 100.0
"""Sensible heat given off by a seated adult [W]."""
PERSON_CO2: Final = 0.005e-3
"""CO2 breathed out by a seated adult [m^3/s] (0.005 L/s)."""
PERSON_MOISTURE: Final = 55.0e-3 / 3_600
"""Water vapour given off by a seated adult [kg/s] (55 g/h)."""
OUTDOOR_CO2: Final = 420.0
"""Outdoor CO2 concentration [ppm]."""
WATER_VAPOUR_GAS_CONSTANT: Final = 461.5
"""Specific gas constant of water vapour [J/(kg K)]."""
RATED_RADIATOR_DIFFERENCE: Final = 50.0
"""Supply water minus room temperature at which a radiator gives its rated output [K]."""
RADIATOR_EXPONENT: Final = 1.3
"""Radiator output grows as the temperature difference to this power (EN 442) [-]."""
DEFAULT_INTERZONE_CONDUCTANCE: Final = 100.0
"""Between two zones of a building: internal walls or a slab, and air through doors [W/K]."""

# Geometry and design assumptions of zone_parameters; see its docstring.
_GROUND_FACTOR: Final = 0.5  # the ground under the floor is half as far from the room as the air
_EXTERNAL_SURFACE_RESISTANCE: Final = 0.04  # [m^2 K/W], sol-air gain of opaque surfaces
_FACADE_SUN_FACTOR: Final = 0.5  # mean irradiance on the four facades relative to GHI [-]
_HEATING_OVERSIZE: Final = 1.25  # radiators sized for the design day plus morning boost
_COOLING_SETPOINT: Final = 24.0  # [C] indoor temperature of the cooling design day
_DESIGN_SUN: Final = 800.0  # [W/m^2] GHI of the cooling design hour
_DESIGN_INTERNAL_GAINS: Final = 20.0  # [W/m^2] people, lights and equipment when sizing AC
BLINDS_SOLAR_CUT: Final = 0.7
"""Share of the sun through the glazing that lowered external blinds keep out (external
venetian blinds, slats at the cut-off angle: shading factor F_C about 0.3) [-]."""
_HEATING_SETPOINT: Final = 20.0  # [C] indoor temperature of the heating design day


@dataclass(frozen=True, slots=True)
class Construction:
    """Thermal character of a building's fabric, per square metre."""

    wall_u: float
    """Opaque external wall [W/(m^2 K)]."""
    roof_u: float
    """Roof slab [W/(m^2 K)]."""
    floor_u: float
    """Floor on the ground [W/(m^2 K)]."""
    window_u: float
    """Glazing with its frame [W/(m^2 K)]."""
    glazing_ratio: float
    """Window share of the facade [-]."""
    window_g: float
    """Total solar energy transmittance of the glazing [-]."""
    shading: float
    """Share of the sun on the facade that reaches the glass (reveals, shutters, trees) [-]."""
    absorptance: float
    """Solar absorptance of the outer wall and roof surfaces [-]."""
    air_changes: float
    """Ventilation and infiltration with windows shut [1/h]."""
    capacitance_per_area: float
    """Effective heat capacity of internal mass and furnishings per m^2 of floor [J/(m^2 K)]."""


STONE_MASONRY: Final = Construction(
    wall_u=2.0,
    roof_u=2.2,
    floor_u=1.2,
    window_u=5.0,
    glazing_ratio=0.15,
    window_g=0.75,
    shading=0.5,
    absorptance=0.5,
    air_changes=1.0,
    capacitance_per_area=250e3,
)
"""Older public building: thick stone or rubble walls, uninsulated concrete roof, single glazing."""
BRICK_MASONRY: Final = Construction(
    wall_u=1.8,
    roof_u=1.6,
    floor_u=1.2,
    window_u=3.2,
    glazing_ratio=0.2,
    window_g=0.65,
    shading=0.5,
    absorptance=0.5,
    air_changes=0.7,
    capacitance_per_area=200e3,
)
"""The common case: concrete frame, double hollow-brick walls without insulation, a lightly
insulated roof, double glazing in aluminium frames."""
INSULATED_MASONRY: Final = Construction(
    wall_u=0.8,
    roof_u=0.65,
    floor_u=0.9,
    window_u=2.6,
    glazing_ratio=0.25,
    window_g=0.6,
    shading=0.5,
    absorptance=0.4,
    air_changes=0.5,
    capacitance_per_area=150e3,
)
"""A recent building to the Moroccan thermal regulation (RTCM, 2015): insulated walls and roof."""


@dataclass(frozen=True, slots=True)
class ZoneParameters:
    """Thermal and plant parameters, one element per zone; read-only float arrays."""

    floor_area: FloatArray
    """[m^2]"""
    volume: FloatArray
    """Air volume [m^3]."""
    capacitance: FloatArray
    """Thermal capacitance C of air, furnishings and internal mass [J/K]."""
    ua: FloatArray
    """Conductance to outdoors with windows shut, envelope plus ``ventilation`` [W/K]."""
    ventilation: FloatArray
    """Outdoor air flow with windows shut [m^3/s]; its share of ``ua`` is rho c_p times it."""
    window_ua: FloatArray
    """Extra conductance with a window open, all of it air flow [W/K]."""
    solar_aperture: FloatArray
    """Heat gained per W/m^2 of global horizontal irradiance [m^2]."""
    glazing_aperture: FloatArray
    """The part of ``solar_aperture`` that comes through the windows [m^2]."""
    rated_heating: FloatArray
    """Radiator output with the valve open, supply water 50 K above the room [W]."""
    max_cooling: FloatArray
    """Split air conditioner's cooling capacity [W] (thermal)."""
    eer: FloatArray
    """Energy efficiency ratio of the air conditioner at 35 C outdoors, thermal/electric [-]."""

    def __post_init__(self) -> None:
        shape: tuple[int, ...] | None = None
        for item in fields(self):
            values = np.array(getattr(self, item.name), dtype=np.float64)
            if values.ndim != 1:
                raise ValueError(f"{item.name} must be 1-D, one value per zone")
            shape = shape or values.shape
            if values.shape != shape:
                raise ValueError(f"{item.name} has {values.size} zones, {shape[0]} expected")
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise ValueError(f"{item.name} must be finite and not negative")
            values.setflags(write=False)
            object.__setattr__(self, item.name, values)
        for name in ("volume", "capacitance", "ua", "ventilation", "eer"):
            if np.any(getattr(self, name) <= 0):
                raise ValueError(f"{name} must be positive in every zone")

    @property
    def size(self) -> int:
        """Number of zones."""
        return int(self.floor_area.size)


def zone_parameters(
    area_m2: FloatArray,
    construction: Construction = BRICK_MASONRY,
    *,
    ceiling_height: FloatArray | float = 3.0,
    facade_ratio: FloatArray | float = 0.6,
    roof_share: FloatArray | float = 1.0,
    ground_share: FloatArray | float = 1.0,
    window_open_air_changes: float = 3.0,
    heated: BoolArray | bool = True,
    cooled: BoolArray | bool = True,
    eer: float = 3.0,
    design_winter_temperature: float = -3.0,
    design_summer_temperature: float = 37.0,
) -> ZoneParameters:
    """Parameters of zones of ``area_m2`` floor each [m^2] built as ``construction``.

    ceiling_height [m]; facade_ratio: external wall area, windows included, per m^2 of floor
    [-] (0.6 for a 10 m x 10 m zone with two outer walls 3 m high); roof_share, ground_share:
    share of the floor under the roof / lying on the ground [-] (1 and 1 for a single storey,
    0 and 1 for the ground floor of two); window_open_air_changes: extra air change with a
    window open [1/h]; heated, cooled: the zone has radiators / a split unit; eer [-] at 35 C;
    design temperatures [C], outdoors on the coldest and hottest design days of the site
    (defaults: Sefrou, 850 m).

    Sizing: radiators give 1.25 times the design-day loss to keep 20 C; the split unit covers
    the hottest afternoon's loss at 24 C, the design sun (800 W/m^2) on the aperture and
    20 W/m^2 of internal gains. The ground is taken as half as far from the room temperature
    as the outdoor air is. The solar aperture counts the glazing (g value, shading, facades
    receiving half the GHI on average) and sol-air gains through the opaque walls and roof.
    """
    area = np.asarray(area_m2, dtype=np.float64)
    c = construction
    volume = area * ceiling_height
    facade = area * facade_ratio
    windows = facade * c.glazing_ratio
    walls = facade - windows
    roof = area * roof_share
    ventilation = c.air_changes * volume / 3_600
    envelope_ua = (
        c.wall_u * walls
        + c.window_u * windows
        + c.roof_u * roof
        + _GROUND_FACTOR * c.floor_u * area * ground_share
    )
    ua = envelope_ua + AIR_HEAT_CAPACITY * ventilation
    opaque_sol_air = (
        c.absorptance
        * _EXTERNAL_SURFACE_RESISTANCE
        * (c.wall_u * walls * _FACADE_SUN_FACTOR + c.roof_u * roof)
    )
    glazing_aperture = windows * c.window_g * c.shading * _FACADE_SUN_FACTOR
    solar_aperture = glazing_aperture + opaque_sol_air
    heating_loss = ua * (_HEATING_SETPOINT - design_winter_temperature)
    cooling_load = (
        ua * (design_summer_temperature - _COOLING_SETPOINT)
        + solar_aperture * _DESIGN_SUN
        + _DESIGN_INTERNAL_GAINS * area
    )
    return ZoneParameters(
        floor_area=area,
        volume=volume,
        capacitance=c.capacitance_per_area * area + AIR_HEAT_CAPACITY * volume,
        ua=ua,
        ventilation=ventilation,
        window_ua=AIR_HEAT_CAPACITY * window_open_air_changes * volume / 3_600,
        solar_aperture=solar_aperture,
        glazing_aperture=glazing_aperture,
        rated_heating=np.where(heated, _HEATING_OVERSIZE * heating_loss, 0.0),
        max_cooling=np.where(cooled, cooling_load, 0.0),
        eer=np.full_like(area, eer),
    )


def concatenate_zones(parts: list[ZoneParameters]) -> ZoneParameters:
    """The zones of several parameter sets (say, one per building) as one set, in order."""
    joined = {
        item.name: np.concatenate([getattr(part, item.name) for part in parts])
        for item in fields(ZoneParameters)
    }
    return ZoneParameters(**joined)


@dataclass(frozen=True, slots=True)
class Coupling:
    """Conductances between zones [W/K]: a symmetric matrix with a zero diagonal.

    Zones linked by non-zero conductances, directly or through others, form a block (in
    practice, a building); :func:`step` solves all blocks at once as a stack of small
    systems, so a whole site costs little more than its largest building.
    """

    conductance: FloatArray
    blocks: IndexArray = field(init=False)
    """Zone indices of each block, (blocks, k) for the largest block's k zones; smaller
    blocks are padded with the index one past the last zone."""
    laplacians: FloatArray = field(init=False)
    """The blocks' (blocks, k, k) conductance Laplacians [W/K], zero where padded."""

    def __post_init__(self) -> None:
        matrix = np.array(self.conductance, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError("the conductance matrix must be square, one row per zone")
        if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
            raise ValueError("conductances must be finite and not negative")
        if np.any(np.diag(matrix) != 0) or not np.array_equal(matrix, matrix.T):
            raise ValueError("the conductance matrix must be symmetric with a zero diagonal")
        zones = matrix.shape[0]
        groups = _connected_zones(matrix)
        width = max((len(members) for members in groups), default=1)
        blocks = np.full((len(groups), width), zones, dtype=np.intp)
        for number, members in enumerate(groups):
            blocks[number, : len(members)] = members
        padded = np.zeros((zones + 1, zones + 1))
        padded[:zones, :zones] = matrix
        between = padded[blocks[:, :, None], blocks[:, None, :]]
        laplacians = -between
        diagonal = np.arange(width)
        laplacians[:, diagonal, diagonal] = between.sum(axis=-1)
        for values in (matrix, blocks, laplacians):
            values.setflags(write=False)
        object.__setattr__(self, "conductance", matrix)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "laplacians", laplacians)

    @property
    def size(self) -> int:
        """Number of zones."""
        return int(self.conductance.shape[0])


def _connected_zones(matrix: FloatArray) -> list[list[int]]:
    """Groups of zones linked by non-zero conductances, each sorted (union-find)."""
    parent = list(range(matrix.shape[0]))

    def root(zone: int) -> int:
        while parent[zone] != zone:
            parent[zone] = parent[parent[zone]]
            zone = parent[zone]
        return zone

    for first, second in np.argwhere(matrix > 0):
        parent[root(int(first))] = root(int(second))
    groups: dict[int, list[int]] = {}
    for zone in range(matrix.shape[0]):
        groups.setdefault(root(zone), []).append(zone)
    return list(groups.values())


def building_coupling(
    building_index: npt.NDArray[np.int64],
    conductance: float = DEFAULT_INTERZONE_CONDUCTANCE,
) -> Coupling:
    """Every zone coupled to each other zone of its building by ``conductance`` [W/K].

    building_index: the building of each zone (any integer labels). A simplification: in a
    real building only adjacent zones touch; here all pairs do, so a zone of a k-zone
    building exchanges up to (k - 1) * conductance with the rest of it.
    """
    index = np.asarray(building_index)
    same = index[:, None] == index[None, :]
    np.fill_diagonal(same, val=False)
    return Coupling(np.where(same, conductance, 0.0))


def uncoupled(zones: int) -> Coupling:
    """No heat flows between any of ``zones`` zones."""
    return Coupling(np.zeros((zones, zones)))


@dataclass(frozen=True, slots=True)
class ThermalStep:
    """One step of the zones: end temperatures and where the heat went [J], per zone.

    Per zone, stored = gains - envelope_loss + from_neighbours; summed over a building,
    from_neighbours cancels.
    """

    temperature: FloatArray
    """At the end of the step [C]."""
    mean_temperature: FloatArray
    """Averaged over the step [C]."""
    gains: FloatArray
    """Heating and internal and solar gains, less the heat the air conditioner removed."""
    envelope_loss: FloatArray
    """Lost to outdoors through the envelope, ventilation and open windows."""
    from_neighbours: FloatArray
    """Net heat received from the other zones of the building."""
    stored: FloatArray
    """Increase of the heat in the zone, C times the temperature change."""


def outdoor_conductance(window_open: BoolArray | bool, params: ZoneParameters) -> FloatArray:
    """Conductance to outdoors, with the window-open extra where a window is open [W/K]."""
    extra: FloatArray = np.where(window_open, params.window_ua, 0.0)
    return params.ua + extra


def effective_solar_aperture(blinds_down: BoolArray | bool, params: ZoneParameters) -> FloatArray:
    """Heat gained per W/m^2 of GHI, less what lowered blinds keep out [m^2]."""
    kept_out: FloatArray = np.where(blinds_down, BLINDS_SOLAR_CUT * params.glazing_aperture, 0.0)
    return params.solar_aperture - kept_out


def advance(
    temperature: FloatArray,
    *,
    outdoor_temperature: FloatArray | float,
    ghi: FloatArray | float,
    heating_power: FloatArray | float,
    cooling_power: FloatArray | float,
    internal_gains: FloatArray | float,
    window_open: BoolArray | bool,
    params: ZoneParameters,
    coupling: Coupling,
    seconds: float,
    blinds_down: BoolArray | bool = False,
) -> ThermalStep:
    """Advance the zone temperatures by ``seconds`` [s], with the heat account of the step.

    temperature [C] at the start, one per zone; outdoor_temperature [C]; ghi: global
    horizontal irradiance [W/m^2]; heating_power: heat the radiators give [W]; cooling_power:
    heat the air conditioner removes [W], positive; internal_gains: people, lighting and
    equipment [W]; window_open: a window of the zone is open; blinds_down: its external blinds
    are lowered, keeping :data:`BLINDS_SOLAR_CUT` of the glazing's sun out. Scalars apply to
    every zone.

    The network C dT/dt = P + UA (T_out - T) + sum_j G_ij (T_j - T_i) has, for inputs held
    over the step, the exact solution T(t) = T_ss + exp(-C^-1 K t) (T0 - T_ss), K = diag(UA)
    plus the coupling Laplacian; it is evaluated by the eigen-decomposition of the symmetric
    C^-1/2 K C^-1/2, whose eigenvalues are positive: stable and exact for any step.
    """
    zones = params.size
    if coupling.size != zones or np.shape(temperature) != (zones,):
        raise ValueError(
            f"temperature has shape {np.shape(temperature)} and the coupling {coupling.size} "
            f"zones; the parameters have {zones}"
        )
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, not {seconds}")
    start = np.asarray(temperature, dtype=np.float64)
    outdoor = np.asarray(outdoor_temperature, dtype=np.float64)
    to_outdoors = outdoor_conductance(window_open, params)
    power = (
        np.asarray(heating_power, dtype=np.float64)
        - cooling_power
        + internal_gains
        + effective_solar_aperture(blinds_down, params) * np.asarray(ghi, dtype=np.float64)
    )
    power = np.broadcast_to(power, (zones,))

    def by_block(values: FloatArray, padding: float) -> FloatArray:
        return np.append(values, padding)[coupling.blocks]

    def to_zones(values: FloatArray) -> FloatArray:
        flat = np.empty(zones + 1)
        flat[coupling.blocks] = values  # padding lands in the extra last element
        return flat[:zones]

    root, rates, modes = _modes(params, coupling, to_outdoors)
    forcing = by_block(power + to_outdoors * outdoor, 0.0)
    # In modal coordinates each one relaxes on its own towards its steady value.
    modal_steady = np.einsum("bji,bj->bi", modes, forcing / root) / rates
    modal_gap = np.einsum("bji,bj->bi", modes, root * by_block(start, 0.0)) - modal_steady
    decay = np.exp(-rates * seconds)
    average_decay = -np.expm1(-rates * seconds) / (rates * seconds)
    end_blocks = np.einsum("bij,bj->bi", modes, modal_steady + decay * modal_gap) / root
    mean_blocks = np.einsum("bij,bj->bi", modes, modal_steady + average_decay * modal_gap) / root
    end = to_zones(end_blocks)
    mean = to_zones(mean_blocks)
    from_neighbours = to_zones(-np.einsum("bij,bj->bi", coupling.laplacians, mean_blocks) * seconds)
    return ThermalStep(
        temperature=end,
        mean_temperature=mean,
        gains=power * seconds,
        envelope_loss=to_outdoors * (mean - outdoor) * seconds,
        from_neighbours=from_neighbours,
        stored=params.capacitance * (end - start),
    )


_MODES_KEPT: Final = 8
_modes_seen: dict[bytes, tuple[ZoneParameters, Coupling, FloatArray, FloatArray, FloatArray]] = {}


def _modes(
    params: ZoneParameters, coupling: Coupling, to_outdoors: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """sqrt(C) by block, and the rates [1/s] and modes of the network (see :func:`advance`).

    The eigen-decomposition depends only on the zones, their coupling and which windows are
    open, which change seldom: the last few are kept, so a long run solves each once.
    """
    key = to_outdoors.tobytes()
    seen = _modes_seen.get(key)
    if seen is not None and seen[0] is params and seen[1] is coupling:
        return seen[2], seen[3], seen[4]
    # Padding: a lone, decoupled node (C = 1, UA = 1, no heat) that changes nothing.
    capacitance = np.append(params.capacitance, 1.0)[coupling.blocks]
    stiffness = coupling.laplacians.copy()
    diagonal = np.arange(stiffness.shape[-1])
    stiffness[:, diagonal, diagonal] += np.append(to_outdoors, 1.0)[coupling.blocks]
    root = np.sqrt(capacitance)
    rates, modes = np.linalg.eigh(stiffness / root[:, :, None] / root[:, None, :])  # [1/s], > 0
    if len(_modes_seen) >= _MODES_KEPT:
        _modes_seen.pop(next(iter(_modes_seen)))
    _modes_seen[key] = (params, coupling, root, rates, modes)
    return root, rates, modes


def step(
    temperature: FloatArray,
    *,
    outdoor_temperature: FloatArray | float,
    ghi: FloatArray | float,
    heating_power: FloatArray | float,
    cooling_power: FloatArray | float,
    internal_gains: FloatArray | float,
    window_open: BoolArray | bool,
    params: ZoneParameters,
    coupling: Coupling,
    seconds: float,
    blinds_down: BoolArray | bool = False,
) -> FloatArray:
    """Zone temperatures [C] ``seconds`` [s] later; see :func:`advance` for the arguments."""
    return advance(
        temperature,
        outdoor_temperature=outdoor_temperature,
        ghi=ghi,
        heating_power=heating_power,
        cooling_power=cooling_power,
        internal_gains=internal_gains,
        window_open=window_open,
        params=params,
        coupling=coupling,
        seconds=seconds,
        blinds_down=blinds_down,
    ).temperature


# --- HVAC plant --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeatingCurve:
    """Boiler supply water temperature against outdoor temperature: linear, then flat."""

    design_outdoor: float
    """[C] outdoor temperature of the design day..."""
    design_supply: float
    """[C] ...and the supply water it needs."""
    mild_outdoor: float
    """[C] mild outdoor temperature..."""
    mild_supply: float
    """[C] ...and the lowest supply water the boiler gives."""


SEFROU_HEATING_CURVE: Final = HeatingCurve(
    design_outdoor=-3.0, design_supply=75.0, mild_outdoor=18.0, mild_supply=40.0
)
"""A conventional (non-condensing) boiler on radiators sized for Sefrou's -3 C design day."""


def boiler_supply_temperature(
    outdoor_temperature: FloatArray | float, curve: HeatingCurve = SEFROU_HEATING_CURVE
) -> FloatArray:
    """Supply water temperature the boiler aims at, by its heating curve [C].

    outdoor_temperature [C].
    """
    outdoor = np.asarray(outdoor_temperature, dtype=np.float64)
    supply: FloatArray = np.interp(
        outdoor,
        [curve.design_outdoor, curve.mild_outdoor],
        [curve.design_supply, curve.mild_supply],
    )
    return supply


def supply_water_step(
    supply_water_temperature: FloatArray,
    boiler_on: BoolArray | bool,
    outdoor_temperature: FloatArray | float,
    seconds: float,
    *,
    idle_temperature: FloatArray | float = 20.0,
    time_constant: float = 900.0,
    curve: HeatingCurve = SEFROU_HEATING_CURVE,
    setpoint: FloatArray | float = np.nan,
) -> FloatArray:
    """Supply water temperature ``seconds`` [s] later [C].

    It approaches ``setpoint`` [C] while the boiler fires (where that is NaN, its own heating
    curve), ``idle_temperature`` [C] (the boiler room) when it is off, with the loop's
    ``time_constant`` [s].
    """
    aim = np.where(
        np.isnan(setpoint), boiler_supply_temperature(outdoor_temperature, curve), setpoint
    )
    target = np.where(boiler_on, aim, idle_temperature)
    supply: FloatArray = target + (supply_water_temperature - target) * np.exp(
        -seconds / time_constant
    )
    return supply


def heating_power(
    valve_position: FloatArray | float,
    supply_water_temperature: FloatArray | float,
    temperature: FloatArray,
    params: ZoneParameters,
) -> FloatArray:
    """Heat the radiators give the zone [W].

    valve_position: opening of the thermostatic or motorised valve [%], 0 shut, 100 open,
    output proportional to it; supply_water_temperature [C]; temperature: room [C]. Output
    grows as (supply - room) ** 1.3 and is nil when the water is no warmer than the room.
    """
    opening = np.clip(np.asarray(valve_position, dtype=np.float64) / 100.0, 0.0, 1.0)
    difference = np.maximum(np.asarray(supply_water_temperature) - temperature, 0.0)
    power: FloatArray = (
        params.rated_heating
        * opening
        * (difference / RATED_RADIATOR_DIFFERENCE) ** RADIATOR_EXPONENT
    )
    return power


def boiler_fuel_power(heat: FloatArray | float, efficiency: float = 0.88) -> FloatArray:
    """Fuel burnt (lower heating value) to deliver ``heat`` [W] to the radiators [W].

    efficiency: seasonal efficiency of the boiler and its distribution [-].
    """
    fuel: FloatArray = np.asarray(heat, dtype=np.float64) / efficiency
    return fuel


def cooling_power(command: FloatArray | float, params: ZoneParameters) -> FloatArray:
    """Heat the split unit removes [W], positive: ``command`` [%] of its capacity."""
    share = np.clip(np.asarray(command, dtype=np.float64) / 100.0, 0.0, 1.0)
    power: FloatArray = params.max_cooling * share
    return power


EER_TEMPERATURE_SLOPE: Final = 0.025
"""Relative loss of EER per kelvin of outdoor air above 35 C (gain below) [1/K]."""


def cooling_electric_power(
    cooling: FloatArray | float,
    outdoor_temperature: FloatArray | float,
    params: ZoneParameters,
) -> FloatArray:
    """Electricity the split unit draws to remove ``cooling`` [W] of heat [W].

    outdoor_temperature [C]: the EER falls 2.5 %/K above its 35 C rating, rises below,
    within 0.5 to 1.4 times the rating.
    """
    outdoor = np.asarray(outdoor_temperature, dtype=np.float64)
    derate = np.clip(1.0 - EER_TEMPERATURE_SLOPE * (outdoor - 35.0), 0.5, 1.4)
    electric: FloatArray = np.asarray(cooling, dtype=np.float64) / (params.eer * derate)
    return electric


@dataclass(frozen=True, slots=True)
class HvacOutput:
    """What the zone's plant does over a step, per zone."""

    heating: FloatArray
    """Heat the radiators give [W]."""
    cooling: FloatArray
    """Heat the air conditioner removes [W], positive."""
    cooling_electric: FloatArray
    """Electricity the air conditioner draws [W]."""
    heating_active: BoolArray
    cooling_active: BoolArray

    @property
    def meter_power(self) -> FloatArray:
        """The zone meter's ``power`` metric [kW]: radiator heat plus AC electricity."""
        power: FloatArray = (self.heating + self.cooling_electric) / 1_000.0
        return power


def hvac(
    temperature: FloatArray,
    outdoor_temperature: FloatArray | float,
    *,
    valve_position: FloatArray | float,
    supply_water_temperature: FloatArray | float,
    cooling_command: FloatArray | float,
    params: ZoneParameters,
) -> HvacOutput:
    """Radiators and split unit of each zone at the start of a step.

    valve_position [%]; supply_water_temperature [C]; cooling_command [%] of the split
    unit's capacity; temperature: room [C]; outdoor_temperature [C]. A plant counts as active
    when it exchanges more than 1 W.
    """
    heating = heating_power(valve_position, supply_water_temperature, temperature, params)
    cooling = cooling_power(cooling_command, params)
    return HvacOutput(
        heating=heating,
        cooling=cooling,
        cooling_electric=cooling_electric_power(cooling, outdoor_temperature, params),
        heating_active=heating > 1.0,
        cooling_active=cooling > 1.0,
    )


def accumulate_energy(
    energy_kwh: FloatArray, power_kw: FloatArray | float, seconds: float
) -> FloatArray:
    """Meter reading [kWh] after ``seconds`` [s] at ``power_kw`` [kW]."""
    energy: FloatArray = energy_kwh + np.asarray(power_kw, dtype=np.float64) * seconds / 3_600.0
    return energy


# --- Occupants: heat, CO2, moisture -------------------------------------------------------

LIGHTING_DENSITY: Final = 8.0
"""LED and fluorescent lighting of an occupied zone [W/m^2]."""
EQUIPMENT_DENSITY: Final = 6.0
"""Computers, printers and the like in an occupied zone [W/m^2]."""
STANDBY_DENSITY: Final = 1.0
"""Equipment left on in an empty zone [W/m^2]."""


def internal_gains(
    occupants: npt.NDArray[np.int64] | FloatArray,
    floor_area: FloatArray,
    *,
    person: float = PERSON_SENSIBLE_HEAT,
    lighting: float = LIGHTING_DENSITY,
    equipment: float = EQUIPMENT_DENSITY,
    standby: float = STANDBY_DENSITY,
) -> FloatArray:
    """Sensible heat of people, lighting and equipment [W].

    occupants: people present; floor_area [m^2]; person [W]; densities [W/m^2]. Lights and
    equipment are on while anyone is in; a standby load stays on otherwise.
    """
    people = np.asarray(occupants, dtype=np.float64)
    density = np.where(people > 0, lighting + equipment, standby)
    gains: FloatArray = people * person + density * floor_area
    return gains


def ventilation_rate(window_open: BoolArray | bool, params: ZoneParameters) -> FloatArray:
    """Outdoor air flow through the zone [m^3/s], windows included."""
    window: FloatArray = np.where(window_open, params.window_ua, 0.0) / AIR_HEAT_CAPACITY
    return params.ventilation + window


def _well_mixed_step(
    concentration: FloatArray,
    *,
    outdoor: FloatArray | float,
    source: FloatArray,
    ventilation: FloatArray,
    volume: FloatArray,
    seconds: float,
) -> FloatArray:
    """Exact step of V dc/dt = source + Q (c_out - c), all in consistent units."""
    steady = outdoor + source / ventilation
    later: FloatArray = steady + (concentration - steady) * np.exp(-ventilation * seconds / volume)
    return later


def co2_step(
    co2: FloatArray,
    occupants: npt.NDArray[np.int64] | FloatArray,
    *,
    ventilation: FloatArray,
    volume: FloatArray,
    seconds: float,
    outdoor_co2: float = OUTDOOR_CO2,
    per_person: float = PERSON_CO2,
) -> FloatArray:
    """CO2 concentration [ppm] ``seconds`` [s] later in a well-mixed zone.

    co2 [ppm]; occupants: people present; ventilation: outdoor air flow [m^3/s];
    volume [m^3]; outdoor_co2 [ppm]; per_person: CO2 each person breathes out [m^3/s].
    Steady state: outdoor_co2 + 1e6 * occupants * per_person / ventilation.
    """
    source = np.asarray(occupants, dtype=np.float64) * per_person * 1e6
    return _well_mixed_step(
        co2,
        outdoor=outdoor_co2,
        source=source,
        ventilation=ventilation,
        volume=volume,
        seconds=seconds,
    )


def saturation_vapour_pressure(temperature: FloatArray | float) -> FloatArray:
    """Over water, Magnus formula (Alduchov and Eskridge 1996) [Pa]; temperature [C]."""
    celsius = np.asarray(temperature, dtype=np.float64)
    pressure: FloatArray = 610.94 * np.exp(17.625 * celsius / (celsius + 243.04))
    return pressure


def vapour_density(
    temperature: FloatArray | float, relative_humidity: FloatArray | float
) -> FloatArray:
    """Water vapour per m^3 of air [kg/m^3]; temperature [C], relative_humidity [%RH]."""
    kelvin = np.asarray(temperature, dtype=np.float64) + 273.15
    density: FloatArray = (
        np.asarray(relative_humidity, dtype=np.float64)
        / 100.0
        * saturation_vapour_pressure(temperature)
        / (WATER_VAPOUR_GAS_CONSTANT * kelvin)
    )
    return density


def relative_humidity(temperature: FloatArray | float, density: FloatArray) -> FloatArray:
    """Relative humidity [%RH], read as at most 100 (the excess would condense).

    temperature [C]; density: water vapour [kg/m^3].
    """
    saturated = vapour_density(temperature, 100.0)
    humidity: FloatArray = np.clip(100.0 * density / saturated, 0.0, 100.0)
    return humidity


def moisture_step(
    density: FloatArray,
    occupants: npt.NDArray[np.int64] | FloatArray,
    *,
    outdoor_density: FloatArray | float,
    ventilation: FloatArray,
    volume: FloatArray,
    seconds: float,
    per_person: float = PERSON_MOISTURE,
    buffering: float = 4.0,
) -> FloatArray:
    """Water vapour density [kg/m^3] of the zone air ``seconds`` [s] later.

    outdoor_density [kg/m^3] (see :func:`vapour_density`); occupants: people present;
    ventilation [m^3/s]; volume [m^3]; per_person [kg/s]; buffering: furnishings and
    finishes take up and give back moisture, which slows the air's changes as if the volume
    were this many times larger [-] (it does not move the steady state).
    """
    source = np.asarray(occupants, dtype=np.float64) * per_person
    return _well_mixed_step(
        density,
        outdoor=outdoor_density,
        source=source,
        ventilation=ventilation,
        volume=volume * buffering,
        seconds=seconds,
    )
