"""``smartcity rules score``: a user's fault file through the simulated city and the backtest.

The small site over one January day (after the three days of warm-up the command simulates
before it), with a fault file of one dead lamp from 14:00: the report must count it injected
and found within lamp-out's bound from dusk, and the healthy devices' false alerts, and end
with one JSON line; the scratch database it used must be gone; bad input is named.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from smartcity.cli import app
from tests.conftest import PostgresServer
from tests.simulation_helpers import SMALL_SITE, small_site

pytestmark = pytest.mark.integration

FAULT_FILE = """
faults:
  - {device: sl-main-001, fault: lamp_failure, start: "+2h", duration: 20h}
"""


def _databases(server: PostgresServer) -> set[str]:
    with psycopg.connect(server.server_url) as connection:
        rows = connection.execute("SELECT datname FROM pg_database").fetchall()
    return {str(row[0]) for row in rows}


def test_a_fault_file_is_scored_from_when_each_fault_shows(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    site = tmp_path / "small.yaml"
    site.write_text(SMALL_SITE, encoding="utf-8")
    faults = tmp_path / "faults.yaml"
    faults.write_text(FAULT_FILE, encoding="utf-8")
    before = _databases(postgres_server)
    result = CliRunner().invoke(
        app,
        [
            "rules",
            "score",
            "--from",
            "2026-01-12T12:00Z",
            "--to",
            "2026-01-13T12:00Z",
            "--faults",
            str(faults),
            "--site",
            str(site),
            "--seed",
            "5",
            "--json",
        ],
        env={"DATABASE_URL": postgres_server.server_url, "SMARTCITY_STATE_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    *text, last = result.stdout.strip().splitlines()
    figures = json.loads(last)
    lamp = figures["by_fault"]["lamp_failure"]
    assert (lamp["injected"], lamp["detected"], lamp["within_bound"]) == (1, 1, 1)
    assert lamp["delay_max_s"] <= 15 * 60, "lamp-out within 15 min of switch-on"
    assert lamp["precision"] == 1.0
    devices = len(small_site().devices)
    assert figures["fault_free"]["devices"] == devices - 1
    assert figures["fault_free"]["alerts"] == 0
    assert figures["faults_planned"] == 1
    report = "\n".join(text)
    assert "lamp_failure" in report
    assert f"Fault-free devices: {devices - 1}" in report
    assert _databases(postgres_server) == before, "the scratch database was dropped"


OVERCAST = ["--from", "2026-12-07", "--to", "2026-12-21", "--cloudy-from", "2026-12-09"]


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--from", "2026-01-13", "--to", "2026-01-12"], "--to must be after --from"),
        (["--from", "2026-01-12", "--to", "2026-01-13", "--faults", "nope.yaml"], "nope.yaml"),
        (["--from", "yesterday", "--to", "2026-01-13"], "--from"),
        (
            ["--from", "2026-01-12", "--to", "2026-01-13", "--random-faults", "-1"],
            "--random-faults",
        ),
        (
            ["--from", "2026-12-07", "--to", "2026-12-21", "--cloudy-from", "soon"],
            "--cloudy-from 'soon' is not an ISO date",
        ),
        (
            ["--from", "2026-12-07", "--to", "2026-12-21", "--cloudy-from", "2026-12-19"],
            "the overcast run 2026-12-19 to 2026-12-23 is not within the period",
        ),
        (
            [*OVERCAST, "--cloudy-days", "0"],
            "--cloudy-days 0: give at least 1 day",
        ),
        (
            [*OVERCAST, "--clearness", "1.5"],
            "--clearness 1.5: a clearness index is between 0 and 1",
        ),
        (["--from", "2026-12-07", "--to", "2026-12-21", "--lighting", "sun"], "--lighting"),
    ],
)
def test_bad_input_is_named(arguments: list[str], named: str) -> None:
    result = CliRunner().invoke(app, ["rules", "score", *arguments])
    assert result.exit_code == 2, result.output
    assert named in result.output


def test_a_server_that_refuses_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["rules", "score", "--from", "2026-01-12T12:00Z", "--to", "2026-01-13T12:00Z"],
        env={
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "SMARTCITY_STATE_DIR": str(tmp_path),
        },
    )
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert "Traceback" not in result.output
