"""An evaluator run over readings with a restart half-way: for the tests that check that what
the engine learns is saved and taken back (rules.evaluator's take_dirty and restore)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from rules.evaluator import Evaluator

Columns = Mapping[str, npt.NDArray[np.float64]]


def through_and_restarted(
    new_evaluator: Callable[[], Evaluator],
    unix_s: npt.NDArray[np.float64],
    devices: Mapping[str, Columns],
    restart_at: int,
) -> tuple[Evaluator, Evaluator]:
    """The same readings (``devices``: each one's metric columns at ``unix_s``) through one
    engine, and through one stopped before reading ``restart_at`` and restored from its
    saved state in a new engine."""

    def run(evaluator: Evaluator, positions: range) -> Evaluator:
        for position in positions:
            moment = datetime.fromtimestamp(float(unix_s[position]), tz=UTC)
            for device_id, columns in devices.items():
                values = {metric: float(column[position]) for metric, column in columns.items()}
                evaluator.reading(device_id, moment, values, moment)
        return evaluator

    through = run(new_evaluator(), range(len(unix_s)))
    first = run(new_evaluator(), range(restart_at))
    saved = [((rule, device), state) for rule, device, state in first.take_dirty()]
    restarted = new_evaluator()
    assert restarted.restore(json.loads(json.dumps(saved))) >= len(devices)
    return through, run(restarted, range(restart_at, len(unix_s)))
