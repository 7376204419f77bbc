"""The backtest's figures as text: one rule set's report, or two side by side.

:mod:`rules.scoring` computes the figures (:class:`Score`); this renders them for
``smartcity rules backtest`` and ``rules score``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Final

from rules.scoring import AlertInterval, FaultScore, LateFault, RuleScore, Score

LATE_SHOWN: Final = 20
"""Faults not found within bound, and false alerts, listed by name; the JSON has them all."""

# ---------------------------------------------------------------------------------- reporting


def format_duration(duration: timedelta | None) -> str:
    """``45 s``, ``12 min``, ``3.5 h``, ``2.5 d``; ``-`` for none."""
    if duration is None:
        return "-"
    seconds = duration.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.0f} s"
    if seconds < 3600:
        return f"{sign}{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{sign}{seconds / 3600:.1f} h"
    return f"{sign}{seconds / 86400:.1f} d"


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f} %"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Fixed-width columns: the first left-aligned, the others right-aligned."""
    body = [list(row) for row in rows]
    widths = [max(len(row[column]) for row in [header, *body]) for column in range(len(header))]
    rule = ["-" * width for width in widths]

    def line(cells: Sequence[str]) -> str:
        aligned = [cells[0].ljust(widths[0])]
        aligned += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(aligned).rstrip()

    return [line(header), line(rule), *(line(row) for row in body)]


def uncounted_lines(faults: Iterable[FaultScore]) -> list[str]:
    """The faults left out of the counts: never observable, or their bound past the end."""
    ordered = list(faults)
    never = [f"{f.fault} {f.never_shown}" for f in ordered if f.never_shown]
    past = [f"{f.fault} {f.past_period_end}" for f in ordered if f.past_period_end]
    lines = []
    if never:
        lines.append(f"Never observable while they lasted (not counted): {', '.join(never)}")
    if past:
        lines.append(
            "Not found yet when the period ended, their bound still running (not counted): "
            + ", ".join(past)
        )
    return lines


def _listing(
    title: tuple[str, str, str], header: Sequence[str], rows: Sequence[Sequence[str]], limit: int
) -> list[str]:
    """``title`` (heading, singular, plural) with the count, then the first ``limit`` rows."""
    if not rows:
        return []
    heading, one, many = title
    shown = rows[:limit]
    more = f", the first {len(shown)}" if len(rows) > len(shown) else ""
    return [
        f"{heading}: {len(rows)} {one if len(rows) == 1 else many}{more}",
        *table(header, shown),
    ]


def late_lines(late: Sequence[LateFault], limit: int = LATE_SHOWN) -> list[str]:
    """The faults not found within their rule's bound, one line each (the first ``limit``)."""
    rows = [
        [
            fault.device_id,
            fault.fault,
            f"{fault.start:%Y-%m-%d %H:%M}",
            f"{fault.shows_from:%Y-%m-%d %H:%M}",
            "-" if fault.end is None else f"{fault.end:%Y-%m-%d %H:%M}",
            "never" if fault.delay is None else format_duration(fault.delay),
        ]
        for fault in late
    ]
    header = ["device", "fault", "started", "could show", "ended", "first alert after"]
    return _listing(("Not found within bound", "fault", "faults"), header, rows, limit)


def false_alert_lines(alerts: Sequence[AlertInterval], limit: int = LATE_SHOWN) -> list[str]:
    """The alerts that matched no fault their rule detects, one line each (the first
    ``limit``)."""
    rows = [
        [
            alert.device_id,
            alert.rule_id,
            f"{alert.start:%Y-%m-%d %H:%M}",
            "-" if alert.end is None else f"{alert.end:%Y-%m-%d %H:%M}",
        ]
        for alert in alerts
    ]
    header = ["device", "rule", "fired", "resolved"]
    return _listing(("False alerts", "alert", "alerts"), header, rows, limit)


def _heading(result: Score) -> str:
    return (
        f"Period {result.period_start.isoformat(sep=' ', timespec='minutes')} to "
        f"{result.period_end.isoformat(sep=' ', timespec='minutes')}: "
        f"{result.device_count:,} devices, {result.device_days:,.1f} device-days "
        f"(grace {format_duration(result.grace)}, flap window "
        f"{format_duration(result.flap_window)})"
    )


def _recall_cell(fault: FaultScore | None) -> str:
    if fault is None:
        return "-"
    return percent(fault.recall) if fault.covered else "not covered"


