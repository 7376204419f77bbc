"""The what-if replay: the energy manager's comparison, and the acceptance figures of issue 5."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from control.strategy import PACKAGED_STRATEGY, load_strategy
from protocol.sites import load_site
from smartcity.cli import app
from whatif.hvac import ALWAYS_ON, CLASS_C, CLASS_C_BLINDS, Contender, run_whatif

ROOT = Path(__file__).resolve().parents[2]
SITE = load_site(ROOT / "sites" / "sefrou.yaml")


def test_whatif_prints_every_building_for_each_strategy_with_a_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SMARTCITY_DATABASE_URL", raising=False)
    plot = tmp_path / "week.png"
    result = CliRunner().invoke(
        app,
        [
            "energy", "whatif", "--strategy", str(PACKAGED_STRATEGY),
            "--from", "2027-01-04", "--to", "2027-01-12", "--plot", str(plot), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])["figures"]
    assert set(figures) == {"candidate", "current", CLASS_C, CLASS_C_BLINDS, ALWAYS_ON}
    buildings = {device.building for device in SITE.devices if device.building}
    assert set(figures["candidate"]) == buildings | {"total"}
    # Same strategy as candidate and current: side by side, they see the same city.
    assert figures["candidate"] == figures["current"]
    total, always_on = figures["candidate"]["total"], figures[ALWAYS_ON]["total"]
    assert total["energy_kwh"] < always_on["energy_kwh"]
    assert total["peak_kw"] > 0
    assert "less energy than class C" in result.output
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_the_same_seed_replays_the_same_figures() -> None:
    strategy = load_strategy(PACKAGED_STRATEGY)
    contenders = [Contender("control", strategy), *Contender.references(strategy)]
    start, end = datetime(2027, 2, 1, tzinfo=UTC), datetime(2027, 2, 3, tzinfo=UTC)
    first = run_whatif(SITE, contenders, start, end, seed=7).as_json()["figures"]
    again = run_whatif(SITE, contenders, start, end, seed=7).as_json()["figures"]
    other = run_whatif(SITE, contenders, start, end, seed=8).as_json()["figures"]
    assert first == again
    assert first != other


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--from", "2027-01-10", "--to", "2027-01-01"], "must be after --from"),
        (["--from", "yesterday", "--to", "2027-01-01"], "not an ISO date"),
        (["--from", "2027-01-01", "--to", "2027-01-02", "--step", "70"], "must divide"),
        (["--from", "2026-01-01", "--to", "2027-06-01"], "longer than"),
    ],
)
def test_whatif_refuses_bad_periods(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app, ["energy", "whatif", "--strategy", str(PACKAGED_STRATEGY), *arguments]
    )
    assert result.exit_code == 2
    assert message in result.output


def test_whatif_refuses_a_bad_strategy_file_naming_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(PACKAGED_STRATEGY.read_text().replace("hold: 30m", "hold: forever"))
    result = CliRunner().invoke(
        app,
        [
            "energy",
            "whatif",
            "--strategy",
            str(broken),
            "--from",
            "2027-01-01",
            "--to",
            "2027-01-02",
        ],
    )
    assert result.exit_code == 2
    assert "broken.yaml: hvac.hold" in result.output
    assert "(line " in result.output


def test_over_a_winter_control_uses_a_fifth_less_than_class_c_at_no_worse_comfort_or_peak() -> None:
    """Issue 18's acceptance for the heating season (December to February): at least 20 %
    less heat than the building run as EN 15232 class C, with no more discomfort and a lower
    peak (with the summer and the 24/7 reference: ``smartcity bench whatif``)."""
    strategy = load_strategy(PACKAGED_STRATEGY)
    start, end = datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC)
    class_c, _, _ = Contender.references(strategy)
    report = run_whatif(SITE, [Contender("control", strategy), class_c], start, end)
    control, reference = report.figures["control"]["total"], report.figures[CLASS_C]["total"]
    assert report.saving("control", CLASS_C) >= 0.20
    assert control.discomfort_kh <= reference.discomfort_kh
    assert control.peak_kw < reference.peak_kw


def test_over_a_summer_control_beats_class_c_with_or_without_its_blinds_on_a_timer() -> None:
    """The cooling season (June to August). Against class C, whose motorised windows stay
    shut and blinds up, issue 18's targets: at least 20 % less, no more discomfort, a lower
    peak. Against class C with its blinds lowered all summer by a timer (the stronger
    reference where zones have blinds) the strategy is measured at 14 % less (docs/energy.md):
    a lower peak, no more discomfort, and more than 10 % less is what this guards."""
    strategy = load_strategy(PACKAGED_STRATEGY)
    start, end = datetime(2027, 6, 1, tzinfo=UTC), datetime(2027, 9, 1, tzinfo=UTC)
    class_c, blinds_timer, _ = Contender.references(strategy)
    report = run_whatif(SITE, [Contender("control", strategy), class_c, blinds_timer], start, end)
    control = report.figures["control"]["total"]
    for label, saving in ((CLASS_C, 0.20), (CLASS_C_BLINDS, 0.10)):
        reference = report.figures[label]["total"]
        assert report.saving("control", label) >= saving, label
        assert control.discomfort_kh <= reference.discomfort_kh, label
        assert control.peak_kw < reference.peak_kw, label
