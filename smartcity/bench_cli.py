"""``smartcity bench``: the benchmarks, each printing its figures and its baseline's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Protocol, TypeVar

import typer

from smartcity.cli_support import (
    DEFAULT_SITE,
    SiteOption,
    fail,
    load_settings,
    progress_to_stderr,
    read_site,
)

bench_app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)

Result = TypeVar("Result")


class _Figures(Protocol):
    def as_dict(self) -> dict[str, object]: ...


def _as_json(result: _Figures) -> str:
    return json.dumps(result.as_dict())


def _measured(
    run: Callable[[], Result],
    report: Callable[[Result], str],
    to_json: Callable[[Result], str] | None,
) -> Result:
    """Run a benchmark and print its report, then its JSON when ``to_json`` is given.

    A failure the run reports (a service that stopped, a broker or database that would not
    start or answer) is an error message and exit code 2, not a traceback.
    """
    import psycopg

    try:
        result = run()
    except (RuntimeError, OSError, psycopg.Error) as error:
        raise fail(str(error)) from error
    typer.echo(report(result))
    if to_json is not None:
        typer.echo(to_json(result))
    return result


@bench_app.command("decode")
def bench_decode(
    count: Annotated[int, typer.Option(help="Messages decoded per library and round.")] = 20_000,
    samples: Annotated[int, typer.Option(help="Samples per message.")] = 1,
) -> None:
    """Compare JSON/validation libraries on the same telemetry messages.

    Example: smartcity bench decode --count 20000 --samples 10
    """
    from bench import decode

    typer.echo(decode.report(decode.run(count, samples), samples))


@bench_app.command("ingest")
def bench_ingest(  # noqa: PLR0917 - each option is a CLI flag
    messages: Annotated[int, typer.Option(help="Messages, one 13-value sample each.")] = 20_000,
    devices: Annotated[int, typer.Option(help="Distinct streetlights sending them.")] = 200,
    batch: Annotated[int, typer.Option(help="Ingest batch size, in messages.")] = 2_000,
    receive_maximum: Annotated[int, typer.Option(help="MQTT 5 Receive Maximum.")] = 4_000,
    repeats: Annotated[int, typer.Option(help="Rounds; the medians are reported.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object.")] = False,
    timescaledb: Annotated[
        bool,
        typer.Option(
            "--timescaledb",
            help="The private PostgreSQL preloads TimescaleDB (it must be installed there).",
        ),
    ] = False,
) -> None:
    """Broker-only vs full ingest vs raw COPY, measured in one run on this machine.

    Uses a scratch database on the server of DATABASE_URL if set, else a private PostgreSQL
    (with TimescaleDB if --timescaledb).
    Example: smartcity bench ingest --messages 50000 --json
    """
    from bench import ingest as ingest_bench
    from runtime import logs

    logs.configure("WARNING")
    database_url = load_settings().database_url
    _measured(
        lambda: ingest_bench.run(
            messages,
            devices=devices,
            batch_messages=batch,
            receive_maximum=receive_maximum,
            repeats=repeats,
            database_url=database_url,
            progress=progress_to_stderr,
            timescaledb=timescaledb,
        ),
        ingest_bench.report,
        _as_json if as_json else None,
    )


@bench_app.command("maintenance")
def bench_maintenance(  # noqa: PLR0917 - each option is a CLI flag
    devices: Annotated[
        int, typer.Option(min=1, help="Streetlights, with the last day's samples stored.")
    ] = 2_000,
    rate: Annotated[float, typer.Option(min=1.0, help="Messages per second sent.")] = 800.0,
    seconds: Annotated[float, typer.Option(min=1.0, help="How long each run sends.")] = 60.0,
    interval: Annotated[
        float, typer.Option(min=0.5, help="Ingest's maintenance interval in the measured run [s].")
    ] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object.")] = False,
    timescaledb: Annotated[
        bool,
        typer.Option(
            "--timescaledb",
            help="The private PostgreSQL preloads TimescaleDB (it must be installed there).",
        ),
    ] = False,
) -> None:
    """How long ingest's writes pause while its maintenance runs, against no maintenance.

    Stores the last day's samples of --devices streetlights (every hour left for the rollups
    to recompute), then sends --rate messages/s for --seconds twice: with no maintenance during
    the run (the reference), and with maintenance every --interval s. Prints the longest
    pause of the stored rows while messages waited, and how long messages waited to be
    stored. Uses a scratch database on the server of DATABASE_URL if set, else a private
    PostgreSQL.
    Example: smartcity bench maintenance --devices 2000 --rate 800 --seconds 60
    """
    from bench import maintenance as maintenance_bench
    from runtime import logs

    logs.configure("WARNING")
    database_url = load_settings().database_url
    _measured(
        lambda: maintenance_bench.run(
            devices=devices,
            rate=rate,
            seconds=seconds,
            interval_s=interval,
            database_url=database_url,
            progress=progress_to_stderr,
            timescaledb=timescaledb,
        ),
        maintenance_bench.report,
        _as_json if as_json else None,
    )


@bench_app.command("overload")
def bench_overload(  # noqa: PLR0917 - each option is a CLI flag
    minutes: Annotated[
        float, typer.Option(min=0.1, help="Duration of the overload, in minutes.")
    ] = 10.0,
    ratio: Annotated[
        float, typer.Option(min=1.0, help="Offered load as a multiple of ingest's rate.")
    ] = 3.0,
    devices: Annotated[int, typer.Option(min=1, help="Distinct streetlights publishing.")] = 2_000,
    workers: Annotated[
        int, typer.Option(min=1, help="Ingest processes (a share group when more than 1).")
    ] = 1,
    calibration_messages: Annotated[
        int, typer.Option(min=1_000, help="Messages ingest drains alone to measure its rate.")
    ] = 60_000,
    window: Annotated[
        int, typer.Option(min=1, max=65_535, help="Publisher's unacknowledged messages at most.")
    ] = 1_000,
    drain_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the backlog to drain, at most.")
    ] = 3_600,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object.")] = False,
) -> None:
    """Ingest offered 3 times what it can store: memory, backlog, drain, nothing lost.

    Calibrates ingest's sustainable rate R (a backlog drained alone), then publishes at
    RATIO x R with QoS 1 for MINUTES while sampling ingest's memory and the broker's backlog,
    then waits for the backlog to drain and counts the rows: sent, stored, lost, doubled.
    Uses a private Mosquitto (broker_config/) and a scratch database on DATABASE_URL's server
    (or a private PostgreSQL, fsync on). Exits 1 if anything was lost or doubled.

    Example: smartcity bench overload --minutes 2 --json
    """
    from bench import overload
    from runtime import logs

    logs.configure("WARNING")
    database_url = load_settings().database_url
    result = _measured(
        lambda: overload.run(
            minutes=minutes,
            ratio=ratio,
            devices=devices,
            workers=workers,
            calibration_messages=calibration_messages,
            window=window,
            stall_s=30.0,
            drain_timeout_s=drain_timeout,
            database_url=database_url,
            progress=progress_to_stderr,
        ),
        overload.report,
        overload.to_json if as_json else None,
    )
    if result.lost or result.doubled:
        raise typer.Exit(code=1)


@bench_app.command("simulate")
def bench_simulate(
    seconds: Annotated[float, typer.Option(help="Wall seconds of the real-time run.")] = 360,
    days: Annotated[float, typer.Option(help="Days of history to generate.")] = 90,
    site: SiteOption = DEFAULT_SITE,
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """The simulated city's cost: real-time CPU and messages/s, and history generation time.

    Uses a private Mosquitto and a private PostgreSQL (or DATABASE_URL's server).

    Example: smartcity bench simulate --seconds 360 --days 90 --json
    """
    from bench.simulate import report, run
    from protocol.sites import SiteFileError

    settings = load_settings()
    try:
        inventory = read_site(site)
    except SiteFileError as error:
        raise fail(str(error)) from error
    _measured(
        lambda: run(
            inventory,
            realtime_seconds=seconds,
            history_days=days,
            database_url=settings.database_url,
            progress=progress_to_stderr,
        ),
        report,
        _as_json if as_json else None,
    )


@bench_app.command("alerts")
def bench_alerts(
    faults: Annotated[int, typer.Option(min=1, help="Faults reported at each load.")] = 100,
    loads: Annotated[
        list[float] | None, typer.Option("--load", help="Multiple of the city's rate (repeat).")
    ] = None,
    days: Annotated[
        float, typer.Option(min=0, help="Days of whole-fleet history to backtest (0: none).")
    ] = 30,
    site: SiteOption = DEFAULT_SITE,
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """Fault-to-alert latency at the city's load and at 10x; backtest speed and time.

    Uses a private Mosquitto and a scratch database on DATABASE_URL's server (or on a
    private PostgreSQL). Targets: p99 <= 1 s at 1x, <= 2 s at 10x; >= 1 M rows/s.

    Example: smartcity bench alerts --faults 100 --days 30 --json
    """
    from bench.alerts import report, run, to_json
    from protocol.sites import SiteFileError

    settings = load_settings()
    try:
        inventory = read_site(site)
    except SiteFileError as error:
        raise fail(str(error)) from error
    _measured(
        lambda: run(
            inventory,
            loads=loads or [1.0, 10.0],
            faults=faults,
            days=days,
            database_url=settings.database_url,
            progress=progress_to_stderr,
        ),
        lambda figures: report(*figures),
        (lambda figures: to_json(*figures)) if as_json else None,
    )


@bench_app.command("api")
def bench_api(
    days: Annotated[
        float, typer.Option(min=1, help="Days of whole-fleet history to generate.")
    ] = 90,
    history_url: Annotated[
        str | None,
        typer.Option(help="An existing database with history (`smartcity history`) to use."),
    ] = None,
    samples: Annotated[int, typer.Option(min=5, help="Requests timed per case.")] = 40,
    site: SiteOption = DEFAULT_SITE,
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """API latency (alert lists, 30-day telemetry ranges of a device and a street group) and
    every dashboard panel's query over 90 days, from the aggregates and from raw rows.

    Without --history-url it generates the history in a scratch database on DATABASE_URL's
    server (or a private PostgreSQL): about 10 minutes for 90 days of Sefrou. Target: every
    panel's p95 <= 200 ms.

    Example: smartcity bench api --history-url postgresql://postgres@127.0.0.1/history --json
    """
    from bench.api import report, run, to_json
    from protocol.sites import SiteFileError

    settings = load_settings()
    try:
        inventory = read_site(site)
    except SiteFileError as error:
        raise fail(str(error)) from error
    _measured(
        lambda: run(
            inventory,
            days=days,
            history_url=history_url,
            server_url=settings.database_url,
            samples=samples,
            progress=progress_to_stderr,
        ),
        report,
        to_json if as_json else None,
    )


@bench_app.command("whatif")
def bench_whatif(
    seasons: Annotated[
        list[str] | None,
        typer.Option(
            "--season",
            help="winter (December 2026 to February 2027) or summer (June to August 2027); "
            "repeat; default both.",
        ),
    ] = None,
    strategy: Annotated[
        Path | None,
        typer.Option("--strategy", help="Strategy file; default the packaged one."),
    ] = None,
    site: SiteOption = DEFAULT_SITE,
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """A heating and a cooling season of every building through the what-if replay: the
    strategy against the building run as EN 15232 class C, as is and with its external
    blinds on a seasonal timer (targets, against the stronger of the two: at least 20 % less
    energy, no more discomfort, no higher peak), and against a 24/7 thermostat, and the
    replay's time (target: under a minute per season) against the strategy replayed alone.
    Exit code 1 when a target is missed. docs/energy.md explains the references.

    Example: smartcity bench whatif --season winter --season summer --json
    """
    from bench.whatif import SEASONS, report, run
    from control.strategy import PACKAGED_STRATEGY, StrategyFileError, load_strategy
    from protocol.sites import SiteFileError

    chosen = seasons or list(SEASONS)
    unknown = [season for season in chosen if season not in SEASONS]
    if unknown:
        raise fail(f"--season {unknown[0]}: choose from {', '.join(SEASONS)}")
    try:
        inventory = read_site(site)
        candidate = load_strategy(strategy or PACKAGED_STRATEGY)
    except (SiteFileError, StrategyFileError) as error:
        raise fail(str(error)) from error
    result = _measured(
        lambda: run(inventory, candidate, chosen, progress=progress_to_stderr),
        report,
        _as_json if as_json else None,
    )
    if not result.as_dict()["meets_targets"]:
        raise typer.Exit(1)


@bench_app.command("chaos")
def bench_chaos(  # noqa: PLR0917 - each option is a CLI flag
    streetlights: Annotated[int, typer.Option(min=2, help="Streetlights of the site run.")] = 60,
    signs: Annotated[int, typer.Option(min=0, help="Signs of the site run.")] = 6,
    zones: Annotated[int, typer.Option(min=0, help="Building zones of the site run.")] = 6,
    speed: Annotated[float, typer.Option(min=1, help="Device seconds per wall second.")] = 600,
    lead: Annotated[float, typer.Option(min=0, help="Steady traffic before each fault [s].")] = 10,
    outage: Annotated[
        float, typer.Option(min=0, help="Broker, database, ingest, rules down for [s].")
    ] = 10,
    blackhole: Annotated[float, typer.Option(min=0, help="Links blackholed for [s].")] = 15,
    blackhole_reset: Annotated[
        bool,
        typer.Option(
            help="End a blackhole with a reset; --no-blackhole-reset: wait until ingest "
            "gives the dead link up by itself (broker: about a minute; database: 5 min)."
        ),
    ] = True,
    faults: Annotated[
        list[str] | None, typer.Option("--fault", help="Only this fault (repeat); default all.")
    ] = None,
    commands: Annotated[int, typer.Option(min=0, help="Commands sent during each fault.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the simulated city.")] = 1,
    site: SiteOption = DEFAULT_SITE,
    keep_workdir: Annotated[
        bool, typer.Option("--keep-workdir", help="Keep the logs and spools.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="End with the figures as JSON.")] = False,
) -> None:
    """Faults one after the other on the running platform; nothing may be lost or doubled.

    Starts a private Mosquitto and PostgreSQL (fsync on), ingest and the rules engine as
    processes of their own, and part of the site as real edge agents at --speed. Then, each
    after --lead seconds of steady traffic: the broker SIGKILLed and restarted, the database
    crashed (pg_ctl stop -m immediate) and started, ingest and the rules engine SIGKILLed and
    restarted, the broker crashing while ingest is down, a streetlight cut off for an hour of
    device time, and ingest's links to the broker and to the database blackholed; commands are
    sent during every fault. Prints, per fault, the samples sent, stored, duplicated and lost,
    then the alert and command checks (docs/chaos.md). Exit code 1 when anything was lost or
    doubled, an alert raised twice or a command applied twice. Names for --fault: broker-kill,
    database-restart, ingest-kill, broker-kill-ingest-away, rules-kill, agent-offline,
    broker-link-blackhole, database-link-blackhole.

    Example: smartcity bench chaos --streetlights 60 --speed 600 --json
    """
    from bench.chaos import FAULTS, ChaosConfig, report, run, to_json
    from protocol.sites import SiteFileError

    try:
        config = ChaosConfig(
            read_site(site),
            streetlights=streetlights,
            signs=signs,
            zones=zones,
            speed=speed,
            lead_s=lead,
            outage_s=outage,
            blackhole_s=blackhole,
            blackhole_reset=blackhole_reset,
            commands_per_fault=commands,
            faults=tuple(faults) if faults else FAULTS,
            seed=seed,
            keep_workdir=keep_workdir,
        )
    except (SiteFileError, ValueError) as error:
        raise fail(str(error)) from error
    result = _measured(
        lambda: run(config, progress=progress_to_stderr), report, to_json if as_json else None
    )
    if not result.ok:
        raise typer.Exit(1)


@bench_app.command("memory")
def bench_memory(  # noqa: PLR0917 - each option is a CLI flag
    site: SiteOption = DEFAULT_SITE,
    runs: Annotated[int, typer.Option(min=1, help="Starts of each service; the median.")] = 5,
    settle: Annotated[
        float, typer.Option(min=1, help="Seconds after a start before its memory is read.")
    ] = 12.0,
    burst: Annotated[
        int, typer.Option(min=1, help="Messages of the burst ingest stores (bench ingest's).")
    ] = 20_000,
    load: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds of the city in real time over which the platform's memory is sampled"
            " (each second; the default spans the lights' 5-minute reporting cycle); 0: skip.",
        ),
    ] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object.")] = False,
) -> None:
    """Each service's resident memory at rest, ingest's under a burst, and the whole
    platform's at the site's real-time load, beside a bare paho subscriber's (the reference).

    Uses a scratch database on the server of DATABASE_URL if set, else a private PostgreSQL,
    and a private Mosquitto. About 15 minutes with the defaults.
    Example: smartcity bench memory --runs 5 --load 300 --json
    """
    from bench import memory
    from protocol.sites import SiteFileError

    settings = load_settings()
    try:
        inventory = read_site(site)
    except SiteFileError as error:
        raise fail(str(error)) from error
    _measured(
        lambda: memory.run(
            inventory,
            site,
            settings.database_url,
            runs=runs,
            settle_s=settle,
            burst=burst,
            load_s=load,
            progress=progress_to_stderr,
        ),
        memory.report,
        _as_json if as_json else None,
    )


@bench_app.command("broker-crash")
def bench_broker_crash(  # noqa: PLR0917 - each option is a CLI flag
    runs: Annotated[int, typer.Option(min=1, help="Crashes per setting and consumer.")] = 5,
    rate: Annotated[
        float, typer.Option(min=1, help="Messages a second from the QoS 1 publisher.")
    ] = 800,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--setting",
            help="An autosave setting to compare: interval=N (seconds) or changes=N"
            " (autosave_on_changes); repeat. Default: interval=1, changes=100, changes=1000."
            " The platform's own (interval=2) is always measured.",
        ),
    ] = None,
    consumers: Annotated[
        list[str] | None,
        typer.Option(
            "--consumer",
            help="What the stand-in for ingest does: away (disconnected), behind (connected,"
            " acknowledging nothing) or connected (keeping up); repeat. Default: away and"
            " behind.",
        ),
    ] = None,
    delay_min: Annotated[
        float, typer.Option(min=0.1, help="Earliest kill after the first message [s].")
    ] = 4.0,
    delay_max: Annotated[
        float, typer.Option(min=0.1, help="Latest kill after the first message [s].")
    ] = 12.0,
    seed: Annotated[int, typer.Option(help="Seed of the kill delays.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object.")] = False,
) -> None:
    """What a broker crash loses from a device without a replay window, per autosave setting.

    A private Mosquitto from broker_config/ with each autosave setting; a persistent-session
    subscriber standing in for ingest, away or behind; a bare paho QoS 1 publisher (no replay
    window) at --rate; the broker SIGKILLed after a random delay, restarted on its persistence
    file, the session drained. Prints per setting the messages acknowledged and never
    delivered, the window they span, and the broker's disk writes (docs/chaos.md).

    Example: smartcity bench broker-crash --runs 5 --rate 800 --setting interval=1
    --setting changes=100 --json
    """
    from bench import broker_crash
    from broker_config import BrokerConfigError

    try:
        config = broker_crash.CrashBenchConfig(
            settings=(
                tuple(broker_crash.parse_setting(text) for text in settings)
                if settings
                else broker_crash.DEFAULT_SETTINGS
            ),
            consumers=(
                tuple(broker_crash.parse_consumer(text) for text in consumers)
                if consumers
                else (broker_crash.Consumer.AWAY, broker_crash.Consumer.BEHIND)
            ),
            runs=runs,
            rate=rate,
            delay_min_s=delay_min,
            delay_max_s=delay_max,
            seed=seed,
        )
        broker_crash.crash_delays(seed, runs, delay_min, delay_max)
    except (BrokerConfigError, ValueError) as error:
        raise fail(str(error)) from error
    _measured(
        lambda: broker_crash.run(config, progress_to_stderr),
        broker_crash.report,
        broker_crash.to_json if as_json else None,
    )