def _precision_cell(rule: RuleScore | None) -> str:
    if rule is None:
        return "-"
    return percent(rule.precision) if rule.scored else "unscored"


def format_report(result: Score) -> str:
    """The backtest report of one rule set, as fixed-width text."""
    fault_rows = [
        [
            fault.fault,
            str(fault.injected),
            str(fault.detected) if fault.covered else "-",
            str(fault.within_bound) if fault.covered else "-",
            _recall_cell(fault),
            format_duration(fault.delay_p50),
            format_duration(fault.delay_p90),
            format_duration(fault.delay_max),
        ]
        for fault in result.by_fault.values()
    ]
    rule_rows = [
        [
            rule.rule_id,
            str(rule.alerts),
            str(rule.true_positives) if rule.scored else "-",
            str(rule.false_positives) if rule.scored else "-",
            _precision_cell(rule),
            str(rule.flaps),
        ]
        for rule in result.by_rule.values()
    ]
    lines = [_heading(result), "", "Faults"]
    lines += table(
        [
            "fault",
            "injected",
            "detected",
            "in bound",
            "recall",
            "delay p50",
            "delay p90",
            "delay max",
        ],
        fault_rows,
    )
    lines += uncounted_lines(result.by_fault.values())
    late = late_lines(result.late)
    lines += ["", *late] if late else []
    wrong = false_alert_lines(result.false_alerts)
    lines += ["", *wrong] if wrong else []
    lines += ["", "Rules"]
    lines += table(["rule", "alerts", "tp", "fp", "precision", "flaps"], rule_rows)
    lines += [
        "",
        f"Totals: {result.alerts} alerts ({result.unscored_alerts} unscored), "
        f"precision {percent(result.precision)}, recall {percent(result.recall)} "
        f"({result.detected} of {result.injected} faults), flaps {result.flaps}",
        f"Per 1,000 device-days: {rate(result.false_positives_per_1000_device_days)} "
        f"false positives, {rate(result.alerts_per_1000_device_days)} alerts",
    ]
    if result.not_covered:
        lines.append(f"Not covered (no rule detects them): {', '.join(result.not_covered)}")
    if result.muted:
        lines.append(
            f"Muted behind a root cause, never told (not counted above): {result.muted} alerts"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- comparison

_BETTER: Final = "better"
_WORSE: Final = "WORSE"


def _judged(change: float, text: str, higher_is_better: bool | None) -> str:
    if higher_is_better is None:
        return text
    improved = change > 0 if higher_is_better else change < 0
    return f"{text} {_BETTER if improved else _WORSE}"


def _delta_points(before: float | None, after: float | None) -> str:
    """Change of a fraction in percentage points; higher is better."""
    if before is None or after is None:
        return "n/a"
    change = round(100 * (after - before), 1)
    return "=" if change == 0 else _judged(change, f"{change:+.1f} pt", higher_is_better=True)


def _delta_duration(before: timedelta | None, after: timedelta | None) -> str:
    """Change of a delay; shorter is better."""
    if before is None or after is None:
        return "n/a"
    change = after - before
    text = format_duration(abs(change))
    if text == "0 s":
        return "="
    sign = "+" if change > timedelta(0) else "-"
    return _judged(change.total_seconds(), sign + text, higher_is_better=False)


def _delta_count(before: int | None, after: int | None, higher_is_better: bool | None) -> str:
    if before is None or after is None:
        return "n/a"
    change = after - before
    return "=" if change == 0 else _judged(change, f"{change:+d}", higher_is_better)


def _delta_rate(before: float | None, after: float | None) -> str:
    """Change of a per-1,000-device-day rate; lower is better."""
    if before is None or after is None:
        return "n/a"
    change = round(after - before, 2)
    return "=" if change == 0 else _judged(change, f"{change:+.2f}", higher_is_better=False)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def format_comparison(
    current: Score, draft: Score, names: tuple[str, str] = ("current", "draft")
) -> str:
    """Two rule sets' backtests side by side, with the change from the first to the second.

    Changes are marked ``better`` or ``WORSE``: recall, precision and true positives are better
    higher; delays, false positives, flaps and rates are better lower. Recall and precision
    change in percentage points (``+12.5 pt``), delays in time (``-3 min``).
    """
    first, second = names
    lines = [f"{first}: {_heading(current)}"]
    if (current.period_start, current.period_end, current.device_count) != (
        draft.period_start,
        draft.period_end,
        draft.device_count,
    ):
        lines.append(f"{second}: {_heading(draft)}  (not the same period or fleet)")

    fault_rows = []
    for name in sorted(current.by_fault.keys() | draft.by_fault.keys()):
        before, after = current.by_fault.get(name), draft.by_fault.get(name)
        injected = {fault.injected for fault in (before, after) if fault is not None}
        fault_rows.append(
            [
                name,
                " / ".join(str(count) for count in sorted(injected)),
                _recall_cell(before),
                _recall_cell(after),
                _delta_points(
                    None if before is None else before.recall,
                    None if after is None else after.recall,
                ),
                format_duration(None if before is None else before.delay_p50),
                format_duration(None if after is None else after.delay_p50),
                _delta_duration(
                    None if before is None else before.delay_p50,
                    None if after is None else after.delay_p50,
                ),
                format_duration(None if before is None else before.delay_p90),
                format_duration(None if after is None else after.delay_p90),
                _delta_duration(
                    None if before is None else before.delay_p90,
                    None if after is None else after.delay_p90,
                ),
            ]
        )
    lines += ["", "Faults"]
    lines += table(
        [
            "fault",
            "injected",
            f"recall {first}",
            f"recall {second}",
            "change",
            f"p50 {first}",
            f"p50 {second}",
            "change",
            f"p90 {first}",
            f"p90 {second}",
            "change",
        ],
        fault_rows,
    )

    rule_rows = []
    for rule_id in sorted(current.by_rule.keys() | draft.by_rule.keys()):
        old, new = current.by_rule.get(rule_id), draft.by_rule.get(rule_id)
        old_alerts, new_alerts = (None if r is None else r.alerts for r in (old, new))
        old_fp, new_fp = (
            None if r is None or not r.scored else r.false_positives for r in (old, new)
        )
        old_flaps, new_flaps = (None if r is None else r.flaps for r in (old, new))
        rule_rows.append(
            [
                rule_id,
                _count(old_alerts),
                _count(new_alerts),
                _delta_count(old_alerts, new_alerts, higher_is_better=None),
                _count(old_fp),
                _count(new_fp),
                _delta_count(old_fp, new_fp, higher_is_better=False),
                _precision_cell(old),
                _precision_cell(new),
                _delta_points(
                    None if old is None else old.precision,
                    None if new is None else new.precision,
                ),
                _count(old_flaps),
                _count(new_flaps),
                _delta_count(old_flaps, new_flaps, higher_is_better=False),
            ]
        )
    lines += ["", "Rules"]
    lines += table(
        [
            "rule",
            f"alerts {first}",
            f"alerts {second}",
            "change",
            f"fp {first}",
            f"fp {second}",
            "change",
            f"precision {first}",
            f"precision {second}",
            "change",
            f"flaps {first}",
            f"flaps {second}",
            "change",
        ],
        rule_rows,
    )

    total_rows = [
        [
            "alerts",
            str(current.alerts),
            str(draft.alerts),
            _delta_count(current.alerts, draft.alerts, higher_is_better=None),
        ],
        [
            "true positives",
            str(current.true_positives),
            str(draft.true_positives),
            _delta_count(current.true_positives, draft.true_positives, higher_is_better=True),
        ],
        [
            "false positives",
            str(current.false_positives),
            str(draft.false_positives),
            _delta_count(current.false_positives, draft.false_positives, higher_is_better=False),
        ],
        [
            "precision",
            percent(current.precision),
            percent(draft.precision),
            _delta_points(current.precision, draft.precision),
        ],
        [
            "recall",
            percent(current.recall),
            percent(draft.recall),
            _delta_points(current.recall, draft.recall),
        ],
        [
            "flaps",
            str(current.flaps),
            str(draft.flaps),
            _delta_count(current.flaps, draft.flaps, higher_is_better=False),
        ],
        [
            "false positives per 1,000 device-days",
            rate(current.false_positives_per_1000_device_days),
            rate(draft.false_positives_per_1000_device_days),
            _delta_rate(
                current.false_positives_per_1000_device_days,
                draft.false_positives_per_1000_device_days,
            ),
        ],
        [
            "alerts per 1,000 device-days",
            rate(current.alerts_per_1000_device_days),
            rate(draft.alerts_per_1000_device_days),
            _delta_rate(current.alerts_per_1000_device_days, draft.alerts_per_1000_device_days),
        ],
    ]
    lines += ["", "Totals"]
    lines += table(["figure", first, second, "change"], total_rows)
    return "\n".join(lines) + "\n"
