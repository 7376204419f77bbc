"""Which rules the engine runs: the rule file, or the rule set activated in the database.

A rule file is reloaded on request (SIGHUP from the CLI); the rule set activated in the
database (``active_rule_set``, :mod:`rules.rule_set_store`) is looked up periodically and taken
up through the same check. Rules that do not check are refused and the running ones stay.
Checked rules wait here until the engine swaps them in between two batches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final

import psycopg

from rules.model import RuleFileError, RuleSet, load_rules
from rules.rule_set_store import RULE_SETS, read_rule_set, source_of
from storage.versions import active_version, stored_version

log = logging.getLogger("smartcity.rules")

RuleSetRef = tuple[str, int]
"""A stored rule set: (name, version)."""
_NOTHING: Final = ("", 0)
"""No rule set queued (a name no rule set has)."""


class RuleSetFollower:
    def __init__(self, rules_path: Path) -> None:
        self.rules_path = rules_path
        self.in_force: RuleSetRef | None = None
        """The stored rule set the running rules came from; None: the rule file."""
        self._refused: RuleSetRef | None = None
        """The last active rule set that did not check: not read again until another is."""
        self._pending: tuple[RuleSet, RuleSetRef | None] | None = None
        self._lock = threading.Lock()
        self.recheck = threading.Event()
        """Set to read the rule set in force again at the next look."""

    def reload(self, path: Path | None = None) -> str:
        """Check a rule file and queue it; the running set stays on error.

        Without ``path`` while a stored rule set is in force, that rule set is read and
        checked again instead (with the device registry) at the next look: the database,
        not the file, says which rules run then."""
        if path is None and self.in_force is not None:
            self.recheck.set()
            name, version = self.in_force
            log.warning(
                "reload: a rule set activated in the database is in force, so it is read again"
                " and the rule file is not (roll the activation back to run the file)",
                extra={"rule_set": source_of(name, version)},
            )
            return f"accepted: {source_of(name, version)} is read again at the next batch"
        return self._check_and_queue(partial(load_rules, path or self.rules_path), None)

    def follow(self, db: psycopg.Connection) -> str | None:
        """Look up the rule set activated in the database; unless it is the one in force (or
        queued, or already refused), check it and queue it as :meth:`reload` does (refused: the
        running rules stay). When the activation is gone, the rule file is back in force.
        None when nothing is to change. Ends ``db``'s transaction.

        Compared with what runs rather than with the last look, so an activation is never lost:
        a failed read is tried again at the next look, and a rule file queued by SIGHUP over a
        queued rule set is followed by the rule set again."""
        forced = self.recheck.is_set()
        self.recheck.clear()
        active = active_version(db, RULE_SETS)
        current = None if active is None else (active.name, active.version)
        with self._lock:
            queued = self._pending[1] if self._pending is not None else _NOTHING
        refused = current is not None and current == self._refused
        if not forced and (refused or current in (self.in_force, queued)):
            db.commit()
            return None
        if current is None:
            db.commit()
            log.info("no rule set active: back to the rule file")
            return self._check_and_queue(partial(load_rules, self.rules_path), None)
        body, _ = stored_version(db, RULE_SETS, *current)
        db.commit()
        outcome = self._check_and_queue(partial(read_rule_set, body, source_of(*current)), current)
        self._refused = current if outcome.startswith("refused") else None
        log.info("active rule set looked up", extra={"rule_set": source_of(*current)})
        return outcome

    def take(self) -> RuleSet | None:
        """The rules queued since the last call, now counted as in force; None if none."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return None
        rules, self.in_force = pending
        return rules

    def _check_and_queue(self, load: Callable[[], RuleSet], origin: RuleSetRef | None) -> str:
        """Check rules (``load`` them) and queue them; say what happened."""
        try:
            rules = load()
        except RuleFileError as error:
            log.warning("rule file refused; the running rules stay", extra={"error": str(error)})
            return f"refused: {error}"
        with self._lock:
            self._pending = rules, origin
        return f"accepted: {len(rules.rules)} rules"
