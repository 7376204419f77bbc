"""Backtest scoring: true and false positives, recall, delays, flapping and rates, as defined."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.errors import RuleError
from rules.scoring import (
    NEVER,
    AlertInterval,
    FaultInterval,
    Score,
    ScoringError,
    fault_free,
    score,
)
from rules.scoring_report import format_comparison, format_duration, format_report

T0 = datetime(2026, 1, 5, tzinfo=UTC)
WEEK = timedelta(days=7)
DETECTS: Mapping[str, frozenset[str]] = {
    "lamp-out": frozenset({"lamp_failure"}),
    "power": frozenset({"lamp_failure", "power_loss"}),
    "door-info": frozenset(),
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def alert(
    start: float, end: float | None = None, *, rule: str = "lamp-out", device: str = "sl-1"
) -> AlertInterval:
    return AlertInterval(rule, device, at(start), None if end is None else at(end))


def fault(
    start: float, end: float | None = None, *, kind: str = "lamp_failure", device: str = "sl-1"
) -> FaultInterval:
    return FaultInterval(device, kind, at(start), None if end is None else at(end))


def run(
    alerts: Sequence[AlertInterval],
    faults: Sequence[FaultInterval],
    detects: Mapping[str, frozenset[str]] = DETECTS,
    *,
    device_count: int = 10,
    period: timedelta = WEEK,
    grace: timedelta = timedelta(hours=1),
    flap_window: timedelta = timedelta(hours=1),
) -> Score:
    return score(
        alerts,
        faults,
        detects,
        period_start=T0,
        period_end=T0 + period,
        device_count=device_count,
        grace=grace,
        flap_window=flap_window,
    )


def columns(report: str, first_cell: str) -> list[str]:
    """The cells of the report line that starts with ``first_cell``."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in report.splitlines()]
    (row,) = (cells for cells in rows if cells[0] == first_cell)
    return row


# ------------------------------------------------------------------- one alert against one fault


@pytest.mark.parametrize(
    ("case", "one_alert", "grace_min", "true_positive", "delay_min"),
    [
        ("fires during the fault", alert(90, 100), 60, True, 30),
        ("fires as the fault starts", alert(60, 70), 60, True, 0),
        ("fires within the grace after a short fault", alert(150, 160), 60, True, 90),
        ("fires exactly at the end of the grace", alert(180, 190), 60, True, 120),
        ("fires after the grace", alert(181, 190), 60, False, None),
        ("fires after the fault without grace", alert(121, 130), 0, False, None),
        ("fires as the fault ends without grace", alert(120, 130), 0, True, 60),
        ("fires and resolves as the fault starts", alert(60, 60), 60, True, 0),
        ("fires and resolves as a fault ends", alert(120, 120), 0, True, 60),
        ("open before the fault began", alert(30, 70), 60, True, 0),
        ("open before the fault and never resolved", alert(30), 60, True, 0),
        ("resolved before the fault began", alert(30, 59), 60, False, None),
        ("resolved as the fault began", alert(30, 60), 60, False, None),
        ("on another device", alert(90, 100, device="sl-2"), 60, False, None),
        ("of a rule detecting other faults", alert(90, 100, rule="other"), 60, False, None),
    ],
)
def test_an_alert_is_a_true_positive_when_it_overlaps_a_fault_its_rule_detects(
    case: str,
    one_alert: AlertInterval,
    grace_min: int,
    true_positive: bool,
    delay_min: int | None,
) -> None:
    detects = {**DETECTS, "other": frozenset({"door_open"})}
    result = run([one_alert], [fault(60, 120)], detects, grace=timedelta(minutes=grace_min))
    rule = result.by_rule[one_alert.rule_id]
    assert (rule.true_positives, rule.false_positives) == (int(true_positive), 1 - true_positive)
    assert rule.precision == float(true_positive)
    lamp = result.by_fault["lamp_failure"]
    assert lamp.injected == 1
    assert lamp.detected == (delay_min is not None), case
    expected_delay = None if delay_min is None else timedelta(minutes=delay_min)
    assert (lamp.delay_p50, lamp.delay_p90, lamp.delay_max) == (expected_delay,) * 3
    assert lamp.recall == (1.0 if delay_min is not None else 0.0)


