"""Shared hypothesis strategies for the fuzz tests (``test_fuzz_*.py``).

Three kinds of input reach a decoder or a parser from outside: bytes off the wire, documents
(JSON or YAML) people or devices wrote, and text. The strategies here make each of them
arbitrary, nasty (NaN, huge numbers, NUL characters, unicode, deep nesting) and "almost valid":
a valid example with one to three things broken (a key dropped, a value of the wrong type, a
number out of range, a line deleted), which is where parsers' unhandled cases hide.

:func:`outcome` states the property every fuzz test checks: the call either returns or raises
exactly one of the errors its module documents, with a message.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Final, TypeVar

import yaml
from hypothesis import settings
from hypothesis import strategies as st

from protocol.topics import Channel, DeviceClass

T = TypeVar("T")
Document = object
"""Plain data as JSON or YAML give it: None, bool, int, float, str, list, dict (and dates)."""
Path = tuple[str | int, ...]

FUZZ: Final = settings(max_examples=200, deadline=None)
"""Every fuzz test: enough examples to find the unhandled case, few enough to run in seconds."""

NASTY_FLOATS: Final = (
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -1e308,
    5e-324,
    -0.0,
    1e16 + 1,
)
NASTY_INTS: Final = (-1, 0, 2**31, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**40, -(10**40))
NASTY_STRINGS: Final = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\r\n",
    "\u202e",  # right-to-left override
    "\ufeff",  # byte order mark
    "é",
    "مصباح",
    "🚦",
    "null",
    "true",
    "NaN",
    "-inf",
    "1e999",
    "0x1F",
    "08:60",
    "24:00",
    "99999999999d",
    "-5m",
    "../../etc/passwd",
    "x" * 300,
    "%s%n{0}",
    "${HOME}",
)
NASTY_DATETIMES: Final = (
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1970, 1, 1),  # noqa: DTZ001 - naive on purpose: no UTC offset
    datetime(2026, 11, 28, 18, tzinfo=timezone(timedelta(hours=23, minutes=59))),
    datetime(2026, 11, 28, 18, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
)
NASTY_DATES: Final = (date(1, 1, 1), date(9999, 12, 31), date(2024, 2, 29))
NASTY_TIMESTAMP_TEXTS: Final = (
    "2026-11-28T18:00:00",  # no offset
    "2026-11-28T18:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999-23:59",
    "0001-01-01T00:00:00+23:59",
    "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-28T23:59:60Z",
    "2026-11-28T18:00:00.1234567890123Z",
    "2026-11-28T18:00:00+24:00",
    "2026-11-28 18:00:00Z",
    "2026-11-28",
    "18:00:00",
    "1e10",
    "",
)


# ------------------------------------------------------------------------------- outcomes


def outcome(call: Callable[[], T], *documented: type[Exception]) -> T | None:
    """The result of ``call``, or None when it raised exactly one of ``documented``.

    Any other exception fails the test as it is (TypeError, KeyError, RecursionError...), and
    so does a subclass nobody documented (UnicodeDecodeError is a ValueError, not the module's
    error) or an error without a message.
    """
    try:
        return call()
    except documented as caught:
        error = caught
    assert type(error) in documented, (
        f"raised {type(error).__name__}, a subclass of the documented "
        f"{', '.join(kind.__name__ for kind in documented)}: {error}"
    )
    assert str(error).strip(), f"{type(error).__name__} raised without a message"
    return None


# ------------------------------------------------------------------------------- scalars


def nasty_scalars() -> st.SearchStrategy[Document]:
    """Values that break careless code: NaN, infinities, huge integers, NUL, unicode."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(NASTY_INTS),
        st.integers(),
        st.sampled_from(NASTY_FLOATS),
        st.floats(),
        st.sampled_from(NASTY_STRINGS),
        st.text(max_size=20),
    )


