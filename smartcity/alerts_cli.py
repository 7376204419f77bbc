"""``smartcity alerts``: what field crews and technicians do with alerts, from a terminal.

Each action locks the alert's row and goes through :mod:`alerts.lifecycle`, exactly as the
engine's own changes do, so an acknowledgement and a resolution by the engine never overwrite
each other; each is recorded with its time and actor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    from alerts.lifecycle import Alert, Outcome
import typer

from smartcity.cli_support import load_settings, require_database_url

alerts_app = typer.Typer(
    help="List alerts and act on them: acknowledge, repaired, close, silence.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ActorOption = Annotated[str, typer.Option("--by", help="Who acts (name or crew id).")]
NoteOption = Annotated[str, typer.Option(help="A note kept with the transition.")]


def _database() -> str:

    return require_database_url(load_settings())


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def _row(alert: Alert, title: str) -> dict[str, object]:
    return {
        "alert_id": alert.alert_id,
        "rule": alert.rule_id,
        "subject": alert.subject,
        "severity": alert.severity.value,
        "status": alert.status.value,
        "title": title,
        "started_at": alert.started_at.isoformat(),
        "fired_at": alert.fired_at.isoformat(),
        "cause": alert.cause,
        "muted_by": alert.muted_by,
    }


@alerts_app.command("list")
def list_alerts(
    status: Annotated[
        list[str] | None,
        typer.Option(help="firing, acknowledged, resolved or closed (repeatable); default open."),
    ] = None,
    device: Annotated[str | None, typer.Option(help="Only this device (or group subject).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Alerts, newest first (open ones unless --status says otherwise).

    \b
    Examples:
      smartcity alerts list
      smartcity alerts list --status resolved --status closed --device sl-menzel-n-012
    """
    import psycopg

    from alerts import store
    from alerts.lifecycle import Status

    wanted = status or [Status.FIRING.value, Status.ACKNOWLEDGED.value]
    unknown = [s for s in wanted if s not in {m.value for m in Status}]
    if unknown:
        raise _fail(f"unknown status {unknown[0]!r}: use {', '.join(m.value for m in Status)}")
    with psycopg.connect(_database()) as connection:
        found = store.alerts(connection, wanted, device, limit)
    if as_json:
        for alert, title in found:
            typer.echo(json.dumps(_row(alert, title), ensure_ascii=False))
        return
    if not found:
        typer.echo("no alerts")
        return
    for alert, title in found:
        muted = f" (muted: {alert.muted_by})" if alert.muted_by else ""
        typer.echo(
            f"#{alert.alert_id:<6} {alert.severity.value:<8} {alert.status.value:<12} "
            f"{alert.fired_at:%Y-%m-%d %H:%M}Z  {alert.subject:<28} {title}{muted}"
        )


@alerts_app.command("show")
def show(alert_id: Annotated[int, typer.Argument(help="The alert's number.")]) -> None:
    """One alert, every transition (time, from, to, actor, note) and every notification.

    \b
    Example:
      smartcity alerts show 42
    """
    import psycopg

    from alerts import store

    with psycopg.connect(_database()) as connection:
        try:
            alert = store.load_alert(connection, alert_id)
        except LookupError as error:
            raise _fail(str(error)) from None
        transitions = store.transitions_of(connection, alert_id)
        attempts = connection.execute(
            "SELECT at, route, url, attempt, ok, error FROM notification_attempts"
            " WHERE alert_id = %s ORDER BY at",
            (alert_id,),
        ).fetchall()
    typer.echo(
        f"alert #{alert_id}: {alert.rule_id} on {alert.subject}, {alert.severity.value}, "
        f"{alert.status.value}" + (f", cause {alert.cause}" if alert.cause else "")
    )
    typer.echo(f"  condition since {alert.started_at:%Y-%m-%d %H:%M:%S}Z")
    for t in transitions:
        before = t.from_status.value if t.from_status else "-"
        note = f"  ({t.note})" if t.note else ""
        typer.echo(
            f"  {t.at:%Y-%m-%d %H:%M:%S}Z  {before} -> {t.to_status.value} by {t.actor}{note}"
        )
    for at, route, url, attempt, ok, problem in attempts:
        outcome = "sent" if ok else f"failed: {problem}"
        typer.echo(f"  {at:%Y-%m-%d %H:%M:%S}Z  notify {route} {url} #{attempt}: {outcome}")


