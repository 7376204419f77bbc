"""What every command shares: clear failures, the settings, the database it needs."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Final

import typer

if TYPE_CHECKING:
    from broker_config.accounts import Service
    from protocol.mqtt_account import MqttAccount
    from protocol.sites import SiteInventory
    from smartcity.settings import Settings


if TYPE_CHECKING:
    from control.strategy import Strategy

DEFAULT_SITE: Final = Path("sites/sefrou.yaml")
SITES_DIR: Final = Path(__file__).resolve().parents[1] / "sites"
SiteOption = Annotated[
    Path, typer.Option("--site", help="Site file, or the name of one in sites/ (e.g. sefrou).")
]


def site_path(site: Path) -> Path:
    """A site file's path; a bare name such as ``sefrou`` means ``sites/sefrou.yaml``."""
    if site.exists() or site.suffix or len(site.parts) > 1:
        return site
    return SITES_DIR / f"{site}.yaml"


def read_site(site: Path) -> SiteInventory:
    """The site inventory of ``site``; :class:`protocol.sites.SiteFileError` when it is bad."""
    from protocol.sites import load_site

    return load_site(site_path(site))


def progress_to_stderr(line: str) -> None:
    """A long run's progress: on stderr, so that stdout keeps only the result (or its JSON)."""
    typer.echo(f"... {line}", err=True)


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def load_settings() -> Settings:
    """The settings from the environment, or a clear error naming the bad variable."""
    from pydantic import ValidationError

    from smartcity.settings import Settings

    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"SMARTCITY_{'_'.join(str(part) for part in problem['loc']).upper()}: "
            f"{problem['msg']} (got {problem.get('input')!r})"
            for problem in error.errors()
        )
        raise fail(f"invalid setting: {problems}") from None


def service_account(settings: Settings, service: Service) -> MqttAccount | None:
    """``service``'s broker account from SMARTCITY_MQTT_ACCOUNTS_DIR, or a clear exit."""
    from broker_config.accounts import AccountError

    try:
        return settings.mqtt_account(service)
    except AccountError as error:
        raise fail(
            f"{error} (SMARTCITY_MQTT_ACCOUNTS_DIR: `smartcity broker` writes it)"
        ) from error


def require_database_url(settings: Settings) -> str:
    if not settings.database_url:
        raise fail(
            "no database: set DATABASE_URL (for example "
            "postgresql://postgres@127.0.0.1:5432/smartcity), or use `smartcity up`"
        )
    return settings.database_url


def require_current_schema(url: str) -> None:
    """Exit with a clear error unless the database answers with the schema this code needs."""
    from storage.revision import current_revision, head_revision

    try:
        revision = current_revision(url)
    except Exception as error:
        raise fail(f"cannot reach the database: {error}") from error
    if revision != head_revision():
        raise fail(f"schema is at {revision}, not {head_revision()}: run smartcity db migrate")


def parse_moment(text: str, option: str) -> datetime:
    """An ISO date or time given to ``option``; UTC when it names no zone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"{option} {text!r} is not an ISO date or time (e.g. 2026-01-01)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def strategy_from_database(database_url: str) -> tuple[Strategy, str]:
    """The active strategy in the database, else the packaged one; exit 2 when unreadable."""
    import psycopg

    from control.strategy_store import strategy_in_force

    try:
        with psycopg.connect(database_url, connect_timeout=5) as connection:
            return strategy_in_force(connection)
    except psycopg.Error as error:
        raise fail(f"cannot read the active strategy from the database: {error}") from error


UP_MQTT_PORT = 18830
UP_MQTT_DEVICE_PORT = 18831
UP_MQTT_TLS_PORT = 18883
UP_POSTGRES_PORT = 54329


def on_termination(stop: threading.Event) -> None:
    """Ctrl-C and SIGTERM set ``stop``; a second one exits at once, with code 130, after
    killing the broker and crashing the database this process started (an exception would
    leave the service threads, and the process, running)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            typer.echo("\nforced: stopping the broker and database at once", err=True)
            from runtime.local_services import stop_everything_started

            stop_everything_started()
            os._exit(130)
        typer.echo("\nstopping (Ctrl-C again to force)...", err=True)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def stop_when_set(stop: threading.Event, action: Callable[[], None]) -> None:
    def wait_then_act() -> None:
        stop.wait()
        action()

    threading.Thread(target=wait_then_act, daemon=True, name="stopper").start()
