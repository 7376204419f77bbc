"""The rule expression language: safe, clear errors, and one meaning for readings and histories."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.catalogue import CATALOGUE
from protocol.topics import DeviceClass
from rules.errors import ExpressionError
from rules.expressions import Expression

LIGHT = frozenset(CATALOGUE[DeviceClass.STREETLIGHT].metrics) | {"sun_elevation"}


def holds(text: str, **values: float) -> bool:
    return bool(Expression.parse(text, LIGHT).holds(values))


def test_a_condition_reads_like_the_fault_it_describes() -> None:
    lamp_out = "lamp_on and lamp_power < 2 and sun_elevation < -3"
    assert holds(lamp_out, lamp_on=1, lamp_power=0.4, sun_elevation=-10)
    assert not holds(lamp_out, lamp_on=1, lamp_power=45, sun_elevation=-10)
    assert not holds(lamp_out, lamp_on=0, lamp_power=0, sun_elevation=-10)
    assert Expression.parse(lamp_out, LIGHT).names == {"lamp_on", "lamp_power", "sun_elevation"}


def test_arithmetic_chained_comparisons_functions_and_status_bits() -> None:
    assert holds("10 < battery_soc <= 25", battery_soc=20)
    assert not holds("10 < battery_soc <= 25", battery_soc=30)
    assert holds("abs(tilt - 1) > 10 or max(pv_power, charge_current) > 100", tilt=15)
    assert holds("pv_power / max(pv_voltage, 1) < 0.5", pv_power=3, pv_voltage=18)
    assert holds("bit(controller_status, 9)", controller_status=2**9 + 1)
    assert not holds("bit(controller_status, 8)", controller_status=2**9 + 1)
    assert holds("not lamp_on", lamp_on=0)
    assert holds("lamp_on == true", lamp_on=1)


def test_missing_values_never_fire_a_rule() -> None:
    assert not holds("battery_soc < 20")
    assert not holds("battery_soc != 50")
    assert not holds("lamp_on")
    assert holds("not (battery_soc < 20)"), "not of an unknown is true: write the rule positively"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('true')", "not a function rules know"),
        ("lamp_power.real > 1", "Attribute is not allowed"),
        ("[1, 2][0] > 0", "is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("battery_soc in (1, 2)", "not a comparison rules allow"),
        ("'20' < battery_soc", "not a number"),
        ("batery_soc < 20", "did you mean battery_soc?"),
        ("battery_soc <", "not a valid expression"),
        ("abs(battery_soc, 2) > 1", "abs takes 1 argument"),
        ("battery_soc ** 2 > 1", "BinOp is not allowed"),
        ("x" * 600, "at most 500"),
    ],
)
def test_anything_else_is_refused_saying_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace("?", r"\?")):
        Expression.parse(text, LIGHT)


def test_errors_carry_the_column() -> None:
    with pytest.raises(ExpressionError) as error:
        Expression.parse("battery_soc < 20 and lamp_powr > 1", LIGHT)
    assert error.value.column == 22
    assert error.value.hint == "did you mean lamp_power?"


readings = st.lists(
    st.tuples(
        st.one_of(st.floats(-50, 150), st.just(float("nan"))),
        st.one_of(st.floats(0, 200), st.just(float("nan"))),
        st.sampled_from([0.0, 1.0, float("nan")]),
    ),
    min_size=1,
    max_size=40,
)
CONDITIONS = [
    "battery_soc < 20 and lamp_on",
    "not (lamp_power > 5) or battery_soc >= 90",
    "10 < battery_soc < 80 and abs(lamp_power - 30) < 25",
    "min(battery_soc, lamp_power) > 12 and lamp_on == true",
    "battery_soc % 7 > 3 or bit(lamp_on, 0)",
]


@pytest.mark.parametrize("text", CONDITIONS)
@given(rows=readings)
def test_a_history_at_once_agrees_with_its_readings_one_by_one(
    text: str, rows: list[tuple[float, float, float]]
) -> None:
    expression = Expression.parse(text, LIGHT)
    soc, power, lamp = (np.array(column) for column in zip(*rows, strict=True))
    at_once = expression.holds({"battery_soc": soc, "lamp_power": power, "lamp_on": lamp})
    one_by_one = [
        bool(expression.holds({"battery_soc": s, "lamp_power": p, "lamp_on": on}))
        for s, p, on in rows
    ]
    assert at_once.tolist() == one_by_one


def test_every_operator_and_function_the_language_allows_has_a_meaning() -> None:
    from rules import expressions, vectorised

    assert set(vectorised.ARITHMETIC_FUNCTIONS) == expressions.ARITHMETIC
    assert set(vectorised.COMPARISON_FUNCTIONS) == expressions.COMPARISONS
    assert set(vectorised.CALLABLE_FUNCTIONS) == set(expressions.FUNCTIONS)


def test_checking_an_expression_does_not_load_numpy() -> None:
    """The API validates rule files and must not pay numpy's memory for it."""
    import subprocess
    import sys

    code = (
        "import sys; from rules.model import load_rules; from rules import PACKAGED_RULES;"
        "load_rules(PACKAGED_RULES); print('numpy' in sys.modules)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "False"