def test_an_alert_still_open_at_the_end_detects_every_fault_it_spans() -> None:
    result = run([alert(90)], [fault(60, 120), fault(600, 700), fault(2000)])
    lamp = result.by_fault["lamp_failure"]
    assert (lamp.injected, lamp.detected) == (3, 3)
    assert lamp.delay_max == timedelta(minutes=30)
    assert lamp.delay_p50 == timedelta(0)
    assert result.by_rule["lamp-out"].true_positives == 1
    assert result.alerts == 1


# ---------------------------------------------------------------------------- the period


@pytest.mark.parametrize(
    ("case", "the_fault", "the_alert", "injected", "delay_min"),
    [
        ("inside the period", fault(60, 120), alert(70), 1, 10),
        ("began before the period: delay from its start", fault(-120, 60), alert(30), 1, 30),
        ("never ends: clipped to the period end", fault(10_000), alert(10_005), 1, 5),
        ("ended before the period", fault(-120, -60), alert(-50, 5), 0, None),
        ("ended as the period began", fault(-120, 0), alert(-10), 0, None),
        ("starts as the period ends", fault(WEEK / timedelta(minutes=1)), alert(70), 0, None),
        ("an alert fired before the period, open as it starts", fault(30), alert(-10), 1, 0),
    ],
)
def test_faults_outside_the_period_are_ignored_and_the_others_clipped_to_it(
    case: str,
    the_fault: FaultInterval,
    the_alert: AlertInterval,
    injected: int,
    delay_min: int | None,
) -> None:
    result = run([the_alert], [the_fault])
    lamp = result.by_fault["lamp_failure"]
    assert lamp.injected == injected, case
    assert lamp.detected == (delay_min is not None)
    assert lamp.delay_max == (None if delay_min is None else timedelta(minutes=delay_min))


def test_only_alerts_fired_in_the_period_are_counted() -> None:
    before = alert(-90, -30)  # matches a fault that ended just before the period
    late = alert(WEEK / timedelta(minutes=1) + 5)
    inside = alert(20, 30)  # 50 min after that fault ended: within the grace
    result = run([before, inside, late], [fault(-120, -30)])
    assert result.alerts == 1
    assert result.by_rule["lamp-out"].true_positives == 1
    assert result.by_fault["lamp_failure"].injected == 0


# ------------------------------------------------------------------------ several rules


def test_a_fault_detected_by_two_rules_counts_once_and_makes_both_alerts_right() -> None:
    result = run(
        [alert(70, 80, rule="lamp-out"), alert(65, 90, rule="power")],
        [fault(60, 120)],
    )
    lamp = result.by_fault["lamp_failure"]
    assert lamp.rules == ("lamp-out", "power")
    assert (lamp.injected, lamp.detected, lamp.recall) == (1, 1, 1.0)
    assert lamp.delay_max == timedelta(minutes=5)  # the first of the two
    assert result.by_rule["lamp-out"].true_positives == 1
    assert result.by_rule["power"].true_positives == 1
    assert (result.true_positives, result.false_positives, result.precision) == (2, 0, 1.0)
    assert result.by_fault["power_loss"].injected == 0
    assert result.by_fault["power_loss"].recall is None


def test_a_rule_detecting_several_types_is_right_on_any_of_them() -> None:
    result = run(
        [alert(70, rule="power"), alert(500, rule="power")],
        [fault(60, 120, kind="power_loss"), fault(400, 450, kind="door_open")],
    )
    assert result.by_rule["power"].true_positives == 1
    assert result.by_rule["power"].false_positives == 1
    assert result.by_fault["power_loss"].detected == 1
    assert result.by_fault["lamp_failure"].injected == 0


