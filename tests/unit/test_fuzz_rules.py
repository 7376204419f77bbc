"""Fuzzing the rules package's parsers: expressions, rule files, strategy files, lighting.

Rule and strategy files come from people (``smartcity rules check``, the API's uploads): any
text must give a rule set or a strategy, or the module's own error naming the problem
(ExpressionError, RuleFileError, StrategyFileError; ValueError for a lighting policy), never
a TypeError, an OverflowError or a RecursionError. An expression that parses must evaluate on
any reading, and mean the same on one reading as on a history.
"""

from __future__ import annotations

import functools
import math
from typing import Final

import numpy as np
import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from control.lighting_policy import PLACE_KINDS, LightingPolicy
from control.strategy import (
    PACKAGED_STRATEGY,
    StrategyFileError,
    day_periods,
    parse_strategy,
    week_periods,
)
from protocol.topics import DeviceClass
from rules import PACKAGED_RULES
from rules.errors import ExpressionError
from rules.expressions import MAX_LENGTH, Expression
from rules.model import LANGUAGES, RuleFileError, parse_rules
from rules.names import names_for
from tests.unit.fuzz_strategies import (
    FUZZ,
    NASTY_FLOATS,
    NASTY_STRINGS,
    Document,
    documents,
    identifiers,
    mutated,
    mutated_text,
    outcome,
    to_yaml,
    yaml_scalars,
    yaml_texts,
)

DEFAULT_RULES_TEXT: Final = PACKAGED_RULES.read_text(encoding="utf-8")
DEFAULT_RULES: Final = yaml.safe_load(DEFAULT_RULES_TEXT)
RULES_TEXT_SEED: Final = DEFAULT_RULES_TEXT[: DEFAULT_RULES_TEXT.index("  - id: pole-down")]
"""The file's first three rules, as written: comments, folded expressions, flow mappings."""
RULE_SEED: Final = {
    "rules": [
        rule
        for rule in DEFAULT_RULES["rules"]
        # one rule of each shape: for and clear, occurrences and clear_for, missing data
        if rule["id"] in {"lamp-out", "lamp-flickering", "light-offline"}
    ]
    + [{**DEFAULT_RULES["rules"][0], "id": "scoped", "scope": {"street_groups": ["fes"]}}]
}
DEFAULT_STRATEGY_TEXT: Final = PACKAGED_STRATEGY.read_text(encoding="utf-8")
DEFAULT_STRATEGY: Final = yaml.safe_load(DEFAULT_STRATEGY_TEXT)
RULE_EXPRESSIONS: Final = sorted(
    {rule[field] for rule in DEFAULT_RULES["rules"] for field in ("when", "clear") if field in rule}
)
KNOWN: Final = {device_class: names_for(device_class) for device_class in DeviceClass}
ALL_NAMES: Final = frozenset().union(*KNOWN.values())
DEEP: Final = "[" * 990 + "]" * 990


def rich_strategy() -> dict[str, Document]:
    """The default strategy with every optional section filled in, as docs/energy.md shows."""
    return {
        **DEFAULT_STRATEGY,
        "events": [
            {
                "building": "cultural-centre",
                "zones": ["theatre", "foyer"],
                "name": "Festival des cerises",
                "start": "2027-06-12T19:00:00+01:00",
                "end": "2027-06-12T23:00:00+01:00",
            }
        ],
        "calendar": {
            "holidays_added": ["2027-03-11", "2027-03-12"],
            "holidays_removed": ["2027-03-09"],
            "ramadan": [{"first": "2027-02-09", "last": "2027-03-10"}],
        },
        "lighting": {
            "dusk_elevation_deg": -2,
            "profiles": {
                "square": [{"start": "12:00", "level": 100}, {"start": "01:00", "level": 40}]
            },
            "reserve_days": 3,
            "sign_minimum_level": 10,
        },
    }


RICH_STRATEGY: Final = rich_strategy()


