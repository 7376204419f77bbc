"""Rule files: what counts as a fault, for which devices, for how long, and when it is over.

A rule file (format in ``docs/rules.md``)::

    rules:
      - id: lamp-out
        class: streetlight
        title: {en: Lamp out at night, fr: Lampe éteinte la nuit, ar: مصباح مطفأ ليلا}
        when: lamp_on and lamp_power < 0.1 * lamp_w and sun_elevation < -4
        for: 20m
        clear: lamp_power > 0.3 * lamp_w or sun_elevation > 0
        severity: critical
        detects: [lamp_failure]

      - id: light-offline
        class: streetlight
        title: {en: Light not reporting}
        missing: {after: 3}          # silent for 3 expected intervals, or its last will came

:func:`parse_rules` validates the whole file before anything uses it: every expression is
compiled against the names its device class offers, and each error names the file, the
rule, the field and its line, with a hint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from protocol import durations
from protocol.catalogue import CATALOGUE
from protocol.payloads import Severity
from protocol.topics import IDENTIFIER_PATTERN, DeviceClass
from protocol.yamlfile import YamlLocator, read_yaml, short_repr
from rules.errors import ExpressionError, RuleError
from rules.expressions import Expression
from rules.names import names_for

LANGUAGES: Final = ("en", "fr", "ar")


class RuleFileError(RuleError):
    """A rule file that cannot be used; the running rule set stays as it was."""


def _duration(value: object) -> object:
    if isinstance(value, str):
        return durations.parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value <= timedelta.max.total_seconds():  # NaN fails too
            raise ValueError(f"{short_repr(value)} seconds is not a duration: write e.g. 30m or 2h")
        return timedelta(seconds=value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Scope(_Strict):
    """Which devices of the class a rule watches; all of them when empty."""

    street_groups: tuple[str, ...] = ()
    buildings: tuple[str, ...] = ()
    cabinets: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return not (self.street_groups or self.buildings or self.cabinets or self.devices)


class Occurrences(_Strict):
    """The condition counts as holding while it held at ``count`` readings within ``within``."""

    count: int = Field(ge=1, le=10_000)
    within: Duration


class Missing(_Strict):
    """The device is missing when silent for ``after`` expected intervals, or when its will
    came and no birth followed within ``grace``."""

    after: float = Field(3.0, ge=1.5, le=1_000)
    grace: Duration = Field(timedelta(seconds=60), ge=timedelta(0), le=timedelta(hours=1))


class _RuleEntry(_Strict):
    id: Annotated[str, Field(pattern=IDENTIFIER_PATTERN.pattern)]
    device_class: DeviceClass = Field(alias="class")
    title: dict[str, str]
    description: str = ""
    scope: Scope = Field(default_factory=Scope)
    when: str | None = None
    for_: Duration = Field(timedelta(0), alias="for")
    clear: str | None = None
    clear_for: Duration = timedelta(0)
    occurrences: Occurrences | None = None
    missing: Missing | None = None
    severity: Severity = Severity.WARNING
    detects: tuple[str, ...] = ()
    fires_within: Duration | None = None
    """The bound, documented in docs/faults.md, within which the rule fires after its fault."""
    enabled: bool = True


class _RuleFile(_Strict):
    rules: list[_RuleEntry] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    device_class: DeviceClass
    titles: Mapping[str, str]
    severity: Severity
    scope: Scope
    when: Expression | None
    """None for a missing-data rule."""
    for_: timedelta = timedelta(0)
    clear: Expression | None = None
    """None: the alert clears as soon as ``when`` no longer holds."""
    clear_for: timedelta = timedelta(0)
    occurrences: Occurrences | None = None
    missing: Missing | None = None
    detects: tuple[str, ...] = ()
    fires_within: timedelta | None = None
    description: str = ""

    @property
    def title(self) -> str:
        return self.titles["en"]

    @property
    def names(self) -> frozenset[str]:
        """Every name its expressions read."""
        parts = (self.when, self.clear)
        return frozenset().union(*(part.names for part in parts if part is not None))

    @property
    def judges_whole_days(self) -> bool:
        """Whether it reads a day's harvest (a ``...harvest_ratio``): it can tell only once a
        whole day has passed, at the next day's first reading."""
        return any(name.endswith("harvest_ratio") for name in self.names)

    @property
    def silence_s(self) -> float:
        """A missing-data rule: seconds of silence after which the device is missing."""
        if self.missing is None:
            raise RuleError(f"rule {self.id} is not a missing-data rule")
        return self.missing.after * CATALOGUE[self.device_class].expected_interval_s

    @property
    def grace_s(self) -> float:
        """A missing-data rule: seconds after a will during which a birth cancels it."""
        if self.missing is None:
            raise RuleError(f"rule {self.id} is not a missing-data rule")
        return self.missing.grace.total_seconds()


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str = ""

    def for_class(self, device_class: DeviceClass) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.device_class is device_class)

    def by_id(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    @property
    def detects(self) -> dict[str, frozenset[str]]:
        return {rule.id: frozenset(rule.detects) for rule in self.rules}


def load_rules(path: Path, known_faults: Sequence[str] = ()) -> RuleSet:
    """Read and check a rule file; raise :class:`RuleFileError` naming every problem's line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RuleFileError(f"{path}: cannot read the rule file: {error}") from error
    return parse_rules(text, str(path), known_faults)


def parse_rules(text: str, source: str = "<rules>", known_faults: Sequence[str] = ()) -> RuleSet:
    """Validate and compile the text of a rule file.

    known_faults: the fault types ``detects`` may name (empty: any name is accepted).
    """
    root, document = read_yaml(text, source, RuleFileError)
    where = YamlLocator(source, root, RuleFileError, label_keys=("id",))
    if document is None:
        raise RuleFileError(f"{source}: the file is empty; it needs a list of rules: under rules:")
    try:
        parsed = _RuleFile.model_validate(document)
    except ValidationError as error:
        raise where.validation_error(error, _explain) from None
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, entry in enumerate(parsed.rules):
        loc: tuple[str | int, ...] = ("rules", index)
        if entry.id in seen:
            raise where.error((*loc, "id"), f"rule id {entry.id!r} is used twice: rename one")
        seen.add(entry.id)
        rule = _compile(entry, loc, where, known_faults)
        if entry.enabled:
            rules.append(rule)
    return RuleSet(tuple(rules), source)


def _compile(
    entry: _RuleEntry,
    loc: tuple[str | int, ...],
    where: YamlLocator,
    known_faults: Sequence[str],
) -> Rule:
    if "en" not in entry.title:
        raise where.error((*loc, "title"), "give at least an English title: title: {en: ...}")
    unknown = sorted(set(entry.title) - set(LANGUAGES))
    if unknown:
        raise where.error(
            (*loc, "title"), f"unknown language {unknown[0]!r}: use {', '.join(LANGUAGES)}"
        )
    if (entry.when is None) == (entry.missing is None):
        raise where.error(
            loc,
            f"rule {entry.id}: give either when: (a condition) or missing: (silence), not "
            f"{'both' if entry.when else 'neither'}",
        )
    if entry.missing is not None and (entry.clear or entry.occurrences or entry.for_):
        raise where.error(
            (*loc, "missing"), "a missing-data rule takes no for:, clear: or occurrences:"
        )
    for fault in entry.detects:
        if known_faults and fault not in known_faults:
            raise where.error(
                (*loc, "detects"),
                f"unknown fault type {fault!r}: use one of {', '.join(sorted(known_faults))}",
            )
    known = names_for(entry.device_class)
    return Rule(
        id=entry.id,
        device_class=entry.device_class,
        titles=dict(entry.title),
        severity=entry.severity,
        scope=entry.scope,
        when=_expression(entry.when, known, (*loc, "when"), where),
        for_=entry.for_,
        clear=_expression(entry.clear, known, (*loc, "clear"), where),
        clear_for=entry.clear_for,
        occurrences=entry.occurrences,
        missing=entry.missing,
        detects=entry.detects,
        fires_within=entry.fires_within,
        description=entry.description,
    )


def _expression(
    text: str | None, known: frozenset[str], loc: tuple[str | int, ...], where: YamlLocator
) -> Expression | None:
    if text is None:
        return None
    try:
        return Expression.parse(text, known)
    except ExpressionError as error:
        raise where.error(loc, f"{error} in {short_repr(text, 60)}") from None


def _explain(problem: ErrorDetails) -> str:
    kind, value = problem["type"], problem.get("input")
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not a valid id: use lower-case letters, digits and inner hyphens"
    if kind == "extra_forbidden":
        return "unknown field: check its spelling (the fields are listed in docs/rules.md)"
    if kind == "enum":
        return f"{problem['msg']}, not {value!r}"
    if kind == "value_error":
        return str(problem.get("ctx", {}).get("error", problem["msg"]))
    if kind == "missing":
        return "missing: this field is required"
    return str(problem["msg"])


def describe(rule: Rule) -> dict[str, Any]:
    """A plain summary of a rule, for listings and JSON."""
    return {
        "id": rule.id,
        "class": rule.device_class.value,
        "title": rule.title,
        "severity": rule.severity.value,
        "when": rule.when.text if rule.when else None,
        "missing_after": rule.missing.after if rule.missing else None,
        "detects": list(rule.detects),
    }