def _act(alert_id: int, change: Callable[[Alert], Outcome], done: str) -> None:
    import psycopg

    from alerts import store
    from alerts.lifecycle import LifecycleError

    with psycopg.connect(_database()) as connection:
        try:
            with connection.transaction():
                alert, _, _ = store.change_alert(connection, alert_id, change)
        except (LifecycleError, LookupError) as error:
            raise _fail(str(error)) from None
    typer.echo(f"alert #{alert_id} {done}: now {alert.status.value}")


def _now() -> datetime:
    return datetime.now(UTC)


@alerts_app.command("ack")
def acknowledge(alert_id: int, by: ActorOption, note: NoteOption = "") -> None:
    """Acknowledge a firing alert: someone is on it (reminders and escalation stop).

    \b
    Example:
      smartcity alerts ack 42 --by crew-north --note "on our way"
    """
    from alerts import lifecycle

    _act(alert_id, lambda a: lifecycle.acknowledge(a, _now(), by, note), "acknowledged")


@alerts_app.command("repaired")
def repaired(alert_id: int, by: ActorOption, note: NoteOption = "") -> None:
    """Mark an alert repaired: resolved until telemetry confirms it, reopened if not.

    \b
    Example:
      smartcity alerts repaired 42 --by crew-north --note "LED driver replaced"
    """
    from alerts import lifecycle

    _act(alert_id, lambda a: lifecycle.mark_repaired(a, _now(), by, note), "marked repaired")


@alerts_app.command("close")
def close(alert_id: int, by: ActorOption, note: NoteOption = "") -> None:
    """Close an alert (a duplicate, a false alarm, work done and checked).

    \b
    Example:
      smartcity alerts close 42 --by technician-1 --note "false alarm: test lamp"
    """
    from alerts import lifecycle

    _act(alert_id, lambda a: lifecycle.close(a, _now(), by, note), "closed")


@alerts_app.command("silence")
def silence(  # noqa: PLR0917 - each option is a CLI flag
    by: ActorOption,
    reason: Annotated[str, typer.Option(help="Why (kept with the silence).")],
    duration: Annotated[str, typer.Option("--for", help="How long: 30m, 2h, 1d.")] = "2h",
    rule: Annotated[list[str] | None, typer.Option(help="Only this rule (repeatable).")] = None,
    device: Annotated[list[str] | None, typer.Option(help="Only this device.")] = None,
    street_group: Annotated[list[str] | None, typer.Option(help="Only this street.")] = None,
    building: Annotated[list[str] | None, typer.Option(help="Only this building.")] = None,
    maintenance: Annotated[
        bool, typer.Option(help="Planned maintenance work rather than a plain silence.")
    ] = False,
) -> None:
    """Mute the alerts that match, from now for a while (they are still recorded).

    \b
    Examples:
      smartcity alerts silence --street-group menzel --for 4h --maintenance \\
        --by crew-north --reason "cable work on the Menzel entrance"
      smartcity alerts silence --rule panel-soiled --for 7d --by energy-manager \\
        --reason "panels cleaned next week"
    """
    import psycopg

    from alerts import store
    from alerts.lifecycle import Silence
    from protocol.durations import parse_duration

    try:
        length = parse_duration(duration)
    except ValueError as error:
        raise _fail(str(error)) from None
    if length.total_seconds() <= 0:
        raise _fail("--for must be longer than zero")
    if not (rule or device or street_group or building):
        raise _fail("say what to silence: --rule, --device, --street-group or --building")
    start = _now()
    entry = Silence(
        0,
        start,
        start + length,
        maintenance,
        tuple(rule or ()),
        tuple(device or ()),
        tuple(street_group or ()),
        tuple(building or ()),
        reason,
    )
    with psycopg.connect(_database()) as connection:
        silence_id = store.add_silence(connection, entry, by)
    kind = "maintenance window" if maintenance else "silence"
    typer.echo(f"{kind} #{silence_id} until {entry.ends_at:%Y-%m-%d %H:%M}Z")
