"""Scoring a rule set against ground truth: the figures ``smartcity rules backtest`` reports.

Pure functions over time intervals, with no I/O: the backtest hands over the alerts a rule set
would have raised, the injected faults (ground truth) and which fault types each rule is meant
to detect, and gets a :class:`Score` back, which :mod:`rules.scoring_report` renders and
:meth:`Score.to_json` serialises.

An interval end of ``None`` means "still open when the period ended" and never ends. Every
datetime must be timezone-aware. The definitions, precisely:

Period
    ``[period_start, period_end)``. An alert *belongs to the period* when it fired in it; only
    those are counted (alerts, true and false positives, flaps, the rates). An alert that fired
    at or after ``period_end`` is ignored altogether; one that fired before ``period_start`` is
    not counted, but it may still detect a fault (when it was still open as the fault began) and
    it is the "previous alert" for flapping.

Matching
    An alert *matches* a fault when both are on the same device, the alert's rule detects the
    fault's type (``detects[rule_id]`` contains it), and either the alert fired within the
    fault's window ``[fault.start, fault.end + grace]`` (both ends included; the grace lets an
    alert that fires shortly after a short fault ended still count; a rule may have a longer
    grace of its own, ``grace_of``: one judging yesterday's harvest tells of a fault at the
    next day's first reading), or it fired before ``fault.start`` and was still open then (its
    end is ``None`` or after ``fault.start``).

Precision
    An alert of a rule that detects nothing (an empty set: an informational rule) is
    *unscored*: counted among the alerts, never a true or a false positive. Any other alert is
    a *true positive* when it matches at least one of the faults given, taken as given (not
    clipped, so an alert just after a fault that ended before the period still counts), and
    a *false positive* otherwise. precision = tp / (tp + fp); ``None`` without scored alerts.

Recall and detection delay
    A fault that does not overlap the period (it starts at or after ``period_end``, or ends at
    or before ``period_start``) is ignored; the others are clipped to the period (start no
    earlier than ``period_start``, end no later than ``period_end``). A fault *shows* from
    the later of its clipped start and its ``shows_from`` (the first moment it could be
    observed, ``rules.observability``: a dead lamp when it is switched on); one that never
    shows before its clipped end is not counted as injected but as *never shown*. A fault is
    *detected* when at least one alert matches it. Its delay is the first matching alert's
    start minus the moment it shows, or zero when a matching alert was already open then. It
    is detected *within bound* when some rule detecting its type fired no later than that
    rule's ``fires_within`` after it showed. One not found within bound while the longest of
    those bounds ran past ``period_end`` is not counted either (*past the period's end*: the
    period ended before its rules' time was up). Per fault type: recall = detected / injected
    (``None`` when none was injected); delay p50 and p90 interpolate linearly between the
    detected faults' delays (numpy.percentile's default method), and max is the largest;
    ``None`` when none was detected. A fault type no rule detects is *not covered*: it is
    listed with recall 0 but left out of the overall recall, which counts only faults of
    covered types.

Flapping
    For each (rule, device), alerts in order of firing: an alert of the period is a *flap* when
    it fired no later than ``flap_window`` after the previous one resolved, or while the
    previous one was still open.

Rates
    device-days = ``device_count`` x the period's length in days; false positives per 1,000
    device-days = 1000 x fp / device-days, and alerts per 1,000 device-days likewise, with
    every alert counted, unscored ones included (the acceptance criterion "a fault-free week
    raises at most 1 alert per 1,000 device-days" counts whatever reaches people). ``None``
    when ``device_count`` is 0.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from itertools import accumulate, pairwise
from typing import Final, TypeVar

from rules.errors import RuleError

FAR_FUTURE: Final = datetime.max.replace(tzinfo=UTC)
"""Stands for the end of an interval that never ends."""
NEVER: Final = FAR_FUTURE
"""A fault's ``shows_from`` when it could never be observed while it lasted."""
DEFAULT_GRACE: Final = timedelta(hours=1)
DEFAULT_FLAP_WINDOW: Final = timedelta(hours=1)
DEVICE_DAYS_PER_RATE: Final = 1000
"""Rates are per this many device-days."""

