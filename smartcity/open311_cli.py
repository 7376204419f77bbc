"""``smartcity open311``: the applications allowed to send citizens' reports (Open311)."""

from __future__ import annotations

from typing import Annotated

import typer

from smartcity.cli_support import fail, load_settings, require_database_url

open311_app = typer.Typer(
    help="Citizens' reports over Open311 GeoReport v2: client applications and their keys.",
    no_args_is_help=True,
)


@open311_app.command("client-add")
def client_add(
    client_id: Annotated[str, typer.Argument(help="Id: lower-case letters, digits, hyphens.")],
    name: Annotated[str, typer.Option("--name", help="Who runs the application.")],
) -> None:
    """Register a reporting application and print its API key, once (only its hash is kept).

    Example: smartcity open311 client-add fixmystreet --name "FixMyStreet Sefrou"
    """
    import psycopg

    from field_ops.reports import add_client
    from protocol.topics import IDENTIFIER_PATTERN

    if not IDENTIFIER_PATTERN.fullmatch(client_id):
        raise fail(f"client id {client_id!r}: use 1-64 lower-case letters, digits and hyphens")
    url = require_database_url(load_settings())
    try:
        with psycopg.connect(url) as connection:
            key = add_client(connection, client_id, name)
    except psycopg.errors.UniqueViolation:
        raise fail(f"there is already a client {client_id!r}") from None
    except psycopg.Error as error:
        raise fail(str(error)) from error
    typer.echo(f"client {client_id}: api_key {key}")
    typer.echo("give it to the application; it is not shown again", err=True)


@open311_app.command("client-revoke")
def client_revoke(
    client_id: Annotated[str, typer.Argument(help="The application's id.")],
) -> None:
    """Refuse an application's key from now on (its reports stay).

    Example: smartcity open311 client-revoke fixmystreet
    """
    from datetime import UTC, datetime

    import psycopg

    from field_ops.reports import revoke_client

    url = require_database_url(load_settings())
    try:
        with psycopg.connect(url) as connection:
            revoked = revoke_client(connection, client_id, datetime.now(UTC))
    except psycopg.Error as error:
        raise fail(str(error)) from error
    if not revoked:
        raise fail(f"there is no client {client_id!r} with a key in force")
    typer.echo(f"client {client_id}: key revoked")
