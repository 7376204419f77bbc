"""The city's devices: ``provision`` them, ``simulate`` them live, write their ``history``,
run one ``agent``."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from protocol.mqtt_account import MqttAccount
    from protocol.sites import SiteInventory
    from smartcity.broker_security import (
        BundleTarget,
    )
    from smartcity.settings import Settings
import typer

from smartcity.cli_support import (
    DEFAULT_SITE,
    UP_MQTT_TLS_PORT,
    SiteOption,
    fail,
    load_settings,
    on_termination,
    parse_moment,
    progress_to_stderr,
    read_site,
    require_database_url,
)
from smartcity.simulation_options import (
    ClearnessOption,
    CloudyDaysOption,
    CloudyFromOption,
    Lighting,
    LightingOption,
    lighting_program,
    overcast_run,
)


def provision(  # noqa: PLR0917 - each option is a CLI flag
    site_file: Annotated[Path, typer.Argument(help="Site inventory file.")],
    credentials: Annotated[
        Path | None,
        typer.Option(
            help="Also give devices broker credentials, one bundle per device in this folder "
            "(password, certificate and key from the platform's CA, broker.yaml)."
        ),
    ] = None,
    rotate: Annotated[
        bool,
        typer.Option(
            help="With --credentials: new credentials for every device, not only new ones."
        ),
    ] = False,
    device: Annotated[
        list[str] | None,
        typer.Option(
            help="With --credentials: new credentials for this device only, even if it has some "
            "(repeatable; any device in the registry)."
        ),
    ] = None,
    broker_host: Annotated[
        str | None,
        typer.Option(help="Broker name devices connect to (default: SMARTCITY_MQTT_HOST)."),
    ] = None,
    broker_port: Annotated[
        int, typer.Option(help="The broker's TLS port for devices.")
    ] = UP_MQTT_TLS_PORT,
) -> None:
    """Load a site's devices into the registry (creates or updates; idempotent), and with
    --credentials give each device its broker account and certificate (docs/security.md).

    \b
    Example:
      smartcity provision sites/sefrou.yaml
      smartcity provision sites/sefrou.yaml --credentials ./bundles --broker-host broker.sefrou.ma
      smartcity provision sites/sefrou.yaml --credentials ./bundles --device sl-menzel-n-001
    """
    import psycopg

    from protocol.sites import SiteFileError
    from smartcity.broker_security import BundleTarget, devices_without_credentials
    from storage.registry import load_registry, upsert_site

    if (rotate or device) and credentials is None:
        raise typer.BadParameter("--rotate and --device go with --credentials")
    settings = load_settings()
    url = require_database_url(settings)
    try:
        inventory = read_site(site_file)
        with psycopg.connect(url) as connection:
            count = upsert_site(connection, inventory)
            registered = set(load_registry(connection))
    except SiteFileError as error:
        raise fail(str(error)) from error
    except psycopg.Error as error:
        raise fail(f"{error}".strip() + " (has `smartcity db migrate` run?)") from error
    typer.echo(f"site {inventory.site.id}: {count} devices provisioned")
    if credentials is None:
        return
    unknown = sorted(set(device or ()) - registered)
    if unknown:
        raise fail(f"not in the registry (or decommissioned): {', '.join(unknown)}")
    site_devices = [d.id for d in inventory.devices]
    if device:
        chosen = list(dict.fromkeys(device))
    elif rotate:
        chosen = site_devices
    else:
        chosen = devices_without_credentials(url, site_devices)
    target = BundleTarget(broker_host or settings.mqtt_host, broker_port)
    _issue_credentials(settings, url, chosen, credentials, target)
    kept = len(site_devices) - len(set(chosen) & set(site_devices))
    typer.echo(
        f"credentials: {len(chosen)} devices in {credentials} (the passwords are nowhere else);"
        f" {kept} of the site kept theirs"
        + ("" if rotate or device else " (--rotate or --device replace them)")
    )
    typer.echo("a running `smartcity broker` with DATABASE_URL lets them in within 10 s")


def _issue_credentials(
    settings: Settings, url: str, device_ids: list[str], out_dir: Path, target: BundleTarget
) -> None:
    """Write each device's bundle, then store the passwords' hashes: a failure on the way
    leaves the credentials in force untouched and removes the bundles written."""
    import psycopg

    from broker_config.accounts import new_device_password
    from broker_config.pki import PkiError
    from smartcity.broker_security import (
        SecurityFolder,
        store_device_passwords,
        write_device_bundle,
    )

    written: list[Path] = []
    serials: list[tuple[int, str]] = []
    passwords = {device_id: new_device_password() for device_id in device_ids}
    try:
        authority = SecurityFolder(
            settings.state_dir.resolve() / "security"
        ).certificate_authority()
        for done, (device_id, password) in enumerate(passwords.items(), start=1):
            bundle, serial = write_device_bundle(authority, out_dir, device_id, password, target)
            written.append(bundle)
            serials.append((serial, device_id))
            if done % 200 == 0:
                typer.echo(f"  {done}/{len(passwords)} bundles written")
        store_device_passwords(url, passwords, "provision", datetime.now(UTC))
    except (PkiError, OSError, psycopg.Error) as error:
        for bundle in written:
            shutil.rmtree(bundle, ignore_errors=True)
        raise fail(f"{error} (no credentials changed)") from error
    try:
        authority.record_issued(serials)  # the certificates before are revoked at the next sync
    except OSError as error:
        raise fail(
            f"the certificates were not recorded in {authority.index_file}: {error}; they"
            f" stay pending ({authority.pending_file}), revoked at the broker's next sync:"
            " run provision again for these devices"
        ) from error


def simulate(  # noqa: PLR0917 - each option is a CLI flag
    site: SiteOption = DEFAULT_SITE,
    speed: Annotated[
        float,
        typer.Option(
            help="Simulated seconds per wall-clock second; above 1 the run "
            "starts a day ago and catches up with the present."
        ),
    ] = 1.0,
    faults: Annotated[
        Path | None, typer.Option(help="Fault file (see docs/simulators.md).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weather, devices and random faults.")] = 1,
    random_faults: Annotated[
        float | None,
        typer.Option(help="Random faults per device per year (overrides the fault file's)."),
    ] = None,
    run_name: Annotated[
        str | None,
        typer.Option(help="Name of the run in the ground truth (default: time and seed)."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help="Simulated start (ISO; default now, or a day ago when accelerated)."),
    ] = None,
    device_passwords: Annotated[
        bool,
        typer.Option(
            help="Give every simulated device a fresh broker password, stored hashed in "
            "DATABASE_URL, for a secured broker (`smartcity broker`) that reads it."
        ),
    ] = False,
) -> None:
    """Run every device of a site as its own edge agent and MQTT client, until Ctrl-C.

    The ground truth of the injected faults goes to .smartcity/simulate/<run>/ground_truth.csv
    and, when DATABASE_URL is set, to the fault_ground_truth table. Against the platform's
    secured broker, --device-passwords gives the devices their accounts.

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1/smartcity SMARTCITY_MQTT_PORT=18830 \\
        smartcity simulate --speed 60 --faults faults.yaml --seed 7 --device-passwords
    """
    import psycopg

    from protocol.sites import SiteFileError
    from runtime import logs
    from simulators.errors import SimulatorError
    from simulators.simulate import SimulationOptions, run_simulation

    logs.configure("WARNING", json_lines=False)
    settings = load_settings()
    try:
        inventory = read_site(site)
        options = SimulationOptions(
            inventory,
            settings.mqtt_host,
            settings.mqtt_port,
            settings.state_dir,
            seed=seed,
            speed=speed,
            fault_file=faults,
            random_faults_per_device_year=random_faults,
            database_url=settings.database_url,
            run_name=run_name,
            start=None if start is None else parse_moment(start, "--start"),
            device_accounts=_simulated_accounts(settings, inventory) if device_passwords else {},
        )
        stop = threading.Event()
        on_termination(stop)
        runner = run_simulation(options, stop, typer.echo)
    except (SiteFileError, SimulatorError, ValueError, psycopg.Error) as error:
        raise fail(str(error)) from error
    delivered = sum(a.counters.messages_acknowledged for a in runner.agents.values())
    typer.echo(f"stopped: {delivered} messages delivered")


def _simulated_accounts(settings: Settings, inventory: SiteInventory) -> dict[str, MqttAccount]:
    """Fresh passwords for the site's devices, their hashes in the database; then a wait for
    the broker's next look at them."""
    from protocol.mqtt_account import MqttAccount
    from smartcity.broker_security import SYNC_INTERVAL_S, issue_device_passwords

    url = require_database_url(settings)
    passwords = issue_device_passwords(
        url, [device.id for device in inventory.devices], "simulate", datetime.now(UTC)
    )
    typer.echo(
        f"{len(passwords)} device passwords stored; waiting {SYNC_INTERVAL_S:g} s for the broker"
        " to take them up"
    )
    time.sleep(SYNC_INTERVAL_S + 1)
    return {device_id: MqttAccount(device_id, secret) for device_id, secret in passwords.items()}