def json_scalars() -> st.SearchStrategy[Document]:
    """What a JSON document can hold at a leaf (NaN and infinities included: not JSON, but
    what a careless encoder writes)."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(NASTY_INTS),
        st.sampled_from(NASTY_STRINGS),
        st.sampled_from(NASTY_TIMESTAMP_TEXTS),
    )


def yaml_scalars() -> st.SearchStrategy[Document]:
    """What a YAML document can hold at a leaf: JSON's scalars, dates and datetimes."""
    return st.one_of(
        json_scalars(),
        st.dates(),
        st.sampled_from(NASTY_DATES),
        st.datetimes(timezones=st.none() | st.just(UTC)),
        st.sampled_from(NASTY_DATETIMES),
    )


def keys() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=12), st.sampled_from(NASTY_STRINGS))


def documents(leaves: st.SearchStrategy[Document] | None = None) -> st.SearchStrategy[Document]:
    """Nested lists and mappings, a few levels deep, of ``leaves`` (JSON scalars by default)."""
    return st.recursive(
        leaves if leaves is not None else json_scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys(), children, max_size=4),
        ),
        max_leaves=16,
    )


def nested(depth: int, leaf: Document = 1) -> Document:
    """A value nested ``depth`` deep in lists and mappings (alternating)."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


def deep_json(depth: int) -> bytes:
    """JSON text nested ``depth`` deep, built without recursion."""
    return b"[" * depth + b"1" + b"]" * depth


# ------------------------------------------------------------------------------- mutation


def paths(document: Document, prefix: Path = ()) -> Iterator[Path]:
    """Every location in ``document``: the root, each key's value and each item."""
    yield prefix
    if isinstance(document, Mapping):
        for key, value in document.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from paths(value, (*prefix, index))


def _get(document: Document, path: Path) -> Document:
    for part in path:
        document = document[part]  # type: ignore[index]  # paths() only yields existing parts
    return document


def _set(document: Document, path: Path, value: Document) -> Document:
    if not path:
        return value
    parent = _get(document, path[:-1])
    parent[path[-1]] = value  # type: ignore[index]  # a mapping or a list, as paths() found
    return document


def _delete(document: Document, path: Path) -> Document:
    if not path:
        return None
    parent = _get(document, path[:-1])
    del parent[path[-1]]  # type: ignore[attr-defined]  # a mapping or a list, as paths() found
    return document


MUTATIONS: Final = (
    "drop",
    "replace_scalar",
    "replace_document",
    "null",
    "to_text",
    "wrap_list",
    "wrap_mapping",
    "repeat",
    "deep",
    "add_key",
    "negate",
    "scale",
)
SCALE_FACTORS: Final = (0, 1e-9, 1e9, 1e300, 10**30, math.inf, math.nan)


def _replacement(
    draw: st.DrawFn, kind: str, current: Document, leaves: st.SearchStrategy[Document]
) -> Document:
    """What replaces ``current`` in a mutation of ``kind`` (``current`` when it does not apply)."""
    if kind == "replace_scalar":
        return draw(st.one_of(leaves, nasty_scalars()))
    if kind == "replace_document":
        return draw(documents(leaves))
    if kind == "repeat":
        return [copy.deepcopy(current)] * draw(st.integers(0, 30))
    if kind == "wrap_mapping":
        return {draw(keys()): current}
    if kind in ("negate", "scale") and _is_number(current):
        number: float = current  # type: ignore[assignment]  # _is_number() said so
        return -number if kind == "negate" else number * draw(st.sampled_from(SCALE_FACTORS))
    simple: dict[str, Document] = {"null": None, "to_text": str(current), "wrap_list": [current]}
    return simple.get(kind, current)


@st.composite
def mutated(
    draw: st.DrawFn,
    document: Document,
    leaves: st.SearchStrategy[Document] | None = None,
    max_mutations: int = 3,
) -> Document:
    """``document`` (left untouched) with one to ``max_mutations`` things broken."""
    leaves = leaves if leaves is not None else yaml_scalars()
    result = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, max_mutations))):
        path = draw(st.sampled_from(list(paths(result))))
        current = _get(result, path)
        kind = draw(st.sampled_from(MUTATIONS))
        if kind == "drop":
            result = _delete(result, path)
        elif kind == "deep":
            # Deep enough to matter to recursive code, shallow enough for yaml.safe_dump; deeper
            # text is in yaml_texts(). Nothing is mutated after: paths() would recurse as deep.
            return _set(result, path, nested(draw(st.integers(20, 250)), current))
        elif kind == "add_key" and isinstance(current, dict):
            current[draw(keys())] = draw(st.one_of(leaves, documents(leaves)))
        else:
            result = _set(result, path, _replacement(draw, kind, current, leaves))
    return result


