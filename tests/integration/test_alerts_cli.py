"""``smartcity alerts`` against a real database: people act on alerts, every act recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from alerts import lifecycle, store
from alerts.lifecycle import Scope, Status
from protocol.payloads import Severity
from smartcity.cli import app
from tests.integration.helpers import provision_test_site

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


def invoke(database_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["alerts", *args], env={"DATABASE_URL": database_url, "SMARTCITY_DATABASE_URL": None}
    )
    return result.exit_code, result.output


def fired(database_url: str, subject: str = "sl-001") -> int:
    outcome = lifecycle.fire("lamp-out", subject, Severity.CRITICAL, NOW, NOW)
    with psycopg.connect(database_url) as connection:
        alert, _ = store.insert_alert(connection, outcome, "Lamp out at night")
    assert alert.alert_id is not None
    return alert.alert_id


def test_acknowledge_then_repaired_then_show_the_history(database_url: str) -> None:
    provision_test_site(database_url)
    alert_id = fired(database_url)
    code, output = invoke(database_url, "list")
    assert code == 0
    assert f"#{alert_id}" in output
    assert "Lamp out at night" in output
    code, output = invoke(database_url, "ack", str(alert_id), "--by", "crew-north")
    assert (code, output.strip()) == (0, f"alert #{alert_id} acknowledged: now acknowledged")
    code, output = invoke(
        database_url, "repaired", str(alert_id), "--by", "crew-north", "--note", "driver replaced"
    )
    assert code == 0
    assert "now resolved" in output
    code, output = invoke(database_url, "show", str(alert_id))
    assert code == 0
    assert "firing -> acknowledged by crew-north" in output
    assert "acknowledged -> resolved by crew-north" in output
    assert "driver replaced" in output


def test_acting_on_an_alert_in_the_wrong_state_is_refused(database_url: str) -> None:
    provision_test_site(database_url)
    alert_id = fired(database_url)
    assert invoke(database_url, "close", str(alert_id), "--by", "tech")[0] == 0
    code, output = invoke(database_url, "ack", str(alert_id), "--by", "tech")
    assert code == 1
    assert "only a firing alert" in output
    code, output = invoke(database_url, "show", "999999")
    assert code == 1
    assert "there is no alert 999999" in output


def test_silence_needs_a_target_and_a_duration(database_url: str) -> None:
    code, output = invoke(database_url, "silence", "--by", "tech", "--reason", "r")
    assert code == 1
    assert "say what to silence" in output
    code, output = invoke(
        database_url, "silence", "--device", "sl-001", "--for", "soon", "--by", "t", "--reason", "r"
    )
    assert code == 1
    assert "not a duration" in output
    code, output = invoke(
        database_url,
        "silence",
        "--street-group",
        "menzel",
        "--for",
        "4h",
        "--maintenance",
        "--by",
        "crew-north",
        "--reason",
        "cable work",
    )
    assert code == 0
    assert output.startswith("maintenance window #")
    with psycopg.connect(database_url) as connection:
        [silence] = store.silences_in_force(connection, NOW)
    assert silence.maintenance
    assert silence.matches(
        "lamp-out", Scope("sl-001", street_group="menzel"), NOW + timedelta(hours=1)
    )
    assert not silence.matches("lamp-out", Scope("sl-001", street_group="park"), NOW)


def test_list_filters_by_status(database_url: str) -> None:
    provision_test_site(database_url)
    first, second = fired(database_url, "sl-001"), fired(database_url, "sl-002")
    invoke(database_url, "close", str(first), "--by", "tech")
    code, output = invoke(database_url, "list")
    assert f"#{second}" in output
    assert f"#{first} " not in output
    code, output = invoke(database_url, "list", "--status", "closed", "--json")
    assert code == 0
    assert f'"alert_id": {first}' in output
    assert Status.CLOSED.value in output
    code, output = invoke(database_url, "list", "--status", "gone")
    assert code == 1
    assert "unknown status 'gone'" in output
