"""Errors raised by the rules package."""

from __future__ import annotations


class RuleError(ValueError):
    """Base of every error about a rule or a rule file."""


class ExpressionError(RuleError):
    """A rule expression that cannot be used; says where (column) and what to write instead."""

    def __init__(self, message: str, column: int | None = None, hint: str = "") -> None:
        self.column = column
        self.hint = hint
        where = f"at column {column}: " if column is not None else ""
        super().__init__(f"{where}{message}" + (f" ({hint})" if hint else ""))