def test_informational_rules_are_unscored_and_uncovered_faults_listed() -> None:
    result = run(
        [alert(10, 20, rule="door-info"), alert(500, rule="door-info"), alert(70)],
        [fault(60, 120), fault(0, 30, kind="door_open"), fault(40, kind="window_open")],
    )
    info = result.by_rule["door-info"]
    assert not info.scored
    assert (info.alerts, info.true_positives, info.false_positives) == (2, 0, 0)
    assert info.precision is None
    assert (result.alerts, result.unscored_alerts) == (3, 2)
    assert (result.true_positives, result.false_positives, result.precision) == (1, 0, 1.0)
    assert result.not_covered == ("door_open", "window_open")
    door = result.by_fault["door_open"]
    assert (door.covered, door.injected, door.detected, door.recall) == (False, 1, 0, 0.0)
    # Overall recall counts only the faults some rule is meant to detect.
    assert (result.injected, result.detected, result.recall) == (1, 1, 1.0)


def test_alerts_of_a_rule_missing_from_detects_are_refused() -> None:
    with pytest.raises(ScoringError, match=r"'typo'.*empty set for an informational rule"):
        run([alert(10, rule="typo")], [])


# ---------------------------------------------------------------------------------- delays


def test_delay_percentiles_interpolate_like_numpy() -> None:
    delays_min = [40, 10, 30, 20, 95]
    faults = [fault(1000 * n, 1000 * n + 200, device=f"sl-{n}") for n in range(5)]
    alerts = [alert(1000 * n + delay, device=f"sl-{n}") for n, delay in enumerate(delays_min)]
    lamp = run(alerts, faults).by_fault["lamp_failure"]
    p50, p90 = np.percentile(delays_min, [50, 90])
    assert lamp.delay_p50 == timedelta(minutes=float(p50))
    assert lamp.delay_p90 == timedelta(minutes=float(p90))
    assert lamp.delay_max == timedelta(minutes=95)


# ---------------------------------------------------------------------------------- flapping


@pytest.mark.parametrize(
    ("case", "spans", "flaps"),
    [
        ("one alert", [(0, 10)], 0),
        ("again 20 min after resolving", [(0, 10), (30, 40)], 1),
        ("again exactly at the window's end", [(0, 10), (70, 80)], 1),
        ("again after the window", [(0, 10), (71, 80)], 0),
        ("three quick ones", [(0, 10), (15, 20), (25, 30)], 2),
        ("again while the previous is still open", [(0, None), (30, 40)], 1),
        ("unordered input", [(30, 40), (0, 10)], 1),
        ("the previous one fired before the period", [(-30, -10), (20, 30)], 1),
        ("flaps before the period are not counted", [(-50, -40), (-30, -10), (20, 30)], 1),
    ],
)
def test_flaps_count_alerts_fired_again_soon_after_the_previous_resolved(
    case: str, spans: list[tuple[int, int | None]], flaps: int
) -> None:
    alerts = [alert(start, end) for start, end in spans]
    other_device = [alert(start, end, device="sl-2") for start, end in spans[:1]]
    result = run(alerts + other_device, [])
    assert result.by_rule["lamp-out"].flaps == flaps, case
    assert result.flaps == flaps


# ------------------------------------------------------------------------------------ rates


def test_rates_per_1000_device_days_are_exact() -> None:
    alerts = [alert(100 * n, 100 * n + 10, device=f"sl-{n}") for n in range(4)]
    alerts.append(alert(10, rule="door-info"))
    result = run(alerts, [fault(0, 60, device="sl-0")], device_count=100)
    assert (result.alerts, result.true_positives, result.false_positives) == (5, 1, 3)
    assert result.device_days == 700.0
    assert result.false_positives_per_1000_device_days == 3 * 1000 / 700
    assert result.alerts_per_1000_device_days == 5 * 1000 / 700


def test_rates_over_a_period_of_a_fractional_number_of_days() -> None:
    result = run([alert(10)], [], device_count=3, period=timedelta(hours=36))
    assert result.device_days == 4.5
    assert result.alerts_per_1000_device_days == 2000 / 9
    assert result.false_positives_per_1000_device_days == 2000 / 9


def test_the_fault_free_week_criterion_reads_directly() -> None:
    alerts = [alert(1000 * n, 1000 * n + 30, device=f"sl-{n}") for n in range(8)]
    result = run(alerts, [], device_count=1200)
    assert result.alerts_per_1000_device_days == 8000 / 8400
    assert result.alerts_per_1000_device_days <= 1


