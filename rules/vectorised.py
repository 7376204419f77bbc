"""Rule expressions as closures over numbers or numpy arrays.

:mod:`rules.expressions` checks an expression's syntax tree; this turns a checked tree into
plain Python closures, the same for one reading (the streaming engine) and a whole history
(backtests). A missing name is NaN, and a comparison with NaN is false. Its tables give a
meaning to each operator and function the checker allows (``tests/unit/test_expressions.py``
holds the two to each other).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

Value = float | npt.NDArray[np.float64] | npt.NDArray[np.bool_]
Environment = Mapping[str, Value]
_Compiled = Callable[[Environment], Value]


def _divide(numerator: Value, denominator: Value) -> Value:
    """Division as on a history, for a reading too: x / 0 is an infinity and 0 / 0 NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        quotient: Value = np.true_divide(numerator, denominator)
    return quotient


def _not_equal(left: Value, right: Value) -> Value:
    """``!=`` that is false when either side is missing, like every other comparison."""
    return np.logical_and(np.not_equal(left, right), ~np.isnan(np.add(left, right)))


def _bit(word: Value, position: Value) -> Value:
    words = np.nan_to_num(np.asarray(word, dtype=np.float64), nan=0.0).astype(np.int64)
    # A position that is missing (NaN) or outside the word has no bit set; converting NaN to
    # an integer raised on a single reading.
    positions = np.asarray(position, dtype=np.float64)
    inside = (positions >= 0) & (positions < 64)
    shifts = np.where(inside, positions, 0.0).astype(np.int64)
    return ((np.right_shift(words, shifts) & 1).astype(bool)) & inside


ARITHMETIC_FUNCTIONS: Final[dict[type[ast.operator], Callable[[Value, Value], Value]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: _divide,
    ast.Mod: np.fmod,
}
COMPARISON_FUNCTIONS: Final[dict[type[ast.cmpop], Callable[[Value, Value], Value]]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: _not_equal,
}
CALLABLE_FUNCTIONS: Final[dict[str, Callable[..., Value]]] = {
    "abs": np.abs,
    "min": np.fmin,
    "max": np.fmax,
    "bit": _bit,
}


@dataclass(frozen=True, slots=True)
class Program:
    """A compiled expression."""

    evaluate: _Compiled
    """The value with an environment (name -> number or array; absent names are NaN)."""

    def holds(self, environment: Environment) -> npt.NDArray[np.bool_]:
        """Whether the condition holds, as booleans (a number is true when non-zero, not NaN)."""
        value = np.asarray(self.evaluate(environment))
        if value.dtype == np.bool_:
            return value
        truth: npt.NDArray[np.bool_] = np.logical_and(~np.isnan(value), value != 0)
        return truth


def compile_checked(tree: ast.expr) -> Program:
    """The closures of a tree :mod:`rules.expressions` has checked."""
    return Program(_compile(tree))


def _compile(node: ast.expr) -> _Compiled:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        number = float(node.value)
        return lambda _env: number
    if isinstance(node, ast.Name):
        name = node.id
        return lambda env: env.get(name, np.nan)
    if isinstance(node, ast.BinOp):
        function = ARITHMETIC_FUNCTIONS[type(node.op)]
        left, right = _compile(node.left), _compile(node.right)
        return lambda env: function(_floats(left(env)), _floats(right(env)))
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda env: np.negative(_floats(operand(env)))
        return lambda env: np.logical_not(_truth(operand(env)))
    if isinstance(node, ast.BoolOp):
        return _boolean(node)
    if isinstance(node, ast.Compare):
        return _comparison(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        function = CALLABLE_FUNCTIONS[node.func.id]
        arguments = [_compile(argument) for argument in node.args]
        return lambda env: function(*(_floats(argument(env)) for argument in arguments))
    raise AssertionError(f"{type(node).__name__} was not checked")  # pragma: no cover


def _boolean(node: ast.BoolOp) -> _Compiled:
    parts = [_compile(value) for value in node.values]
    combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or

    def evaluate(env: Environment) -> Value:
        result = _truth(parts[0](env))
        for part in parts[1:]:
            result = combine(result, _truth(part(env)))
        return result

    return evaluate


def _comparison(node: ast.Compare) -> _Compiled:
    operands = [_compile(node.left), *(_compile(c) for c in node.comparators)]
    comparisons = [COMPARISON_FUNCTIONS[type(op)] for op in node.ops]

    def evaluate(env: Environment) -> Value:
        values = [_floats(operand(env)) for operand in operands]
        result: Value = comparisons[0](values[0], values[1])
        for index, compare in enumerate(comparisons[1:], start=1):
            result = np.logical_and(result, compare(values[index], values[index + 1]))
        return result

    return evaluate


def _floats(value: Value) -> Value:
    array = np.asarray(value)
    if array.dtype == np.bool_:
        return array.astype(np.float64) if array.ndim else float(array)
    return value


def _truth(value: Value) -> Value:
    array = np.asarray(value)
    if array.dtype == np.bool_:
        return value
    truth: npt.NDArray[np.bool_] = np.logical_and(~np.isnan(array), array != 0)
    return truth
