"""``smartcity bench whatif``: a whole winter of every building through the what-if replay.

Target: December to February, all buildings, candidate + current + baseline, under a minute.
The reference measured in the same run is the same period with two contenders (one strategy
and the baseline): the ratio shows what a third contender costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from control.strategy import PACKAGED_STRATEGY, load_strategy
from protocol.sites import SiteInventory
from whatif.hvac import BASELINE, Contender, WhatIfReport, run_whatif

TARGET_S = 60.0


@dataclass(frozen=True, slots=True)
class WhatIfBench:
    start: datetime
    end: datetime
    report: WhatIfReport
    seconds: float
    two_contenders_s: float

    def as_dict(self) -> dict[str, object]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "seconds": round(self.seconds, 2),
            "two_contenders_s": round(self.two_contenders_s, 2),
            "ratio_to_two_contenders": round(self.seconds / self.two_contenders_s, 2),
            "target_s": TARGET_S,
            "zone_steps": self.report.zone_steps,
            "savings_vs_baseline": round(self.report.saving("candidate"), 4),
        }


def run(
    inventory: SiteInventory,
    start: datetime,
    end: datetime,
    progress: Callable[[str], None],
) -> WhatIfBench:
    strategy = load_strategy(PACKAGED_STRATEGY)
    progress("reference: one strategy and the baseline...")
    began = time.perf_counter()
    run_whatif(inventory, [Contender("reference", strategy), Contender(BASELINE, None)], start, end)
    two_contenders = time.perf_counter() - began
    progress("candidate, current and baseline...")
    began = time.perf_counter()
    report = run_whatif(
        inventory,
        [
            Contender("candidate", strategy),
            Contender("current", strategy),
            Contender(BASELINE, None),
        ],
        start,
        end,
    )
    return WhatIfBench(start, end, report, time.perf_counter() - began, two_contenders)


def report(result: WhatIfBench) -> str:
    ratio = result.seconds / result.two_contenders_s
    verdict = "within" if result.seconds <= TARGET_S else "OVER"
    return (
        f"what-if {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}, all buildings, 3 strategies: "
        f"{result.seconds:.1f} s ({verdict} the {TARGET_S:.0f} s target); "
        f"{result.report.zone_steps / 1e6:.1f} M zone-steps\n"
        f"reference, one strategy and the baseline: {result.two_contenders_s:.1f} s; "
        f"ratio {ratio:.2f}"
    )