@pytest.mark.parametrize("device_count", [0, 5])
@pytest.mark.parametrize("detects", [{}, DETECTS])
def test_empty_inputs_score_without_dividing_by_zero(
    device_count: int, detects: Mapping[str, frozenset[str]]
) -> None:
    result = run([], [], detects, device_count=device_count)
    assert (result.alerts, result.flaps, result.injected, result.detected) == (0, 0, 0, 0)
    assert (result.precision, result.recall) == (None, None)
    expected_rate = 0.0 if device_count else None
    assert result.false_positives_per_1000_device_days == expected_rate
    assert result.alerts_per_1000_device_days == expected_rate
    assert all(rule.precision is None for rule in result.by_rule.values())
    assert all(fault.recall is None for fault in result.by_fault.values())
    assert "Totals: 0 alerts" in format_report(result)
    assert json.loads(json.dumps(result.to_json())) == result.to_json()
    assert format_comparison(result, result)


# ------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: AlertInterval("r", "d", datetime(2026, 1, 5)), "no time zone"),  # noqa: DTZ001
        (lambda: AlertInterval("r", "d", at(10), at(5)), "before it starts"),
        (lambda: AlertInterval("", "d", at(10)), "rule_id"),
        (lambda: FaultInterval("d", "lamp_failure", at(10), at(5)), "before it starts"),
        (lambda: FaultInterval("d", "", at(10)), "fault type"),
        (lambda: run([], [], period=timedelta(0)), "no later than it starts"),
        (lambda: run([], [], device_count=-1), "fleet size"),
        (lambda: run([], [], grace=timedelta(minutes=-1)), "must not be negative"),
    ],
)
def test_unusable_inputs_are_refused_with_what_to_do(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(ScoringError, match=message) as raised:
        build()
    assert isinstance(raised.value, RuleError)


# ------------------------------------------------------------------------- JSON and reports


def report_scenario() -> tuple[list[AlertInterval], list[FaultInterval]]:
    """Four lamp failures (three found after 6 min, 12 min, 3.5 h), one false alarm, info."""
    faults = [fault(1000 * n, 1000 * n + 360, device=f"sl-{n}") for n in range(4)]
    faults.append(fault(50, kind="window_open", device="zone-1"))
    alerts = [
        alert(1000 * n + delay, 1000 * n + 400, device=f"sl-{n}")
        for n, delay in enumerate([6, 12, 210])
    ]
    alerts += [
        alert(5000, 5010, device="sl-9"),
        alert(100, 110, rule="door-info", device="sign-1"),
        alert(130, 140, rule="door-info", device="sign-1"),
    ]
    return alerts, faults


def test_to_json_survives_json_dumps_with_seconds_and_nulls() -> None:
    alerts, faults = report_scenario()
    document = run(alerts, faults, device_count=200).to_json()
    assert json.loads(json.dumps(document)) == document
    lamp = document["by_fault"]
    assert isinstance(lamp, dict)
    assert lamp["lamp_failure"]["delay_p50_s"] == 12 * 60.0
    assert lamp["lamp_failure"]["delay_max_s"] == 210 * 60.0
    assert lamp["power_loss"]["recall"] is None
    assert lamp["power_loss"]["delay_p50_s"] is None
    assert document["not_covered"] == ["window_open"]
    assert document["grace_s"] == 3600.0
    assert document["period_start"] == "2026-01-05T00:00:00+00:00"
    totals = document["totals"]
    assert isinstance(totals, dict)
    assert totals["alerts"] == 6
    assert totals["precision"] == 0.75
    assert totals["false_positives_per_1000_device_days"] == 1000 / 1400
    assert document["by_rule"] == {
        "door-info": {
            "detects": [],
            "scored": False,
            "alerts": 2,
            "true_positives": 0,
            "false_positives": 0,
            "precision": None,
            "flaps": 1,
            "muted": 0,
        },
        "lamp-out": {
            "detects": ["lamp_failure"],
            "scored": True,
            "alerts": 4,
            "true_positives": 3,
            "false_positives": 1,
            "precision": 0.75,
            "flaps": 0,
            "muted": 0,
        },
        "power": {
            "detects": ["lamp_failure", "power_loss"],
            "scored": True,
            "alerts": 0,
            "true_positives": 0,
            "false_positives": 0,
            "precision": None,
            "flaps": 0,
            "muted": 0,
        },
    }


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (None, "-"),
        (timedelta(0), "0 s"),
        (timedelta(seconds=45), "45 s"),
        (timedelta(minutes=12), "12 min"),
        (timedelta(hours=3.5), "3.5 h"),
        (timedelta(days=2.5), "2.5 d"),
        (-timedelta(minutes=3), "-3 min"),
    ],
)
def test_durations_read_in_a_fitting_unit(duration: timedelta | None, text: str) -> None:
    assert format_duration(duration) == text


