"""The command line against a real database: clear errors for bad input, exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from protocol.sites import load_site
from smartcity.cli import app
from storage.revision import head_revision
from tests.integration.helpers import scalar

pytestmark = pytest.mark.integration
SEFROU = Path(__file__).parents[2] / "sites" / "sefrou.yaml"


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    base: dict[str, str | None] = {"DATABASE_URL": None, "SMARTCITY_DATABASE_URL": None}
    result = CliRunner().invoke(app, list(args), env={**base, **(env or {})})
    return result.exit_code, result.output


def test_migrate_then_provision_the_sefrou_site(empty_database_url: str) -> None:
    env = {"DATABASE_URL": empty_database_url}
    code, output = invoke("db", "migrate", env=env)
    assert code == 0
    progress, result = output.strip().splitlines()
    assert progress == f"... migrating the schema from an empty database to {head_revision()}"
    assert result in {
        f"schema at revision {head_revision()} (plain PostgreSQL)",
        f"schema at revision {head_revision()} (TimescaleDB)",  # where the server has it
    }
    code, output = invoke("db", "migrate", env=env)
    assert (code, output.strip()) == (0, result), "at the head already: nothing to say but that"
    code, output = invoke("provision", str(SEFROU), env=env)
    devices = len(load_site(SEFROU).devices)
    assert (code, output.strip()) == (0, f"site sefrou: {devices} devices provisioned")
    code, _ = invoke("provision", str(SEFROU), env=env)
    assert code == 0, "provisioning again updates, it does not fail"
    assert scalar(empty_database_url, "SELECT count(*) FROM devices") == devices
    code, output = invoke("db", "maintain", env=env)
    assert code == 0
    assert json.loads(output)["backend"] in {"postgresql", "timescaledb"}


def test_no_database_url_is_a_clear_error() -> None:
    code, output = invoke("db", "migrate")
    assert code == 2
    assert "no database: set DATABASE_URL" in output


def test_a_database_url_of_another_kind_is_refused() -> None:
    code, output = invoke("db", "migrate", env={"DATABASE_URL": "mysql://root@localhost/x"})
    assert code == 2
    assert "must start with postgresql://" in output


def test_check_rollups_counts_rows_that_differ_and_refuses_a_bad_date(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    code, output = invoke("db", "check-rollups", "--from", "last week", env=env)
    assert code == 2
    assert "--from 'last week' is not an ISO date or time" in output
    code, output = invoke("db", "check-rollups", env=env)
    assert (code, output.strip().splitlines()[-1]) == (0, "0 differences in all")
    assert invoke("db", "maintain", env=env)[0] == 0  # on plain PostgreSQL: today's partition
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO telemetry_signage (ts, device_id, power) VALUES (now(), 'sg-1', 40)"
        )
    assert invoke("db", "maintain", env=env)[0] == 0
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO telemetry_signage (ts, device_id, power)"
            " VALUES (now() - INTERVAL '2 hours', 'sg-1', 41)"
        )
    code, output = invoke("db", "check-rollups", env=env)
    assert code == 1, "a late sample not yet rolled up is a difference"
    assert "signage      hourly  1 rows differ" in output


def test_a_bad_site_file_is_reported_with_its_problem(database_url: str, tmp_path: Path) -> None:
    site = tmp_path / "bad.yaml"
    site.write_text("site: {id: Sefrou, name: S, timezone: UTC, latitude: 1, longitude: 1}\n")
    code, output = invoke("provision", str(site), env={"DATABASE_URL": database_url})
    assert code == 2
    assert f"{site}: site.id:" in output
    assert scalar(database_url, "SELECT count(*) FROM devices") == 0


def test_ingest_refuses_a_database_without_the_schema(empty_database_url: str) -> None:
    code, output = invoke(
        "ingest", env={"DATABASE_URL": empty_database_url, "SMARTCITY_INGEST_METRICS_PORT": "0"}
    )
    assert code == 2
    assert "run smartcity db migrate" in output


def test_every_command_has_help_with_an_example() -> None:
    for command in (
        ["up"],
        ["broker"],
        ["ingest"],
        ["provision"],
        ["simulate"],
        ["agent"],
        ["db", "migrate"],
        ["db", "maintain"],
        ["bench", "ingest"],
        ["bench", "decode"],
    ):
        code, output = invoke(*command, "--help")
        assert code == 0, command
        assert "Example:" in output, command


def test_a_bad_setting_is_named_not_a_traceback() -> None:
    code, output = invoke("broker", "--help")
    assert code == 0
    code, output = invoke("simulate", env={"SMARTCITY_MQTT_PORT": "eighteen"})
    assert code == 2
    assert "invalid setting: SMARTCITY_MQTT_PORT" in output
    assert "'eighteen'" in output


def test_a_site_can_be_named_instead_of_given_as_a_path() -> None:
    from smartcity.cli_support import site_path

    assert site_path(Path("sefrou")).read_text().startswith("# Sefrou")
    assert site_path(Path("sites/sefrou.yaml")) == Path("sites/sefrou.yaml")
    code, output = invoke(
        "history",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-02",
        "--site",
        "atlantis",
        env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
    )
    assert code == 2
    assert "atlantis.yaml: cannot read the site file" in output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["history", "--from", "yesterday", "--to", "2026-01-02"],
            "--from 'yesterday' is not an ISO date",
        ),
        (["history", "--from", "2026-01-02", "--to", "2026-01-01"], "--to must be after --from"),
        (
            [
                "history",
                "--from",
                "2026-12-01",
                "--to",
                "2026-12-08",
                "--cloudy-from",
                "2027-01-01",
            ],
            "the overcast run 2027-01-01 to 2027-01-05 is not within the period",
        ),
        (
            ["history", "--from", "2026-12-01", "--to", "2026-12-08", "--lighting", "x"],
            "--lighting",
        ),
        (["simulate", "--start", "noon"], "--start 'noon' is not an ISO date"),
        (["simulate", "--faults", "nowhere.yaml"], "cannot read the fault file"),
        (["simulate", "--speed", "0"], "speed must be positive"),
    ],
)
def test_bad_simulation_flags_are_named_not_a_traceback(
    arguments: list[str], message: str, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "SMARTCITY_STATE_DIR": str(tmp_path),
        "SMARTCITY_MQTT_PORT": "1",
    }
    code, output = invoke(*arguments, env=env)
    assert code == 2, output
    assert message in output


@pytest.mark.parametrize(
    ("flag", "content", "message"),
    [
        (
            "--rules",
            "rules:\n  - {id: x, class: streetlight, title: {en: X}, when: tilt >}\n",
            "rules[0] (x).when",
        ),
        ("--notifications", "link_base: ftp://x\nroutes: []\n", "link_base"),
    ],
)
def test_up_refuses_a_bad_rule_or_routing_file_before_starting_anything(
    flag: str, content: str, message: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content, encoding="utf-8")
    state = tmp_path / "state"
    code, output = invoke(
        "up",
        flag,
        str(bad),
        env={
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "SMARTCITY_STATE_DIR": str(state),
        },
    )
    assert code == 2
    assert message in output
    assert "(line " in output
    assert not state.exists(), "nothing started: no broker, no database"


def test_users_bad_input_is_a_clear_error_with_code_2(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    code, output = invoke("users", "add", "Bad Name", "--role", "crew", env=env)
    assert code == 2
    assert "use a-z, 0-9" in output
    code, output = invoke(
        "users", "add", "crew-east", "--role", "crew", "--language", "de", env=env
    )
    assert code == 2
    assert "give en, fr or ar" in output
    code, output = invoke("users", "add", "crew-east", "--role", "mayor", env=env)
    assert code == 2
    code, output = invoke("users", "token", "ghost", env=env)
    assert code == 2
    assert "no user 'ghost'" in output
    assert scalar(database_url, "SELECT count(*) FROM api_users") == 0, "nothing half-made"
    code, output = invoke("users", "add", "crew-east", "--role", "crew", env=env)
    assert code == 0
    code, output = invoke("users", "add", "crew-east", "--role", "crew", env=env)
    assert code == 2
    assert "already exists" in output
    code, output = invoke("users", "token", "crew-east", "--days", "0", env=env)
    assert code == 2
    assert scalar(database_url, "SELECT count(*) FROM api_tokens") == 0
