"""A small, safe expression language for rule conditions.

Conditions read like Python (``lamp_on and lamp_power < 2 and sun_elevation < -3``) but are
never given to ``eval``: the text is parsed with :mod:`ast`, every node is checked against a
short list of what is allowed, and the tree is turned into plain Python closures.

The same compiled expression evaluates one reading (numbers, for the streaming engine) or a
whole history at once (numpy arrays, for backtests), with the same meaning: a missing value is
NaN, and any comparison with NaN is false, so missing data never fires a rule by accident.

Allowed: numbers, ``true``/``false``, names (metrics and context variables), ``+ - * / %``,
comparisons (chained too), ``and or not``, and the functions ``abs``, ``min``, ``max`` and
``bit(word, n)`` (whether bit ``n`` of a status word is set).
"""

from __future__ import annotations

import ast
import difflib
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from rules.errors import ExpressionError

Value = float | npt.NDArray[np.float64] | npt.NDArray[np.bool_]
Environment = Mapping[str, Value]
_Compiled = Callable[[Environment], Value]

MAX_LENGTH: Final = 500
"""Characters of one expression, at most."""
MAX_NODES: Final = 200
"""Syntax tree nodes of one expression, at most: a rule is read by people."""


def _divide(numerator: Value, denominator: Value) -> Value:
    """Division as on a history, for a reading too: x / 0 is an infinity and 0 / 0 NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        quotient: Value = np.true_divide(numerator, denominator)
    return quotient


_ARITHMETIC: Final[dict[type[ast.operator], Callable[[Value, Value], Value]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: _divide,
    ast.Mod: np.fmod,
}
_COMPARISONS: Final[dict[type[ast.cmpop], Callable[[Value, Value], Value]]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: lambda a, b: np.logical_and(np.not_equal(a, b), ~np.isnan(np.add(a, b))),
}


def _bit(word: Value, position: Value) -> Value:
    words = np.nan_to_num(np.asarray(word, dtype=np.float64), nan=0.0).astype(np.int64)
    # A position that is missing (NaN) or outside the word has no bit set; converting NaN to
    # an integer raised on a single reading.
    positions = np.asarray(position, dtype=np.float64)
    inside = (positions >= 0) & (positions < 64)
    shifts = np.where(inside, positions, 0.0).astype(np.int64)
    return ((np.right_shift(words, shifts) & 1).astype(bool)) & inside


_FUNCTIONS: Final[dict[str, tuple[int, Callable[..., Value]]]] = {
    "abs": (1, np.abs),
    "min": (2, np.fmin),
    "max": (2, np.fmax),
    "bit": (2, _bit),
}
_CONSTANTS: Final = {"true": 1.0, "false": 0.0}


@dataclass(frozen=True, slots=True)
class Expression:
    text: str
    names: frozenset[str]
    """The metrics and context variables it reads."""
    _compiled: _Compiled

    @classmethod
    def parse(cls, text: str, known_names: Collection[str]) -> Expression:
        """Check and compile ``text``; raise :class:`ExpressionError` saying what is wrong."""
        if len(text) > MAX_LENGTH:
            raise ExpressionError(
                f"the expression is {len(text)} characters long; at most {MAX_LENGTH}"
            )
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as error:
            raise ExpressionError(
                f"not a valid expression: {error.msg}", error.offset, "write e.g. battery_soc < 20"
            ) from None
        except UnicodeError as error:  # a lone surrogate: the parser reads UTF-8
            raise ExpressionError(f"not valid text: {error}") from None
        if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
            raise ExpressionError(f"the expression has more than {MAX_NODES} parts; split the rule")
        names: set[str] = set()
        compiled = _Compiler(frozenset(known_names), names).compile(tree.body)
        return cls(text, frozenset(names), compiled)

    def evaluate(self, environment: Environment) -> Value:
        """The value with ``environment`` (name -> number or array; absent names are NaN)."""
        return self._compiled(environment)

    def holds(self, environment: Environment) -> npt.NDArray[np.bool_]:
        """Whether the condition holds, as booleans (a number is true when non-zero, not NaN)."""
        value = np.asarray(self._compiled(environment))
        if value.dtype == np.bool_:
            return value
        truth: npt.NDArray[np.bool_] = np.logical_and(~np.isnan(value), value != 0)
        return truth


class _Compiler:
    def __init__(self, known: frozenset[str], names: set[str]) -> None:
        self.known = known
        self.names = names

    def compile(self, node: ast.expr) -> _Compiled:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            function = _ARITHMETIC[type(node.op)]
            left, right = self.compile(node.left), self.compile(node.right)
            return lambda env: function(_floats(left(env)), _floats(right(env)))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            operand = self.compile(node.operand)
            return lambda env: np.negative(_floats(operand(env)))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            operand = self.compile(node.operand)
            return lambda env: np.logical_not(_truth(operand(env)))
        if isinstance(node, ast.BoolOp):
            return self._boolean(node)
        if isinstance(node, ast.Compare):
            return self._comparison(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise ExpressionError(
            f"{type(node).__name__} is not allowed in a rule",
            node.col_offset + 1,
            "use numbers, metric names, + - * / %, comparisons, and/or/not, abs/min/max/bit",
        )

    def _constant(self, node: ast.Constant) -> _Compiled:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ExpressionError(
                f"the constant {value!r} is not a number",
                node.col_offset + 1,
                "write true or false for flags",
            )
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ExpressionError(
                f"the constant {str(value)[:20]}... is too large",
                node.col_offset + 1,
                "write numbers within the range of the metrics",
            ) from None
        return lambda _env: number

    def _name(self, node: ast.Name) -> _Compiled:
        name = node.id
        if name in _CONSTANTS:
            constant = _CONSTANTS[name]
            return lambda _env: constant
        if name not in self.known:
            close = difflib.get_close_matches(name, sorted(self.known), n=1)
            raise ExpressionError(
                f"unknown name {name!r}",
                node.col_offset + 1,
                f"did you mean {close[0]}?" if close else "use a metric of the rule's device class",
            )
        self.names.add(name)
        return lambda env: env.get(name, np.nan)

    def _boolean(self, node: ast.BoolOp) -> _Compiled:
        parts = [self.compile(value) for value in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or

        def evaluate(env: Environment) -> Value:
            result = _truth(parts[0](env))
            for part in parts[1:]:
                result = combine(result, _truth(part(env)))
            return result

        return evaluate

    def _comparison(self, node: ast.Compare) -> _Compiled:
        for operator_node in node.ops:
            if type(operator_node) not in _COMPARISONS:
                raise ExpressionError(
                    f"{type(operator_node).__name__} is not a comparison rules allow",
                    node.col_offset + 1,
                    "use < <= > >= == !=",
                )
        operands = [self.compile(node.left), *(self.compile(c) for c in node.comparators)]
        comparisons = [_COMPARISONS[type(op)] for op in node.ops]

        def evaluate(env: Environment) -> Value:
            values = [_floats(operand(env)) for operand in operands]
            result: Value = comparisons[0](values[0], values[1])
            for index, compare in enumerate(comparisons[1:], start=1):
                result = np.logical_and(result, compare(values[index], values[index + 1]))
            return result

        return evaluate

    def _call(self, node: ast.Call) -> _Compiled:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            shown = node.func.id if isinstance(node.func, ast.Name) else "this call"
            raise ExpressionError(
                f"{shown} is not a function rules know",
                node.col_offset + 1,
                f"use {', '.join(_FUNCTIONS)}",
            )
        arity, function = _FUNCTIONS[node.func.id]
        if len(node.args) != arity:
            raise ExpressionError(
                f"{node.func.id} takes {arity} argument{'s' if arity > 1 else ''}",
                node.col_offset + 1,
            )
        arguments = [self.compile(argument) for argument in node.args]
        return lambda env: function(*(_floats(argument(env)) for argument in arguments))


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
