"""The names a rule can read besides the metrics: time, the sun, ratings, changes, harvest.

This is the vocabulary, checked when a rule file is read (no numpy needed); :mod:`rules.context`
computes each value.

Names, by device class (``docs/rules.md`` explains each):

- every class: ``sun_elevation`` [deg], ``local_hour`` [h, 0-24, site time], ``weekday``
  (0 = Monday), and for every metric ``m``: ``prev_m`` (its previous reading), ``delta_m``
  (the change since) and ``rate_m`` (that change per hour);
- streetlights: the ratings ``lamp_w``, ``panel_wp``, ``battery_wh``; ``status_<bit>`` for
  each bit of ``controller_status``; ``clear_sky_pv_power`` [W]; ``harvest_ratio``,
  ``low_sun_harvest_ratio`` and ``high_sun_harvest_ratio`` (the best of the last three
  complete days: harvest over clear-sky harvest, over the whole day, while the sun is low,
  and while it is high); ``night_hours_left`` [h]; ``usable_energy_wh`` (charge above the
  low-voltage disconnect) and ``night_energy_needed_wh`` (the lamp's present draw until
  sunrise); tonight's forecast from the light's own readings (:mod:`rules.night_forecast`):
  ``learnt_battery_wh``, ``tonight_battery_wh``, ``tonight_usable_energy_wh``,
  ``dusk_battery_soc`` [%],
  ``dusk_usable_energy_wh`` and ``dusk_estimated_usable_energy_wh`` (the charge at dusk in
  the learnt and the rated capacity), ``coming_night_hours`` [h] and ``last_night_mean_level`` [%];
  ``peer_harvest_ratio``, ``peer_low_sun_harvest_ratio``, ``peer_high_sun_harvest_ratio``
  (yesterday's ratio of the band over the median of the other lights of its street group:
  the weather cancels out); ``scheduled_lamp_level`` [%], what the agents' default program
  asks of the lamp now (0 by
  day, the night's dimming profile after dark; a schedule sent to one device is not known
  here);
- signs: the ratings ``pixels`` and ``max_power_w``; ``fault_<bit>`` for each bit of
  ``fault_bits``;
- building zones: ``peer_air_temperature``, the median of the other zones of the same
  building with the same heating and cooling (their latest readings at or before this one,
  at most two intervals old; live, a peer's reading of the same minute may not have arrived
  yet when a zone's is evaluated, so here alone the engine and a backtest may differ by one
  reading interval); ``expected_air_temperature``, the temperature the zone's own heat
  balance, learnt from its readings, says it has (:mod:`rules.zone_model`); ``radiator_kw``
  and ``learnt_radiator_kw``, its radiators' output now and as learnt (:mod:`rules.radiator`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from protocol.catalogue import (
    CATALOGUE,
    CHARGE_CONTROLLER_STATUS_BITS,
    SIGN_FAULT_BITS,
)
from protocol.topics import DeviceClass

BIT_NAMES: Final[dict[DeviceClass, tuple[str, str, tuple[str, ...]]]] = {
    DeviceClass.STREETLIGHT: ("controller_status", "status", CHARGE_CONTROLLER_STATUS_BITS),
    DeviceClass.SIGNAGE: ("fault_bits", "fault", SIGN_FAULT_BITS),
}
"""Per class: the status word, the prefix of its flags, and its bits."""
RATINGS: Final[dict[DeviceClass, tuple[str, ...]]] = {
    DeviceClass.STREETLIGHT: ("lamp_w", "panel_wp", "battery_wh"),
    DeviceClass.SIGNAGE: ("pixels", "max_power_w"),
    DeviceClass.BUILDING: (),
}
HARVEST_NAMES: Final = ("harvest_ratio", "low_sun_harvest_ratio", "high_sun_harvest_ratio")
HARVEST_BANDS: Final = {
    "harvest_ratio": (10.0, 90.0),
    "low_sun_harvest_ratio": (5.0, 25.0),
    "high_sun_harvest_ratio": (32.0, 90.0),
}
"""Sun elevation band [deg] over which each harvest ratio sums harvest and clear-sky harvest."""
PEER_HARVEST_NAMES: Final = tuple(f"peer_{name}" for name in HARVEST_NAMES)
"""Yesterday's harvest ratio of each band over the median of the street's other lights'."""
HARVEST_DAYS: Final = 3
"""A harvest ratio is the best of this many complete days: one clear day among them will do."""
DEFAULT_WARMUP: Final = timedelta(days=HARVEST_DAYS)
"""History a backtest reads before its period, so that every name starts as the live engine's."""
FORECAST_NAMES: Final = (
    "learnt_battery_wh",
    "tonight_battery_wh",
    "tonight_usable_energy_wh",
    "dusk_battery_soc",
    "dusk_usable_energy_wh",
    "dusk_estimated_usable_energy_wh",
    "coming_night_hours",
    "last_night_mean_level",
)
"""Tonight's forecast of a streetlight's battery (:mod:`rules.night_forecast`)."""
_STREETLIGHT_DERIVED: Final = (
    "scheduled_lamp_level",
    "clear_sky_pv_power",
    *HARVEST_NAMES,
    "night_hours_left",
    "usable_energy_wh",
    "night_energy_needed_wh",
    *PEER_HARVEST_NAMES,
    *FORECAST_NAMES,
)
_TIME_NAMES: Final = ("sun_elevation", "local_hour", "weekday")
ZONE_MODEL_NAMES: Final = ("expected_air_temperature",)
"""A zone's learnt heat balance (:mod:`rules.zone_model`)."""
RADIATOR_NAMES: Final = ("radiator_kw", "learnt_radiator_kw")
"""A zone's radiators against their learnt rating (:mod:`rules.radiator`)."""
PEER_METRICS: Final[dict[DeviceClass, tuple[str, ...]]] = {
    DeviceClass.BUILDING: ("air_temperature",),
}
"""Metrics compared with the same metric of a device's peers (the zones of its building)."""
PEER_CLASSES: Final = frozenset({DeviceClass.BUILDING, DeviceClass.STREETLIGHT})
"""Classes whose devices are compared with their peers: zones (``PEER_METRICS``), streetlights
(``PEER_HARVEST_NAMES``)."""
PEER_MAX_AGE_INTERVALS: Final = 2.0


