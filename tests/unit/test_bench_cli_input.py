"""Bad options to the benchmarks are refused before anything starts, with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from smartcity.cli import app


def refused(*argv: str) -> str:
    result = CliRunner().invoke(app, ["bench", *argv])
    assert result.exit_code == 2, result.output
    return result.output


@pytest.mark.parametrize(
    ("option", "value"),
    [("--devices", "0"), ("--rate", "0.5"), ("--seconds", "0"), ("--interval", "0.1")],
)
def test_bench_maintenance_refuses_an_option_below_its_least(option: str, value: str) -> None:
    assert option in refused("maintenance", option, value)


def test_bench_maintenance_refuses_an_option_that_is_not_a_number() -> None:
    assert "--rate" in refused("maintenance", "--rate", "fast")


@pytest.mark.parametrize("setting", ["interval", "interval=x", "period=5", "changes=-1"])
def test_bench_broker_crash_names_a_setting_it_cannot_read(setting: str) -> None:
    assert setting in refused("broker-crash", "--setting", setting)


def test_bench_broker_crash_names_an_unknown_consumer_and_the_known_ones() -> None:
    output = refused("broker-crash", "--consumer", "asleep")
    assert "asleep" in output
    assert all(known in output for known in ("away", "behind", "connected"))


def test_bench_broker_crash_refuses_delays_that_run_backwards() -> None:
    output = refused("broker-crash", "--delay-min", "10", "--delay-max", "5")
    assert "need 0 < low <= high" in output


@pytest.mark.parametrize(("option", "value"), [("--runs", "0"), ("--rate", "0")])
def test_bench_broker_crash_refuses_an_option_below_its_least(option: str, value: str) -> None:
    assert option in refused("broker-crash", option, value)


@pytest.mark.parametrize("bench", ["memory", "simulate", "alerts", "api", "whatif", "chaos"])
def test_a_bench_given_a_site_file_it_cannot_read_names_it(bench: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    output = refused(bench, "--site", str(missing))
    assert f"{missing}: cannot read the site file" in output


def test_bench_whatif_names_an_unknown_season_and_the_known_ones() -> None:
    output = refused("whatif", "--season", "spring")
    assert "--season spring" in output
    assert "winter, summer" in output


def test_bench_whatif_refuses_a_strategy_file_it_cannot_read(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("hvac: {comfort: warm}\n")
    assert "broken.yaml" in refused("whatif", "--strategy", str(broken))
