"""Random processes shared by the simulators."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def persistent_noise(
    count: int, persistence: float, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """``count`` steps of a stationary AR(1) process with unit variance [-].

    persistence: correlation of one step with the next, in [0, 1): 0 gives independent
    draws, values near 1 long spells (runs of cloudy days, warm weeks).
    """
    noise = np.empty(count)
    previous = 0.0
    scale = np.sqrt(1 - persistence**2)
    for step, shock in enumerate(rng.standard_normal(count)):
        previous = persistence * previous + scale * shock
        noise[step] = previous
    return noise
