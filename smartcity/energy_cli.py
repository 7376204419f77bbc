"""``smartcity energy``: strategies for heating, cooling and lighting, and what-if replays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smartcity.cli_support import (
    DEFAULT_SITE,
    SiteOption,
    fail,
    load_settings,
    parse_moment,
    read_site,
    strategy_from_database,
)
from smartcity.control_cli import control
from smartcity.lighting_cli import lighting, signs
from smartcity.lighting_whatif_cli import lights
from smartcity.strategy_cli import strategy_app

if TYPE_CHECKING:
    from control.strategy import Strategy

energy_app = typer.Typer(
    help="Energy control: strategies, their versions, and what-if replays of a period.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
energy_app.add_typer(strategy_app, name="strategy")
energy_app.command("lights")(lights)
energy_app.command("control")(control)
energy_app.command("lighting")(lighting)
energy_app.command("signs")(signs)

MAX_DAYS = 400


@energy_app.command("whatif")
def whatif(  # noqa: PLR0917 - each option is a CLI flag
    strategy: Annotated[
        Path, typer.Option("--strategy", help="Candidate strategy file (format: docs/energy.md).")
    ],
    start: Annotated[
        str, typer.Option("--from", help="Start, ISO date or time (UTC unless zoned).")
    ],
    end: Annotated[str, typer.Option("--to", help="End, exclusive.")],
    current: Annotated[
        Path | None,
        typer.Option(
            "--current",
            help="The current strategy file; default: the active one in the database "
            "(DATABASE_URL), else the packaged default.",
        ),
    ] = None,
    site: SiteOption = DEFAULT_SITE,
    seed: Annotated[int, typer.Option(help="Weather and occupancy seed.")] = 1,
    step: Annotated[int, typer.Option(min=10, max=600, help="Simulation step [s].")] = 150,
    plot: Annotated[Path, typer.Option(help="PNG of a representative week.")] = Path(
        "whatif-week.png"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """Replay a period of Sefrou weather and occupancy through the building simulator for the
    candidate strategy, the current one and three references with the candidate's opening
    hours and setpoints: the building run as EN 15232 class C (fixed time programme, fixed
    pre-heat, 16 C nights; savings are quoted against it), the same with its external blinds
    lowered all summer by a timer, and a 24/7 fixed-setpoint thermostat. Print energy (kWh),
    peak demand (kW) and comfort (degree-hours outside the comfort band while occupied) per
    building and in total, and plot a representative week.
    docs/energy.md explains the references.

    Example: smartcity energy whatif --strategy my-strategy.yaml --from 2026-12-01 --to 2027-03-01
    """
    from control.strategy import StrategyFileError, load_strategy
    from protocol.sites import SiteFileError
    from whatif.hvac import Contender, format_report, run_whatif

    begins, ends = parse_moment(start, "--from"), parse_moment(end, "--to")
    if ends <= begins:
        raise fail(f"--to {end} must be after --from {start}")
    if (ends - begins).days > MAX_DAYS:
        raise fail(f"the period is longer than {MAX_DAYS} days: replay a season at a time")
    if 300 % step:
        raise fail(f"--step {step} must divide the 300 s control period (e.g. 60, 100, 150)")
    try:
        inventory = read_site(site)
        candidate = load_strategy(strategy)
        running, running_label = _current_strategy(current)
    except (SiteFileError, StrategyFileError) as error:
        raise fail(str(error)) from error
    typer.echo(
        f"replaying {begins:%Y-%m-%d %H:%M} to {ends:%Y-%m-%d %H:%M} UTC: candidate "
        f"{candidate.name}, current {running_label}, and the class C, class C with blinds on a"
        " timer and 24/7 references",
        err=True,
    )
    try:
        report = run_whatif(
            inventory,
            [
                Contender("candidate", candidate),
                Contender("current", running),
                *Contender.references(candidate),
            ],
            begins,
            ends,
            seed=seed,
            step_s=step,
            plot=plot,
            progress=lambda line: typer.echo(line, err=True),
        )
    except ValueError as error:
        raise fail(str(error)) from error
    typer.echo(format_report(report))
    if as_json:
        typer.echo(json.dumps(report.as_json()))


def _current_strategy(path: Path | None) -> tuple[Strategy, str]:
    """The strategy running now: a file, the database's active one, or the packaged one."""
    from control.strategy import PACKAGED_STRATEGY, load_strategy

    if path is not None:
        chosen = load_strategy(path)
        return chosen, f"{chosen.name} ({path})"
    settings = load_settings()
    if not settings.database_url:
        packaged = load_strategy(PACKAGED_STRATEGY)
        return packaged, f"{packaged.name} (packaged default: no DATABASE_URL)"
    return strategy_from_database(settings.database_url)
