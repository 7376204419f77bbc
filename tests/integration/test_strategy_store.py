"""Energy strategies in a real database: versions, activation, rollback and the audit trail."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from control import strategy_store as store
from control.strategy import PACKAGED_STRATEGY, Strategy, StrategyFileError, load_strategy
from smartcity.cli import app
from storage.versions import Action, UnknownVersionError, VersionStoreError, digest_of

pytestmark = pytest.mark.integration

DEFAULT = load_strategy(PACKAGED_STRATEGY)


def variant(comfort: float, name: str = "sefrou-default") -> Strategy:
    """The packaged strategy with another comfort heating setpoint (and perhaps name)."""
    text = DEFAULT.text.replace("heating: 20.5", f"heating: {comfort}")
    text = text.replace("strategy: sefrou-default", f"strategy: {name}")
    assert text != DEFAULT.text or (comfort, name) == (20.5, "sefrou-default")
    return replace(DEFAULT, name=name, text=text)


def invoke(database_url: str | None, *args: str) -> tuple[int, str]:
    env = {"DATABASE_URL": database_url, "SMARTCITY_DATABASE_URL": None}
    result = CliRunner().invoke(app, ["energy", "strategy", *args], env=env)
    return result.exit_code, result.stdout if result.exit_code == 0 else result.stderr


def test_versions_count_per_name_and_an_identical_body_is_not_a_new_version(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as connection:
        assert store.save_strategy(connection, DEFAULT, "energy-manager", "first") == 1
        assert store.save_strategy(connection, variant(21.0), "energy-manager", "warmer") == 2
        assert store.save_strategy(connection, variant(21.0), "someone-else", "again") == 2
        assert store.save_strategy(connection, variant(21.0, "summer"), "em", "new name") == 1
        strategy, meta = store.strategy_version(connection, "sefrou-default")
        assert (meta.version, meta.author, meta.reason) == (2, "energy-manager", "warmer")
        assert strategy.hvac.comfort.heating == 21.0
        assert strategy.text == variant(21.0).text
        first, meta = store.strategy_version(connection, "sefrou-default", 1)
        assert first.text == DEFAULT.text
        assert meta.digest == digest_of(DEFAULT.text)
        summaries = store.list_strategies(connection)
        events = store.history(connection)
    assert [(s.name, s.latest, s.versions, s.active_version) for s in summaries] == [
        ("sefrou-default", 2, 2, None),
        ("summer", 1, 1, None),
    ]
    assert [(e.action, e.name, e.version, e.previous_version) for e in events] == [
        (Action.SAVED, "summer", 1, None),
        (Action.SAVED, "sefrou-default", 2, 1),
        (Action.SAVED, "sefrou-default", 1, None),
    ]  # the identical save recorded nothing


def test_activate_and_rollback_are_recorded_with_who_what_when_why(database_url: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    with psycopg.connect(database_url) as connection:
        for comfort in (20.5, 21.0, 21.5):
            store.save_strategy(connection, variant(comfort), "energy-manager", f"c {comfort}")
        assert store.active_strategy(connection) is None
        assert store.activate(connection, "sefrou-default", 1, "alice", "go live") is None
        assert store.activate(connection, "sefrou-default", 3, "bob", "warmer") == (
            "sefrou-default",
            1,
        )
        assert store.activate(connection, "sefrou-default", 2, "carol", "a bit less") == (
            "sefrou-default",
            3,
        )
        active = store.active_strategy(connection)
        assert active is not None
        assert (active.name, active.version, active.activated_by) == ("sefrou-default", 2, "carol")
        assert active.strategy.hvac.comfort.heating == 21.0
        # Rolling back undoes activations one by one: 2 -> 3 -> 1, then nothing is left.
        assert store.rollback(connection, "dave", "complaints") == (
            ("sefrou-default", 3),
            ("sefrou-default", 2),
        )
        assert store.rollback(connection, "erin", "back to the start") == (
            ("sefrou-default", 1),
            ("sefrou-default", 3),
        )
        # The first activation rolled back: none is active, the packaged strategy is in force.
        assert store.rollback(connection, "frank", "the packaged one") == (
            None,
            ("sefrou-default", 1),
        )
        assert store.active_strategy(connection) is None
        assert store.strategy_in_force(connection)[1].endswith("(packaged default: none activated)")
        with pytest.raises(VersionStoreError, match="no strategy is active"):
            store.rollback(connection, "erin", "once more")
        events = store.history(connection)
        [summary] = store.list_strategies(connection)
    assert summary.active_version is None
    trail = [
        (e.actor, e.action.value, e.version, e.previous_version, e.reason)
        for e in events
        if e.action != Action.SAVED
    ]
    assert trail == [
        ("frank", "rolled_back", None, 1, "the packaged one"),
        ("erin", "rolled_back", 1, 3, "back to the start"),
        ("dave", "rolled_back", 3, 2, "complaints"),
        ("carol", "activated", 2, 3, "a bit less"),
        ("bob", "activated", 3, 1, "warmer"),
        ("alice", "activated", 1, None, "go live"),
    ]
    now = datetime.now(UTC)
    assert all(before <= e.at <= now for e in events)
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)


def test_bad_changes_are_refused_and_leave_no_trace(database_url: str) -> None:
    with psycopg.connect(database_url) as connection:
        with pytest.raises(VersionStoreError, match="nothing to roll back: no strategy is"):
            store.rollback(connection, "alice", "why not")
        store.save_strategy(connection, DEFAULT, "energy-manager", "first")
        with pytest.raises(UnknownVersionError, match=r"has no version 7 \(versions 1 to 1\)"):
            store.activate(connection, "sefrou-default", 7, "alice", "typo")
        with pytest.raises(UnknownVersionError, match=r"no strategy named 'winter'.*sefrou"):
            store.activate(connection, "winter", 1, "alice", "typo")
        with pytest.raises(UnknownVersionError, match="no strategy named 'winter'"):
            store.strategy_version(connection, "winter")
        for author, reason in (("", "r"), ("  ", "r"), ("alice", ""), ("alice", " ")):
            with pytest.raises(VersionStoreError, match="is required and must not be empty"):
                store.save_strategy(connection, variant(21.0), author, reason)
            with pytest.raises(VersionStoreError, match="is required and must not be empty"):
                store.activate(connection, "sefrou-default", 1, author, reason)
        bad = replace(DEFAULT, text=DEFAULT.text.replace("heating: 20.5", "heating: 50"))
        with pytest.raises(StrategyFileError, match=r"hvac\.comfort\.heating.*\(line 10\)"):
            store.save_strategy(connection, bad, "alice", "too hot")
        store.activate(connection, "sefrou-default", 1, "alice", "go live")
        with pytest.raises(VersionStoreError, match="version 1 is already active"):
            store.activate(connection, "sefrou-default", 1, "bob", "again")
        events = store.history(connection)
        assert [(e.action, e.actor) for e in events] == [
            (Action.ACTIVATED, "alice"),
            (Action.SAVED, "energy-manager"),
        ]
        [summary] = store.list_strategies(connection)
        assert summary.latest == 1


def test_commands_table_keeps_what_was_sent_and_its_outcome(database_url: str) -> None:
    now = datetime.now(UTC)
    insert = (
        "INSERT INTO commands (id, device_id, action, params, source, issued_at, expires_at,"
        " last_sent_at, outcome) VALUES (%s, 'hvac-th-1', 'set_mode', '{\"mode\": \"comfort\"}',"
        " 'hvac-control', %s, %s, %s, %s)"
    )
    with psycopg.connect(database_url) as connection:
        connection.execute(insert, ("c1", now, now + timedelta(minutes=30), now, None))
        row = connection.execute(
            "SELECT attempts, reason, outcome_reason, outcome, params FROM commands"
        ).fetchone()
        assert row == (1, "", "", None, {"mode": "comfort"})
        with pytest.raises(psycopg.errors.CheckViolation):
            connection.execute(insert, ("c2", now, now, now, "lost"))


def test_cli_save_list_show_activate_rollback_history(database_url: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(DEFAULT.text, encoding="utf-8")
    second.write_text(variant(21.0).text, encoding="utf-8")
    who = ["--author", "energy-manager"]
    assert invoke(database_url, "list") == (
        0,
        "no strategies saved yet (smartcity energy strategy save FILE ...)\n",
    )
    assert invoke(database_url, "save", str(first), *who, "--reason", "initial") == (
        0,
        "saved sefrou-default version 1\n",
    )
    assert invoke(database_url, "save", str(first), *who, "--reason", "again") == (
        0,
        "unchanged: sefrou-default version 1\n",
    )
    code, output = invoke(database_url, "save", str(second), *who, "--reason", "warmer", "--json")
    assert (code, json.loads(output)) == (
        0,
        {"name": "sefrou-default", "version": 2, "created": True},
    )
    assert invoke(database_url, "show", "sefrou-default", "--version", "1") == (0, DEFAULT.text)
    code, output = invoke(database_url, "show", "sefrou-default", "--json")
    shown = json.loads(output)
    assert (shown["version"], shown["author"], shown["body"]) == (
        2,
        "energy-manager",
        variant(21.0).text,
    )
    for version, reason in (("1", "go live"), ("2", "winter")):
        code, output = invoke(
            database_url, "activate", "sefrou-default", "--version", version, *who,
            "--reason", reason,
        )  # fmt: skip
        assert code == 0, output
    assert output == "activated sefrou-default version 2 (was sefrou-default version 1)\n"
    code, output = invoke(database_url, "list")
    assert code == 0
    assert "sefrou-default" in output
    assert "latest version 2" in output
    assert "* active: version 2" in output
    code, output = invoke(database_url, "rollback", "--author", "mayor", "--reason", "too warm")
    assert (code, output) == (
        0,
        "rolled back to sefrou-default version 1 (was sefrou-default version 2)\n",
    )
    code, output = invoke(database_url, "history", "sefrou-default")
    assert code == 0
    lines = output.splitlines()
    assert len(lines) == 5
    assert "rolled back" in lines[0]
    assert "mayor" in lines[0]
    assert "(was sefrou-default version 2): too warm" in lines[0]
    shown_at = datetime.strptime(lines[0][:20], "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(0) <= datetime.now(UTC) - shown_at < timedelta(minutes=1)
    assert "saved" in lines[-1]
    code, output = invoke(database_url, "history", "--json", "--limit", "2")
    events = [json.loads(line) for line in output.splitlines()]
    assert [(e["action"], e["actor"], e["version"], e["reason"]) for e in events] == [
        ("rolled_back", "mayor", 1, "too warm"),
        ("activated", "energy-manager", 2, "winter"),
    ]
    assert events[0]["at"].endswith("+00:00")


def test_cli_bad_input_is_a_clear_error_with_code_2(database_url: str, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(DEFAULT.text, encoding="utf-8")
    bad.write_text(DEFAULT.text.replace("  min_on: 5m", "  min_on: 5m\n  min_onn: 5m"), "utf-8")
    code, output = invoke(database_url, "save", str(good), "--reason", "no author")
    assert code == 2
    assert "--author" in output
    code, output = invoke(database_url, "save", str(good), "--author", "alice", "--reason", " ")
    assert code == 2
    assert output.strip().splitlines()[-1] == "error: a reason is required and must not be empty"
    for args in (("check", str(bad)), ("save", str(bad), "--author", "a", "--reason", "r")):
        code, output = invoke(database_url, *args)
        assert code == 2
        assert f"{bad}: hvac.min_onn: unknown field" in output
        assert "(line 17)" in output
    code, output = invoke(database_url, "check", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "cannot read the strategy file" in output
    code, output = invoke(database_url, "show", "winter")
    assert (code, output.strip()) == (
        2,
        "error: there is no strategy named 'winter' (none is stored yet)",
    )
    code, output = invoke(
        database_url, "activate", "winter", "--version", "1", "--author", "a", "--reason", "r"
    )
    assert code == 2
    assert "no strategy named 'winter'" in output
    code, output = invoke(database_url, "rollback", "--author", "a", "--reason", "r")
    assert (code, output.strip()) == (
        2,
        "error: nothing to roll back: no strategy is active (the packaged one is in force)",
    )
    code, output = invoke(database_url, "history")
    assert (code, output) == (0, "no strategy changes recorded\n")


def test_cli_without_a_usable_database_says_so(empty_database_url: str) -> None:
    code, output = invoke(empty_database_url, "list")
    assert code == 2
    assert "run smartcity db migrate" in output
    code, output = invoke(None, "list")
    assert code == 2
    assert "no database: set DATABASE_URL" in output
    missing = empty_database_url.rpartition("/")[0] + f"/gone_{uuid.uuid4().hex[:8]}"
    code, output = invoke(missing, "history")
    assert code == 2
    assert "cannot reach the database" in output
