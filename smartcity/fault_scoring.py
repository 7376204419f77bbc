"""``smartcity rules score``: a fault set through the simulated city and the backtest, scored.

The simulated city writes the history of a period (with the warm-up the backtest reads
before it) into a scratch database, with the faults of a fault file and/or random ones drawn
from a seed; the backtest runs a rule set over it and scores it against that ground truth.
What a user needs to judge a rule set on faults of their own choosing, without a live city:
per fault type how many were injected, found within their rule's bound, recall and the
precision of the rules that detect the type, the delays from the moment each fault could
first be observed, and the false alerts of the devices that had no fault.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

from protocol.sites import SiteInventory
from rules.backtest import BacktestResult, backtest
from rules.model import RuleSet
from rules.names import DEFAULT_WARMUP
from rules.scoring import FaultFree, fault_free
from rules.scoring_report import (
    false_alert_lines,
    format_duration,
    late_lines,
    percent,
    rate,
    table,
    uncounted_lines,
)
from runtime.local_services import scratch_database
from simulators.environment import CloudyRun
from simulators.history import HistoryOptions, LightingProgram, generate_history
from simulators.simulate import SimulationOptions, plan_faults
from storage.migrate import migrate
from storage.registry import upsert_site

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FaultSet:
    """What to inject: a fault file's faults, random ones, or both; the seed of everything."""

    seed: int
    fault_file: Path | None = None
    random_per_device_year: float | None = None


@dataclass(frozen=True)
class ScoringRun:
    run_name: str
    planned: int
    """Faults injected over the period."""
    result: BacktestResult
    fault_free: FaultFree

    def precision_of(self, fault: str) -> float | None:
        """Of the alerts of the rules detecting ``fault``, the share that were right."""
        rules = self.result.score.by_fault[fault].rules
        right = sum(self.result.score.by_rule[rule].true_positives for rule in rules)
        wrong = sum(self.result.score.by_rule[rule].false_positives for rule in rules)
        return right / (right + wrong) if right + wrong else None

    def to_json(self) -> dict[str, object]:
        score = self.result.score
        return {
            "run": self.run_name,
            "rules": self.result.rule_set.source,
            "start": self.result.start.isoformat(),
            "end": self.result.end.isoformat(),
            "devices": self.result.device_count,
            "faults_planned": self.planned,
            "by_fault": {
                name: {**fault.to_json(), "precision": self.precision_of(name)}
                for name, fault in score.by_fault.items()
                if fault.covered or fault.injected
            },
            "fault_free": self.fault_free.to_json(),
            "totals": score.to_json()["totals"],
            "go_dark": None if self.result.go_dark is None else self.result.go_dark.to_json(),
            "rows_per_second": round(self.result.rows_per_second),
            "late": [fault.to_json() for fault in score.late],
            "false_alerts": score.to_json()["false_alerts"],
        }


def score_fault_set(
    inventory: SiteInventory,
    rule_set: RuleSet,
    start: datetime,
    end: datetime,
    faults: FaultSet,
    *,
    server_url: str | None,
    state_dir: Path,
    progress: Progress,
    warmup: timedelta = DEFAULT_WARMUP,
    lighting: LightingProgram | None = None,
    overcast: CloudyRun | None = None,
) -> ScoringRun:
    """Simulate ``[start - warmup, end)`` with ``faults`` (placed from ``start``) into a
    scratch database on ``server_url`` (or a private PostgreSQL), backtest ``rule_set`` over
    ``[start, end)`` and score it; the scratch database is dropped afterwards. ``lighting``
    and ``overcast`` as in :class:`simulators.history.HistoryOptions`."""
    run_name = f"score-{start:%Y%m%d}-{end:%Y%m%d}-seed{faults.seed}"
    options = SimulationOptions(
        inventory,
        "",
        0,
        state_dir,
        seed=faults.seed,
        fault_file=faults.fault_file,
        random_faults_per_device_year=faults.random_per_device_year,
    )
    events = plan_faults(options, start, horizon=end - start)
    progress(f"{run_name}: {len(inventory.devices):,} devices, {len(events):,} faults")
    workdir = Path(tempfile.mkdtemp(prefix="smartcity-score-", dir="/tmp"))
    workdir.chmod(0o755)
    try:
        name = f"smartcity_score_{os.getpid()}"
        with scratch_database(server_url, workdir, name, progress) as url:
            migrate(url)
            with psycopg.connect(url) as connection:
                upsert_site(connection, inventory)
            generate_history(
                HistoryOptions(
                    inventory,
                    start - warmup,
                    end,
                    seed=faults.seed,
                    faults=tuple(events),
                    run_name=run_name,
                    lighting=lighting,
                    overcast=overcast,
                ),
                url,
                progress=progress,
            )
            # A fault-free run records no ground truth: the scratch database holds no other.
            run = run_name if events else None
            result = backtest(url, rule_set, start, end, None, run, progress, warmup=warmup)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    free = fault_free(
        result.alerts,
        result.faults,
        result.device_ids,
        start,
        end,
        came_true=result.foretold_darkness(),
    )
    return ScoringRun(run_name, len(events), result, free)


def report(run: ScoringRun) -> str:
    """Per fault type, then the fault-free devices' false alerts, as fixed-width text."""
    score = run.result.score
    header = ("fault", "injected", "in bound", "recall", "precision", "delay p50", "delay max")
    rows = [
        (
            name,
            str(fault.injected),
            str(fault.within_bound),
            percent(fault.recall),
            percent(run.precision_of(name)),
            format_duration(fault.delay_p50),
            format_duration(fault.delay_max),
        )
        for name, fault in score.by_fault.items()
        if fault.covered and (fault.injected or fault.never_shown or fault.past_period_end)
    ]
    lines = [
        f"{run.run_name}: {run.result.device_count:,} devices, {run.planned:,} faults injected, "
        f"{run.result.start:%Y-%m-%d} to {run.result.end:%Y-%m-%d}, "
        f"rules {run.result.rule_set.source}",
        "Delays from the moment each fault could first be observed (docs/rules.md).",
        "",
        *table(header, rows),
    ]
    lines += uncounted_lines(score.by_fault.values())
    uncovered = [n for n, f in score.by_fault.items() if not f.covered and f.injected]
    if uncovered:
        lines.append(f"Injected but detected by no rule: {', '.join(uncovered)}")
    late = late_lines(score.late)
    lines += ["", *late] if late else []
    wrong = false_alert_lines(score.false_alerts)
    lines += ["", *wrong] if wrong else []
    free = run.fault_free
    lines += [
        "",
        f"Fault-free devices: {free.devices:,} ({free.device_days:,.1f} device-days), "
        f"{free.alerts} alerts: {rate(free.per_1000_device_days)} per 1,000 device-days"
        + (f" ({_counts(free.by_rule)})" if free.by_rule else "")
        + " (forecasts that came true are not counted)",
        run.result.summary(),
    ]
    return "\n".join(lines)


def to_json(run: ScoringRun) -> str:
    return json.dumps(run.to_json())


def _counts(by_rule: Mapping[str, int]) -> str:
    return ", ".join(f"{rule} {count}" for rule, count in by_rule.items())
