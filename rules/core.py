"""When a condition rule fires and clears: one definition, evaluated two ways.

For one rule and one device, over its readings in time order:

1. ``raw`` is whether ``when`` holds at the reading (a missing value never holds).
2. With ``occurrences: {count: N, within: W}``, the condition *holds* at a reading when
   ``raw`` held at N or more readings in the window (t - W, t]; otherwise it holds when
   ``raw`` does.
3. Idle, a reading where the condition holds starts it *pending*; pending, a reading where
   it no longer holds ends that. The alert *fires* at the first reading at least ``for``
   after the start (at once when ``for`` is 0).
4. Firing, a reading where ``clear`` holds (by default: where the condition does not) starts
   the clearing; a reading where it does not ends it. The alert is *resolved* at the first
   reading at least ``clear_for`` after the clearing began. A condition that holds again
   while the alert fires does not raise another (hysteresis); after a resolution the next
   reading may start a new one.

:func:`step` applies this to one reading (the streaming engine); :func:`intervals` to a
whole history with numpy (the backtest). Both give the same alert intervals: the property
test in ``tests/unit/test_rule_core.py`` checks it on random histories.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from rules.errors import RuleError
from rules.expressions import Expression
from rules.model import Rule
from rules.vectorised import Environment

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


class Phase(StrEnum):
    IDLE = "idle"
    PENDING = "pending"
    FIRING = "firing"


class Change(StrEnum):
    FIRED = "fired"
    RESOLVED = "resolved"


@dataclass
class ConditionState:
    """One rule on one device, between readings; plain data, saved by the engine."""

    phase: Phase = Phase.IDLE
    since_s: float | None = None
    """Pending: when the condition began to hold. Firing: when the alert fired."""
    clearing_since_s: float | None = None
    recent_s: deque[float] = field(default_factory=deque)
    """With occurrences: times of the readings in the window where ``when`` held."""
    last_s: float | None = None
    """Time of the last reading applied: older or repeated readings are ignored."""

    def to_json(self) -> dict[str, object]:
        return {
            "phase": self.phase.value,
            "since_s": self.since_s,
            "clearing_since_s": self.clearing_since_s,
            "recent_s": list(self.recent_s),
            "last_s": self.last_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ConditionState:
        recent = data.get("recent_s") or []
        if not isinstance(recent, list):
            raise RuleError(f"a saved rule state has recent_s {recent!r}, not a list")
        return cls(
            Phase(str(data["phase"])),
            _optional_float(data.get("since_s")),
            _optional_float(data.get("clearing_since_s")),
            deque(float(value) for value in recent),
            _optional_float(data.get("last_s")),
        )


def _optional_float(value: object) -> float | None:
    return None if value is None else float(str(value))


def _truth(value: object) -> bool:
    return bool(np.asarray(value).reshape(-1)[0])


def step(
    rule: Rule, state: ConditionState, unix_s: float, env: Environment
) -> tuple[ConditionState, Change | None]:
    """Apply one reading at ``unix_s`` (environment ``env``); the state and what changed.

    Mutates and returns ``state``.
    """
    if rule.when is None:
        raise RuleError(f"rule {rule.id} is a missing-data rule: it has no condition")
    if state.last_s is not None and unix_s <= state.last_s:
        return state, None
    state.last_s = unix_s
    holds = _holds(rule, rule.when, state, unix_s, env)
    if state.phase is Phase.FIRING:
        clears = _truth(rule.clear.holds(env)) if rule.clear is not None else not holds
        if not clears:
            state.clearing_since_s = None
            return state, None
        if state.clearing_since_s is None:
            state.clearing_since_s = unix_s
        if unix_s - state.clearing_since_s >= rule.clear_for.total_seconds():
            state.phase, state.since_s, state.clearing_since_s = Phase.IDLE, None, None
            return state, Change.RESOLVED
        return state, None
    if not holds:
        state.phase, state.since_s = Phase.IDLE, None
        return state, None
    if state.phase is Phase.IDLE or state.since_s is None:
        state.phase, state.since_s = Phase.PENDING, unix_s
    if unix_s - state.since_s >= rule.for_.total_seconds():
        state.phase, state.since_s = Phase.FIRING, unix_s
        return state, Change.FIRED
    return state, None


def _holds(
    rule: Rule, when: Expression, state: ConditionState, unix_s: float, env: Environment
) -> bool:
    raw = _truth(when.holds(env))
    if rule.occurrences is None:
        return raw
    window = rule.occurrences.within.total_seconds()
    if raw:
        state.recent_s.append(unix_s)
    while state.recent_s and state.recent_s[0] <= unix_s - window:
        state.recent_s.popleft()
    return len(state.recent_s) >= rule.occurrences.count


# ----------------------------------------------------------------------------- vectorized


@dataclass(frozen=True, slots=True)
class Interval:
    """An alert of one rule on one device: fired and resolved at these reading indexes."""

    fired: int
    resolved: int | None
    """None: still firing after the last reading."""


def condition(rule: Rule, unix_s: Floats, env: Environment) -> Bools:
    """Whether the rule's condition holds at each reading (occurrences applied)."""
    if rule.when is None:
        raise RuleError(f"rule {rule.id} is a missing-data rule: it has no condition")
    raw = np.broadcast_to(rule.when.holds(env), unix_s.shape)
    if rule.occurrences is None:
        return np.asarray(raw, dtype=bool)
    counts = np.concatenate(([0], np.cumsum(raw)))
    first = np.searchsorted(unix_s, unix_s - rule.occurrences.within.total_seconds(), "right")
    in_window = counts[1:] - counts[first]
    return np.asarray(in_window >= rule.occurrences.count)