# ------------------------------------------------------------------------------- expressions

TOKENS: Final = (
    *sorted(KNOWN[DeviceClass.STREETLIGHT])[:12],
    "and",
    "or",
    "not",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "**",
    "(",
    ")",
    ",",
    "abs",
    "min",
    "max",
    "bit",
    "true",
    "false",
    "1",
    "0.5",
    "1e309",
    "-",
    "lambda",
    "if",
    "else",
    "in",
    "is",
    "[",
    "]",
    "'x'",
    ".",
    "__class__",
    ":=",
    "@",
    "~",
    "j",
    "\\",
)


@FUZZ
@given(
    text=st.text(max_size=MAX_LENGTH + 20)
    | st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join)
    | st.sampled_from(RULE_EXPRESSIONS).flatmap(mutated_text)
    | st.sampled_from(NASTY_STRINGS)
)
@example(text="lamp_power < 1" + "0" * 400)  # an OverflowError out of float()
@example(text="battery_soc < \ud800")  # a UnicodeEncodeError out of ast.parse()
@example(text="-" * 499 + "1")
@example(text="(" * 240 + "1" + ")" * 240)
@example(text="not " * 124 + "1")
@example(text="battery_soc < 1e999")
def test_any_text_is_an_expression_or_an_expression_error(text: str) -> None:
    expression = outcome(lambda: Expression.parse(text, ALL_NAMES), ExpressionError)
    if expression is not None:
        assert expression.names <= ALL_NAMES


LEAF_NUMBERS: Final = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(0, 1e6, allow_nan=False).map(repr),
    st.sampled_from(("0", "0.0", "1e308", "true", "false")),
)


def expressions(names: frozenset[str]) -> st.SearchStrategy[str]:
    """Valid expressions over ``names``: every construct docs/rules.md allows."""

    def compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.sampled_from(("+", "-", "*", "/", "%", "<", "<=", ">", ">=", "==", "!="))
        return st.one_of(
            st.builds(lambda a, op, b: f"({a} {op} {b})", inner, binary, inner),
            st.builds(
                lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(("and", "or")), inner
            ),
            st.builds(lambda a, b, c: f"({a} < {b} <= {c})", inner, inner, inner),
            inner.map(lambda a: f"(not {a})"),
            inner.map(lambda a: f"(-{a})"),
            inner.map(lambda a: f"abs({a})"),
            st.builds(
                lambda f, a, b: f"{f}({a}, {b})",
                st.sampled_from(("min", "max", "bit")),
                inner,
                inner,
            ),
        )

    return st.recursive(st.sampled_from(sorted(names)) | LEAF_NUMBERS, compound, max_leaves=8)


def readings(names: frozenset[str]) -> st.SearchStrategy[dict[str, float]]:
    """One reading: some of the names, any float (NaN, infinities, zero) as a value."""
    values = st.floats() | st.sampled_from((*NASTY_FLOATS, 0.0, 1.0, 4096.0, 2.0**62))
    return st.dictionaries(st.sampled_from(sorted(names)), values, max_size=8)


EXPRESSIONS: Final = {
    device_class: expressions(KNOWN[device_class]) for device_class in DeviceClass
}
READINGS: Final = {device_class: readings(KNOWN[device_class]) for device_class in DeviceClass}


