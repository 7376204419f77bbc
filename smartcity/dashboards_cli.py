"""``smartcity dashboards``: build the Grafana dashboards' JSON, check it, push it to a Grafana.

The dashboards are Python (``dashboards/``); their JSON in ``dashboards/json`` is generated and
committed, so Grafana's file provisioning reads it directly (docs/dashboards.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smartcity.cli_support import fail

dashboards_app = typer.Typer(
    help="Grafana dashboards as code: build their JSON, check it, push it to a Grafana.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _json_dir() -> Path:
    from dashboards.build import JSON_DIR

    return JSON_DIR


def _default_folder() -> str:
    from dashboards.push import DEFAULT_FOLDER

    return DEFAULT_FOLDER


@dashboards_app.command("build")
def build(
    output: Annotated[
        Path,
        typer.Option(
            help="Folder of the JSON files [default: dashboards/json].",
            file_okay=False,
            default_factory=_json_dir,
            show_default=False,
        ),
    ],
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Write nothing; exit 1 when the files differ from what the code makes."
        ),
    ] = False,
) -> None:
    """Write every dashboard's JSON, one <uid>.json each, or check the committed files.

    \b
    Examples:
      smartcity dashboards build
      smartcity dashboards build --check      # in CI: is the committed JSON up to date?
    """
    from dashboards.build import differences, rendered, write_all

    if check:
        problems = differences(output)
        for problem in problems:
            typer.echo(f"{output / problem}", err=True)
        if problems:
            typer.secho(
                "the dashboards' JSON is not what the code generates: run "
                "`smartcity dashboards build` and commit the result",
                err=True,
                fg=typer.colors.RED,
            )
            raise typer.Exit(code=1)
        typer.echo(f"{len(rendered())} dashboards up to date in {output}")
        return
    try:
        written = write_all(output)
    except OSError as error:
        raise fail(f"cannot write the dashboards into {output}: {error}") from None
    typer.echo(f"{len(written)} dashboards written to {output}")


@dashboards_app.command("push")
def push_dashboards(
    url: Annotated[
        str,
        typer.Option(
            help="Grafana's base URL, e.g. http://127.0.0.1:3000.", envvar="SMARTCITY_GRAFANA_URL"
        ),
    ],
    token: Annotated[
        str,
        typer.Option(
            help="A Grafana service account token (Editor); better given in the environment.",
            envvar="SMARTCITY_GRAFANA_TOKEN",
        ),
    ],
    folder: Annotated[
        str,
        typer.Option(
            help="The Grafana folder to put them in; created when missing [default: Smart city].",
            default_factory=_default_folder,
            show_default=False,
        ),
    ],
) -> None:
    """Push every dashboard to a running Grafana, replacing the versions already there.

    The data source they read must exist in that Grafana with the uid smartcity-postgres
    (dashboards/provisioning/datasources/smartcity.yaml creates it).

    \b
    Examples:
      SMARTCITY_GRAFANA_TOKEN=glsa_... smartcity dashboards push --url http://127.0.0.1:3000
      smartcity dashboards push --url https://grafana.sefrou.ma --token glsa_... --folder "Sefrou"
    """
    from dashboards.errors import PushError
    from dashboards.push import push

    try:
        report = push(url, token, folder)
    except ValueError as error:
        raise fail(str(error)) from None
    except PushError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from None
    created = " (created)" if report.folder_created else ""
    typer.echo(
        f"{len(report.dashboards)} dashboards pushed to folder {folder!r}{created} at {url}: "
        + ", ".join(report.dashboards)
    )
