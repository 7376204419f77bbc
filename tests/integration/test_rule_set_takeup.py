"""The rules engine takes up the rule set activated in the database, as a SIGHUP reload would:
checked first, refused if bad (the running rules stay), rule states carried over."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest

from rules.rule_set_store import RULE_SETS
from rules.service import RulesConfig
from runtime.local_services import LocalMosquitto
from storage.versions import activate_version, rollback_version, save_version, stored_version
from tests.integration.helpers import provision_test_site, publisher, wait_until
from tests.integration.test_rules_engine import TEST_RULES, dark, running_engine

pytestmark = pytest.mark.integration

LAMP_OUT_ONLY = TEST_RULES.partition("  - id: light-offline")[0]
BROKEN = "rules:\n  - id: x\n    class: streetlight\n    title: {en: X}\n    when: lamp_pwer < 1\n"


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The errors of the rule sets the engine refused, as it logged them."""
    return [
        str(getattr(record, "error", ""))
        for record in caplog.records
        if record.getMessage().startswith("rule file refused")
    ]


@pytest.fixture
def config(database_url: str, broker: LocalMosquitto, tmp_path: Path) -> RulesConfig:
    provision_test_site(database_url)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(TEST_RULES, encoding="utf-8")
    return RulesConfig(
        database_url,
        rules_file,
        mqtt_port=broker.port,
        tick_s=0.2,
        event_time=True,
        rule_set_check_s=0.2,
    )


def test_the_engine_follows_the_active_rule_set_and_refuses_a_bad_one(
    config: RulesConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smartcity.rules")
    with running_engine(config) as engine, publisher(config.mqtt_port) as client:
        assert (engine.rule_set_in_force, len(engine.rules.rules)) == (None, 2)  # the file
        for index in range(5):
            dark(client, "sl-004", index)
        wait_until(
            lambda: (
                ("lamp-out", "sl-004") in engine.evaluator.conditions
                and engine.evaluator.conditions["lamp-out", "sl-004"].phase.value == "firing"
            ),
            20,
            "lamp-out firing under the file's rules",
        )
        with psycopg.connect(config.database_url) as connection:
            save_version(connection, RULE_SETS, "lamps", LAMP_OUT_ONLY, "energy", "quieter")
            activate_version(connection, RULE_SETS, "lamps", 1, "energy", "go live")
        wait_until(lambda: engine.rule_set_in_force == ("lamps", 1), 20, "the rule set taken up")
        assert [rule.id for rule in engine.rules.rules] == ["lamp-out"]
        assert engine.rules.source == "rule set lamps version 1"
        assert engine.evaluator.conditions["lamp-out", "sl-004"].phase.value == "firing", (
            "the states of the rules kept carry over"
        )

        # A version that does not check (stored behind the store's back) is refused.
        kept = engine.rules
        with psycopg.connect(config.database_url) as connection:
            _, first = stored_version(connection, RULE_SETS, "lamps", 1)
            connection.execute(
                "INSERT INTO rule_sets (name, version, body, digest, author, reason)"
                " VALUES ('lamps', 2, %s, 'x', 'someone', 'by hand')",
                (BROKEN,),
            )
            activate_version(connection, RULE_SETS, "lamps", 2, "someone", "oops")
        wait_until(lambda: bool(refusals(caplog)), 20, "the refusal in the log")
        [refusal] = refusals(caplog)
        assert "rule set lamps version 2" in refusal
        assert "did you mean lamp_power" in refusal
        assert engine.rules is kept
        assert engine.rule_set_in_force == (first.name, first.version)

    # Started again while a good version is active, the engine runs it from the start.
    with psycopg.connect(config.database_url) as connection:
        activate_version(connection, RULE_SETS, "lamps", 1, "energy", "back")
    with running_engine(config) as engine:
        assert engine.rule_set_in_force == ("lamps", 1)
        assert [rule.id for rule in engine.rules.rules] == ["lamp-out"]
        # Every activation rolled back: the rule file is in force again, without a restart.
        with psycopg.connect(config.database_url) as connection:
            for _ in range(3):  # lamps 1 ("back"), then 2, then 1 ("go live"): none left
                rollback_version(connection, RULE_SETS, "energy", "undo")
        wait_until(lambda: engine.rule_set_in_force is None, 20, "the rule file back in force")
        assert len(engine.rules.rules) == 2
