"""A small, safe expression language for rule conditions.

Conditions read like Python (``lamp_on and lamp_power < 2 and sun_elevation < -3``) but are
never given to ``eval``: the text is parsed with :mod:`ast` and every node is checked here
against a short list of what is allowed. Checking needs no numpy, so a service that only
validates rule files (the API) never loads it; :mod:`rules.vectorised` turns the checked tree
into closures on the first evaluation.

The same expression evaluates one reading (numbers, for the streaming engine) or a whole
history at once (numpy arrays, for backtests), with the same meaning: a missing value is NaN,
and any comparison with NaN is false, so missing data never fires a rule by accident.

Allowed: numbers, ``true``/``false``, names (metrics and context variables), ``+ - * / %``,
comparisons (chained too), ``and or not``, and the functions ``abs``, ``min``, ``max`` and
``bit(word, n)`` (whether bit ``n`` of a status word is set).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from rules.errors import ExpressionError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from rules.vectorised import Environment, Program, Value

MAX_LENGTH: Final = 500
"""Characters of one expression, at most."""
MAX_NODES: Final = 200
"""Syntax tree nodes of one expression, at most: a rule is read by people."""

ARITHMETIC: Final[frozenset[type[ast.operator]]] = frozenset(
    {ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod}
)
COMPARISONS: Final[frozenset[type[ast.cmpop]]] = frozenset(
    {ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq}
)
FUNCTIONS: Final[dict[str, int]] = {"abs": 1, "min": 2, "max": 2, "bit": 2}
"""The functions a rule may call, with the number of arguments each takes."""
CONSTANTS: Final[dict[str, float]] = {"true": 1.0, "false": 0.0}


@dataclass(frozen=True, slots=True, eq=False)
class Expression:
    text: str
    names: frozenset[str]
    """The metrics and context variables it reads."""
    tree: ast.expr = field(repr=False)
    """The checked syntax tree."""
    _program: list[Program] = field(default_factory=list, repr=False)
    """The compiled closures, once the expression was first evaluated."""

    @classmethod
    def parse(cls, text: str, known_names: Collection[str]) -> Expression:
        """Check ``text``; raise :class:`ExpressionError` saying what is wrong."""
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
        _check(tree.body, frozenset(known_names), names)
        return cls(text, frozenset(names), _NamedConstants().visit(tree.body))

    def evaluate(self, environment: Environment) -> Value:
        """The value with ``environment`` (name -> number or array; absent names are NaN)."""
        return self._compiled().evaluate(environment)

    def holds(self, environment: Environment) -> npt.NDArray[np.bool_]:
        """Whether the condition holds, as booleans (a number is true when non-zero, not NaN)."""
        return self._compiled().holds(environment)

    def _compiled(self) -> Program:
        if not self._program:
            from rules.vectorised import (
                compile_checked,
            )  # numpy: loaded by evaluating, not by checking

            self._program.append(compile_checked(self.tree))
        return self._program[0]


class _NamedConstants(ast.NodeTransformer):
    """``true`` and ``false`` as the numbers they stand for."""

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in CONSTANTS:
            return ast.copy_location(ast.Constant(CONSTANTS[node.id]), node)
        return node


def _check(node: ast.expr, known: frozenset[str], names: set[str]) -> None:
    """Raise :class:`ExpressionError` at the first part of ``node`` a rule may not hold; add the
    names it reads to ``names``."""
    if isinstance(node, ast.Constant):
        _check_constant(node)
    elif isinstance(node, ast.Name):
        _check_name(node, known, names)
    elif isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        _check(node.left, known, names)
        _check(node.right, known, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
        _check(node.operand, known, names)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, known, names)
    elif isinstance(node, ast.Compare):
        _check_comparison(node, known, names)
    elif isinstance(node, ast.Call):
        _check_call(node, known, names)
    else:
        raise ExpressionError(
            f"{type(node).__name__} is not allowed in a rule",
            node.col_offset + 1,
            "use numbers, metric names, + - * / %, comparisons, and/or/not, abs/min/max/bit",
        )


def _check_constant(node: ast.Constant) -> None:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpressionError(
            f"the constant {value!r} is not a number",
            node.col_offset + 1,
            "write true or false for flags",
        )
    try:
        float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise ExpressionError(
            f"the constant {str(value)[:20]}... is too large",
            node.col_offset + 1,
            "write numbers within the range of the metrics",
        ) from None


def _check_name(node: ast.Name, known: frozenset[str], names: set[str]) -> None:
    name = node.id
    if name in CONSTANTS:
        return
    if name not in known:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        raise ExpressionError(
            f"unknown name {name!r}",
            node.col_offset + 1,
            f"did you mean {close[0]}?" if close else "use a metric of the rule's device class",
        )
    names.add(name)


def _check_comparison(node: ast.Compare, known: frozenset[str], names: set[str]) -> None:
    for operator_node in node.ops:
        if type(operator_node) not in COMPARISONS:
            raise ExpressionError(
                f"{type(operator_node).__name__} is not a comparison rules allow",
                node.col_offset + 1,
                "use < <= > >= == !=",
            )
    for operand in (node.left, *node.comparators):
        _check(operand, known, names)


def _check_call(node: ast.Call, known: frozenset[str], names: set[str]) -> None:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
        shown = node.func.id if isinstance(node.func, ast.Name) else "this call"
        raise ExpressionError(
            f"{shown} is not a function rules know",
            node.col_offset + 1,
            f"use {', '.join(FUNCTIONS)}",
        )
    arity = FUNCTIONS[node.func.id]
    if len(node.args) != arity:
        raise ExpressionError(
            f"{node.func.id} takes {arity} argument{'s' if arity > 1 else ''}",
            node.col_offset + 1,
        )
    for argument in node.args:
        _check(argument, known, names)
