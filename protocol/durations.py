"""Durations as people write them in files: ``90s``, ``30m``, ``2h``, ``1.5d``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

_DURATION: Final = re.compile(r"^\+?(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``1.5d`` (a leading ``+`` is allowed) -> a timedelta.

    Raises ValueError saying what to write.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration: write e.g. 30m, 2h or 1d")
    try:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    except OverflowError as error:
        raise ValueError(f"{text!r} is too long: write at most 999999999d") from error


def spoken(span: timedelta) -> str:
    """A duration as the docs write it: 45 s, 20 min, 7 h, 1 day, 4 days.

    The largest unit that divides it exactly, so 90 minutes is 90 min and 36 hours 36 h.
    """
    seconds = span.total_seconds()
    if seconds >= 86_400 and seconds % 86_400 == 0:
        days = seconds / 86_400
        return f"{days:g} day" if days == 1 else f"{days:g} days"
    if seconds >= 3_600 and seconds % 3_600 == 0:
        return f"{seconds / 3_600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