_MICROSECOND: Final = timedelta(microseconds=1)
_MICROSECONDS_PER_DAY: Final = timedelta(days=1) // _MICROSECOND

_Item = TypeVar("_Item")
_Key = TypeVar("_Key", bound=Hashable)


class ScoringError(RuleError):
    """Inputs that cannot be scored; the message says which and what to pass instead."""


def _require_aware(what: str, moment: datetime) -> None:
    if moment.utcoffset() is None:
        raise ScoringError(
            f"{what} {moment.isoformat()} has no time zone; pass an aware datetime "
            "(for example datetime(..., tzinfo=UTC))"
        )


def _check_interval(what: str, start: datetime, end: datetime | None) -> None:
    _require_aware(f"{what} start", start)
    if end is not None:
        _require_aware(f"{what} end", end)
        if end < start:
            raise ScoringError(
                f"{what} ends ({end.isoformat()}) before it starts ({start.isoformat()}); "
                "swap them or pass end=None for one still open"
            )


@dataclass(frozen=True, slots=True)
class AlertInterval:
    """One alert a rule raised on a device: fired at ``start``, resolved at ``end``."""

    rule_id: str
    device_id: str
    start: datetime
    end: datetime | None = None
    """``None``: still open when the period ended."""
    muted: bool = False
    """Never told to anyone: a root cause over its device muted it all its life."""
    members: tuple[str, ...] = ()
    """A root cause's (``group-offline``): the devices found missing behind it; its
    ``device_id`` is the group (``street:...``)."""

    def __post_init__(self) -> None:
        if not self.rule_id or not self.device_id:
            raise ScoringError("an alert needs a rule_id and a device_id; both were not given")
        _check_interval(
            f"alert of rule {self.rule_id!r} on {self.device_id!r}", self.start, self.end
        )


@dataclass(frozen=True, slots=True)
class FaultInterval:
    """One fault (ground truth) of a device: of type ``fault``, from ``start`` to ``end``."""

    device_id: str
    fault: str
    """Fault type name, such as ``lamp_failure``."""
    start: datetime
    end: datetime | None = None
    """``None``: lasts beyond the period."""
    shows_from: datetime | None = None
    """When it could first be observed (``rules.observability``): ``None`` at its start,
    :data:`NEVER` when it never could while it lasted. Delays are measured from it."""

    def __post_init__(self) -> None:
        if not self.device_id or not self.fault:
            raise ScoringError("a fault needs a device_id and a fault type; both were not given")
        _check_interval(f"fault {self.fault!r} on {self.device_id!r}", self.start, self.end)
        if self.shows_from is not None:
            _require_aware(
                f"fault {self.fault!r} on {self.device_id!r} shows_from", self.shows_from
            )


@dataclass(frozen=True, slots=True)
class FaultScore:
    """How well the faults of one type were detected."""

    fault: str
    rules: tuple[str, ...]
    """The rules that detect this type, sorted; empty when not covered."""
    injected: int
    detected: int
    recall: float | None
    delay_p50: timedelta | None
    delay_p90: timedelta | None
    delay_max: timedelta | None
    within_bound: int = 0
    """Detected by a rule no later than its ``fires_within`` after the fault could show."""
    never_shown: int = 0
    """Faults that could never be observed while they lasted: not in ``injected``."""
    past_period_end: int = 0
    """Faults not found whose rules' bound ran past the period's end (a fault showing an hour
    before it ends, with a 12 h bound): whether they would have been is unknown; not in
    ``injected``."""

    @property
    def covered(self) -> bool:
        return bool(self.rules)

    def to_json(self) -> dict[str, object]:
        return {
            "rules": list(self.rules),
            "covered": self.covered,
            "injected": self.injected,
            "never_shown": self.never_shown,
            "past_period_end": self.past_period_end,
            "detected": self.detected,
            "within_bound": self.within_bound,
            "recall": self.recall,
            "delay_p50_s": _seconds(self.delay_p50),
            "delay_p90_s": _seconds(self.delay_p90),
            "delay_max_s": _seconds(self.delay_max),
        }