def test_the_report_shows_the_figures_in_columns() -> None:
    alerts, faults = report_scenario()
    report = format_report(run(alerts, faults, device_count=200))
    assert columns(report, "lamp_failure") == [
        "lamp_failure",
        "4",
        "3",
        "0",  # no bounds given
        "75.0 %",
        "12 min",
        "2.8 h",  # 12 min + 0.8 x (210 - 12) min
        "3.5 h",
    ]
    assert columns(report, "power_loss") == ["power_loss", "0", "0", "0", "-", "-", "-", "-"]
    assert columns(report, "window_open")[:5] == ["window_open", "1", "-", "-", "not covered"]
    assert columns(report, "lamp-out") == ["lamp-out", "4", "3", "1", "75.0 %", "0"]
    assert columns(report, "door-info") == ["door-info", "2", "-", "-", "unscored", "1"]
    assert columns(report, "power") == ["power", "0", "0", "0", "-", "0"]
    assert "Totals: 6 alerts (2 unscored), precision 75.0 %, recall 75.0 % (3 of 4" in report
    assert "0.71 false positives, 4.29 alerts" in report  # per 1,000 device-days, of 1,400
    assert "Not covered (no rule detects them): window_open" in report
    assert "200 devices, 1,400.0 device-days" in report


def test_the_false_alerts_are_listed_by_name() -> None:
    """sl-9's alert matched no fault: it is the report's one false alert, with its times."""
    alerts, faults = report_scenario()
    result = run(alerts, faults, device_count=200)
    assert [(a.rule_id, a.device_id) for a in result.false_alerts] == [("lamp-out", "sl-9")]
    assert result.to_json()["false_alerts"] == [
        {
            "rule_id": "lamp-out",
            "device_id": "sl-9",
            "start": at(5000).isoformat(),
            "end": at(5010).isoformat(),
        }
    ]
    report = format_report(result)
    assert "False alerts: 1 alert" in report
    assert columns(report, "sl-9") == ["sl-9", "lamp-out", "2026-01-08 11:20", "2026-01-08 11:30"]


def test_a_rule_with_a_grace_of_its_own_matches_a_fault_longer_after_it_ended() -> None:
    """A panel soiled until 17:00 told at midnight (yesterday's harvest): false with the
    common hour of grace, right with the rule's own day; a negative one is refused."""
    soiled = [fault(0, 17 * 60, kind="lamp_failure")]
    told = [alert(24 * 60, 25 * 60)]
    common = run(told, soiled)
    assert (common.true_positives, common.false_positives) == (0, 1)

    def with_grace(own: timedelta) -> Score:
        return score(
            told,
            soiled,
            DETECTS,
            period_start=T0,
            period_end=T0 + WEEK,
            device_count=10,
            grace_of={"lamp-out": own},
        )

    day = with_grace(timedelta(days=1))
    assert (day.true_positives, day.false_positives) == (1, 0)
    with pytest.raises(ScoringError, match="negative"):
        with_grace(timedelta(hours=-1))


