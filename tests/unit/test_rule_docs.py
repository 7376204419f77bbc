"""docs/faults.md and docs/rules.md say what rules/default_rules.yaml and the rules package do.

The default rules' numbers get tuned: these tests read the rule file and the documents, so
that a threshold, a duration or a severity cannot change without the page the field crews
read, and a rule cannot be added, renamed or disabled without its section (a disabled rule,
which the platform does not load, is only noted as such).
"""

from __future__ import annotations

import ast
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from protocol.catalogue import CATALOGUE, ValueKind
from protocol.durations import spoken
from protocol.faults import FaultType
from protocol.topics import IDENTIFIER_PATTERN, DeviceClass
from rules import PACKAGED_RULES
from rules.bounds import BEGIN as BOUNDS_BEGIN
from rules.bounds import END as BOUNDS_END
from rules.bounds import bounds_table
from rules.core import Change, ConditionState, intervals, step
from rules.expressions import Expression
from rules.model import Missing, Occurrences, Rule, Scope, _RuleEntry, load_rules, parse_rules
from rules.names import names_for
from smartcity.cli import app

ROOT = Path(__file__).parents[2]
RULE_FILE = PACKAGED_RULES
FAULTS_DOC = (ROOT / "docs" / "faults.md").read_text(encoding="utf-8")
RULES_DOC = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
RULES = load_rules(RULE_FILE, known_faults=list(FaultType))
_FILE_ENTRIES: list[dict[str, Any]] = yaml.safe_load(RULE_FILE.read_text(encoding="utf-8"))["rules"]
RAW_ENTRIES: dict[str, dict[str, Any]] = {
    entry["id"]: entry for entry in _FILE_ENTRIES if entry.get("enabled", True)
}
"""The enabled rules as written in the file: the ones ``load_rules`` loads."""
DISABLED_IDS = [entry["id"] for entry in _FILE_ENTRIES if not entry.get("enabled", True)]
"""Rules kept in the file with ``enabled: false``: no alert, so no section in docs/faults.md."""
CONDITION_FIELDS = ("when", "for", "clear", "clear_for", "occurrences", "missing")
"""The fields of a rule each section of docs/faults.md quotes as they are in the file."""


spoken_duration = spoken


