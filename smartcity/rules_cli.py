"""``smartcity rules``: check a rule file, backtest rule sets over stored history, and score
them on a fault set through the simulated city."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final
from zoneinfo import ZoneInfo

import typer

from rules import PACKAGED_RULES
from smartcity.cli_support import (
    DEFAULT_SITE,
    SiteOption,
    fail,
    load_settings,
    parse_moment,
    progress_to_stderr,
    read_site,
    require_database_url,
)
from smartcity.engine_cli import run_engine
from smartcity.simulation_options import (
    ClearnessOption,
    CloudyDaysOption,
    CloudyFromOption,
    Lighting,
    LightingOption,
    lighting_program,
    overcast_run,
)

if TYPE_CHECKING:
    from rules.model import RuleSet

rules_app = typer.Typer(
    help="Rule files: check them, backtest them over stored history, score them on fault sets.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DEFAULT_RULES: Final = Path("rules/default_rules.yaml")
"""The default rule file; outside the project's directory, the installed package's copy."""

RulesOption = Annotated[Path, typer.Option("--rules", help="Rule file (format: docs/rules.md).")]


def rules_path(path: Path) -> Path:
    """``path``, or the packaged default rules when the default is not found here."""
    if path == DEFAULT_RULES and not path.exists():
        return PACKAGED_RULES
    return path


def known_faults() -> list[str]:
    """The fault types ``detects`` may name: those the simulator injects."""
    from protocol.faults import FaultType

    return [fault.value for fault in FaultType]


def read_rules(path: Path) -> RuleSet:
    """The rule set in ``path``; on an error, print it and exit with code 1."""
    from rules.model import RuleFileError, load_rules

    try:
        return load_rules(rules_path(path), known_faults())
    except RuleFileError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from None


@rules_app.command("check")
def check(
    file: Annotated[
        Path, typer.Argument(help="Rule file to check.", show_default=True)
    ] = DEFAULT_RULES,
) -> None:
    """Check a rule file: syntax, fields, every expression, the fault types it detects.

    Prints "FILE: N rules OK (classes...)"; on an error, the file, line and a hint, and
    exits with code 1.

    \b
    Example:
      smartcity rules check rules/default_rules.yaml
    """
    rule_set = read_rules(file)
    classes = Counter(str(rule.device_class) for rule in rule_set.rules)
    listing = ", ".join(f"{name} {count}" for name, count in sorted(classes.items()))
    typer.echo(f"{file}: {len(rule_set.rules)} rules OK ({listing})")


@rules_app.command("backtest")
def backtest_command(  # noqa: PLR0917 - each option is a CLI flag
    start: Annotated[str, typer.Option("--from", help="First instant (ISO; UTC if no zone).")],
    end: Annotated[str, typer.Option("--to", help="End, excluded (ISO; UTC if no zone).")],
    rules: RulesOption = DEFAULT_RULES,
    devices: Annotated[
        str | None, typer.Option("--devices", help="Comma-separated device ids (default: all).")
    ] = None,
    run: Annotated[
        str | None,
        typer.Option("--run", help="Score against this fault_ground_truth run (default: all)."),
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option("--compare", help="A second rule file (a draft) to put side by side."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object.")] = False,
) -> None:
    """Run a rule set over stored history: the alerts it would have raised, flapping, and
    where ground truth exists precision, recall and detection delay per fault type.

    Progress goes to stderr; the report, then the rows evaluated per second, to stdout.

    \b
    Examples:
      smartcity rules backtest --from 2026-01-05 --to 2026-01-12
      smartcity rules backtest --rules rules/default_rules.yaml --compare draft.yaml \\
        --from 2026-02-02 --to 2026-02-22 --run history-20260202-20260222-seed1 --json
    """
    import psycopg

    from rules.backtest import BacktestError, backtest_many
    from rules.scoring_report import format_comparison, format_report

    url = require_database_url(load_settings())
    first, last = parse_moment(start, "--from"), parse_moment(end, "--to")
    if last <= first:
        raise fail("--to must be after --from")
    rule_sets = [read_rules(rules)]
    if compare is not None:
        rule_sets.append(read_rules(compare))
    ids = [part.strip() for part in devices.split(",") if part.strip()] if devices else None

    try:
        results = backtest_many(url, rule_sets, first, last, ids, run, progress_to_stderr)
    except (BacktestError, psycopg.Error) as error:
        raise fail(str(error).strip()) from error
    current = results[0]
    names = ("current", "draft")
    if compare is not None and rules.stem != compare.stem:
        names = (rules.stem, compare.stem)
    if len(results) == 1:
        typer.echo(format_report(current.score), nl=False)
    else:
        typer.echo(format_comparison(current.score, results[1].score, names), nl=False)
    typer.echo(current.summary())
    if as_json:
        document: dict[str, object] = current.to_json()
        if len(results) > 1:
            document = {"current": document, "draft": results[1].to_json()}
        typer.echo(json.dumps(document))


@rules_app.command("bounds")
def bounds_command(rules: RulesOption = DEFAULT_RULES) -> None:
    """Print the detection bound of every fault type, as the rules state it: the table of
    docs/faults.md (paste it between its markers after changing a rule).

    Example: smartcity rules bounds --rules rules/default_rules.yaml
    """
    from rules.bounds import bounds_table

    typer.echo(bounds_table(read_rules(rules)))


@rules_app.command("score")
def score_command(  # noqa: PLR0917 - each option is a CLI flag
    start: Annotated[str, typer.Option("--from", help="First instant (ISO; UTC if no zone).")],
    end: Annotated[str, typer.Option("--to", help="End, excluded (ISO; UTC if no zone).")],
    faults: Annotated[
        Path | None,
        typer.Option(help="Fault file (docs/simulators.md); offsets count from --from."),
    ] = None,
    random_faults: Annotated[
        float | None,
        typer.Option(min=0, max=365, help="Random faults per device per year (every type)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weather, devices and random faults.")] = 1,
    rules: RulesOption = DEFAULT_RULES,
    site: SiteOption = DEFAULT_SITE,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
    lighting: LightingOption = Lighting.PLATFORM,
    cloudy_from: CloudyFromOption = None,
    cloudy_days: CloudyDaysOption = 5,
    clearness: ClearnessOption = 0.15,
) -> None:
    """Score a rule set on a fault set of your own: the simulated city with those faults,
    then the backtest.

    Simulates the site from 3 days before --from (the backtest's warm-up) to --to with the
    faults of --faults and/or --random-faults drawn from --seed, into a scratch database on
    DATABASE_URL's server (or a private PostgreSQL; your data is never touched), runs the
    rules over [--from, --to) and prints per fault type: injected, found within the rule's
    bound, recall, precision of the rules detecting it, and the delays from the moment each
    fault could first be observed; then the alerts of the devices that had no fault, per
    1,000 device-days. With neither --faults nor --random-faults, only the latter. The
    streetlights run the lighting service's nightly schedules, as live (--lighting agents:
    their own program); --cloudy-from forces a run of overcast days, the batteries' test,
    and the lights that go dark say how well "will go dark" foretold them.

    \b
    Examples:
      smartcity rules score --from 2027-01-04 --to 2027-01-18 --random-faults 12 --seed 12
      smartcity rules score --from 2026-10-05 --to 2026-10-19 --faults my_faults.yaml --json
      smartcity rules score --from 2026-12-07 --to 2026-12-21 --cloudy-from 2026-12-09 \
        --cloudy-days 6
    """
    import psycopg

    from protocol.sites import SiteFileError
    from rules.errors import RuleError
    from simulators.errors import SimulatorError
    from smartcity import fault_scoring

    settings = load_settings()
    first, last = parse_moment(start, "--from"), parse_moment(end, "--to")
    if last <= first:
        raise fail("--to must be after --from")
    if faults is not None and not faults.is_file():
        raise fail(f"--faults {faults}: no such file")
    rule_set = read_rules(rules)
    try:
        inventory = read_site(site)
        overcast = overcast_run(
            cloudy_from, cloudy_days, clearness, (first, last), ZoneInfo(inventory.site.timezone)
        )
        fault_set = fault_scoring.FaultSet(seed, faults, random_faults)
        run = fault_scoring.score_fault_set(
            inventory,
            rule_set,
            first,
            last,
            fault_set,
            server_url=settings.database_url,
            state_dir=settings.state_dir,
            progress=progress_to_stderr,
            lighting=lighting_program(lighting, inventory),
            overcast=overcast,
        )
    except (
        SiteFileError,
        SimulatorError,
        RuleError,
        RuntimeError,
        OSError,
        psycopg.Error,
    ) as error:
        raise fail(str(error).strip()) from error
    typer.echo(fault_scoring.report(run))
    if as_json:
        typer.echo(fault_scoring.to_json(run))


rules_app.command("run")(run_engine)