@FUZZ
@given(
    data=st.data(),
    device_class=st.sampled_from(DeviceClass),
)
def test_valid_expressions_evaluate_alike_on_a_reading_and_a_history(
    data: st.DataObject, device_class: DeviceClass
) -> None:
    text = data.draw(EXPRESSIONS[device_class], label="text")
    reading = data.draw(READINGS[device_class], label="reading")
    agree_on_a_reading_and_a_history(text, device_class, reading)


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        # a / 0 was a ZeroDivisionError on one reading (numpy gives inf on a history), and so
        # was any rule dividing by a constant zero
        ("pv_power / pv_voltage > 1", {"pv_power": 1.0, "pv_voltage": 0.0}),
        ("pv_power / pv_voltage > 1", {"pv_power": 0.0, "pv_voltage": 0.0}),
        ("battery_soc < 1 / 0", {"battery_soc": 50.0}),
        # bit() of a missing position was a ValueError converting NaN to an integer
        ("bit(controller_status, tilt)", {"controller_status": 3.0}),
        ("bit(controller_status, tilt)", {"controller_status": 3.0, "tilt": 1e30}),
        ("bit(controller_status, tilt)", {"controller_status": 3.0, "tilt": -1.0}),
    ],
)
def test_regressions_evaluate_alike_on_a_reading_and_a_history(
    text: str, reading: dict[str, float]
) -> None:
    agree_on_a_reading_and_a_history(text, DeviceClass.STREETLIGHT, reading)


def agree_on_a_reading_and_a_history(
    text: str, device_class: DeviceClass, reading: dict[str, float]
) -> None:
    expression = Expression.parse(text, KNOWN[device_class])
    history = {name: np.array([value, value]) for name, value in reading.items()}
    with np.errstate(all="ignore"):  # what NaN and infinities do to numpy is by design
        once = np.asarray(expression.holds(reading))
        twice = np.broadcast_to(expression.holds(history), (2,))
        value = np.asarray(expression.evaluate(reading), dtype=np.float64)
    assert once.dtype == np.bool_
    assert twice.dtype == np.bool_
    assert bool(once) == bool(twice[0]) == bool(twice[1]), (text, reading)
    if value.ndim == 0 and math.isnan(float(value)):
        assert not bool(once), "NaN never holds"


@FUZZ
@given(text=st.sampled_from(RULE_EXPRESSIONS), reading=READINGS[DeviceClass.STREETLIGHT])
def test_the_default_rules_evaluate_on_any_reading(text: str, reading: dict[str, float]) -> None:
    for device_class in DeviceClass:
        parse = functools.partial(Expression.parse, text, KNOWN[device_class])
        expression = outcome(parse, ExpressionError)
        if expression is not None:
            with np.errstate(all="ignore"):
                assert np.asarray(expression.holds(reading)).dtype == np.bool_


# ------------------------------------------------------------------------------- rule files


def rule_set_or_error(text: str) -> None:
    rule_set = outcome(lambda: parse_rules(text, "fuzz.yaml"), RuleFileError)
    if rule_set is not None:
        ids = [rule.id for rule in rule_set.rules]
        assert len(ids) == len(set(ids))
        for rule in rule_set.rules:
            assert "en" in rule.titles
            assert rule.for_.total_seconds() >= 0
            assert rule.clear_for.total_seconds() >= 0
            assert (rule.when is None) != (rule.missing is None)


@FUZZ
@given(text=yaml_texts())
@example(text="rules: " + DEEP)
def test_any_yaml_is_a_rule_set_or_a_rule_file_error(text: str) -> None:
    rule_set_or_error(text)


ONE_RULE: Final = "rules:\n  - {id: x, class: streetlight, title: {en: T}, when: lamp_on, %s}\n"


@FUZZ
@given(document=mutated(RULE_SEED))
@example(document={"rules": [{**RULE_SEED["rules"][0], "for": math.inf}]})  # OverflowError
@example(document={"rules": [{**RULE_SEED["rules"][0], "for": 1e20}]})
@example(document={"rules": [{**RULE_SEED["rules"][0], "for": -5}]})  # a negative duration
@example(document={"rules": [{**RULE_SEED["rules"][0], "when": "lamp_w < 1" + "0" * 400}]})
def test_almost_valid_rule_files_parse_or_say_what_is_wrong(document: Document) -> None:
    rule_set_or_error(to_yaml(document))


def test_the_rule_seeds_are_valid() -> None:
    assert len(parse_rules(RULES_TEXT_SEED).rules) == 3