@dataclass(frozen=True, slots=True)
class LateFault:
    """A fault not found within its rule's bound: what a user tuning rules looks at first."""

    device_id: str
    fault: str
    start: datetime
    shows_from: datetime
    """When it could first be observed: the delay counts from here."""
    end: datetime | None
    delay: timedelta | None
    """From ``shows_from`` to its first alert; ``None``: never alerted."""

    def to_json(self) -> dict[str, object]:
        return {
            "device_id": self.device_id,
            "fault": self.fault,
            "start": self.start.isoformat(),
            "shows_from": self.shows_from.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "delay_s": _seconds(self.delay),
        }


@dataclass(frozen=True, slots=True)
class RuleScore:
    """What one rule raised in the period, and how much of it was right."""

    rule_id: str
    detects: frozenset[str]
    alerts: int
    true_positives: int
    false_positives: int
    precision: float | None
    flaps: int
    muted: int = 0
    """Alerts never told (a root cause muted them): not in ``alerts``."""

    @property
    def scored(self) -> bool:
        """False for an informational rule (detects nothing): its alerts are unscored."""
        return bool(self.detects)

    def to_json(self) -> dict[str, object]:
        return {
            "detects": sorted(self.detects),
            "scored": self.scored,
            "alerts": self.alerts,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "precision": self.precision,
            "flaps": self.flaps,
            "muted": self.muted,
        }


@dataclass(frozen=True)
class Score:
    """Every figure of one backtest; see the module docstring for what each one means."""

    period_start: datetime
    period_end: datetime
    device_count: int
    grace: timedelta
    flap_window: timedelta
    by_fault: Mapping[str, FaultScore]
    by_rule: Mapping[str, RuleScore]
    alerts: int
    """Alerts told (fired in the period and not muted by a root cause)."""
    unscored_alerts: int
    true_positives: int
    false_positives: int
    flaps: int
    injected: int
    """Faults of covered types in the period."""
    detected: int
    precision: float | None
    recall: float | None
    device_days: float
    false_positives_per_1000_device_days: float | None
    alerts_per_1000_device_days: float | None
    muted: int = 0
    """Alerts fired in the period but never told: a root cause over their device muted them."""
    late: tuple[LateFault, ...] = ()
    """The faults of covered types not found within their rule's bound, by type and start."""
    false_alerts: tuple[AlertInterval, ...] = ()
    """The alerts told that matched no fault of a type their rule detects, by firing time."""

    @property
    def not_covered(self) -> tuple[str, ...]:
        """Fault types injected in the period that no rule detects."""
        return tuple(name for name, fault in self.by_fault.items() if not fault.covered)

    def to_json(self) -> dict[str, object]:
        """Plain JSON values: times in ISO 8601, durations in seconds, missing figures null."""
        return {
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "device_count": self.device_count,
            "device_days": self.device_days,
            "grace_s": _seconds(self.grace),
            "flap_window_s": _seconds(self.flap_window),
            "totals": {
                "alerts": self.alerts,
                "unscored_alerts": self.unscored_alerts,
                "true_positives": self.true_positives,
                "false_positives": self.false_positives,
                "flaps": self.flaps,
                "injected": self.injected,
                "detected": self.detected,
                "precision": self.precision,
                "recall": self.recall,
                "false_positives_per_1000_device_days": self.false_positives_per_1000_device_days,
                "alerts_per_1000_device_days": self.alerts_per_1000_device_days,
                "muted": self.muted,
            },
            "not_covered": list(self.not_covered),
            "by_fault": {name: fault.to_json() for name, fault in self.by_fault.items()},
            "by_rule": {rule_id: rule.to_json() for rule_id, rule in self.by_rule.items()},
            "late": [fault.to_json() for fault in self.late],
            "false_alerts": [
                {
                    "rule_id": alert.rule_id,
                    "device_id": alert.device_id,
                    "start": alert.start.isoformat(),
                    "end": None if alert.end is None else alert.end.isoformat(),
                }
                for alert in self.false_alerts
            ],
        }


# ------------------------------------------------------------------------------------ scoring


def _window_end(end: datetime | None, grace: timedelta) -> datetime:
    """The last moment an alert may fire and still match a fault ending at ``end``."""
    if end is None or FAR_FUTURE - end <= grace:
        return FAR_FUTURE
    return end + grace


def _reach(end: datetime | None) -> datetime:
    return FAR_FUTURE if end is None else end