def test_a_fault_whose_bound_outlasts_the_period_is_not_counted_until_it_is_late() -> None:
    """Bound 12 h. A valve stuck 7 h before the end and not yet found: not counted (its rules'
    time was not up); one stuck 13 h before the end and never found: missed; one stuck 2 h
    before the end and found after 1 h: counted, in bound."""
    end = T0 + WEEK
    stuck = [
        FaultInterval("z-1", "lamp_failure", end - timedelta(hours=7), None),
        FaultInterval("z-2", "lamp_failure", end - timedelta(hours=13), None),
        FaultInterval("z-3", "lamp_failure", end - timedelta(hours=2), None),
    ]
    result = score(
        [AlertInterval("lamp-out", "z-3", end - timedelta(hours=1))],
        stuck,
        DETECTS,
        period_start=T0,
        period_end=end,
        device_count=3,
        bounds={"lamp-out": timedelta(hours=12), "power": None},
    )
    found = result.by_fault["lamp_failure"]
    assert (found.injected, found.within_bound, found.past_period_end) == (2, 1, 1)
    assert [late.device_id for late in result.late] == ["z-2"]
    assert found.to_json()["past_period_end"] == 1
    assert (
        "Not found yet when the period ended, their bound still running (not counted): "
        "lamp_failure 1"
    ) in format_report(result)


def test_the_comparison_marks_improvements_and_regressions() -> None:
    alerts, faults = report_scenario()
    current = run(alerts, faults, device_count=200)
    # The draft finds the fourth failure after 30 min and drops the false alarm.
    draft_alerts = [a for a in alerts if a.device_id != "sl-9"]
    draft_alerts.append(alert(3030, 3400, device="sl-3"))
    draft = run(draft_alerts, faults, device_count=200)
    text = format_comparison(current, draft, names=("now", "next"))

    lamp = columns(text, "lamp_failure")
    assert lamp[:5] == ["lamp_failure", "4", "75.0 %", "100.0 %", "+25.0 pt better"]
    assert lamp[5:8] == ["12 min", "21 min", "+9 min WORSE"]  # p50 of 6, 12, 30, 210 min
    assert columns(text, "lamp-out")[1:10] == [
        "4",
        "4",
        "=",
        "1",
        "0",
        "-1 better",
        "75.0 %",
        "100.0 %",
        "+25.0 pt better",
    ]
    assert columns(text, "false positives") == ["false positives", "1", "0", "-1 better"]
    assert columns(text, "recall") == ["recall", "75.0 %", "100.0 %", "+25.0 pt better"]
    assert columns(text, "alerts per 1,000 device-days") == [
        "alerts per 1,000 device-days",
        "4.29",
        "4.29",
        "=",
    ]
    assert "recall now" in text
    assert "recall next" in text
    assert "not the same period" not in text

    backwards = format_comparison(draft, current)
    assert columns(backwards, "recall") == ["recall", "100.0 %", "75.0 %", "-25.0 pt WORSE"]
    assert columns(backwards, "lamp_failure")[7] == "-9 min better"


# -------------------------------------------------------------------------------- properties

RULES = ("r1", "r2", "r3")
DEVICES = ("d1", "d2")
TYPES = ("a", "b", "c")
PERIOD_START, PERIOD_END = at(50), at(350)


@st.composite
def spans(draw: st.DrawFn) -> tuple[datetime, datetime | None]:
    # On a 10-minute grid, so that intervals often touch and boundary cases come up.
    start = 10 * draw(st.integers(0, 40))
    length = draw(st.none() | st.integers(0, 12).map(lambda steps: 10 * steps))
    return at(start), None if length is None else at(start + length)


alert_lists = st.lists(
    st.builds(
        lambda rule, device, span: AlertInterval(rule, device, *span),
        st.sampled_from(RULES),
        st.sampled_from(DEVICES),
        spans(),
    ),
    max_size=25,
)
fault_lists = st.lists(
    st.builds(
        lambda device, kind, span: FaultInterval(device, kind, *span),
        st.sampled_from(DEVICES),
        st.sampled_from(TYPES),
        spans(),
    ),
    max_size=15,
)
detect_maps = st.fixed_dictionaries({rule: st.frozensets(st.sampled_from(TYPES)) for rule in RULES})
graces = st.integers(0, 6).map(lambda steps: timedelta(minutes=10 * steps))


def score_window(
    alerts: list[AlertInterval],
    faults: list[FaultInterval],
    detects: Mapping[str, frozenset[str]],
    grace: timedelta,
) -> Score:
    return score(
        alerts,
        faults,
        detects,
        period_start=PERIOD_START,
        period_end=PERIOD_END,
        device_count=len(DEVICES),
        grace=grace,
    )


