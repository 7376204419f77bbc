"""The condition core: for, clear (hysteresis), clear_for, occurrences, with a fake clock;
and the streaming and vectorized evaluations agreeing on random histories."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.core import Change, ConditionState, Interval, Phase, intervals, step
from rules.model import Rule, parse_rules

MINUTE = 60.0


def rule(fields: dict[str, object]) -> Rule:
    """A building rule with these fields (YAML flow values)."""
    return parse_rules(
        "rules:\n  - id: r\n    class: building\n    title: {en: T}\n"
        + "".join(f"    {key}: {_yaml(value)}\n" for key, value in fields.items())
    ).rules[0]


def _yaml(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


def stream(r: Rule, times: list[float], temps: list[float]) -> list[tuple[float, Change]]:
    state = ConditionState()
    changes = []
    for t, value in zip(times, temps, strict=True):
        state, change = step(r, state, t, {"air_temperature": np.array([value])})
        if change is not None:
            changes.append((t, change))
    return changes


def vector(r: Rule, times: list[float], temps: list[float]) -> list[Interval]:
    return intervals(r, np.array(times), {"air_temperature": np.array(temps)})


def minutes(count: int) -> list[float]:
    return [i * MINUTE for i in range(count)]


CASES = [
    # (name, rule fields, temperatures one per minute, expected (fired, resolved) minutes)
    ("fires at once", {"when": "air_temperature > 30"}, [20, 31, 31, 20], [(1, 3)]),
    (
        "for: held 3 minutes",
        {"when": "air_temperature > 30", "for": "3m"},
        [31, 31, 31, 31, 20],
        [(3, 4)],
    ),
    (
        "for: interrupted, starts again",
        {"when": "air_temperature > 30", "for": "2m"},
        [31, 31, 20, 31, 31, 31, 20],
        [(5, 6)],
    ),
    (
        "hysteresis: between the thresholds it keeps firing",
        {"when": "air_temperature > 30", "clear": "air_temperature < 25"},
        [31, 28, 27, 31, 26, 24, 28],
        [(0, 5)],
    ),
    (
        "clear_for: clearing interrupted",
        {"when": "air_temperature > 30", "clear_for": "2m"},
        [31, 20, 20, 31, 20, 20, 20],
        [(0, 6)],
    ),
    (
        "occurrences: 3 readings within 5 minutes",
        {"when": "air_temperature > 30", "occurrences": {"count": 3, "within": "5m"}},
        [31, 20, 31, 20, 31, 20, 20],
        [(4, 5)],  # at minute 5 the window (0, 5] holds two
    ),
    ("missing value never fires", {"when": "air_temperature > 30"}, [float("nan")] * 3, []),
    (
        "fires again after resolving",
        {"when": "air_temperature > 30"},
        [31, 20, 31, 31],
        [(0, 1), (2, None)],
    ),
]


@pytest.mark.parametrize(("name", "fields", "temps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_condition_cases(
    name: str, fields: dict[str, object], temps: list[float], expected: list[tuple[int, int | None]]
) -> None:
    r = rule(fields)
    times = minutes(len(temps))
    got = vector(r, times, temps)
    assert [(i.fired, i.resolved) for i in got] == expected, name
    flat = [(f, Change.FIRED) for f, _ in expected] + [
        (res, Change.RESOLVED) for _, res in expected if res is not None
    ]
    assert stream(r, times, temps) == sorted((i * MINUTE, c) for i, c in flat)


def test_repeated_and_older_readings_are_ignored() -> None:
    r = rule({"when": "air_temperature > 30", "for": "2m"})
    state = ConditionState()
    state, _ = step(r, state, 0.0, {"air_temperature": np.array([31.0])})
    state, change = step(r, state, 0.0, {"air_temperature": np.array([31.0])})
    assert change is None
    state, change = step(r, state, 60.0, {"air_temperature": np.array([20.0])})
    state, change = step(r, state, 30.0, {"air_temperature": np.array([31.0])})
    assert (state.phase, change) == (Phase.IDLE, None)


def test_state_survives_a_json_round_trip() -> None:
    r = rule({"when": "air_temperature > 30", "occurrences": {"count": 2, "within": "10m"}})
    state = ConditionState()
    for t, v in ((0.0, 31.0), (60.0, 20.0)):
        state, _ = step(r, state, t, {"air_temperature": np.array([v])})
    restored = ConditionState.from_json(state.to_json())
    _, change = step(r, restored, 120.0, {"air_temperature": np.array([31.0])})
    assert change is Change.FIRED


RULE_SHAPES = st.fixed_dictionaries(
    {
        "when": st.sampled_from(["air_temperature > 30", "air_temperature > 30 or co2 > 900"]),
        "for": st.sampled_from(["0s", "1m", "3m", "10m"]),
        "clear_for": st.sampled_from(["0s", "2m", "5m"]),
    },
    optional={
        "clear": st.sampled_from(["air_temperature < 25", "air_temperature < 28 and co2 < 800"]),
        "occurrences": st.sampled_from(
            [{"count": 2, "within": "5m"}, {"count": 4, "within": "8m"}]
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    fields=RULE_SHAPES,
    steps=st.lists(
        st.tuples(
            st.integers(1, 240),
            st.one_of(st.floats(15, 40), st.just(float("nan"))),
            st.floats(400, 1200),
        ),
        max_size=120,
    ),
)
def test_streaming_and_vectorized_agree(
    fields: dict[str, object], steps: list[tuple[int, float, float]]
) -> None:
    r = rule(fields)
    times = np.cumsum([gap for gap, _, _ in steps]).astype(np.float64)
    temps = np.array([t for _, t, _ in steps])
    co2 = np.array([c for _, _, c in steps])
    vectorized = intervals(r, times, {"air_temperature": temps, "co2": co2})
    state = ConditionState()
    streamed: list[list[int | None]] = []
    for index, t in enumerate(times):
        env = {"air_temperature": temps[index : index + 1], "co2": co2[index : index + 1]}
        state, change = step(r, state, float(t), env)
        if change is Change.FIRED:
            streamed.append([index, None])
        elif change is Change.RESOLVED:
            streamed[-1][1] = index
    assert [[i.fired, i.resolved] for i in vectorized] == streamed


def test_a_rule_that_changed_kind_starts_afresh_on_restore() -> None:
    from alerts.lifecycle import Scope
    from protocol.topics import DeviceClass
    from rules.context import DevicePlace
    from rules.evaluator import Evaluator, FleetDevice

    place = DevicePlace("z1", DeviceClass.BUILDING, 33.8, -4.8, "Africa/Casablanca")
    fleet = {"z1": FleetDevice(place, Scope("z1"))}
    as_condition = parse_rules("rules: [{id: r, class: building, title: {en: T}, when: co2 > 900}]")
    as_missing = parse_rules("rules: [{id: r, class: building, title: {en: T}, missing: {}}]")
    condition_state = ConditionState().to_json()
    presence_state: dict[str, object] = {"last_heard_s": 1.0, "gone": None}
    assert Evaluator(as_missing, fleet).restore([(("r", "z1"), condition_state)]) == 0
    assert Evaluator(as_condition, fleet).restore([(("r", "z1"), presence_state)]) == 0
    assert Evaluator(as_condition, fleet).restore([(("r", "z1"), condition_state)]) == 1
