"""Reading YAML files people write: errors that name the file, the entry and its line.

Site files, agent configurations and rule files are validated with pydantic; this module keeps
the YAML node tree beside the data so that a problem at ``runs[3].count`` can be reported at
its line in the file, and says what to change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

MAX_REPORTED_PROBLEMS = 5
"""A file with many problems reports the first few and how many more there are."""
MAX_DEPTH = 50
"""Levels of nesting a file may have. Files people write use a handful; a document nested far
deeper, or an alias that contains itself, is refused before recursive code (pydantic, repr in
error messages, JSON encoders) meets it and exhausts the recursion limit."""

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ErrorFactory = Callable[[str], Exception]
"""Makes the caller's own error type from a complete message."""
Explain = Callable[[ErrorDetails], str]
"""Turns one pydantic problem into a message that says what to change."""


def read_yaml(text: str, source: str, error: ErrorFactory) -> tuple[yaml.Node | None, object]:
    """The node tree (for line numbers) and the plain data of a YAML document."""
    try:
        loader = _Loader(text)
    except UnicodeError as problem:  # libyaml reads UTF-8: lone surrogates cannot be encoded
        raise error(f"{source}: not valid YAML: {problem}") from problem
    try:
        root = loader.get_single_node()
        too_deep = _too_deep(root)
        data: object = None
        if root is not None and too_deep is None:
            data = loader.construct_document(root)
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        at = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        parts = [getattr(problem, "context", None), getattr(problem, "problem", None)]
        what = ": ".join(str(part) for part in parts if part) or str(problem)
        raise error(f"{at}: not valid YAML: {what}") from problem
    except (ValueError, TypeError, LookupError, ArithmeticError) as problem:  # !!int "", a date
        raise error(f"{source}: not valid YAML: {problem}") from problem
    finally:
        loader.dispose()
    if too_deep is not None:
        raise error(
            f"{source}:{too_deep.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep "
            "(or an alias that contains itself): flatten the document"
        )
    return root, data


def _too_deep(root: yaml.Node | None) -> yaml.Node | None:
    """The first node found below :data:`MAX_DEPTH` levels, or None (iterative: no recursion).

    A node shared through aliases is walked again only when reached deeper than before, so an
    alias bomb costs at most MAX_DEPTH walks of each node; a cycle ends up too deep.
    """
    deepest: dict[int, int] = {}
    pending = [(root, 1)] if root is not None else []
    while pending:
        node, depth = pending.pop()
        if depth > MAX_DEPTH:
            return node
        if deepest.get(id(node), 0) >= depth:
            continue
        deepest[id(node)] = depth
        if isinstance(node, yaml.SequenceNode):
            pending.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            pending.extend((part, depth + 1) for pair in node.value for part in pair)
    return None


class YamlLocator:
    """Turns a location in the document (keys and indexes) into a path and a line."""

    def __init__(
        self,
        source: str,
        root: yaml.Node | None,
        error: ErrorFactory,
        label_keys: Sequence[str] = (),
    ) -> None:
        """label_keys: keys whose value names a list item in paths, e.g. ``("id",)`` gives
        ``rules[3] (lamp-out).when``."""
        self.source = source
        self.root = root
        self._error = error
        self._label_keys = tuple(label_keys)

    def error(self, loc: Sequence[str | int], message: str) -> Exception:
        return self._error(f"{self.source}: {self.describe(loc, message)}")

    def path(self, loc: Sequence[str | int]) -> str:
        return self._walk(loc)[0]

    def line(self, loc: Sequence[str | int]) -> int | None:
        return self._walk(loc)[1]

    def describe(self, loc: Sequence[str | int], message: str) -> str:
        path, line = self._walk(loc)
        return f"{path}: {message}" + (f" (line {line})" if line is not None else "")

    def validation_error(self, error: ValidationError, explain: Explain) -> Exception:
        """One error listing the first few problems of ``error``, each at its line."""
        problems = error.errors()
        shown = "; ".join(
            self.describe(problem["loc"], explain(problem))
            for problem in problems[:MAX_REPORTED_PROBLEMS]
        )
        more = len(problems) - MAX_REPORTED_PROBLEMS
        suffix = f"; and {more} more problem{'s' if more > 1 else ''}" if more > 0 else ""
        return self._error(f"{self.source}: {shown}{suffix}")

    def _walk(self, loc: Sequence[str | int]) -> tuple[str, int | None]:
        """Follow ``loc`` through the YAML nodes: the readable path and the deepest line.

        A part that is not in the document is a union tag pydantic adds (skipped) unless it
        is the last one: a missing field, named in the path, at its parent's line.
        """
        node, line = self.root, _line(self.root)
        path = ""
        for position, part in enumerate(loc):
            child, child_line = _child(node, part)
            if child is None and position < len(loc) - 1:
                continue
            if isinstance(part, int):
                path += f"[{part}]" + self._label(child)
            elif part == "[key]":
                path += " (key)"
            else:
                path += f".{part}" if path else str(part)
            if child is not None:
                node, line = child, child_line
        return path or "(top)", line

    def _label(self, node: yaml.Node | None) -> str:
        for key in self._label_keys:
            child, _ = _child(node, key)
            if isinstance(child, yaml.ScalarNode) and child.value:
                return f" ({child.value})"
        return ""


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node | None, int | None]:
    """The node at ``part`` under ``node``, and the line to report for it."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                # reported at its key: a block mapping or list value starts on the next line
                return value, _line(key)
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        return node.value[part], _line(node.value[part])
    return None, None


def short_repr(value: object, limit: int = 40) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