@settings(max_examples=300, deadline=None)
@given(alerts=alert_lists, faults=fault_lists, detects=detect_maps, grace=graces)
def test_recall_and_precision_are_fractions_and_detected_never_exceeds_injected(
    alerts: list[AlertInterval],
    faults: list[FaultInterval],
    detects: Mapping[str, frozenset[str]],
    grace: timedelta,
) -> None:
    result = score_window(alerts, faults, detects, grace)
    fractions = [result.precision, result.recall]
    fractions += [fault.recall for fault in result.by_fault.values()]
    fractions += [rule.precision for rule in result.by_rule.values()]
    assert all(0 <= value <= 1 for value in fractions if value is not None)
    assert all(fault.detected <= fault.injected for fault in result.by_fault.values())
    assert result.detected <= result.injected
    assert result.true_positives + result.false_positives + result.unscored_alerts == (
        result.alerts
    )
    assert json.loads(json.dumps(result.to_json())) == result.to_json()


def brute_force_matches(
    one_alert: AlertInterval,
    start: datetime,
    end: datetime | None,
    grace: timedelta,
) -> bool:
    """The definition of a match, read literally (same device and type checked by the caller)."""
    fires_in_window = start <= one_alert.start and (end is None or one_alert.start <= end + grace)
    open_as_it_began = one_alert.start < start and (one_alert.end is None or one_alert.end > start)
    return fires_in_window or open_as_it_began


@settings(max_examples=300, deadline=None)
@given(alerts=alert_lists, faults=fault_lists, detects=detect_maps, grace=graces)
def test_the_indexed_scoring_agrees_with_the_definitions_checked_pair_by_pair(
    alerts: list[AlertInterval],
    faults: list[FaultInterval],
    detects: Mapping[str, frozenset[str]],
    grace: timedelta,
) -> None:
    result = score_window(alerts, faults, detects, grace)

    def related(one_alert: AlertInterval, one_fault: FaultInterval) -> bool:
        return (
            one_alert.device_id == one_fault.device_id
            and one_fault.fault in detects[one_alert.rule_id]
        )

    for rule in RULES:
        counted = [a for a in alerts if a.rule_id == rule and PERIOD_START <= a.start < PERIOD_END]
        right = sum(
            any(related(a, f) and brute_force_matches(a, f.start, f.end, grace) for f in faults)
            for a in counted
        )
        scored = bool(detects[rule])
        assert result.by_rule[rule].alerts == len(counted)
        assert result.by_rule[rule].true_positives == (right if scored else 0)
        assert result.by_rule[rule].false_positives == (len(counted) - right if scored else 0)

    delays: dict[str, list[timedelta]] = {kind: [] for kind in TYPES}
    injected = dict.fromkeys(TYPES, 0)
    for one_fault in faults:
        if one_fault.start >= PERIOD_END or (
            one_fault.end is not None and one_fault.end <= PERIOD_START
        ):
            continue
        injected[one_fault.fault] += 1
        start = max(one_fault.start, PERIOD_START)
        end = PERIOD_END if one_fault.end is None else min(one_fault.end, PERIOD_END)
        found = [
            max(a.start - start, timedelta(0))
            for a in alerts
            if a.start < PERIOD_END
            and related(a, one_fault)
            and brute_force_matches(a, start, end, grace)
        ]
        if found:
            delays[one_fault.fault].append(min(found))
    for kind in TYPES:
        got = result.by_fault.get(kind)
        if got is None:
            assert injected[kind] == 0
            continue
        assert got.injected == injected[kind]
        assert got.detected == len(delays[kind])
        assert got.delay_max == max(delays[kind], default=None)
        if delays[kind]:
            assert got.delay_p50 == timedelta(
                minutes=float(np.percentile([d / timedelta(minutes=1) for d in delays[kind]], 50))
            )


def test_rates_match_exact_fractions_for_odd_periods() -> None:
    result = run(
        [alert(1), alert(2, rule="door-info")], [], device_count=7, period=timedelta(hours=5)
    )
    device_days = 7 * Fraction(5, 24)
    assert result.alerts_per_1000_device_days == float(2000 / device_days)
    assert result.false_positives_per_1000_device_days == float(1000 / device_days)