def _group(items: Iterable[_Item], key: Callable[[_Item], _Key]) -> dict[_Key, list[_Item]]:
    groups: dict[_Key, list[_Item]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups


class _FaultIndex:
    """The faults of one (device, type), to ask whether an alert matches any of them."""

    __slots__ = ("_starts", "_window_ends_so_far")

    def __init__(self, faults: Iterable[FaultInterval], grace: timedelta) -> None:
        ordered = sorted(faults, key=lambda fault: fault.start)
        self._starts = [fault.start for fault in ordered]
        # Latest window end among the faults that start no later than each one.
        self._window_ends_so_far = list(
            accumulate((_window_end(fault.end, grace) for fault in ordered), max)
        )

    def matches(self, alert: AlertInterval) -> bool:
        # A fault can match only if it began while the alert was open (or as it fired).
        if alert.end is None:
            begun = len(self._starts)
        elif alert.end > alert.start:
            begun = bisect_left(self._starts, alert.end)
        else:
            begun = bisect_right(self._starts, alert.start)
        return begun > 0 and self._window_ends_so_far[begun - 1] >= alert.start


class _AlertIndex:
    """The alerts that could detect the faults of one (device, type), by firing time."""

    __slots__ = ("_reach_so_far", "_starts")

    def __init__(self, alerts: Iterable[AlertInterval]) -> None:
        ordered = sorted(alerts, key=lambda alert: alert.start)
        self._starts = [alert.start for alert in ordered]
        self._reach_so_far = list(accumulate((_reach(alert.end) for alert in ordered), max))

    def delay(self, start: datetime, window_end: datetime) -> timedelta | None:
        """Detection delay of a fault beginning at ``start``; ``None`` when undetected."""
        fired_before = bisect_left(self._starts, start)
        if fired_before and self._reach_so_far[fired_before - 1] > start:
            return timedelta(0)
        if fired_before < len(self._starts) and self._starts[fired_before] <= window_end:
            return self._starts[fired_before] - start
        return None


def _percentile(ordered: Sequence[timedelta], percent: int) -> timedelta:
    """Linear interpolation between closest ranks, exact to the microsecond."""
    position = Fraction(percent * (len(ordered) - 1), 100)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    low, high = ordered[lower] // _MICROSECOND, ordered[upper] // _MICROSECOND
    return timedelta(microseconds=round(low + (high - low) * (position - lower)))


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _fault_score(fault: str, rules: Iterable[str], found: _Detections) -> FaultScore:
    delays = sorted(found.delays[fault])
    injected = found.injected[fault]
    return FaultScore(
        fault=fault,
        rules=tuple(sorted(rules)),
        injected=injected,
        detected=len(delays),
        recall=_ratio(len(delays), injected),
        delay_p50=_percentile(delays, 50) if delays else None,
        delay_p90=_percentile(delays, 90) if delays else None,
        delay_max=delays[-1] if delays else None,
        within_bound=found.within_bound[fault],
        never_shown=found.never_shown[fault],
        past_period_end=found.past_period_end[fault],
    )


def _check_arguments(
    period_start: datetime,
    period_end: datetime,
    device_count: int,
    grace: timedelta,
    flap_window: timedelta,
) -> None:
    _require_aware("period_start", period_start)
    _require_aware("period_end", period_end)
    if period_end <= period_start:
        raise ScoringError(
            f"the period ends ({period_end.isoformat()}) no later than it starts "
            f"({period_start.isoformat()}); pass a period_end after period_start"
        )
    if device_count < 0:
        raise ScoringError(f"device_count is {device_count}; pass the fleet size (0 or more)")
    if grace < timedelta(0) or flap_window < timedelta(0):
        raise ScoringError(
            f"grace ({grace}) and flap_window ({flap_window}) must not be negative; pass 0 or more"
        )


def _judge_alerts(
    alerts: Sequence[AlertInterval],
    faults: Sequence[FaultInterval],
    detects: Mapping[str, frozenset[str]],
    period_start: datetime,
    grace: Callable[[str], timedelta],
) -> tuple[Counter[str], Counter[str], list[AlertInterval], Counter[str]]:
    """Alerts told, true positives and alerts muted of each rule in the period, and the false
    alerts. A root cause's alert is right when a fault it detects struck one of its members.
    ``grace``: each rule's."""
    groups = _group(faults, lambda fault: (fault.device_id, fault.fault))
    fault_indexes: dict[tuple[str, str, timedelta], _FaultIndex] = {}

    def index(device_id: str, fault_type: str, rule_grace: timedelta) -> _FaultIndex | None:
        group = groups.get((device_id, fault_type))
        if group is None:
            return None
        key = (device_id, fault_type, rule_grace)
        if key not in fault_indexes:
            fault_indexes[key] = _FaultIndex(group, rule_grace)
        return fault_indexes[key]

    counts: Counter[str] = Counter()
    true_positives: Counter[str] = Counter()
    false_alerts: list[AlertInterval] = []
    muted: Counter[str] = Counter()
    for alert in alerts:
        if alert.start < period_start:
            continue
        if alert.muted:
            muted[alert.rule_id] += 1
            continue
        counts[alert.rule_id] += 1
        fault_types = detects[alert.rule_id]
        if not fault_types:
            continue
        rule_grace = grace(alert.rule_id)
        if any(
            (found := index(device_id, fault_type, rule_grace)) is not None and found.matches(alert)
            for fault_type in fault_types
            for device_id in alert.members or (alert.device_id,)
        ):
            true_positives[alert.rule_id] += 1
        else:
            false_alerts.append(alert)
    return counts, true_positives, false_alerts, muted


def _count_flaps(
    alerts: Sequence[AlertInterval], period_start: datetime, flap_window: timedelta
) -> Counter[str]:
    flaps: Counter[str] = Counter()
    told = [alert for alert in alerts if not alert.muted]
    for (rule_id, _device), series in _group(told, lambda a: (a.rule_id, a.device_id)).items():
        series.sort(key=lambda alert: (alert.start, _reach(alert.end)))
        for previous, alert in pairwise(series):
            if alert.start >= period_start and (
                previous.end is None or alert.start - previous.end <= flap_window
            ):
                flaps[rule_id] += 1
    return flaps


@dataclass(frozen=True, slots=True)
class _Detections:
    """By fault type: faults injected in the period (that could show), the delays of those
    detected, how many within their rule's bound, and how many could never show; and the
    faults not found within bound."""

    injected: Counter[str]
    delays: dict[str, list[timedelta]]
    within_bound: Counter[str]
    never_shown: Counter[str]
    late: list[LateFault]
    past_period_end: Counter[str]


def _detection_delays(
    alerts: Sequence[AlertInterval],
    faults: Sequence[FaultInterval],
    detects: Mapping[str, frozenset[str]],
    bounds: Mapping[str, timedelta | None],
    *,
    period_start: datetime,
    period_end: datetime,
    grace: timedelta,
) -> _Detections:
    candidates: dict[tuple[str, str], list[AlertInterval]] = defaultdict(list)
    by_rule: dict[tuple[str, str], list[AlertInterval]] = defaultdict(list)
    for alert in alerts:
        for device_id in alert.members or (alert.device_id,):
            by_rule[device_id, alert.rule_id].append(alert)
            for fault_type in detects[alert.rule_id]:
                candidates[device_id, fault_type].append(alert)
    alert_indexes = {key: _AlertIndex(group) for key, group in candidates.items()}
    rule_indexes = {key: _AlertIndex(group) for key, group in by_rule.items()}
    rules_detecting: dict[str, list[str]] = defaultdict(list)
    for rule_id, fault_types in detects.items():
        for fault_type in fault_types:
            rules_detecting[fault_type].append(rule_id)
    found = _Detections(Counter(), defaultdict(list), Counter(), Counter(), [], Counter())
    for fault in faults:
        if fault.start >= period_end or (fault.end is not None and fault.end <= period_start):
            continue
        clipped_end = period_end if fault.end is None else min(fault.end, period_end)
        shows = max(fault.start, period_start, fault.shows_from or fault.start)
        if fault.shows_from is not None and fault.shows_from >= clipped_end:
            found.never_shown[fault.fault] += 1
            continue
        window_end = _window_end(clipped_end, grace)
        alert_index = alert_indexes.get((fault.device_id, fault.fault))
        delay = None if alert_index is None else alert_index.delay(shows, window_end)
        rule_ids = rules_detecting[fault.fault]
        within = delay is not None and _within_bound(
            fault.device_id, rule_ids, (shows, window_end), rule_indexes, bounds
        )
        stated = [bound for rule_id in rule_ids if (bound := bounds.get(rule_id)) is not None]
        if not within and stated and shows + max(stated) > period_end:
            found.past_period_end[fault.fault] += 1  # its bound had not run out: unknown
            continue
        found.injected[fault.fault] += 1
        if delay is not None:
            found.delays[fault.fault].append(delay)
        if within:
            found.within_bound[fault.fault] += 1
        elif rule_ids and (delay is None or stated):
            found.late.append(
                LateFault(fault.device_id, fault.fault, fault.start, shows, fault.end, delay)
            )
    found.late.sort(key=lambda late: (late.fault, late.start, late.device_id))
    return found


def _within_bound(
    device_id: str,
    rule_ids: Sequence[str],
    between: tuple[datetime, datetime],
    rule_indexes: Mapping[tuple[str, str], _AlertIndex],
    bounds: Mapping[str, timedelta | None],
) -> bool:
    """Whether one of ``rule_ids`` fired on the device no later than its bound after the
    fault showed (``between``: that moment and the end of the fault's window)."""
    shows, window_end = between
    for rule_id in rule_ids:
        bound = bounds.get(rule_id)
        index = rule_indexes.get((device_id, rule_id))
        own = None if index is None else index.delay(shows, window_end)
        if bound is not None and own is not None and own <= bound:
            return True
    return False


def score(
    alerts: Iterable[AlertInterval],
    faults: Iterable[FaultInterval],
    detects: Mapping[str, frozenset[str]],
    *,
    period_start: datetime,
    period_end: datetime,
    device_count: int,
    grace: timedelta = DEFAULT_GRACE,
    flap_window: timedelta = DEFAULT_FLAP_WINDOW,
    bounds: Mapping[str, timedelta | None] | None = None,
    grace_of: Mapping[str, timedelta] | None = None,
) -> Score:
    """Score ``alerts`` against ``faults`` over ``[period_start, period_end)``.

    ``detects`` maps every rule id to the fault types it is meant to detect (an empty set for
    an informational rule); ``device_count`` is the fleet size the rates are relative to;
    ``bounds`` each rule's documented ``fires_within`` (for the faults found within bound);
    ``grace_of`` the rules whose alerts match a fault longer after it ended than ``grace``.
    Runs in O((alerts x types per rule + faults) x log) time.
    """
    _check_arguments(period_start, period_end, device_count, grace, flap_window)
    own_grace = dict(grace_of or {})
    if any(value < timedelta(0) for value in own_grace.values()):
        raise ScoringError(f"a rule's grace is negative ({own_grace}); pass 0 or more")
    seen = [alert for alert in alerts if alert.start < period_end]
    unknown = sorted({alert.rule_id for alert in seen} - detects.keys())
    if unknown:
        raise ScoringError(
            f"alerts of rules {unknown}, which detects does not list; add each "
            "(with an empty set for an informational rule)"
        )
    all_faults = list(faults)
    rules_detecting: dict[str, set[str]] = defaultdict(set)
    for rule_id, fault_types in detects.items():
        for fault_type in fault_types:
            rules_detecting[fault_type].add(rule_id)

    counts, true_positives, false_alerts, muted = _judge_alerts(
        seen, all_faults, detects, period_start, lambda rule_id: own_grace.get(rule_id, grace)
    )
    false_positives = Counter(alert.rule_id for alert in false_alerts)
    flaps = _count_flaps(seen, period_start, flap_window)
    found = _detection_delays(
        seen,
        all_faults,
        detects,
        bounds or {},
        period_start=period_start,
        period_end=period_end,
        grace=grace,
    )

    by_fault = {
        name: _fault_score(name, rules_detecting.get(name, ()), found)
        for name in sorted(
            found.injected.keys()
            | found.never_shown.keys()
            | found.past_period_end.keys()
            | rules_detecting.keys()
        )
    }
    by_rule = {
        rule_id: RuleScore(
            rule_id=rule_id,
            detects=frozenset(fault_types),
            alerts=counts[rule_id],
            true_positives=true_positives[rule_id],
            false_positives=false_positives[rule_id],
            precision=_ratio(true_positives[rule_id], counts[rule_id]) if fault_types else None,
            flaps=flaps[rule_id],
            muted=muted[rule_id],
        )
        for rule_id, fault_types in sorted(detects.items())
    }
    tp_total, fp_total = true_positives.total(), false_positives.total()
    covered = [fault for fault in by_fault.values() if fault.covered]
    injected_covered = sum(fault.injected for fault in covered)
    detected_covered = sum(fault.detected for fault in covered)
    period_days = Fraction((period_end - period_start) // _MICROSECOND, _MICROSECONDS_PER_DAY)
    device_days = device_count * period_days

    def per_1000_device_days(count: int) -> float | None:
        return float(DEVICE_DAYS_PER_RATE * count / device_days) if device_days else None

    return Score(
        period_start=period_start,
        period_end=period_end,
        device_count=device_count,
        grace=grace,
        flap_window=flap_window,
        by_fault=by_fault,
        by_rule=by_rule,
        alerts=counts.total(),
        unscored_alerts=counts.total() - tp_total - fp_total,
        true_positives=tp_total,
        false_positives=fp_total,
        flaps=flaps.total(),
        injected=injected_covered,
        detected=detected_covered,
        precision=_ratio(tp_total, tp_total + fp_total),
        recall=_ratio(detected_covered, injected_covered),
        device_days=float(device_days),
        false_positives_per_1000_device_days=per_1000_device_days(fp_total),
        alerts_per_1000_device_days=per_1000_device_days(counts.total()),
        muted=muted.total(),
        late=tuple(found.late),
        false_alerts=tuple(sorted(false_alerts, key=lambda alert: (alert.start, alert.device_id))),
    )


@dataclass(frozen=True, slots=True)
class FaultFree:
    """The alerts of the devices that had no fault: what a healthy fleet costs the crews."""

    devices: int
    device_days: float
    alerts: int
    """Alerts fired in the period on those devices, of every rule (informational included),
    but for the forecasts that came true."""
    by_rule: Mapping[str, int] = field(default_factory=dict)
    """Those alerts per rule (rules with some only)."""

    @property
    def per_1000_device_days(self) -> float | None:
        return DEVICE_DAYS_PER_RATE * self.alerts / self.device_days if self.device_days else None

    def to_json(self) -> dict[str, object]:
        return {
            "devices": self.devices,
            "device_days": self.device_days,
            "alerts": self.alerts,
            "alerts_per_1000_device_days": self.per_1000_device_days,
            "by_rule": dict(self.by_rule),
        }


def fault_free(
    alerts: Iterable[AlertInterval],
    faults: Iterable[FaultInterval],
    device_ids: Iterable[str],
    period_start: datetime,
    period_end: datetime,
    *,
    grace: timedelta = DEFAULT_GRACE,
    came_true: Iterable[AlertInterval] = (),
) -> FaultFree:
    """The alerts told in ``[period_start, period_end)`` on the devices of ``device_ids``
    that had no fault from ``grace`` before the period to its end (a root cause's: when all
    its members are such devices), and their rate. ``came_true``: forecasts borne out by what
    happened (a healthy light foretold to go dark in a cloudy week that did): not false."""
    _check_arguments(period_start, period_end, 0, grace, timedelta(0))
    faulty = {
        fault.device_id
        for fault in faults
        if fault.start < period_end and _reach(fault.end) > period_start - grace
    }
    healthy = set(device_ids) - faulty
    borne_out = {(alert.rule_id, alert.device_id, alert.start) for alert in came_true}
    fired = Counter(
        alert.rule_id
        for alert in alerts
        if not alert.muted
        and set(alert.members or (alert.device_id,)) <= healthy
        and period_start <= alert.start < period_end
        and (alert.rule_id, alert.device_id, alert.start) not in borne_out
    )
    days = (period_end - period_start) / timedelta(days=1)
    return FaultFree(len(healthy), len(healthy) * days, fired.total(), dict(sorted(fired.items())))


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds()
