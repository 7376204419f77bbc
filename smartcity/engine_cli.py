"""``smartcity rules run``: the rules engine as a service, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    from rules.service import RulesService
import typer

from rules import PACKAGED_RULES
from smartcity.cli_support import (
    fail,
    load_settings,
    require_current_schema,
    require_database_url,
    service_account,
)


def run_engine(  # noqa: PLR0917 - each option is a CLI flag
    rules: Annotated[
        Path,
        typer.Option(
            help="Rule file (docs/rules.md), unless a rule set is active in the database."
        ),
    ] = PACKAGED_RULES,
    notifications: Annotated[
        Path | None,
        typer.Option(help="Notification routes (docs/alerts.md); none: alerts only."),
    ] = None,
    event_time: Annotated[
        bool, typer.Option(help="Take the time from the readings (accelerated simulations).")
    ] = False,
    client_id: Annotated[str, typer.Option(help="MQTT client id (its session).")] = (
        "smartcity-rules"
    ),
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
    partition: Annotated[
        str,
        typer.Option(
            help="I/N: this worker keeps only the devices whose stable hash modulo N is I "
            "(run one worker for each I of 0..N-1; docs/scaling.md). Its MQTT client id "
            "gets -I-of-N appended."
        ),
    ] = "0/1",
) -> None:
    """Run the rules engine: readings in, alerts and notifications out (docs/alerts.md).

    The broker is SMARTCITY_MQTT_HOST:SMARTCITY_MQTT_PORT, the database DATABASE_URL.
    SIGHUP reloads the rule file (a file with errors is refused, the running rules stay), or,
    while a rule set activated in the database is in force, that rule set (docs/api-rules.md);
    Ctrl-C or SIGTERM stops it after the batch under way.

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity SMARTCITY_MQTT_PORT=1883 \\
        smartcity rules run --notifications notifications.yaml
    Two workers sharing the fleet, each in its own terminal:
      smartcity rules run --partition 0/2
      smartcity rules run --partition 1/2
    """
    import psycopg

    from alerts.routing import NotificationConfigError, load_notification_config
    from broker_config.accounts import Service
    from rules.model import RuleFileError
    from rules.partition import Partition
    from rules.service import RulesConfig, RulesService
    from runtime import logs

    try:
        worker = Partition.parse(partition)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--partition") from None
    logs.configure(log_level)
    settings = load_settings()
    url = require_database_url(settings)
    require_current_schema(url)
    try:
        routes = load_notification_config(notifications) if notifications else None
        service = RulesService(
            RulesConfig(
                url,
                rules,
                mqtt_host=settings.mqtt_host,
                mqtt_port=settings.mqtt_port,
                mqtt_account=service_account(settings, Service.RULES),
                client_id=worker.client_id(client_id),
                notifications=routes,
                event_time=event_time,
                partition=worker,
            )
        )
    except (RuleFileError, NotificationConfigError, psycopg.Error) as error:
        raise fail(str(error)) from error
    _handle_signals(service)
    service.run()


def _handle_signals(service: RulesService) -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        service.stop()

    def reload(signum: int, frame: FrameType | None) -> None:
        # Reading the file is quick; the swap happens in the service's own thread.
        threading.Thread(target=service.reload, name="reload", daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
