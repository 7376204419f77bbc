"""``smartcity energy strategy``: check, save, list, show, activate and roll back strategies.

Every version saved is kept; activating and rolling back are recorded with who, when and why
(:mod:`control.strategy_store`). Errors (a bad file, an unknown version, no database, an old
schema) are one clear line on stderr and exit code 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    import psycopg

    from control.strategy import Strategy
import typer

from smartcity.cli_support import (
    fail,
    load_settings,
    require_current_schema,
    require_database_url,
)

strategy_app = typer.Typer(
    help="Energy strategies: check a file, save versions, activate, roll back, audit trail.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

FileArgument = Annotated[
    Path, typer.Argument(help="Strategy file (YAML; format in docs/energy.md).")
]
AuthorOption = Annotated[
    str, typer.Option("--author", help="Who makes the change (name or role); kept in the trail.")
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why; kept in the audit trail.")]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of text.")]


def _read(path: Path) -> Strategy:
    from control.strategy import StrategyFileError, load_strategy

    try:
        return load_strategy(path)
    except StrategyFileError as error:
        raise fail(str(error)) from None


@contextmanager
def _database() -> Iterator[psycopg.Connection]:
    """A connection to a database with the current schema; any failure exits with code 2."""
    import psycopg

    from control.strategy import StrategyFileError
    from storage.versions import VersionStoreError

    url = require_database_url(load_settings())
    require_current_schema(url)
    try:
        with psycopg.connect(url) as connection:
            yield connection
    except (VersionStoreError, StrategyFileError) as error:
        raise fail(str(error)) from None
    except psycopg.Error as error:
        raise fail(f"database error: {str(error).strip()}") from None


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def _summary(strategy: Strategy) -> dict[str, Any]:
    hvac = strategy.hvac
    return {
        "name": strategy.name,
        "description": strategy.description.strip(),
        "setpoints": {
            mode: {"heating": points.heating, "cooling": points.cooling}
            for mode, points in (
                ("comfort", hvac.comfort),
                ("standby", hvac.standby),
                ("setback", hvac.setback),
            )
        },
        "comfort_band": {"low": hvac.comfort_band.low, "high": hvac.comfort_band.high},
        "schedules": sorted(strategy.schedules),
        "events": [
            {
                "name": event.name,
                "building": event.building,
                "zones": event.zones,
                "start": event.start.isoformat(),
                "end": event.end.isoformat(),
            }
            for event in strategy.events
        ],
        "power_caps_kw": hvac.power_caps,
        "lighting": bool(strategy.lighting),
    }


@strategy_app.command("check")
def check(file: FileArgument, as_json: JsonOption = False) -> None:
    """Check a strategy file without a database and print what it sets.

    Prints the name, the setpoints of the zones (comfort, standby, setback), the schedules
    and the booked events; on a mistake, the file, line and a hint, and exits with code 2.

    \b
    Example:
      smartcity energy strategy check control/default_strategy.yaml
    """
    summary = _summary(_read(file))
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    typer.echo(f"{file}: strategy {summary['name']} OK")
    for mode, points in summary["setpoints"].items():
        typer.echo(f"  {mode:<8} heating {points['heating']:g} C, cooling {points['cooling']:g} C")
    band = summary["comfort_band"]
    typer.echo(f"  comfort band {band['low']:g}-{band['high']:g} C")
    typer.echo(f"  schedules: {len(summary['schedules'])} ({', '.join(summary['schedules'])})")
    typer.echo(f"  events: {len(summary['events'])}")
    for event in summary["events"]:
        zones = ", ".join(event["zones"]) or "every zone"
        typer.echo(
            f"    {event['start']} to {event['end']}  {event['building']} ({zones})"
            + (f"  {event['name']}" if event["name"] else "")
        )
    if summary["power_caps_kw"]:
        caps = ", ".join(f"{b} {kw:g} kW" for b, kw in sorted(summary["power_caps_kw"].items()))
        typer.echo(f"  power caps: {caps}")
    typer.echo(f"  lighting policy: {'set' if summary['lighting'] else 'none'}")


@strategy_app.command("save")
def save(
    file: FileArgument, author: AuthorOption, reason: ReasonOption, as_json: JsonOption = False
) -> None:
    """Save a strategy file as the next version of its name (not active until activated).

    Prints "saved NAME version N", or "unchanged: NAME version N" when the file is identical
    to the latest version (nothing is recorded then).

    \b
    Example:
      smartcity energy strategy save winter.yaml --author energy-manager \\
        --reason "comfort 20.5 C after the December complaints"
    """
    from control import strategy_store as store

    strategy = _read(file)
    with _database() as connection:
        saved, created = store.save_strategy_version(connection, strategy, author, reason)
    if as_json:
        typer.echo(json.dumps({"name": saved.name, "version": saved.version, "created": created}))
        return
    prefix = "saved" if created else "unchanged:"
    typer.echo(f"{prefix} {saved.name} version {saved.version}")


@strategy_app.command("list")
def list_strategies(as_json: JsonOption = False) -> None:
    """Stored strategies: latest version, number of versions, and which one is active (*).

    \b
    Example:
      smartcity energy strategy list
    """
    from control import strategy_store as store

    with _database() as connection:
        found = store.list_strategies(connection)
    if as_json:
        for item in found:
            typer.echo(
                json.dumps(
                    {
                        "name": item.name,
                        "latest": item.latest,
                        "versions": item.versions,
                        "updated_at": item.updated_at.isoformat(),
                        "active_version": item.active_version,
                    }
                )
            )
        return
    if not found:
        typer.echo("no strategies saved yet (smartcity energy strategy save FILE ...)")
        return
    for item in found:
        active = f"  * active: version {item.active_version}" if item.active_version else ""
        typer.echo(
            f"{item.name:<28} latest version {item.latest:<4} ({item.versions} saved, "
            f"last {_utc(item.updated_at)}){active}"
        )


@strategy_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The strategy's name.")],
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="This version; default the latest.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print a stored version's YAML exactly as it was saved.

    \b
    Examples:
      smartcity energy strategy show sefrou-default
      smartcity energy strategy show sefrou-default --version 2 > previous.yaml
    """
    from control import strategy_store as store

    with _database() as connection:
        strategy, meta = store.strategy_version(connection, name, version)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "name": meta.name,
                    "version": meta.version,
                    "digest": meta.digest,
                    "author": meta.author,
                    "reason": meta.reason,
                    "created_at": meta.created_at.isoformat(),
                    "body": strategy.text,
                },
                ensure_ascii=False,
            )
        )
        return
    typer.echo(strategy.text, nl=not strategy.text.endswith("\n"))


