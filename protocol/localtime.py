"""A site's local time over arrays of UNIX times: the offset of its time zone from UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]


def utc_offsets(unix_s: npt.ArrayLike, timezone: str) -> Floats:
    """The zone's offset from UTC [s] at each time. Zones change offset on whole UTC hours
    (Morocco at 02:00 or 03:00 local time), so the offset is looked up once per hour."""
    hours = np.floor(np.asarray(unix_s, dtype=np.float64) / 3_600.0).astype(np.int64)
    unique, index = np.unique(hours, return_inverse=True)
    offsets = np.array([_offset_s(timezone, int(hour)) for hour in unique], dtype=np.float64)
    result: Floats = offsets[index]
    return result


def local_days(unix_s: npt.ArrayLike, timezone: str) -> npt.NDArray[np.int64]:
    """The local calendar day of each time, as days since 1970-01-01."""
    local = np.asarray(unix_s, dtype=np.float64) + utc_offsets(unix_s, timezone)
    days: npt.NDArray[np.int64] = np.floor(local / 86_400.0).astype(np.int64)
    return days


@lru_cache(maxsize=100_000)
def _offset_s(timezone: str, utc_hour: int) -> float:
    moment = datetime.fromtimestamp(utc_hour * 3_600, tz=UTC).astimezone(ZoneInfo(timezone))
    offset = moment.utcoffset()
    return offset.total_seconds() if offset is not None else 0.0
