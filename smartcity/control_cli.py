"""The HVAC control service as a command, until Ctrl-C or SIGTERM (docs/energy-control.md).

What the commands of the control services share (the lighting one, smartcity/lighting_cli.py,
too) is here as well: their common options, their start (site, strategy, command policy,
database), and running a service until a signal or an event stops it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

if TYPE_CHECKING:
    from control.commanding import CommandPolicy
    from control.hvac_service import ControlConfig
    from control.service import CommandingService, ServiceConfig
    from control.strategy import Strategy
    from smartcity.settings import Settings
import typer

from smartcity.cli_support import (
    fail,
    load_settings,
    read_site,
    require_current_schema,
    require_database_url,
    service_account,
    strategy_from_database,
)

SiteOption = Annotated[
    str,
    typer.Option(
        help="The site in the registry whose devices are commanded (e.g. sefrou), or a site "
        "file, whose id is taken."
    ),
]
AckTimeoutOption = Annotated[
    float, typer.Option(help="Seconds to wait for an answer before sending again.", min=1)
]
AttemptsOption = Annotated[
    int, typer.Option(help="Sends of one command at most, then it is unanswered.", min=1)
]
EventTimeOption = Annotated[
    bool, typer.Option(help="Take the time from the readings (accelerated simulations).")
]
ClientIdOption = Annotated[str, typer.Option(help="MQTT client id (its session).")]
LogLevelOption = Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")]
Config = TypeVar("Config", bound="ServiceConfig")


def strategy_option(what: str) -> Any:
    """The ``--strategy`` option, ``what`` the file is."""
    return typer.Option(
        help=f"{what}; default: the active strategy in the database, else the packaged one."
    )


def expiry_option(device: str) -> Any:
    """The ``--expiry`` option, for commands to a ``device``."""
    return typer.Option(help=f"Seconds a command may take to reach its {device}.", min=1)


def run_service(
    service: CommandingService[Any, Any], stop: threading.Event | None = None, *, name: str
) -> None:
    """Run ``service`` until ``stop`` is set, or (from the main thread) Ctrl-C or SIGTERM;
    ``name``: the thread watching ``stop``."""
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            service.stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    if stop is not None:

        def watch() -> None:
            stop.wait()
            service.stop()

        threading.Thread(target=watch, name=name, daemon=True).start()
    service.run()


def run_control(config: ControlConfig, stop: threading.Event | None = None) -> None:
    """Run the service until ``stop`` is set, or (from the main thread) Ctrl-C or SIGTERM."""
    from control.hvac_service import HvacControlService

    run_service(HvacControlService(config), stop, name="control-stop")


@dataclass(frozen=True)
class ControlStart:
    """What a control command starts its service with, options and environment read."""

    database_url: str
    site: str
    """The site's id: its devices are the registry's."""
    strategy: Strategy
    follow: bool
    """The strategy is the database's: one activated later is taken up."""
    commands: CommandPolicy
    settings: Settings

    def config(self, kind: type[Config], *, client_id: str, event_time: bool, **own: Any) -> Config:
        """The service's settings: those every control shares, and its ``own``."""
        from broker_config.accounts import Service

        return kind(
            self.database_url,
            self.site,
            self.strategy,
            mqtt_host=self.settings.mqtt_host,
            mqtt_port=self.settings.mqtt_port,
            mqtt_account=service_account(self.settings, Service.CONTROL),
            client_id=client_id,
            commands=self.commands,
            event_time=event_time,
            follow_active_strategy=self.follow,
            **own,
        )


def site_id(site: str) -> str:
    """The site a control command names: an id as it is, a site file (a path, or a name
    ending in ``.yaml``) by the id it declares."""
    path = Path(site)
    if path.suffix in {".yaml", ".yml"} or len(path.parts) > 1:
        return read_site(path).site.id
    return site


def start_control(  # noqa: PLR0917 - the options of the command
    site: str,
    strategy: Path | None,
    expiry: float,
    ack_timeout: float,
    attempts: int,
    log_level: str,
    *,
    followed: str = "",
) -> ControlStart:
    """Logging configured, the site, strategy and command policy read (exit 2 when bad), the
    database reached; without a strategy file, the database's (its label told on stderr, then
    ``followed``)."""
    from control.commanding import CommandPolicy
    from control.strategy import StrategyFileError, load_strategy
    from protocol.sites import SiteFileError
    from runtime import logs

    logs.configure(log_level)
    try:
        site = site_id(site)
        chosen = load_strategy(strategy) if strategy is not None else None
        policy = CommandPolicy(expiry_s=expiry, ack_timeout_s=ack_timeout, max_attempts=attempts)
    except (SiteFileError, StrategyFileError, ValueError) as error:
        raise fail(str(error)) from error
    settings = load_settings()
    url = require_database_url(settings)
    require_current_schema(url)
    follow = chosen is None
    if chosen is None:
        chosen, label = strategy_from_database(url)
        typer.echo(f"strategy: {label}{followed}", err=True)
    return ControlStart(url, site, chosen, follow, policy, settings)


def serve(run: Callable[[], None]) -> None:
    """``run`` the service; a bad setting or database error exits 2."""
    import psycopg

    try:
        run()
    except (ValueError, psycopg.Error) as error:
        raise fail(str(error)) from error


def control(  # noqa: PLR0917 - each option is a CLI flag
    strategy: Annotated[Path | None, strategy_option("Strategy file (docs/energy.md)")] = None,
    site: SiteOption = "sefrou",
    period: Annotated[float, typer.Option(help="Seconds between decisions.", min=10)] = 300.0,
    expiry: Annotated[float, expiry_option("zone")] = 120.0,
    ack_timeout: AckTimeoutOption = 60.0,
    attempts: AttemptsOption = 3,
    event_time: EventTimeOption = False,
    client_id: ClientIdOption = "smartcity-hvac-control",
    log_level: LogLevelOption = "INFO",
) -> None:
    """Run the HVAC control service: zone readings in, set_hvac commands out.

    Every --period it decides each zone's mode and setpoints by the strategy (comfort,
    standby, setback, optimum start and stop...), commands the zones that need it, resends a
    command nobody acknowledged, records every command and its outcome in the commands table,
    and raises an alert when a zone does not answer, refuses, or does not follow.
    The broker is SMARTCITY_MQTT_HOST:SMARTCITY_MQTT_PORT, the database DATABASE_URL.

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1:54329/smartcity SMARTCITY_MQTT_PORT=18830 \\
        smartcity energy control --site sefrou --strategy my-strategy.yaml --period 300
    """
    from control.hvac_service import ControlConfig

    started = start_control(
        site,
        strategy,
        expiry,
        ack_timeout,
        attempts,
        log_level,
        followed="; a version activated later is taken up",
    )
    config = started.config(
        ControlConfig, client_id=client_id, event_time=event_time, period_s=period
    )
    serve(lambda: run_control(config))