def intervals(rule: Rule, unix_s: Floats, env: Environment) -> list[Interval]:
    """Every alert the rule raises over one device's readings (times strictly increasing)."""
    holds = condition(rule, unix_s, env)
    if rule.clear is not None:
        clears = np.asarray(np.broadcast_to(rule.clear.holds(env), unix_s.shape), dtype=bool)
    else:
        clears = ~holds
    hold_runs = _Runs(holds, unix_s, rule.for_.total_seconds())
    clear_runs = _Runs(clears, unix_s, rule.clear_for.total_seconds())
    found: list[Interval] = []
    position = 0
    while True:
        fired = hold_runs.first_completion(position)
        if fired is None:
            return found
        resolved = clear_runs.first_completion(fired + 1)
        found.append(Interval(fired, resolved))
        if resolved is None:
            return found
        position = resolved + 1


class _Runs:
    """The runs of True in a boolean series, and when each run has lasted ``length`` [s]."""

    def __init__(self, flags: Bools, unix_s: Floats, length_s: float) -> None:
        padded = np.concatenate(([False], flags, [False])).astype(np.int8)
        edges = np.diff(padded)
        self.starts = np.flatnonzero(edges == 1)
        self.ends = np.flatnonzero(edges == -1)  # exclusive
        self.unix_s = unix_s
        self.length_s = length_s
        self.completions = np.searchsorted(unix_s, unix_s[self.starts] + length_s, "left")
        self.complete = self.completions < self.ends

    def first_completion(self, position: int) -> int | None:
        """The first reading at or after ``position`` where a run that started at or after
        ``position`` (a run under way is counted from ``position``) has lasted long enough."""
        run = int(np.searchsorted(self.ends, position, "right"))
        if run >= len(self.starts):
            return None
        if self.starts[run] < position:
            done = int(np.searchsorted(self.unix_s, self.unix_s[position] + self.length_s, "left"))
            if done < self.ends[run]:
                return done
            run += 1
        later = np.flatnonzero(self.complete[run:])
        return int(self.completions[run + later[0]]) if len(later) else None
