"""``smartcity energy lights``: the lighting what-if (:mod:`whatif.lighting`) as a command."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

if TYPE_CHECKING:
    from control.lighting_policy import LightingPolicy
    from whatif.lighting import WhatIfOptions

from smartcity.cli_support import fail, progress_to_stderr, read_site
from smartcity.simulation_options import overcast_run


def _local_moment(text: str, option: str, zone: ZoneInfo) -> datetime:
    """An ISO date or time; a date or a time without zone is the site's local time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"{option} {text!r} is not an ISO date or time (e.g. 2026-12-01)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _policy(path: Path | None) -> LightingPolicy:
    import yaml

    from control.lighting_policy import DEFAULT_LIGHTING, LightingPolicy

    if path is None:
        return DEFAULT_LIGHTING
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise fail(f"{path}: cannot read the lighting policy: {error}") from None
    if not isinstance(data, dict):
        raise fail(f"{path}: a lighting policy is a mapping of its fields (see docs/lighting.md)")
    try:
        return LightingPolicy.from_mapping(data)
    except ValueError as error:
        raise fail(f"{path}: {error}") from None


def build_options(
    *,
    site: Path,
    period_from: str,
    period_to: str,
    cloudy_from: str | None,
    cloudy_days: int,
    clearness: float,
    sample: int,
    seed: int,
    step_s: int,
    policy_file: Path | None,
) -> WhatIfOptions:
    """Check the command line's values; a typer.Exit (code 2) saying what is wrong."""
    from protocol.sites import SiteFileError
    from protocol.topics import DeviceClass
    from whatif.lighting import MAX_PERIOD_DAYS, WhatIfOptions

    try:
        inventory = read_site(site)
    except SiteFileError as error:
        raise fail(str(error)) from None
    zone = ZoneInfo(inventory.site.timezone)
    start = _local_moment(period_from, "--from", zone)
    end = _local_moment(period_to, "--to", zone)
    if end <= start:
        raise fail(f"--to {period_to} must be after --from {period_from}")
    if end - start > timedelta(days=MAX_PERIOD_DAYS):
        raise fail(f"a replay covers at most {MAX_PERIOD_DAYS} days; shorten --from/--to")
    if step_s not in (60, 120, 180, 300, 600, 900):
        raise fail(f"--step-s {step_s}: use 60, 120, 180, 300, 600 or 900 seconds")
    if start.timestamp() % step_s:
        raise fail(f"--from {period_from} must fall on the {step_s} s grid")
    cloudy = overcast_run(cloudy_from, cloudy_days, clearness, (start, end), zone)
    if sample < 0:
        raise fail(f"--sample {sample}: give a number of lights, or 0 for all")
    if len(inventory.by_class(DeviceClass.STREETLIGHT)) == 0:
        raise fail(f"site {inventory.site.id} has no streetlights")
    return WhatIfOptions(
        inventory=inventory,
        start=start,
        end=end,
        cloudy=cloudy,
        sample=sample,
        seed=seed,
        step_s=step_s,
        policy=_policy(policy_file),
    )


def lights(  # noqa: PLR0917 - each option is a CLI flag
    period_from: Annotated[
        str, typer.Option("--from", help="First day (ISO; site local time if no zone).")
    ] = "2026-12-01",
    period_to: Annotated[
        str, typer.Option("--to", help="End, excluded (ISO; site local time if no zone).")
    ] = "2027-01-01",
    cloudy_from: Annotated[
        str | None, typer.Option(help="First day of a forced overcast run (ISO date).")
    ] = None,
    cloudy_days: Annotated[int, typer.Option(help="Length of the overcast run (days).")] = 5,
    clearness: Annotated[
        float, typer.Option(help="Clearness index of the overcast days (0-1; clear ~0.75).")
    ] = 0.15,
    site: Annotated[
        Path, typer.Option(help="Site file, or the name of one in sites/ (e.g. sefrou).")
    ] = Path("sites/sefrou.yaml"),
    sample: Annotated[
        int, typer.Option(help="Replay this many lights spread over the site; 0 for all.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the weather and starting charge.")] = 1,
    step_s: Annotated[int, typer.Option(help="Simulation step (seconds).")] = 300,
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy", help="Lighting policy file (YAML; see docs/lighting.md)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Replay the streetlights over a period: full power, the agents' default, SoC-aware.

    The three strategies start from the same charge under the same simulated weather; a
    forced overcast run tests the batteries. Reports the lights that went dark (low-voltage
    disconnect) and on how many nights, lit hours, mean level while dark, and energy.

    \b
    Examples (a December; the same with five overcast days from the 10th, as JSON):
    smartcity energy lights --from 2026-12-01 --to 2027-01-01
    smartcity energy lights --from 2026-12-01 --cloudy-from 2026-12-10 --cloudy-days 5 --json
    """
    from whatif.lighting import format_table, replay

    options = build_options(
        site=site,
        period_from=period_from,
        period_to=period_to,
        cloudy_from=cloudy_from,
        cloudy_days=cloudy_days,
        clearness=clearness,
        sample=sample,
        seed=seed,
        step_s=step_s,
        policy_file=policy_file,
    )
    report = replay(options, progress=progress_to_stderr)
    if as_json:
        typer.echo(json.dumps(asdict(report)))
    else:
        typer.echo(format_table(report))