def history(  # noqa: PLR0917 - each option is a CLI flag
    start: Annotated[str, typer.Option("--from", help="First instant (ISO; UTC if no zone).")],
    end: Annotated[str, typer.Option("--to", help="End, excluded (ISO; UTC if no zone).")],
    site: SiteOption = DEFAULT_SITE,
    seed: Annotated[int, typer.Option(help="Seed of the weather, devices and random faults.")] = 1,
    faults: Annotated[
        Path | None, typer.Option(help="Fault file (see docs/simulators.md).")
    ] = None,
    random_faults: Annotated[
        float | None, typer.Option(help="Random faults per device per year.")
    ] = None,
    run_name: Annotated[
        str | None, typer.Option(help="Name of the run in fault_ground_truth.")
    ] = None,
    lighting: LightingOption = Lighting.PLATFORM,
    cloudy_from: CloudyFromOption = None,
    cloudy_days: CloudyDaysOption = 5,
    clearness: ClearnessOption = 0.15,
) -> None:
    """Write the simulated city's telemetry for a past period straight into the database.

    Migrates the schema and provisions the site first; the ground truth of the faults goes
    to fault_ground_truth and .smartcity/simulate/<run>/ground_truth.csv. The streetlights
    run the lighting service's nightly schedules, as live (--lighting agents: their own
    program); --cloudy-from forces a run of overcast days.

    \b
    Examples:
      DATABASE_URL=postgresql://postgres@127.0.0.1:54329/smartcity \
        smartcity history --from 2026-08-01 --to 2026-11-01 --random-faults 6 --seed 3
      smartcity history --from 2026-12-01 --to 2026-12-15 --cloudy-from 2026-12-05 --cloudy-days 6
    """
    import psycopg

    from protocol.sites import SiteFileError
    from simulators.errors import SimulatorError
    from simulators.history import HistoryOptions, generate_history
    from simulators.simulate import SimulationOptions, plan_faults
    from storage.errors import MigrationError
    from storage.migrate import migrate
    from storage.registry import upsert_site
    from storage.rollups import refresh_period

    settings = load_settings()
    database_url = require_database_url(settings)
    first, last = parse_moment(start, "--from"), parse_moment(end, "--to")
    if last <= first:
        raise fail("--to must be after --from")
    name = run_name or f"history-{first:%Y%m%d}-{last:%Y%m%d}-seed{seed}"
    try:
        inventory = read_site(site)
        overcast = overcast_run(
            cloudy_from, cloudy_days, clearness, (first, last), ZoneInfo(inventory.site.timezone)
        )
        overcast = overcast_run(
            cloudy_from, cloudy_days, clearness, (first, last), ZoneInfo(inventory.site.timezone)
        )
        options = SimulationOptions(
            inventory,
            "",
            0,
            settings.state_dir,
            seed=seed,
            fault_file=faults,
            random_faults_per_device_year=random_faults,
        )
        events = plan_faults(options, first, horizon=last - first)
        migrate(database_url, progress=progress_to_stderr)
        with psycopg.connect(database_url) as connection:
            upsert_site(connection, inventory)
        typer.echo(f"{name}: {len(inventory.devices)} devices, {len(events)} faults")
        report = generate_history(
            HistoryOptions(
                inventory,
                first,
                last,
                seed=seed,
                faults=tuple(events),
                run_name=name,
                ground_truth_path=settings.state_dir / "simulate" / name / "ground_truth.csv",
                lighting=lighting_program(lighting, inventory),
                overcast=overcast,
            ),
            database_url,
            progress=typer.echo,
        )
        rolled_up = time.monotonic()
        with psycopg.connect(database_url, autocommit=True) as connection:
            refresh_period(connection, first, last, progress=progress_to_stderr)
    except (SiteFileError, SimulatorError, MigrationError, psycopg.Error) as error:
        raise fail(str(error)) from error
    typer.echo(
        f"{report.total_rows:,} rows in {report.seconds:.1f} s "
        f"({report.total_rows / max(report.seconds, 1e-9):,.0f} rows/s); "
        f"rollups refreshed in {time.monotonic() - rolled_up:.1f} s"
    )