def test_the_rule_seed_has_a_rule_of_each_shape() -> None:
    rule_set = parse_rules(to_yaml(RULE_SEED))
    assert len(rule_set.rules) == 4
    assert {rule.missing is None for rule in rule_set.rules} == {True, False}
    assert any(rule.occurrences for rule in rule_set.rules)


@FUZZ
@given(text=mutated_text(RULES_TEXT_SEED))
@example(text=ONE_RULE % f"class: {DEEP}")  # a RecursionError: repr() of the deep list
@example(text=ONE_RULE % "occurrences: {count: 2, within: .inf}")
@example(text=ONE_RULE % "for: &a [*a]")
def test_mistyped_rule_files_parse_or_say_what_is_wrong(text: str) -> None:
    rule_set_or_error(text)


# YAML folds line breaks of its own (NEL, LS, PS) in scalars: text people write in titles.
plain_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=30
)
durations = st.builds(
    lambda number, unit: f"{number}{unit}", st.integers(0, 10_000), st.sampled_from("smhd")
)


@st.composite
def rule_entries(draw: st.DrawFn) -> dict[str, Document]:
    device_class = draw(st.sampled_from(DeviceClass))
    entry: dict[str, Document] = {
        "id": draw(identifiers()),
        "class": device_class.value,
        "title": {
            language: draw(plain_text)
            for language in ("en", *draw(st.lists(st.sampled_from(LANGUAGES[1:]), unique=True)))
        },
        "severity": draw(st.sampled_from(("info", "warning", "critical"))),
        "detects": draw(st.lists(plain_text, max_size=3)),
    }
    if draw(st.booleans()):
        entry["when"] = draw(EXPRESSIONS[device_class])
        entry["for"] = draw(durations | st.integers(0, 86_400))
        if draw(st.booleans()):
            entry["clear"] = draw(EXPRESSIONS[device_class])
            entry["clear_for"] = draw(durations)
        if draw(st.booleans()):
            entry["occurrences"] = {
                "count": draw(st.integers(1, 10_000)),
                "within": draw(durations),
            }
    else:
        entry["missing"] = {"after": draw(st.floats(1.5, 1_000))}
    return entry


@FUZZ
@given(entries=st.lists(rule_entries(), min_size=1, max_size=3, unique_by=lambda e: e["id"]))
def test_valid_rule_files_are_read_as_written(entries: list[dict[str, Document]]) -> None:
    rule_set = parse_rules(to_yaml({"rules": entries}))
    assert [rule.id for rule in rule_set.rules] == [entry["id"] for entry in entries]
    for rule, entry in zip(rule_set.rules, entries, strict=True):
        assert rule.device_class.value == entry["class"]
        assert dict(rule.titles) == entry["title"]
        assert rule.severity.value == entry["severity"]
        for expression, field in ((rule.when, "when"), (rule.clear, "clear")):
            assert (expression.text if expression is not None else None) == entry.get(field)
        assert list(rule.detects) == entry["detects"]


# ------------------------------------------------------------------------------- strategies


def strategy_or_error(text: str) -> None:
    strategy = outcome(lambda: parse_strategy(text, "fuzz.yaml"), StrategyFileError)
    if strategy is None:
        return
    hvac = strategy.hvac
    for number in (
        hvac.standby_after,
        hvac.hold,
        hvac.optimum_start.max_preheat,
        hvac.weather_compensation.design_outdoor,
        hvac.weather_compensation.mild_outdoor,
        hvac.seasons.heating_below,
        hvac.seasons.cooling_above,
        *hvac.power_caps.values(),
    ):
        assert math.isfinite(number), strategy
    for schedule in strategy.schedules.values():
        week_periods(schedule.week)
        if schedule.ramadan is not None:
            week_periods(schedule.ramadan)
        day_periods(schedule.holidays)
    LightingPolicy.from_mapping(strategy.lighting)


