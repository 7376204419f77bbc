"""`smartcity rules run`: killed with SIGKILL mid-incident, it restarts losing and doubling
nothing, its pending timers carrying on; a bad rule file or schema stops it before it starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from alerts import store
from alerts.lifecycle import Status
from runtime.local_services import LocalMosquitto
from smartcity.cli import app
from tests.integration.helpers import provision_test_site, publisher, wait_until
from tests.integration.test_rules_engine import (
    FIVE_MINUTES,
    NIGHT,
    TEST_RULES,
    dark,
    light_values,
    publish_reading,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ENGINE = (sys.executable, "-m", "smartcity.cli", "rules", "run", "--event-time")


@contextmanager
def engine_process(
    database_url: str, port: int, log: Path, rules: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SMARTCITY_MQTT_PORT": str(port),
        "SMARTCITY_DATABASE_URL": database_url,
    }
    with log.open("ab") as output:
        process = subprocess.Popen(
            [*ENGINE, "--rules", str(rules)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def transitions(database_url: str) -> dict[str, list[tuple[Status | None, Status]]]:
    with psycopg.connect(database_url) as connection:
        found = store.alerts(connection, ["firing", "acknowledged", "resolved", "closed"])
        return {
            f"{alert.rule_id}@{alert.subject}": [
                (t.from_status, t.to_status)
                for t in store.transitions_of(connection, alert.alert_id or 0)
            ]
            for alert, _ in found
        }


def subscribed(log: Path) -> bool:
    return log.exists() and b"rule states restored" in log.read_bytes()


def test_sigkill_mid_incident_loses_and_doubles_nothing(
    database_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    provision_test_site(database_url)
    log = tmp_path / "rules.log"
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES, encoding="utf-8")
    with publisher(broker.port) as client:
        with engine_process(database_url, broker.port, log, rules) as first:
            wait_until(lambda: subscribed(log), 30, "the engine to start")
            time.sleep(1.0)  # its MQTT session is made
            for index in range(5):  # sl-001 fires; sl-002 is ten minutes into pending
                dark(client, "sl-001", index)
            for index in range(3):
                dark(client, "sl-002", index)
            wait_until(lambda: "lamp-out@sl-001" in transitions(database_url), 30, "sl-001 fires")
            time.sleep(1.0)  # sl-002's readings applied and acknowledged too
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        # While the engine is down, the devices go on; the broker keeps their readings.
        for index in range(3, 6):
            dark(client, "sl-002", index)
        publish_reading(client, "sl-001", 5, NIGHT + 5 * FIVE_MINUTES, light_values(55.0))
        with engine_process(database_url, broker.port, log, rules):
            wait_until(
                lambda: (
                    transitions(database_url).get("lamp-out@sl-001", [])[-1:]
                    == [(Status.FIRING, Status.RESOLVED)]
                ),
                30,
                "sl-001 resolved from the kept readings",
            )
            wait_until(lambda: "lamp-out@sl-002" in transitions(database_url), 30, "sl-002")
    history = transitions(database_url)
    assert history == {
        "lamp-out@sl-001": [(None, Status.FIRING), (Status.FIRING, Status.RESOLVED)],
        "lamp-out@sl-002": [(None, Status.FIRING)],
    }
    with psycopg.connect(database_url) as connection:
        (sl_002,) = [a for a, _ in store.alerts(connection) if a.subject == "sl-002"]
    assert sl_002.started_at == NIGHT, "the pending timer survived the kill"


def test_run_refuses_a_bad_rule_file_before_starting(database_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - {id: x, class: lamp, title: {en: X}, when: tilt > 1}\n")
    result = CliRunner().invoke(
        app,
        ["rules", "run", "--rules", str(broken)],
        env={"DATABASE_URL": database_url, "SMARTCITY_DATABASE_URL": None},
    )
    assert result.exit_code == 2
    assert "broken.yaml: rules[0] (x).class" in result.output
    assert "(line 2)" in result.output


def test_run_refuses_an_unmigrated_database(empty_database_url: str) -> None:
    result = CliRunner().invoke(
        app,
        ["rules", "run"],
        env={"DATABASE_URL": empty_database_url, "SMARTCITY_DATABASE_URL": None},
    )
    assert result.exit_code == 2
    assert "run smartcity db migrate" in result.output