def agent(
    config: Annotated[Path, typer.Option("--config", help="Agent configuration file.")],
) -> None:
    """Run one edge agent: read its device, publish, obey commands, keep a local program.

    Example: smartcity agent --config /etc/smartcity/agent.yaml   (format: docs/agent.md)
    """
    from edge_agents.config import SimulatedDriverSection, build_agent, load_agent_config, run_agent
    from edge_agents.drivers import Driver
    from edge_agents.errors import EdgeAgentError
    from edge_agents.modbus import EpeverModbusDriver
    from protocol.sites import SiteFileError, load_site
    from runtime import logs

    logs.configure("INFO", json_lines=False)
    try:
        agent_config = load_agent_config(config)
        before_tick: Callable[[datetime], object] | None = None
        driver: Driver
        if isinstance(agent_config.driver, SimulatedDriverSection):
            from simulators.city import SimulatedCity

            inventory = load_site(agent_config.driver.site_file).only(agent_config.device_id)
            city = SimulatedCity(inventory, start=datetime.now(UTC), seed=agent_config.driver.seed)
            driver = city.driver(agent_config.device_id)
            before_tick = city.advance
        else:
            section = agent_config.driver
            driver = EpeverModbusDriver(
                section.host, section.port, device_id=section.unit, timeout_s=section.timeout_s
            )
        device_agent = build_agent(agent_config, driver)
    except (EdgeAgentError, SiteFileError, KeyError) as error:
        raise fail(str(error)) from error
    stop = threading.Event()
    on_termination(stop)
    typer.echo(
        f"agent {agent_config.device_id}: broker {agent_config.broker.host}:"
        f"{agent_config.broker.port}, spool {agent_config.spool.path}"
    )
    run_agent(device_agent, stop, before_tick=before_tick)
