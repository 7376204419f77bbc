"""Did a light go dark, and was it foretold: how "will go dark tonight" is judged.

A light *went dark* on a night when, at a reading where the sun is below the lamps'
switching elevation (``scheduled_lamp_level > 0``), its charge controller had cut the lamp to
save a flat battery (``status_low_voltage_disconnect``), or the lamp was lit below 90 % of
the lighting policy's minimum level (:data:`MINIMUM_LEVEL`, :data:`DIM_SHARE`: a plan that
had to go below it, the battery unable to carry even the minimum): the street was dark, or
noticeably darker than the city accepts, while it should have been lit. Its *dark moment*
is the first such reading of the night; a night runs from local noon to the next local
noon. These come from the history
itself (the simulated city's own telemetry), not from the injected faults: a healthy light
in a cloudy week goes dark as surely as a worn battery.

A prediction (an alert of the rule that foretells darkness, ``will-go-dark``) is *right* when
its light went dark later the same night; a dark night is *foretold* when a prediction fired
at least ``lead`` before its dark moment. precision = right / predictions; recall = foretold /
dark nights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from protocol.localtime import utc_offsets
from protocol.sun import SECONDS_PER_DAY
from rules.scoring import AlertInterval
from rules.scoring_report import percent

Floats = npt.NDArray[np.float64]

GO_DARK_RULE: Final = "will-go-dark"
DEFAULT_LEAD: Final = timedelta(hours=4)
MINIMUM_LEVEL: Final = 20.0
"""The lighting policy's minimum level [%] (``control.lighting_policy``, by default): lit
below it, a street counts as dark."""
DIM_SHARE: Final = 0.9
"""A lamp lit below this share of the minimum level counts as dark: a tenth less light is
about the least the eye notices, so a plan a hair under the minimum (19.9 %) is not."""
NAMES_READ: Final = frozenset(
    {"scheduled_lamp_level", "status_low_voltage_disconnect", "lamp_on", "dimming_level"}
)
"""What :func:`dark_moments` reads of a streetlight's readings."""


@dataclass(frozen=True, slots=True, order=True)
class DarkNight:
    device_id: str
    night: int
    """Days since 1970-01-01 of the local noon the night begins after."""
    at: datetime
    """The first reading of the night with the lamp asked for and cut."""


def night_of(unix_s: Floats, timezone: str) -> npt.NDArray[np.int64]:
    """The night each time belongs to: local noon to the next local noon."""
    local = np.asarray(unix_s, dtype=np.float64) + utc_offsets(unix_s, timezone)
    return np.floor((local - SECONDS_PER_DAY / 2) / SECONDS_PER_DAY).astype(np.int64)


def dark_moments(
    device_id: str, unix_s: Floats, environment: Mapping[str, Floats], timezone: str
) -> list[DarkNight]:
    """The nights a light went dark, from its readings (``environment``: the rules' values)."""
    if not len(unix_s):
        return []
    count = len(unix_s)
    asked = environment.get("scheduled_lamp_level", np.full(count, np.nan))
    missing = np.full(count, np.nan)
    cut = environment.get("status_low_voltage_disconnect", missing)
    lit = environment.get("lamp_on", missing) > 0.5
    dim = environment.get("dimming_level", missing) < DIM_SHARE * MINIMUM_LEVEL
    dark = (asked > 0) & ((cut > 0) | (lit & dim))
    nights = night_of(unix_s, timezone)
    found: dict[int, float] = {}
    for index in np.flatnonzero(dark):
        found.setdefault(int(nights[index]), float(unix_s[index]))
    return [
        DarkNight(device_id, night, datetime.fromtimestamp(at, UTC)) for night, at in found.items()
    ]


@dataclass(frozen=True, slots=True)
class GoDarkScore:
    predictions: int
    right: int
    dark_nights: int
    foretold: int
    """Dark nights foretold at least ``lead`` ahead."""
    lead: timedelta
    lead_p50: timedelta | None
    """Median lead of the foretold nights."""

    @property
    def precision(self) -> float | None:
        return self.right / self.predictions if self.predictions else None

    @property
    def recall(self) -> float | None:
        return self.foretold / self.dark_nights if self.dark_nights else None

    def to_json(self) -> dict[str, object]:
        return {
            "predictions": self.predictions,
            "right": self.right,
            "precision": self.precision,
            "dark_nights": self.dark_nights,
            "foretold": self.foretold,
            "recall": self.recall,
            "lead_s": self.lead.total_seconds(),
            "lead_p50_s": None if self.lead_p50 is None else self.lead_p50.total_seconds(),
        }


def score_go_dark(
    predictions: Iterable[AlertInterval],
    dark: Sequence[DarkNight],
    timezones: Mapping[str, str],
    period: tuple[datetime, datetime],
    lead: timedelta = DEFAULT_LEAD,
) -> GoDarkScore:
    """Judge the predictions fired in ``period`` against the nights that went dark in it."""
    start, end = period
    fired = [p for p in predictions if start <= p.start < end]
    dark_in = [night for night in dark if start <= night.at < end]
    by_night = {(night.device_id, night.night): night.at for night in dark_in}
    right = _right(fired, by_night, timezones)
    earliest: dict[tuple[str, int], datetime] = {}
    for prediction, key in right:
        earliest[key] = min(earliest.get(key, prediction.start), prediction.start)
    leads = sorted(by_night[key] - at for key, at in earliest.items() if by_night[key] - at >= lead)
    return GoDarkScore(
        predictions=len(fired),
        right=len(right),
        dark_nights=len(dark_in),
        foretold=len(leads),
        lead=lead,
        lead_p50=leads[len(leads) // 2] if leads else None,
    )


def _right(
    predictions: Iterable[AlertInterval],
    dark_at: Mapping[tuple[str, int], datetime],
    timezones: Mapping[str, str],
) -> list[tuple[AlertInterval, tuple[str, int]]]:
    """The predictions whose light went dark later the same night, with that night."""
    right = []
    for prediction in predictions:
        zone = timezones.get(prediction.device_id, "UTC")
        night = int(night_of(np.array([prediction.start.timestamp()]), zone)[0])
        key = (prediction.device_id, night)
        went = dark_at.get(key)
        if went is not None and went > prediction.start:
            right.append((prediction, key))
    return right


def right_predictions(
    predictions: Iterable[AlertInterval],
    dark: Sequence[DarkNight],
    timezones: Mapping[str, str],
) -> list[AlertInterval]:
    """The predictions that came true: not false alerts, whatever fault the light had."""
    dark_at = {(night.device_id, night.night): night.at for night in dark}
    return [prediction for prediction, _ in _right(predictions, dark_at, timezones)]


def format_go_dark(result: GoDarkScore) -> str:
    """One line: the nights that went dark and how well they were foretold."""
    hours = result.lead.total_seconds() / 3600
    lead = "" if result.lead_p50 is None else f", median lead {result.lead_p50}"
    return (
        f"Lights gone dark: {result.dark_nights} light-nights; {GO_DARK_RULE}: "
        f"{result.predictions} predictions, precision {percent(result.precision)}, "
        f"recall at >= {hours:g} h lead {percent(result.recall)} "
        f"({result.foretold} of {result.dark_nights}){lead}"
    )