def _named(pair: tuple[str, int] | None) -> str:
    return "none" if pair is None else f"{pair[0]} version {pair[1]}"


@strategy_app.command("activate")
def activate(
    name: Annotated[str, typer.Argument(help="The strategy's name.")],
    version: Annotated[int, typer.Option("--version", min=1, help="The version to put in force.")],
    author: AuthorOption,
    reason: ReasonOption,
) -> None:
    """Put a saved version in force, recording the change. The HVAC control of `smartcity up`
    (or `smartcity energy control` without --strategy) takes it up at its next decision.

    \b
    Example:
      smartcity energy strategy activate sefrou-default --version 3 \\
        --author energy-manager --reason "winter setpoints from 1 December"
    """
    from control import strategy_store as store

    with _database() as connection:
        previous = store.activate(connection, name, version, author, reason)
    typer.echo(f"activated {name} version {version} (was {_named(previous)})")


@strategy_app.command("rollback")
def rollback(author: AuthorOption, reason: ReasonOption) -> None:
    """Re-activate the version that was in force before the current one (again: further back);
    after the first activation, the packaged strategy.

    \b
    Example:
      smartcity energy strategy rollback --author energy-manager \\
        --reason "complaints about the cold in the library"
    """
    from control import strategy_store as store

    with _database() as connection:
        target, replaced = store.rollback(connection, author, reason)
    now = _named(target) if target is not None else "the packaged strategy"
    typer.echo(f"rolled back to {now} (was {_named(replaced)})")


@strategy_app.command("history")
def history(
    name: Annotated[str | None, typer.Argument(help="Only events naming this strategy.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """The audit trail, newest first: when (UTC), who, what, which version, why.

    \b
    Examples:
      smartcity energy strategy history
      smartcity energy strategy history sefrou-default --json
    """
    from control import strategy_store as store
    from storage.versions import Action

    with _database() as connection:
        events = store.history(connection, name, limit)
    if as_json:
        for event in events:
            typer.echo(
                json.dumps(
                    {
                        "at": event.at.astimezone(UTC).isoformat(),
                        "actor": event.actor,
                        "action": event.action.value,
                        "name": event.name,
                        "version": event.version,
                        "reason": event.reason,
                        "previous_name": event.previous_name,
                        "previous_version": event.previous_version,
                    },
                    ensure_ascii=False,
                )
            )
        return
    if not events:
        typer.echo("no strategy changes recorded")
        return
    for event in events:
        previous = (
            f" (was {event.previous_name} version {event.previous_version})"
            if event.previous_name is not None and event.action != Action.SAVED
            else ""
        )
        what = event.action.value.replace("_", " ")
        target = (
            "the packaged strategy"
            if event.name is None
            else f"{event.name} version {event.version}"
        )
        typer.echo(
            f"{_utc(event.at)}  {event.actor:<18} {what:<11} {target}{previous}: {event.reason}"
        )
