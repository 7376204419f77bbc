"""``smartcity api`` (serve the HTTP API and the crew console) and ``smartcity users`` (people,
roles and tokens, for the first admin and for scripts)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

from api.roles import Role

if TYPE_CHECKING:
    import psycopg

import typer

from smartcity.cli_support import (
    fail,
    load_settings,
    require_current_schema,
    require_database_url,
    service_account,
)

users_app = typer.Typer(
    help="People and scripts that use the API: roles, places, passwords and tokens.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def api(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [SMARTCITY_API_HOST].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port [SMARTCITY_API_PORT].")
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
) -> None:
    """Serve the HTTP API (/api/v1, OpenAPI at /api/v1/openapi.json) and the crew console
    (/console/) until Ctrl-C.

    Example: DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity smartcity api --port 8080
    """
    from api.config import ApiConfig, DeviceBroker
    from api.server import ApiServerError, serve_forever
    from broker_config.accounts import Service
    from runtime import logs

    settings = load_settings()
    url = require_database_url(settings)
    require_current_schema(url)
    logs.configure(log_level)
    config = ApiConfig(
        database_url=url,
        mqtt_host=settings.mqtt_host,
        mqtt_port=settings.mqtt_port,
        mqtt_account=service_account(settings, Service.API),
        device_broker=DeviceBroker(
            settings.device_broker_host or settings.mqtt_host,
            settings.device_broker_port or None,
            settings.device_broker_tls_port or None,
        ),
        pool_size=settings.api_pool_size,
        session_lifetime=timedelta(hours=settings.api_session_hours),
        cors_origins=settings.api_cors_origins,
    )
    listen_host = host or settings.api_host
    listen_port = port or settings.api_port
    typer.echo(f"API on http://{listen_host}:{listen_port}/api/v1/docs, console on /console/")
    try:
        serve_forever(config, listen_host, listen_port)
    except ApiServerError as error:
        raise fail(str(error)) from error


def _connect() -> psycopg.Connection:
    import psycopg

    url = require_database_url(load_settings())
    require_current_schema(url)
    return psycopg.connect(url)


@users_app.command("add")
def add(  # noqa: PLR0917 - each option is a CLI flag
    username: Annotated[str, typer.Argument(help="Login name: a-z, 0-9, '.', '_', '-'.")],
    role: Annotated[Role, typer.Option(help="What the user may do.")],
    street_group: Annotated[
        list[str] | None, typer.Option(help="A crew's street group (repeat for several).")
    ] = None,
    building: Annotated[
        list[str] | None, typer.Option(help="A crew's building (repeat for several).")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    language: Annotated[str, typer.Option(help="en, fr or ar: the console's language.")] = "fr",
    password: Annotated[
        bool, typer.Option("--password", help="Ask for a console password.")
    ] = False,
) -> None:
    """Add a user.

    Example: smartcity users add crew-north --role crew --street-group route-el-menzel-north
    --password
    """
    import psycopg

    from api.accounts import AccountError, create_user

    if language not in {"en", "fr", "ar"}:
        raise fail(f"language {language!r}: give en, fr or ar")
    secret = _ask_password() if password else None
    try:
        with _connect() as connection:
            create_user(
                connection, username, role, display_name=name, language=language,
                street_groups=street_group or (), buildings=building or (), password=secret,
            )  # fmt: skip
    except AccountError as error:
        raise fail(str(error)) from error
    except psycopg.errors.CheckViolation as error:
        raise fail(f"user name {username!r}: use a-z, 0-9, '.', '_' and '-' only") from error
    typer.echo(f"user {username} added ({role.value})")


def _ask_password() -> str:
    secret: str = typer.prompt("password (10 characters at least)", hide_input=True)
    if len(secret) < 10:
        raise fail("the password is shorter than 10 characters")
    if typer.prompt("again", hide_input=True) != secret:
        raise fail("the two passwords differ")
    return secret


@users_app.command("password")
def password(username: Annotated[str, typer.Argument(help="The user.")]) -> None:
    """Set a user's console password (asked twice, never echoed).

    Example: smartcity users password crew-north
    """
    from api.accounts import AccountError, update_user

    secret = _ask_password()
    try:
        with _connect() as connection:
            update_user(connection, username, {"password": secret})
    except AccountError as error:
        raise fail(str(error)) from error
    typer.echo(f"password of {username} set")


@users_app.command("token")
def token(
    username: Annotated[str, typer.Argument(help="The user the token acts as.")],
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Lifetime; default: until revoked.")
    ] = None,
) -> None:
    """Make an API token and print it once (only its hash is kept).

    Example: smartcity users token admin --label "first admin" --days 30
    """
    from api.accounts import issue_token, list_users

    with _connect() as connection:
        found = {user.username for user in list_users(connection)}
        if username not in found:
            raise fail(f"no user {username!r}; add one with `smartcity users add`")
        secret, info = issue_token(
            connection,
            username,
            label=label,
            lifetime=timedelta(days=days) if days else None,
            now=datetime.now(UTC),
        )
    typer.echo(secret)
    typer.echo(f"(token {info.token_id} of {username}: shown this once)", err=True)


@users_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """List users with their roles and places.

    Example: smartcity users list --json
    """
    from api.accounts import list_users

    with _connect() as connection:
        users = list_users(connection)
    rows = [
        {
            "username": user.username,
            "role": user.role.value,
            "street_groups": user.street_groups,
            "buildings": user.buildings,
            "language": user.language,
            "disabled": user.disabled_at is not None,
        }
        for user in users
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        places = ", ".join([*row["street_groups"], *row["buildings"]]) or "-"  # type: ignore[misc]
        state = " (disabled)" if row["disabled"] else ""
        typer.echo(f"{row['username']:<20} {row['role']:<15} {places}{state}")