def _section(document: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    marker = f"\n{heading}\n"
    assert marker in document, f"no section {heading!r}"
    start = document.index(marker)
    ends = [
        document.find(f"\n{'#' * depth} ", start + len(marker))
        for depth in range(1, len(level) + 1)
    ]
    return document[start : min((end for end in ends if end != -1), default=len(document))]


def _paragraph(section: str, lead: str) -> str:
    """The paragraph of ``section`` that starts with ``lead``, as one line."""
    found = [part for part in section.split("\n\n") if part.startswith(lead)]
    assert len(found) == 1, f"expected one paragraph starting {lead!r}, found {len(found)}"
    return " ".join(found[0].split())


def _row(document: str, prefix: str) -> list[str]:
    """The cells of the one table row of ``document`` that starts with ``prefix``."""
    rows = [line for line in document.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"expected one row starting {prefix!r}, found {len(rows)}"
    return [cell.strip() for cell in rows[0].strip().strip("|").split("|")]


def _normal(value: object) -> object:
    """YAML data with every run of white space in its strings as one space."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items()}
    return value


def _numbers(expression: Expression) -> set[float]:
    """The size of every number written in an expression (``-4`` gives 4)."""
    tree = ast.parse(" ".join(expression.text.split()), mode="eval")
    return {
        abs(float(node.value))
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float)
    }


def _written_numbers(text: str) -> tuple[set[float], set[float]]:
    """The numbers written in ``text``, and those of them written as percentages."""
    plain: set[float] = set()
    percent: set[float] = set()
    for digits, sign in re.findall(r"(?<![\w.])(\d+(?:\.\d+)?)(\s*%)?", text):
        plain.add(round(float(digits), 6))
        if sign:
            percent.add(round(float(digits), 6))
    return plain, percent


def _rule_ids() -> list[str]:
    return [rule.id for rule in RULES.rules]


def _rule(rule_id: str) -> Rule:
    return RULES.by_id(rule_id)


# ----------------------------------------------------------------------------- docs/faults.md


def test_the_default_rules_are_all_documented_and_nothing_else() -> None:
    headings = re.findall(r"^## (\S+)$", FAULTS_DOC, flags=re.MULTILINE)
    documented = [h for h in headings if IDENTIFIER_PATTERN.fullmatch(h)]
    assert sorted(documented) == sorted(_rule_ids()), "docs/faults.md: a section per rule id"


@pytest.mark.parametrize("rule_id", _rule_ids())
def test_each_section_states_severity_bound_titles_and_faults(rule_id: str) -> None:
    rule = _rule(rule_id)
    section = _section(FAULTS_DOC, f"## {rule.id}")
    assert f"**Severity:** {rule.severity}\n" in section, f"{rule.id}: severity {rule.severity}"
    assert rule.fires_within is not None, f"{rule.id}: the default rules document fires_within"
    bound = spoken_duration(rule.fires_within)
    assert f"**Fires within:** {bound}\n" in section, f"{rule.id}: fires within {bound}"
    for language in ("en", "fr", "ar"):
        assert language in rule.titles, f"{rule.id}: a default rule has a title in {language}"
        assert rule.titles[language] in section, f"{rule.id}: the {language} title"
    for fault in rule.detects:
        assert f"`{fault}`" in section, f"{rule.id}: which simulated faults it detects"
    for part in ("### En français", "### بالعربية", '<div dir="rtl" lang="ar">'):
        assert part in section, f"{rule.id}: {part}"
    assert "**What to check on site.**" in section
    assert "**À vérifier sur place.**" in section


@pytest.mark.parametrize("rule_id", _rule_ids())
def test_each_section_quotes_the_rule_as_it_is_in_the_file(rule_id: str) -> None:
    section = _section(FAULTS_DOC, f"## {rule_id}")
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, f"{rule_id}: one yaml block with the rule's condition"
    entry = RAW_ENTRIES[rule_id]
    quoted = {key: entry[key] for key in CONDITION_FIELDS if key in entry}
    assert _normal(yaml.safe_load(blocks[0])) == _normal(quoted), (
        f"docs/faults.md, {rule_id}: the rule changed in rules/default_rules.yaml; "
        "update the quoted rule and the condition in plain words"
    )


@pytest.mark.parametrize("rule_id", _rule_ids())
def test_each_condition_in_plain_words_has_the_files_numbers(rule_id: str) -> None:
    rule = _rule(rule_id)
    text = _paragraph(_section(FAULTS_DOC, f"## {rule.id}"), "**Condition.**")
    plain, percent = _written_numbers(text)
    expressions = [part for part in (rule.when, rule.clear) if part is not None]
    for number in set().union(*(_numbers(part) for part in expressions)):
        assert round(number, 6) in plain or round(number * 100, 6) in percent, (
            f"{rule.id}: {number:g} (or {number * 100:g} %) is not in the plain words: {text}"
        )
    spans = [rule.for_, rule.clear_for]
    if rule.occurrences is not None:
        spans.append(rule.occurrences.within)
        assert rule.occurrences.count in plain, f"{rule.id}: the occurrences count"
    if rule.missing is not None:
        spans.append(timedelta(seconds=rule.silence_s))
        assert round(rule.missing.after, 6) in plain, f"{rule.id}: missing after"
    for span in spans:
        if span:
            assert spoken_duration(span) in text, f"{rule.id}: {spoken_duration(span)}"


def test_the_summary_table_lists_every_rule() -> None:
    table = _section(FAULTS_DOC, "## The alerts at a glance")
    for rule in RULES.rules:
        assert rule.fires_within is not None
        cells = _row(table, f"| [{rule.id}](#{rule.id}) |")
        assert cells[1:] == [
            rule.device_class.value,
            rule.severity.value,
            rule.titles["en"],
            rule.titles["fr"],
            rule.titles["ar"],
            spoken_duration(rule.fires_within),
        ], f"docs/faults.md, the table's row of {rule.id}"


def test_the_rule_set_is_the_enabled_rules_of_the_file() -> None:
    assert sorted(RAW_ENTRIES) == sorted(_rule_ids())


def test_a_disabled_rule_is_only_noted_as_disabled() -> None:
    """Its alert is never sent: the crews' page names it once, in "Disabled rules", and
    nowhere else (no section, no row, no "see will-go-dark" pointing at an alert that never
    comes). (The default rules have none at present.)"""
    for rule_id in DISABLED_IDS:
        section = _section(FAULTS_DOC, "## Disabled rules")
        assert f"**{rule_id}**" in section, f"Disabled rules: say why {rule_id} is off"
        elsewhere = FAULTS_DOC.replace(section, "")
        mention = re.search(rf"(?<![\w-]){re.escape(rule_id)}(?![\w-])", elsewhere)
        assert mention is None, f"docs/faults.md refers to the disabled rule {rule_id}"


def test_the_disabled_rules_section_names_only_disabled_rules() -> None:
    if "\n## Disabled rules\n" not in FAULTS_DOC:
        assert not DISABLED_IDS, "docs/faults.md: a section Disabled rules"
        return
    section = _section(FAULTS_DOC, "## Disabled rules")
    named = re.findall(r"^- \*\*([a-z0-9-]+)\*\*", section, flags=re.MULTILINE)
    assert sorted(named) == sorted(DISABLED_IDS), "docs/faults.md, Disabled rules"


def test_the_fault_types_no_rule_detects_are_named() -> None:
    covered = {fault for rule in RULES.rules for fault in rule.detects}
    uncovered = sorted({fault.value for fault in FaultType} - covered)
    section = _section(FAULTS_DOC, "## Faults no rule detects")
    for name in uncovered:
        assert f"`{name}`" in section, f"{name}: no default rule detects it; say so"
    for name in covered:
        assert f"`{name}`" not in section, f"{name} is detected now: update the section"


def test_the_durations_are_spoken_as_documented() -> None:
    assert spoken_duration(timedelta(seconds=45)) == "45 s"
    assert spoken_duration(timedelta(minutes=20)) == "20 min"
    assert spoken_duration(timedelta(minutes=90)) == "90 min"
    assert spoken_duration(timedelta(hours=7)) == "7 h"
    assert spoken_duration(timedelta(days=1)) == "1 day"
    assert spoken_duration(timedelta(days=4)) == "4 days"


# ----------------------------------------------------------------------------- docs/rules.md


def _field_names(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def test_every_field_of_a_rule_is_documented() -> None:
    fields = _section(RULES_DOC, "## Fields of a rule")
    for name in _field_names(_RuleEntry):
        _row(fields, f"| `{name}` |")
    for parent, model in (("scope", Scope), ("occurrences", Occurrences), ("missing", Missing)):
        for name in _field_names(model):
            _row(fields, f"| `{parent}.{name}` |")


def _derived(device_class: DeviceClass) -> set[str]:
    """The names a rule reads that are neither a metric nor a metric's prev/delta/rate."""
    metrics = set(CATALOGUE[device_class].metrics)
    changes = {f"{prefix}_{m}" for m in metrics for prefix in ("prev", "delta", "rate")}
    return set(names_for(device_class)) - metrics - changes


@pytest.mark.parametrize("device_class", list(DeviceClass))
def test_every_name_a_rule_reads_is_documented(device_class: DeviceClass) -> None:
    for name in sorted(_derived(device_class)):
        assert f"`{name}`" in RULES_DOC, f"docs/rules.md does not explain {name}"
    names = _section(RULES_DOC, f"### Names of `{device_class}` rules")
    for metric in CATALOGUE[device_class].metrics.values():
        unit = "true = 1, false = 0" if metric.kind is ValueKind.FLAG else metric.unit or "-"
        _row(names, f"| `{metric.name}` | {unit} |")


def test_the_functions_of_the_expression_language_are_documented() -> None:
    language = _section(RULES_DOC, "## Conditions: the expression language")
    for call in ("abs(x)", "min(a, b)", "max(a, b)", "bit(word, n)", "true", "false"):
        assert f"`{call}`" in language, call


def test_the_example_rule_files_of_the_docs_load() -> None:
    blocks = re.findall(r"```yaml\n(rules:.*?)```", RULES_DOC, flags=re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        assert parse_rules(block, "docs/rules.md", list(FaultType)).rules


def _worked_example() -> tuple[Rule, list[float], dict[str, np.ndarray], dict[str, str]]:
    """The worked example of docs/rules.md: its rule, and its table of readings."""
    section = _section(RULES_DOC, "### A worked example")
    blocks = re.findall(r"```yaml\n(rules:.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    rule = parse_rules(blocks[0], "docs/rules.md").rules[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d\d:\d\d \|", line)]
    assert len(rows) >= 8
    day = datetime(2026, 1, 12, tzinfo=UTC)
    times: list[float] = []
    lamp_on: list[float] = []
    lamp_power: list[float] = []
    outcomes: dict[str, str] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        hour, minute = map(int, cells[0].split(":"))
        times.append((day + timedelta(hours=hour, minutes=minute)).timestamp())
        lamp_on.append({"true": 1.0, "false": 0.0}.get(cells[1], math.nan))
        lamp_power.append(float(cells[2]) if cells[2] != "-" else math.nan)
        for change in Change:
            if f"**{change}**" in cells[-1]:
                outcomes[cells[0]] = change.value
    env = {"lamp_on": np.array(lamp_on), "lamp_power": np.array(lamp_power)}
    return rule, times, env, outcomes


def test_the_worked_example_is_what_the_engine_does() -> None:
    rule, times, env, outcomes = _worked_example()
    unix = np.array(times)
    hhmm = [datetime.fromtimestamp(t, UTC).strftime("%H:%M") for t in times]
    streamed: dict[str, str] = {}
    state = ConditionState()
    for index, moment in enumerate(times):
        reading = {name: values[index : index + 1] for name, values in env.items()}
        state, change = step(rule, state, moment, reading)
        if change is not None:
            streamed[hhmm[index]] = change.value
    assert streamed == outcomes, "docs/rules.md, the worked example's last column"
    batch: dict[str, str] = {}
    for interval in intervals(rule, unix, env):
        batch[hhmm[interval.fired]] = Change.FIRED.value
        if interval.resolved is not None:
            batch[hhmm[interval.resolved]] = Change.RESOLVED.value
    assert batch == outcomes


@pytest.mark.parametrize("command", ["check", "backtest", "score", "run"])
def test_the_documented_options_of_the_rules_commands_exist(command: str) -> None:
    result = CliRunner().invoke(app, ["rules", command, "--help"])
    assert result.exit_code == 0, result.output
    section = _section(RULES_DOC, f"### `smartcity rules {command}`")
    for option in set(re.findall(r"`(--[a-z][a-z-]*)", section)):
        assert re.search(rf"{re.escape(option)}(?![a-z-])", result.output), option


def test_the_bounds_table_is_the_rules_own() -> None:
    """docs/faults.md's table of bounds by fault type is what `smartcity rules bounds` writes
    from the rule file, so a bound cannot change without the page."""
    result = CliRunner().invoke(app, ["rules", "bounds", "--rules", str(RULE_FILE)])
    assert result.exit_code == 0, result.output
    table = result.stdout.strip()
    assert table == bounds_table(RULES)
    begin, end = FAULTS_DOC.index(BOUNDS_BEGIN), FAULTS_DOC.index(BOUNDS_END) + len(BOUNDS_END)
    assert FAULTS_DOC[begin:end] == table, (
        "docs/faults.md's bounds table differs from the rules: paste "
        "`smartcity rules bounds` between its markers"
    )
    for fault in FaultType:
        assert f"| `{fault.value}` |" in table, fault
    lamp_out = RULES.by_id("lamp-out")
    assert lamp_out.fires_within is not None
    assert (
        "| `lamp_failure` | the first reading with `dimming_level >= 1 and not "
        "status_low_voltage_disconnect` | [lamp-out](#lamp-out) "
        f"| {spoken(lamp_out.fires_within)} | showing for {spoken(lamp_out.for_)} |"
    ) in table
