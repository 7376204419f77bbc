"""The lighting control service as a command, until Ctrl-C or SIGTERM (docs/lighting.md,
"Live: sending each night's schedule")."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from control.lighting_service import LightingConfig
from smartcity.control_cli import (
    AckTimeoutOption,
    AttemptsOption,
    ClientIdOption,
    EventTimeOption,
    LogLevelOption,
    SiteOption,
    expiry_option,
    run_service,
    serve,
    start_control,
    strategy_option,
)


def run_lighting(config: LightingConfig, stop: threading.Event | None = None) -> None:
    """Run the service until ``stop`` is set, or (from the main thread) Ctrl-C or SIGTERM."""
    from control.lighting_service import LightingControlService

    run_service(LightingControlService(config), stop, name="lighting-stop")


def _plan_above_gate() -> float:
    from control.lighting_service import PLAN_ABOVE_GATE_DEG

    return PLAN_ABOVE_GATE_DEG


def lighting(  # noqa: PLR0917 - each option is a CLI flag
    plan_above_gate: Annotated[
        float,
        typer.Option(
            help="Plan when the setting sun is this many degrees above the lamps' switching "
            "elevation [default: 7].",
            min=0.5,
            max=30,
            default_factory=_plan_above_gate,
            show_default=False,
        ),
    ],
    strategy: Annotated[
        Path | None,
        strategy_option("Strategy file whose lighting: mapping is the policy (docs/lighting.md)"),
    ] = None,
    site: SiteOption = "sefrou",
    expiry: Annotated[float, expiry_option("light")] = 120.0,
    ack_timeout: AckTimeoutOption = 60.0,
    attempts: AttemptsOption = 3,
    event_time: EventTimeOption = False,
    client_id: ClientIdOption = "smartcity-lighting-control",
    log_level: LogLevelOption = "INFO",
) -> None:
    """Run the lighting control service: streetlight readings in, set_schedule commands out.

    Every evening, when the setting sun passes --plan-above-gate degrees above the lamps'
    switching elevation (shortly before the lamps come on), it
    plans the night of every streetlight it has heard from, dimmed to what its battery can
    afford (docs/lighting.md), and sends each its schedule. It resends a command nobody
    acknowledged, records every command and its outcome in the commands table (source
    lighting-control), and raises an alert when a light does not answer or refuses.
    The broker is SMARTCITY_MQTT_HOST:SMARTCITY_MQTT_PORT, the database DATABASE_URL.

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1:54329/smartcity SMARTCITY_MQTT_PORT=18830 \\
        smartcity energy lighting --site sefrou --strategy my-strategy.yaml
    """
    from control.lighting_service import LightingConfig

    started = start_control(site, strategy, expiry, ack_timeout, attempts, log_level)
    serve(
        lambda: run_lighting(
            started.config(
                LightingConfig,
                client_id=client_id,
                event_time=event_time,
                plan_above_gate_deg=plan_above_gate,
            )
        )
    )


def signs(  # noqa: PLR0917 - each option is a CLI flag
    strategy: Annotated[
        Path | None,
        strategy_option("Strategy file whose lighting: mapping sets the signs' levels"),
    ] = None,
    site: SiteOption = "sefrou",
    expiry: Annotated[float, expiry_option("sign")] = 120.0,
    ack_timeout: AckTimeoutOption = 60.0,
    attempts: AttemptsOption = 3,
    event_time: EventTimeOption = False,
    client_id: ClientIdOption = "smartcity-sign-control",
    log_level: LogLevelOption = "INFO",
) -> None:
    """Run the sign control service: each sign follows ambient light between the lighting
    policy's sign_minimum_level and sign_maximum_level.

    It sends every sign it hears from a set_brightness without a level (the ends of its
    photocell curve, kept until replaced), again when the policy changes or a sign did not
    apply it, records each command and its outcome in the commands table (source
    sign-control), and raises an alert when a sign does not answer or refuses.

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1:54329/smartcity SMARTCITY_MQTT_PORT=18830 \\
        smartcity energy signs --site sefrou
    """
    from control.sign_service import SignConfig, SignControlService

    started = start_control(site, strategy, expiry, ack_timeout, attempts, log_level)
    config = started.config(SignConfig, client_id=client_id, event_time=event_time)
    serve(lambda: run_service(SignControlService(config), name="signs-stop"))
