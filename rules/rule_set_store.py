"""Rule sets in the database: versions of rule files, one active, every change audited.

The same versioned store as the energy strategies (:mod:`storage.versions`), over the tables
``rule_sets``, ``rule_set_events`` and ``active_rule_set``. A rule set's name is given when it
is saved (a rule file does not name itself); its body is checked by the rule file checker
(:func:`rules.model.parse_rules`) before it is stored. The rules engine takes up the active
rule set (:meth:`rules.service.RulesService.follow_active_rule_set`); with none active, the
file given on its command line stays in force.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import psycopg

from rules.model import RuleFileError, RuleSet, parse_rules
from storage.versions import ActiveVersion, Kind, active_version, stored_version

RULE_SET_LOCK: Final = 7_263_007
"""Advisory lock taken by every change of a rule set (strategies take 7263005)."""


def read_rule_set(body: str, source: str, known_faults: Sequence[str] = ()) -> RuleSet:
    """:func:`~rules.model.parse_rules` for text from anyone (the API, the database): a number
    too large for a duration is a mistake in the text too, not a crash."""
    try:
        return parse_rules(body, source, known_faults)
    except ArithmeticError as error:  # timedelta overflows (protocol.durations, rules.model)
        raise RuleFileError(
            f"{source}: a value is too large ({error}): check the durations"
        ) from error


def rule_set_kind(known_faults: Sequence[str] = ()) -> Kind:
    """The rule sets' kind, checking bodies as ``smartcity rules check`` does when given the
    fault types ``detects`` may name (empty: any name; the rules package cannot know them)."""
    faults = tuple(known_faults)

    def check(body: str, name: str) -> RuleSet:
        return read_rule_set(body, f"rule set {name!r}", faults)

    return Kind(
        noun="rule set",
        versions_table="rule_sets",
        events_table="rule_set_events",
        active_table="active_rule_set",
        lock=RULE_SET_LOCK,
        check=check,
    )


RULE_SETS: Final = rule_set_kind()


def source_of(name: str, version: int) -> str:
    """How a stored rule set is named in its rules' ``source`` and in error messages."""
    return f"rule set {name} version {version}"


def active_rule_set(connection: psycopg.Connection) -> tuple[ActiveVersion, str] | None:
    """The rule set in force and its body (YAML), or None when none was ever activated."""
    active = active_version(connection, RULE_SETS)
    if active is None:
        return None
    body, _ = stored_version(connection, RULE_SETS, active.name, active.version)
    return active, body
