"""The ``smartcity`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    from ingest.service import IngestService
    from runtime.local_services import LocalMosquitto
    from smartcity.broker_security import (
        SecurityFolder,
    )
    from smartcity.settings import Settings
import typer

from smartcity.alerts_cli import alerts_app
from smartcity.api_cli import api as api_command
from smartcity.api_cli import users_app
from smartcity.bench_cli import bench_app
from smartcity.cli_support import (
    DEFAULT_SITE,
    UP_MQTT_DEVICE_PORT,
    UP_MQTT_PORT,
    UP_MQTT_TLS_PORT,
    UP_POSTGRES_PORT,
    SiteOption,
    fail,
    load_settings,
    on_termination,
    require_current_schema,
    require_database_url,
    service_account,
    site_path,
    stop_when_set,
)
from smartcity.dashboards_cli import dashboards_app
from smartcity.db_cli import db_app
from smartcity.energy_cli import energy_app
from smartcity.fleet_cli import agent, history, provision, simulate
from smartcity.open311_cli import open311_app
from smartcity.rules_cli import rules_app

app = typer.Typer(
    help="Telemetry and control platform for a city's connected infrastructure.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")
app.add_typer(bench_app, name="bench")
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")
app.add_typer(energy_app, name="energy")
app.add_typer(users_app, name="users")
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(open311_app, name="open311")
app.command("api")(api_command)
for command in (provision, simulate, history, agent):
    app.command()(command)

log = logging.getLogger("smartcity")


@app.command()
def ingest(
    share_group: Annotated[
        str | None, typer.Option(help="Split the stream with other workers ($share/GROUP/).")
    ] = None,
    worker: Annotated[
        str,
        typer.Option(
            help="This worker's name in its share group: stable across restarts, so a "
            "restarted worker takes back its own session and the messages it held."
        ),
    ] = "1",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
) -> None:
    """Run the MQTT-to-database ingest service until Ctrl-C or SIGTERM.

    Example: DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity SMARTCITY_MQTT_PORT=1883
    smartcity ingest
    """
    from ingest.metrics import serve_metrics
    from runtime import logs

    logs.configure(log_level)
    settings = load_settings()
    url = require_database_url(settings)
    require_current_schema(url)
    service = make_ingest_service(settings, url, share_group, worker)
    stop = threading.Event()
    on_termination(stop)
    stop_when_set(stop, service.stop)
    server = serve_metrics(service.metrics, settings.ingest_metrics_port)
    try:
        service.run()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def make_ingest_service(
    settings: Settings, url: str, share_group: str | None = None, worker: str = "1"
) -> IngestService:
    from broker_config.accounts import Service
    from ingest.service import IngestConfig, IngestService

    client_id = settings.ingest_client_id
    if share_group:
        client_id = f"{client_id}-{share_group}-{worker}"
    return IngestService(
        IngestConfig(
            database_url=url,
            mqtt_host=settings.mqtt_host,
            mqtt_port=settings.mqtt_port,
            mqtt_account=service_account(settings, Service.INGEST),
            client_id=client_id,
            share_group=share_group,
            batch_max_messages=settings.ingest_batch_max_messages,
            batch_max_seconds=settings.ingest_batch_max_seconds,
            receive_maximum=settings.ingest_receive_maximum,
            max_held_bytes=settings.ingest_max_held_bytes,
            log_level=logging.getLevelName(logging.getLogger().level),
            registry_refresh_s=settings.ingest_registry_refresh_s,
            maintenance_interval_s=settings.maintenance_interval_s,
        )
    )


@app.command()
def broker(
    port: Annotated[
        int, typer.Option(help="Port of the services' listener (loopback).")
    ] = UP_MQTT_PORT,
    device_port: Annotated[
        int | None,
        typer.Option(
            help="Port of a loopback listener for devices with passwords; 0: none."
            f" [default: SMARTCITY_DEVICE_BROKER_PORT, else {UP_MQTT_DEVICE_PORT}]",
            show_default=False,
        ),
    ] = None,
    tls_port: Annotated[
        int | None,
        typer.Option(
            help="Port of the devices' TLS listener; 0: none."
            f" [default: SMARTCITY_DEVICE_BROKER_TLS_PORT, else {UP_MQTT_TLS_PORT}]",
            show_default=False,
        ),
    ] = None,
    tls_bind: Annotated[
        str, typer.Option(help="Address of the devices' TLS listener.")
    ] = "0.0.0.0",  # noqa: S104 - devices reach it over the city network
    host: Annotated[
        list[str] | None,
        typer.Option(help="Name or address devices use to reach the broker (repeatable)."),
    ] = None,
) -> None:
    """Run the platform's own Mosquitto, secured, until Ctrl-C (docs/security.md).

    Anonymous access is off. Services log in on the loopback listener with their accounts
    (made once under SMARTCITY_STATE_DIR/security/accounts; point SMARTCITY_MQTT_ACCOUNTS_DIR
    there). Devices connect over TLS with the certificate `smartcity provision --credentials`
    gave them; simulated devices (`simulate --device-passwords`) on the loopback device
    listener with their passwords. With DATABASE_URL set, devices provisioned, rotated or
    decommissioned later are let in or put out within 10 s.

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity \\
        smartcity broker --host broker.sefrou.ma --tls-port 8883
    """
    import psycopg

    from broker_config import BrokerSecurity
    from broker_config.accounts import AccountError
    from broker_config.pki import PkiError
    from runtime.local_services import LocalMosquitto, LocalServiceError
    from smartcity.broker_security import AccessSync, BrokerAccess, SecurityFolder, sync_access

    settings = load_settings()
    # The API tells devices these same ports (SMARTCITY_DEVICE_BROKER_*), so both agree.
    device_port = settings.device_broker_port if device_port is None else device_port
    tls_port = settings.device_broker_tls_port if tls_port is None else tls_port
    if not host and settings.device_broker_host:
        host = [settings.device_broker_host]
    state_dir = settings.state_dir.resolve()
    security = SecurityFolder(state_dir / "security")
    stop = threading.Event()
    on_termination(stop)  # from here on, SIGTERM and Ctrl-C stop the broker cleanly
    try:
        listener = security.device_listener(tls_port, host or [], tls_bind) if tls_port else None
        mosquitto = LocalMosquitto(
            state_dir / "broker",
            port,
            security=BrokerSecurity(listener, device_port or None),
            autosave=settings.autosave,
        )
        authority = security.certificate_authority() if listener is not None else None
        access = BrokerAccess(
            mosquitto.layout, security.service_logins(), settings.database_url, authority
        )
        report = sync_access(access)
    except (AccountError, PkiError, OSError, psycopg.Error) as error:
        raise fail(str(error)) from error
    sync = AccessSync(access, mosquitto.reload)
    try:
        mosquitto.start()
        sync.start()
        _describe_broker(mosquitto, security, report.devices)
        if report.database_error is not None:
            typer.echo(
                f"warning: the database cannot be read ({report.database_error}); devices'"
                " passwords are those last synced, and the next syncs will try again",
                err=True,
            )
        if listener is not None and not host and tls_bind not in {"127.0.0.1", "localhost"}:
            typer.echo(
                "warning: the server certificate names only localhost and 127.0.0.1; give "
                "--host with the name devices use, or they will refuse the broker",
                err=True,
            )
        while not stop.wait(1):
            if not mosquitto.running:
                raise fail(f"mosquitto exited; see {mosquitto.layout.log_file}")
    except LocalServiceError as error:
        raise fail(str(error)) from error
    finally:
        mosquitto.stop()  # first: a second Ctrl-C must not leave the broker behind
        sync.stop()


def _describe_broker(broker: LocalMosquitto, security: SecurityFolder, devices: int) -> None:
    from broker_config.accounts import Service

    layout = broker.layout
    typer.echo(f"mosquitto: services on 127.0.0.1:{layout.port}, config {layout.config_file}")
    options = layout.security
    if options is not None and options.local_device_port is not None:
        typer.echo(f"simulated devices (passwords) on 127.0.0.1:{options.local_device_port}")
    if options is not None and options.device_listener is not None:
        listener = options.device_listener
        typer.echo(
            f"devices: TLS on {listener.bind_address}:{listener.port}, CA {listener.ca_file}"
        )
    typer.echo(
        f"accounts: {len(Service)} services (passwords in {security.accounts_dir}), "
        f"{devices} devices with a password"
    )


@app.command()
def up(  # noqa: PLR0917 - each option is a CLI flag
    site: SiteOption = DEFAULT_SITE,
    mqtt_port: Annotated[
        int, typer.Option(help="Port of the broker's listener for the services.")
    ] = UP_MQTT_PORT,
    mqtt_device_port: Annotated[
        int, typer.Option(help="Port of the broker's listener for the simulated devices.")
    ] = UP_MQTT_DEVICE_PORT,
    mqtt_tls_port: Annotated[
        int, typer.Option(help="Port of the broker's TLS listener for devices (loopback); 0: none.")
    ] = UP_MQTT_TLS_PORT,
    postgres_port: Annotated[
        int, typer.Option(help="Port of the local PostgreSQL (unused with DATABASE_URL).")
    ] = UP_POSTGRES_PORT,
    speed: Annotated[float, typer.Option(help="Simulation speed (see `simulate --help`).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated city.")] = 1,
    random_faults: Annotated[
        float, typer.Option(help="Random faults per device per year in the simulated city.")
    ] = 4.0,
    rules: Annotated[
        Path | None, typer.Option(help="Rule file (default: rules/default_rules.yaml).")
    ] = None,
    notifications: Annotated[
        Path | None,
        typer.Option(help="Notification routes (docs/alerts.md); none: alerts only."),
    ] = None,
) -> None:
    """Run the whole platform on the simulated city until Ctrl-C: broker, database, ingest,
    the rules engine and every simulated device.

    Example: smartcity up            (or, with your own database:
    DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity smartcity up)
    """
    import psycopg

    from alerts.routing import NotificationConfigError, load_notification_config
    from broker_config.accounts import AccountError
    from broker_config.pki import PkiError
    from protocol.sites import SiteFileError
    from rules import PACKAGED_RULES
    from rules.model import RuleFileError, load_rules
    from runtime import logs
    from runtime.local_services import LocalServiceError
    from smartcity.up import UpOptions, run_platform
    from storage.errors import MigrationError

    logs.configure("WARNING", json_lines=False)
    settings = load_settings()
    stop = threading.Event()
    on_termination(stop)
    options = UpOptions(
        site_path(site),
        settings.state_dir,
        mqtt_port,
        postgres_port,
        settings.database_url,
        settings.ingest_metrics_port,
        speed=speed,
        seed=seed,
        random_faults_per_device_year=random_faults,
        rules_file=rules or PACKAGED_RULES,
        api_host=settings.api_host,
        api_port=settings.api_port,
        mqtt_device_port=mqtt_device_port,
        mqtt_tls_port=mqtt_tls_port or None,
        broker_autosave=settings.autosave,
    )
    try:
        load_rules(options.rules_file)  # a bad file stops here, before anything starts
        if notifications is not None:
            options = replace(options, notifications=load_notification_config(notifications))
        run_platform(options, stop)
    except (
        LocalServiceError,
        SiteFileError,
        MigrationError,
        RuleFileError,
        NotificationConfigError,
        AccountError,
        PkiError,
        psycopg.Error,
    ) as error:
        raise fail(str(error)) from error


def main() -> None:
    app()


if __name__ == "__main__":
    main()
