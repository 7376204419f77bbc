"""Bad input to the energy entry points not covered elsewhere: a clear error, nothing applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from control.strategy import PACKAGED_STRATEGY, StrategyFileError, parse_strategy
from protocol.commands import Refusal, check_command
from protocol.payloads import CommandPayload
from protocol.topics import DeviceClass
from smartcity.lighting_cli import signs

PACKAGED = PACKAGED_STRATEGY.read_text(encoding="utf-8")
NOW = datetime(2027, 1, 12, 9, tzinfo=UTC)


def test_the_signs_command_has_an_example_and_names_a_bad_strategy(tmp_path: Path) -> None:
    app = typer.Typer(rich_markup_mode=None)
    app.command("signs")(signs)
    app.command("other")(lambda: None)
    assert (
        "smartcity energy signs --site sefrou"
        in CliRunner().invoke(app, ["signs", "--help"]).output
    )
    bad = tmp_path / "strategy.yaml"
    bad.write_text(
        PACKAGED.replace(
            "lighting: {}", "lighting: {sign_minimum_level: 80, sign_maximum_level: 20}"
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["signs", "--strategy", str(bad)])
    assert result.exit_code == 2
    assert "sign_minimum_level" in result.output


def test_a_photocell_range_upside_down_is_refused_by_the_sign() -> None:
    command = CommandPayload(
        v=1,
        id="b1",
        issued_at=NOW,
        expires_at=NOW + timedelta(minutes=2),
        action="set_brightness",
        params={"lowest": 80.0, "highest": 20.0},
    )
    refusal = check_command(DeviceClass.SIGNAGE, command, NOW)
    assert isinstance(refusal, Refusal)
    assert refusal.outcome == "rejected"
    assert "lowest 80.0 must not be above highest 20.0" in refusal.reason


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("calendar:\n  ramadan: [{first: 2027-02-09, last: 2027-02-20}]\n", "29 or 30 days"),
        ("calendar:\n  holidays_added: [tomorrow]\n", "holidays_added"),
        (
            "events:\n  - {building: town-hall, start: '2027-01-01T19:00', "
            "end: '2027-01-01T22:00'}\n",
            "UTC offset",
        ),
        (
            "events:\n  - {building: town-hall, start: '2027-01-01T22:00+00:00', "
            "end: '2027-01-01T19:00+00:00'}\n",
            "end must be after start",
        ),
    ],
)
def test_bad_calendar_corrections_and_events_are_refused_with_their_line(
    section: str, message: str
) -> None:
    text = PACKAGED.replace("events: []\n", "").replace("lighting: {}", section + "lighting: {}")
    with pytest.raises(StrategyFileError, match=message) as caught:
        parse_strategy(text, "mine.yaml")
    assert "(line " in str(caught.value)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("site_power_cap: 540", "hvac.site_power_cap"),  # one figure: which season's?
        ("site_power_cap: {heating: -5, cooling: 212}", "hvac.site_power_cap.heating"),
        ("site_power_cap: {winter: 540}", "hvac.site_power_cap.winter"),
    ],
)
def test_a_bad_site_power_cap_is_refused_naming_the_field_and_its_line(
    written: str, message: str
) -> None:
    line = "  site_power_cap: {heating: 540, cooling: 212}"
    assert line in PACKAGED
    text = PACKAGED.replace(line, "  " + written)
    with pytest.raises(StrategyFileError, match=message) as caught:
        parse_strategy(text, "mine.yaml")
    assert "(line " in str(caught.value)


def test_inside_band_and_cool_down_safety_out_of_range_are_refused() -> None:
    for old, new, field in (
        ("inside_band_k: 0.3", "inside_band_k: -1", "inside_band_k"),
        ("cool_down_safety: 2.0", "cool_down_safety: 0.5", "cool_down_safety"),
    ):
        assert old in PACKAGED
        with pytest.raises(StrategyFileError, match=field):
            parse_strategy(PACKAGED.replace(old, new), "mine.yaml")
