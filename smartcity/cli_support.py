"""What every command shares: clear failures, the settings, the database it needs."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from pydantic import ValidationError

from smartcity.settings import Settings
from storage.migrate import current_revision, head_revision


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def load_settings() -> Settings:
    """The settings from the environment, or a clear error naming the bad variable."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"SMARTCITY_{'_'.join(str(part) for part in problem['loc']).upper()}: "
            f"{problem['msg']} (got {problem.get('input')!r})"
            for problem in error.errors()
        )
        raise fail(f"invalid setting: {problems}") from None


def require_database_url(settings: Settings) -> str:
    if not settings.database_url:
        raise fail(
            "no database: set DATABASE_URL (for example "
            "postgresql://postgres@127.0.0.1:5432/smartcity), or use `smartcity up`"
        )
    return settings.database_url


def require_current_schema(url: str) -> None:
    """Exit with a clear error unless the database answers with the schema this code needs."""
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