@FUZZ
@given(text=yaml_texts())
def test_any_yaml_is_a_strategy_or_a_strategy_file_error(text: str) -> None:
    strategy_or_error(text)


@FUZZ
@given(document=mutated(RICH_STRATEGY) | mutated(DEFAULT_STRATEGY))
@example(document={**DEFAULT_STRATEGY, "hvac": {**DEFAULT_STRATEGY["hvac"], "hold": DEEP}})
@example(  # NaN passed every comparison: a season that never heats
    document={
        **DEFAULT_STRATEGY,
        "hvac": {**DEFAULT_STRATEGY["hvac"], "seasons": {"heating_below": math.nan}},
    }
)
@example(
    document={**DEFAULT_STRATEGY, "hvac": {**DEFAULT_STRATEGY["hvac"], "standby_after": math.inf}}
)
def test_almost_valid_strategies_parse_or_say_what_is_wrong(document: Document) -> None:
    strategy_or_error(to_yaml(document))


@FUZZ
@given(text=mutated_text(DEFAULT_STRATEGY_TEXT) | mutated_text(to_yaml(RICH_STRATEGY)))
def test_mistyped_strategies_parse_or_say_what_is_wrong(text: str) -> None:
    strategy_or_error(text)


def test_the_rich_strategy_seed_is_valid() -> None:
    strategy = parse_strategy(to_yaml(RICH_STRATEGY))
    assert strategy.events
    assert LightingPolicy.from_mapping(strategy.lighting).reserve_days == 3


clock = st.builds(lambda h, m: (h, m), st.integers(0, 23), st.integers(0, 59))


@st.composite
def periods(draw: st.DrawFn) -> tuple[str, tuple[int, int]]:
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(st.integers(start + 1, 24 * 60))
    text = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    return text, (start, end)


@FUZZ
@given(
    week=st.dictionaries(
        st.sampled_from(("daily", "mon", "sun", "mon-fri", "sat-sun", "tue-sat")),
        st.lists(periods(), max_size=3),
        min_size=1,
    ),
    holidays=st.lists(periods(), max_size=3),
)
def test_valid_opening_hours_are_read_as_written(
    week: dict[str, list[tuple[str, tuple[int, int]]]], holidays: list[tuple[str, tuple[int, int]]]
) -> None:
    document = {
        **DEFAULT_STRATEGY,
        "schedules": {
            "library": {
                "week": {day: [text for text, _ in spans] for day, spans in week.items()},
                "holidays": [text for text, _ in holidays],
            }
        },
    }
    strategy = parse_strategy(to_yaml(document))
    schedule = strategy.schedules["library"]
    assert day_periods(schedule.holidays) == [minutes for _, minutes in holidays]
    by_day = week_periods(schedule.week)
    assert sum(len(spans) for spans in by_day.values()) == sum(
        len(spans) * {"daily": 7, "mon": 1, "sun": 1, "mon-fri": 5, "sat-sun": 2, "tue-sat": 5}[day]
        for day, spans in week.items()
    )


# ------------------------------------------------------------------------------- lighting


@FUZZ
@given(
    data=st.dictionaries(
        st.sampled_from(sorted(LightingPolicy.__struct_fields__)) | st.text(max_size=10),
        yaml_scalars() | documents(yaml_scalars()),
        max_size=5,
    )
    | mutated(RICH_STRATEGY["lighting"]).filter(lambda value: isinstance(value, dict))
)
@example(data={"profiles": {"road": [{"start": "12:00", "level": math.nan}]}})
@example(data={"profiles": {kind: [] for kind in PLACE_KINDS}})
def test_any_mapping_is_a_lighting_policy_or_a_value_error(data: dict[str, Document]) -> None:
    policy = outcome(lambda: LightingPolicy.from_mapping(data), ValueError)
    if policy is not None:
        assert policy.sign_minimum_level <= policy.sign_maximum_level
        assert set(policy.profiles) <= PLACE_KINDS
