"""``smartcity bench whatif``: a heating and a cooling season of every building through the
what-if replay, the strategy against the EN 15232 class C reference.

Per season, one replay of five contenders, as ``smartcity energy whatif`` runs them: the
strategy as candidate and as current, the class C building, the same with its external blinds
on a seasonal timer, and the 24/7 thermostat. It prints the strategy's energy, peak and
discomfort against both class C references and judges the targets (at least
:data:`SAVING_TARGET` less energy, no more discomfort, no higher peak) against the stronger of
the two; for continuity with earlier figures, against 24/7; and the replay's time (target:
under :data:`TARGET_S`) with, measured in the same run, the time of the strategy replayed
alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from control.strategy import Strategy
from protocol.sites import SiteInventory
from whatif.hvac import (
    ALWAYS_ON,
    CLASS_C,
    CLASS_C_BLINDS,
    Contender,
    Figures,
    WhatIfReport,
    run_whatif,
)

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
    def strongest(self) -> str:
        """The class C reference that uses the least energy: with its blinds on a timer
        where that saves (summer), else plain class C."""
        return min((CLASS_C, CLASS_C_BLINDS), key=lambda label: self.reference(label).energy_kwh)

    @property
    def meets_targets(self) -> bool:
        """The targets against the strongest class C reference."""
        strongest = self.reference(self.strongest)
        return (
            self.report.saving("candidate", self.strongest) >= SAVING_TARGET
            and self.strategy.discomfort_kh <= strongest.discomfort_kh
            and self.strategy.peak_kw <= strongest.peak_kw
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
            "class_c_blinds": figures(self.reference(CLASS_C_BLINDS)),
            "always_on": figures(self.reference(ALWAYS_ON)),
            "saving_vs_class_c": round(self.report.saving("candidate", CLASS_C), 4),
            "saving_vs_class_c_blinds": round(self.report.saving("candidate", CLASS_C_BLINDS), 4),
            "strongest_reference": self.strongest,
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
        progress(f"{season}: candidate, current, class C, class C with blinds and 24/7...")
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
        mine = item.strategy
        lines += [
            f"{item.season} {item.report.start:%Y-%m-%d} to {item.report.end:%Y-%m-%d}:",
            f"  {'':<14} {'kWh':>9} {'peak kW':>8} {'discomfort Kh':>14}",
            *(
                f"  {label:<14} {figures.energy_kwh:>9.0f} {figures.peak_kw:>8.1f} "
                f"{figures.discomfort_kh:>14.1f}"
                for label, figures in (
                    ("strategy", mine),
                    *((label, item.reference(label)) for label in (CLASS_C, CLASS_C_BLINDS)),
                    (ALWAYS_ON, item.reference(ALWAYS_ON)),
                )
            ),
        ]
        for label, name in ((CLASS_C, "class C"), (CLASS_C_BLINDS, "class C, blinds on a timer")):
            reference = item.reference(label)
            if label == item.strongest:
                verdict = "targets met" if item.meets_targets else "TARGETS MISSED"
            elif reference.energy_kwh == item.reference(item.strongest).energy_kwh:
                verdict = "the same building this season"
            else:
                verdict = "not the strongest reference"
            lines.append(
                f"  against {name}: {100 * item.report.saving('candidate', label):.1f} % less "
                f"energy (target {100 * SAVING_TARGET:.0f} %), peak {mine.peak_kw:.0f} against "
                f"{reference.peak_kw:.0f} kW, discomfort {mine.discomfort_kh:.1f} against "
                f"{reference.discomfort_kh:.1f} K h: {verdict}"
            )
        lines += [
            f"  against 24/7 (for continuity): "
            f"{100 * item.report.saving('candidate', ALWAYS_ON):.1f} % less energy",
            f"  replay of five contenders: {item.seconds:.1f} s (target under {TARGET_S:.0f} s); "
            f"the strategy alone: {item.alone_s:.1f} s; ratio {item.seconds / item.alone_s:.2f}",
        ]
    return "\n".join(lines)
