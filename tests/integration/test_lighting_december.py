"""The December acceptance run of lighting control (issue 5): a month of Sefrou's solar
streetlights with five overcast days, full power against SoC-aware dimming.

SoC-aware dimming must keep every light lit every night where full power leaves lights dark.
No broker or database: the replay drives the lights' physics directly.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from protocol.faults import FaultType
from protocol.sites import load_site
from simulators.environment import Now
from simulators.streetlight_fleet import rating_of
from smartcity.lighting_whatif_cli import lights
from whatif.lighting import _fleet, _readings, select_lights

pytestmark = pytest.mark.integration

SITE = Path(__file__).parents[2] / "sites" / "sefrou.yaml"
SAMPLE = 60
DECEMBER = [
    "--site",
    str(SITE),
    "--from",
    "2026-12-01",
    "--to",
    "2027-01-01",
    "--cloudy-from",
    "2026-12-10",
    "--cloudy-days",
    "5",
    "--clearness",
    "0.15",
    "--sample",
    str(SAMPLE),
]


def _app() -> typer.Typer:
    app = typer.Typer(rich_markup_mode=None)
    app.command("lights")(lights)

    @app.command("other")
    def other() -> None:
        """A second command, so that ``lights`` is invoked by its name as under ``energy``."""

    return app


@pytest.fixture(scope="module")
def december() -> dict[str, Any]:
    result = CliRunner().invoke(_app(), ["lights", *DECEMBER, "--json"])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _strategy(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in report["strategies"] if s["strategy"] == name]
    assert len(found) == 1, name
    return found[0]


def test_the_sample_mixes_the_models_and_place_kinds() -> None:
    sample = select_lights(load_site(SITE), SAMPLE)
    assert len(sample) == SAMPLE
    assert set(Counter(light.model for light in sample)) == {"sl-60w", "sl-40w", "sl-30w"}
    kinds = {light.metadata.get("place_kind") for light in sample}
    assert {"road", "square", "entrance", "garden"} <= kinds


def test_the_replay_reads_the_lights_as_the_fleet_reports_them() -> None:
    """The replay computes only the readings it needs; they are the fleet's own."""
    sample = select_lights(load_site(SITE), 40)
    fleet = _fleet(sample, seed=3)
    ratings = [rating_of(light) for light in sample]
    groups = [
        (rating, np.array([i for i, r in enumerate(ratings) if r == rating]))
        for rating in dict.fromkeys(ratings)
    ]
    no_faults = {fault: np.zeros(len(sample), dtype=bool) for fault in FaultType}
    rng = np.random.default_rng(5)
    disconnects = 0
    for _ in range(200):
        commanded = rng.choice([0.0, 30.0, 100.0, 100.0], len(sample))
        fleet.lamp_level[:] = commanded
        weather = Now(float(rng.choice([0.0] * 5 + [700.0])), float(rng.uniform(-3, 25)), 10.0)
        fleet.step(weather, 3_600, no_faults)
        expected = fleet.values()
        for name, values in _readings(fleet, groups, commanded, weather).items():
            np.testing.assert_allclose(values, expected[name], err_msg=name)
        disconnects += int(fleet.disconnected.sum())
    assert disconnects > 0  # the low-voltage disconnect was exercised


def test_soc_aware_dimming_keeps_every_light_lit_every_night(december: dict[str, Any]) -> None:
    soc_aware = _strategy(december, "soc-aware")
    assert soc_aware["lights"] == SAMPLE
    assert soc_aware["nights"] == 31
    assert soc_aware["lights_dark"] == 0
    assert soc_aware["light_nights_dark"] == 0
    assert soc_aware["dark_hours"] == 0.0
    assert soc_aware["lights_dark_by_night"] == {}
    assert soc_aware["lowest_soc_pct"] > 10.0  # never at the low-voltage disconnect
    # The overcast run drove lights to their minimum level, and the sun back to full profiles.
    reasons = soc_aware["plan_reasons"]
    assert reasons.get("minimum", 0) > 0
    assert reasons.get("full", 0) > 0
    assert reasons.get("dimmed", 0) > 0


def test_full_power_leaves_lights_dark(december: dict[str, Any]) -> None:
    fixed = _strategy(december, "fixed")
    assert fixed["lights_dark"] >= 1
    assert fixed["light_nights_dark"] >= 1
    assert fixed["dark_hours"] > 0
    assert fixed["lowest_soc_pct"] <= 10.0
    assert sum(fixed["lights_dark_by_night"].values()) == fixed["light_nights_dark"]


def test_lit_hours_levels_and_energy_are_sensible(december: dict[str, Any]) -> None:
    fixed, soc_aware = _strategy(december, "fixed"), _strategy(december, "soc-aware")
    # A December night in Sefrou lasts about 14 hours: a light lit all night shows it.
    assert 13.5 < soc_aware["lit_hours_per_light_night"] < 14.5
    assert soc_aware["lit_hours"] >= fixed["lit_hours"]
    assert fixed["mean_level_while_lit_pct"] == 100.0
    assert 20.0 <= soc_aware["mean_level_while_lit_pct"] < fixed["mean_level_while_lit_pct"]
    assert soc_aware["mean_level_while_dark_pct"] < fixed["mean_level_while_dark_pct"]
    # Same weather, same panels: the same harvest; neither spends more than it harvests
    # plus what the batteries held at the start.
    assert soc_aware["harvest_kwh"] == fixed["harvest_kwh"]
    for strategy in (fixed, soc_aware):
        assert 0 < strategy["lamp_energy_kwh"] < strategy["harvest_kwh"] + SAMPLE * 1.3
    assert december["cloudy"] == {"first_day": "2026-12-10", "days": 5, "clearness": 0.15}


def test_the_table_shows_each_strategy_and_the_time_taken() -> None:
    result = CliRunner().invoke(
        _app(), ["lights", *DECEMBER[:4], "--to", "2026-12-04", "--sample", "6"]
    )
    assert result.exit_code == 0, result.output
    for words in ("fixed", "agent-default", "soc-aware", "lights that went dark", "elapsed:"):
        assert words in result.stdout
    assert "... fixed: 3 days" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["--from", "2026-12-10", "--to", "2026-12-01"], "must be after --from"),
        (["--site", "/nonexistent/site.yaml"], "cannot read the site file"),
        (["--from", "2026-12-32"], "is not an ISO date"),
        (["--cloudy-from", "2026-12-30", "--cloudy-days", "5"], "is not within the period"),
        (["--cloudy-from", "2026-11-20"], "is not within the period"),
        (["--cloudy-from", "2026-12-10", "--clearness", "1.5"], "between 0 and 1"),
    ],
)
def test_bad_input_is_refused_with_exit_code_2(arguments: list[str], words: str) -> None:
    result = CliRunner().invoke(_app(), ["lights", "--site", str(SITE), *arguments])
    assert result.exit_code == 2, result.output
    assert words in result.stderr