def _is_number(value: Document) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@st.composite
def mutated_text(draw: st.DrawFn, text: str, max_edits: int = 3) -> str:
    """``text`` with a few character-level edits: what a slip of the keyboard does to a file."""
    fragments = st.one_of(
        st.sampled_from(
            (":", "-", " ", "\n", "\t", "[", "]", "{", "}", "'", '"', "#", "&a", "*a", "!!", "%")
        ),
        st.sampled_from(NASTY_STRINGS),
        st.text(max_size=8),
    )
    for _ in range(draw(st.integers(1, max_edits))):
        if not text:
            text = draw(fragments)
            continue
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start, min(len(text), start + 40)))
        kind = draw(st.sampled_from(("insert", "delete", "replace", "truncate", "line")))
        if kind == "insert":
            text = text[:start] + draw(fragments) + text[start:]
        elif kind == "delete":
            text = text[:start] + text[end:]
        elif kind == "replace":
            text = text[:start] + draw(fragments) + text[end:]
        elif kind == "truncate":
            text = text[:start]
        else:
            lines = text.splitlines(keepends=True)
            index = draw(st.integers(0, len(lines) - 1))
            lines.insert(draw(st.integers(0, len(lines))), lines[index])
            text = "".join(lines)
    return text


# ------------------------------------------------------------------------------- YAML


def to_yaml(document: Document) -> str:
    """YAML text of a document (flow style, so long lists stay short)."""
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=100)


def yaml_texts() -> st.SearchStrategy[str]:
    """Arbitrary YAML: random documents dumped, random text, and YAML's own odd corners."""
    corners = st.sampled_from(
        (
            "",
            "---\n...\n",
            "--- a\n--- b\n",  # two documents
            "&a [*a]",  # a recursive alias
            "a: &a {b: *a}",
            "? [a]\n: 1",  # an unhashable key
            "a: {<<: 1}",  # a bad merge
            "a: !!int ''",
            "a: !!float x",
            "a: !!binary '@@@'",
            "a: !!timestamp 2026-13-45",
            "a: 2026-02-30",
            "a: 2026-01-01T00:00:00+99:99",
            "a: !!python/object:os.system x",
            "a: !!set {[a]: 1}",
            "a: !!omap [1]",
            "%YAML 9.9\n--- a",
            "a: \x00",
            "a: \x07",
            "[" * 1_200,
            "[" * 600 + "]" * 600,
            "{a: " * 600 + "1" + "}" * 600,
            "".join("  " * level + "-\n" for level in range(900)),
            "".join("  " * level + "a:\n" for level in range(900)) + "  " * 900 + "1\n",
        )
    )
    return st.one_of(
        corners,
        st.text(max_size=200),
        documents(yaml_scalars()).map(to_yaml),
    )


# ------------------------------------------------------------------------------- domain


def identifiers() -> st.SearchStrategy[str]:
    """Valid site and device ids (protocol.topics.IDENTIFIER_PATTERN)."""
    return st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?\Z")


def utc_offsets() -> st.SearchStrategy[timezone]:
    return st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    )


def aware_datetimes_near(
    moment: datetime, before: timedelta, after: timedelta
) -> st.SearchStrategy[datetime]:
    """Aware datetimes within ``moment - before .. moment + after``, in any UTC offset."""
    return st.builds(
        lambda seconds, micro, zone: (
            moment + timedelta(seconds=seconds, microseconds=micro)
        ).astimezone(zone),
        st.integers(-int(before.total_seconds()) + 1, int(after.total_seconds()) - 1),
        st.integers(0, 999_999),
        utc_offsets(),
    )


def topics(channels: Sequence[Channel] = tuple(Channel)) -> st.SearchStrategy[str]:
    return st.builds(
        lambda site, device_class, device_id, channel: (
            f"sc/{site}/{device_class}/{device_id}/{channel}"
        ),
        identifiers(),
        st.sampled_from(DeviceClass),
        identifiers(),
        st.sampled_from(channels),
    )
