"""``smartcity bench whatif``: a heating and a cooling season of every building through the
what-if replay, the strategy against the EN 15232 class C reference.

Per season, one replay of four contenders, as ``smartcity energy whatif`` runs them: the
strategy as candidate and as current, the class C building and the 24/7 thermostat. It
prints the strategy's energy, peak and discomfort against class C (the targets: at least
:data:`SAVING_TARGET` less energy, no more discomfort, no higher peak) and, for continuity with
earlier figures, against 24/7; and the replay's time (target: under :data:`TARGET_S`) with,
measured in the same run, the time of the strategy replayed alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from control.strategy import Strategy
from protocol.sites import SiteInventory
from whatif.hvac import ALWAYS_ON, CLASS_C, Contender, Figures, WhatIfReport, run_whatif

TARGET_S: Final = 60.0
SAVING_TARGET: Final = 0.20
SEASONS: Final = {
    "winter": (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC)),
    "summer": (datetime(2027, 6, 1, tzinfo=UTC), datetime(2027, 9, 1, tzinfo=UTC)),
}
"""The heating season (December to February) and the cooling season (June to August)."""


@dataclass(frozen=True, slots=True)
class SeasonBench:
    season: str
    report: WhatIfReport
    seconds: float
    alone_s: float

    @property
    def strategy(self) -> Figures:
        return self.report.figures["candidate"]["total"]

    def reference(self, label: str) -> Figures:
        return self.report.figures[label]["total"]

    @property
    def meets_targets(self) -> bool:
        class_c = self.reference(CLASS_C)
        return (
            self.report.saving("candidate", CLASS_C) >= SAVING_TARGET
            and self.strategy.discomfort_kh <= class_c.discomfort_kh
            and self.strategy.peak_kw <= class_c.peak_kw
            and self.seconds <= TARGET_S
        )

    def as_dict(self) -> dict[str, object]:
        def figures(item: Figures) -> dict[str, float]:
            return {
                "energy_kwh": round(item.energy_kwh, 1),
                "peak_kw": round(item.peak_kw, 1),
                "discomfort_kh": round(item.discomfort_kh, 2),
            }

        return {
            "from": self.report.start.isoformat(),
            "to": self.report.end.isoformat(),
            "strategy": figures(self.strategy),
            "class_c": figures(self.reference(CLASS_C)),
            "always_on": figures(self.reference(ALWAYS_ON)),
            "saving_vs_class_c": round(self.report.saving("candidate", CLASS_C), 4),
            "saving_vs_24_7": round(self.report.saving("candidate", ALWAYS_ON), 4),
            "saving_target": SAVING_TARGET,
            "seconds": round(self.seconds, 2),
            "alone_s": round(self.alone_s, 2),
            "ratio_to_alone": round(self.seconds / self.alone_s, 2),
            "target_s": TARGET_S,
            "zone_steps": self.report.zone_steps,
            "meets_targets": self.meets_targets,
        }


@dataclass(frozen=True, slots=True)
class WhatIfBench:
    strategy: str
    seasons: list[SeasonBench]

    def as_dict(self) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "seasons": {item.season: item.as_dict() for item in self.seasons},
            "meets_targets": all(item.meets_targets for item in self.seasons),
        }


def run(
    inventory: SiteInventory,
    strategy: Strategy,
    seasons: Sequence[str],
    progress: Callable[[str], None],
) -> WhatIfBench:
    results = []
    for season in seasons:
        start, end = SEASONS[season]
        progress(f"{season}: the strategy alone...")
        began = time.perf_counter()
        run_whatif(inventory, [Contender("candidate", strategy)], start, end)
        alone = time.perf_counter() - began
        progress(f"{season}: candidate, current, class C and 24/7...")
        began = time.perf_counter()
        report = run_whatif(
            inventory,
            [
                Contender("candidate", strategy),
                Contender("current", strategy),
                *Contender.references(strategy),
            ],
            start,
            end,
        )
        results.append(SeasonBench(season, report, time.perf_counter() - began, alone))
    return WhatIfBench(strategy.name, results)


def report(result: WhatIfBench) -> str:
    lines = [f"strategy {result.strategy}, all buildings"]
    for item in result.seasons:
        mine, class_c, always_on = (
            item.strategy,
            item.reference(CLASS_C),
            item.reference(ALWAYS_ON),
        )
        saving = item.report.saving("candidate", CLASS_C)
        lines += [
            f"{item.season} {item.report.start:%Y-%m-%d} to {item.report.end:%Y-%m-%d}:",
            f"  {'':<10} {'kWh':>9} {'peak kW':>8} {'discomfort Kh':>14}",
            *(
                f"  {label:<10} {figures.energy_kwh:>9.0f} {figures.peak_kw:>8.1f} "
                f"{figures.discomfort_kh:>14.1f}"
                for label, figures in (
                    ("strategy", mine),
                    (CLASS_C, class_c),
                    (ALWAYS_ON, always_on),
                )
            ),
            f"  against class C: {100 * saving:.1f} % less energy (target "
            f"{100 * SAVING_TARGET:.0f} %), peak {mine.peak_kw:.0f} against "
            f"{class_c.peak_kw:.0f} kW, discomfort {mine.discomfort_kh:.1f} against "
            f"{class_c.discomfort_kh:.1f} K h: "
            f"{'targets met' if item.meets_targets else 'TARGETS MISSED'}",
            f"  against 24/7 (for continuity): "
            f"{100 * item.report.saving('candidate', ALWAYS_ON):.1f} % less energy",
            f"  replay of four contenders: {item.seconds:.1f} s (target under {TARGET_S:.0f} s); "
            f"the strategy alone: {item.alone_s:.1f} s; ratio {item.seconds / item.alone_s:.2f}",
        ]
    return "\n".join(lines)