def names_for(device_class: DeviceClass) -> frozenset[str]:
    """Every name a rule on ``device_class`` may read."""
    metrics = list(CATALOGUE[device_class].metrics)
    names = {*metrics, *_TIME_NAMES, *RATINGS[device_class]}
    for metric in metrics:
        names.update((f"prev_{metric}", f"delta_{metric}", f"rate_{metric}"))
    if device_class in BIT_NAMES:
        _, prefix, bits = BIT_NAMES[device_class]
        names.update(f"{prefix}_{bit}" for bit in bits)
    if device_class is DeviceClass.STREETLIGHT:
        names.update(_STREETLIGHT_DERIVED)
    if device_class is DeviceClass.BUILDING:
        names.update(ZONE_MODEL_NAMES)
        names.update(RADIATOR_NAMES)
    names.update(f"peer_{metric}" for metric in PEER_METRICS.get(device_class, ()))
    return frozenset(names)


def peer_group(
    device_class: DeviceClass,
    building: str | None,
    street_group: str | None,
    metadata: Mapping[str, object],
) -> str | None:
    """Zones of a building with the same heating and cooling are each other's peers; the
    lights of a street group are (they share the sky)."""
    if device_class is DeviceClass.STREETLIGHT:
        return None if not street_group else f"street/{street_group}"
    if not building:
        return None
    return f"{building}/heating={metadata.get('heating')}/cooling={metadata.get('cooling')}"