def test_a_delay_counts_from_when_the_fault_could_first_show() -> None:
    """A lamp dead from noon shows at switch-on (17:30): an alert at 17:40 took 10 min."""
    dead = FaultInterval("sl-1", "lamp_failure", at(12 * 60), None, shows_from=at(17.5 * 60))
    result = score(
        [alert(17 * 60 + 40)],
        [dead],
        DETECTS,
        period_start=T0,
        period_end=T0 + WEEK,
        device_count=1,
        bounds={"lamp-out": timedelta(minutes=15), "power": None},
    )
    found = result.by_fault["lamp_failure"]
    assert (found.detected, found.delay_max) == (1, timedelta(minutes=10))
    assert found.within_bound == 1
    assert found.to_json()["within_bound"] == 1


def test_within_bound_is_each_rules_own_bound() -> None:
    """Only lamp-out fired, 10 min after the fault showed; its bound is 5 min: late, although
    the other rule detecting the type allows a day."""
    dead = FaultInterval("sl-1", "lamp_failure", at(0), None, shows_from=at(60))
    result = score(
        [alert(70)],
        [dead],
        DETECTS,
        period_start=T0,
        period_end=T0 + WEEK,
        device_count=1,
        bounds={"lamp-out": timedelta(minutes=5), "power": timedelta(days=1)},
    )
    assert (
        result.by_fault["lamp_failure"].detected,
        result.by_fault["lamp_failure"].within_bound,
    ) == (1, 0)


def test_the_faults_not_found_within_bound_are_listed_by_name() -> None:
    """sl-1's lamp found after 10 min (bound 15 min): not listed; sl-2's after 40 min and
    sl-3's never: listed, by start, with when each could show and the delay."""
    faults = [
        FaultInterval("sl-1", "lamp_failure", at(0), at(300)),
        FaultInterval("sl-3", "lamp_failure", at(100), at(400), shows_from=at(120)),
        FaultInterval("sl-2", "lamp_failure", at(200), None),
    ]
    result = score(
        [alert(10, device="sl-1"), alert(240, device="sl-2")],
        faults,
        DETECTS,
        period_start=T0,
        period_end=T0 + WEEK,
        device_count=3,
        bounds={"lamp-out": timedelta(minutes=15), "power": None},
    )
    assert [(late.device_id, late.shows_from, late.delay) for late in result.late] == [
        ("sl-3", at(120), None),
        ("sl-2", at(200), timedelta(minutes=40)),
    ]
    assert result.to_json()["late"] == [late.to_json() for late in result.late]
    assert result.to_json()["late"][0]["delay_s"] is None  # type: ignore[index]
    assert result.false_alerts == ()
    report = format_report(result)
    assert "Not found within bound: 2 faults" in report
    assert columns(report, "sl-2")[-3:] == ["2026-01-05 03:20", "-", "40 min"]
    assert columns(report, "sl-3")[-1] == "never"


def test_a_fault_that_never_showed_is_not_counted_as_missed() -> None:
    """A lamp dead from 10:00 to 15:00 and mended before dusk could not be seen."""
    mended = FaultInterval("sl-1", "lamp_failure", at(600), at(900), shows_from=NEVER)
    result = run([], [mended])
    found = result.by_fault["lamp_failure"]
    assert (found.injected, found.never_shown, found.recall) == (0, 1, None)
    assert "Never observable while they lasted (not counted): lamp_failure 1" in format_report(
        result
    )


def test_fault_free_counts_the_alerts_of_devices_that_had_no_fault() -> None:
    """sl-1 had a fault, sl-2 and sl-3 none; sl-3's alert before the period does not count,
    and sl-4's fault ended 30 min before the period (within the grace): it is not healthy."""
    found = fault_free(
        [alert(60, device="sl-1"), alert(90, device="sl-2"), alert(-30, device="sl-3")],
        [fault(0, device="sl-1"), fault(-120, -30, device="sl-4")],
        ["sl-1", "sl-2", "sl-3", "sl-4"],
        T0,
        T0 + WEEK,
    )
    assert (found.devices, found.device_days, found.alerts) == (2, 14.0, 1)
    assert found.per_1000_device_days == pytest.approx(1000 / 14)
