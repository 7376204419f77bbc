"""The schema on plain PostgreSQL (always) and on TimescaleDB (where it is installed)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from protocol.topics import DeviceClass
from storage import rollups
from storage.errors import MigrationError
from storage.migrate import migrate
from storage.queries import RollupPoint, latest_values, rollup_series
from storage.revision import current_revision, head_revision
from storage.writer import BatchWriter, SampleRows, StorageBatch, telemetry_rows
from tests.conftest import PostgresServer, server_has_timescaledb

pytestmark = pytest.mark.integration

HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)


def uses_timescaledb(url: str) -> bool:
    with psycopg.connect(url) as connection:
        return rollups.uses_timescaledb(connection)


def test_migrating_an_empty_database_twice_gives_the_head_schema(
    empty_database_url: str, postgres_server: PostgresServer
) -> None:
    migrate(empty_database_url)
    migrate(empty_database_url)
    assert current_revision(empty_database_url) == head_revision()
    with psycopg.connect(empty_database_url) as connection:
        backend = connection.execute("SELECT timescaledb FROM storage_backend").fetchall()
    assert backend == [(server_has_timescaledb(postgres_server),)], (
        "TimescaleDB is used exactly where the server has it"
    )


def write(url: str, values: list[tuple[datetime, str, str, float]]) -> int:
    """Write (ts, device_id, metric, value) values as streetlight samples; return rows changed."""
    samples: SampleRows = {}
    for ts, device_id, metric, value in values:
        samples.setdefault((device_id, ts), {})[metric] = value
    with psycopg.connect(url, autocommit=True) as connection:
        result = BatchWriter(connection).write(
            StorageBatch(
                telemetry={
                    DeviceClass.STREETLIGHT: telemetry_rows(DeviceClass.STREETLIGHT, samples)
                }
            )
        )
    return result.telemetry_stored


def sample_rows() -> list[tuple[datetime, str, str, float]]:
    return [
        (HOUR + timedelta(minutes=5), "sl-1", "battery_soc", 80.0),
        (HOUR + timedelta(minutes=35), "sl-1", "battery_soc", 70.0),
        (HOUR + timedelta(minutes=55), "sl-1", "battery_soc", 75.0),
        (HOUR + timedelta(hours=1, minutes=5), "sl-1", "battery_soc", 60.0),
        (HOUR + timedelta(minutes=5), "sl-1", "lamp_power", 30.0),
    ]


def maintain(url: str, now: datetime | None = None) -> dict[str, object]:
    with psycopg.connect(url, autocommit=True) as connection:
        report = rollups.maintain(connection, now)
        # Its reads reach pg_stat_user_tables before it answers, not at some point after the
        # connection closes (a backend flushes its statistics at most once a second).
        connection.execute("SELECT pg_stat_force_next_flush()")
        return report


def differences(url: str) -> dict[str, int]:
    """Rows of each rollup that differ from the raw rows, by rollup (empty: none)."""
    with psycopg.connect(url, autocommit=True) as connection:
        found = {
            f"{c.value}_{grain}": rollups.rollup_differences(connection, c, grain)
            for c in DeviceClass
            for grain, _ in rollups.GRAINS
        }
    return {name: count for name, count in found.items() if count}


def days_of_sl1(connection: psycopg.Connection) -> list[RollupPoint]:
    """The daily rollups of sl-1's battery_soc around :data:`HOUR`."""
    return rollup_series(
        connection,
        "sl-1",
        "battery_soc",
        start=HOUR - timedelta(hours=10),
        end=HOUR + timedelta(days=1),
        grain="daily",
    )


def check_shared_queries(url: str) -> None:
    assert write(url, sample_rows()) == 4, "five values at four instants: four rows"
    assert write(url, sample_rows()) == 0, "a second write of the same samples changes nothing"
    maintain(url)
    with psycopg.connect(url) as connection:
        latest = latest_values(connection, "sl-1")
        hourly = rollup_series(
            connection, "sl-1", "battery_soc", start=HOUR, end=HOUR + timedelta(days=1)
        )
        daily = days_of_sl1(connection)
    assert [(v.metric, v.ts, v.value) for v in latest] == [
        ("battery_soc", HOUR + timedelta(hours=1, minutes=5), 60.0),
        ("lamp_power", HOUR + timedelta(minutes=5), 30.0),
    ]
    assert [(p.bucket, p.sample_count, p.minimum, p.maximum, p.last) for p in hourly] == [
        (HOUR, 3, 70.0, 80.0, 75.0),
        (HOUR + timedelta(hours=1), 1, 60.0, 60.0, 60.0),
    ]
    assert hourly[0].average == pytest.approx(75.0)
    [day] = daily
    assert (day.bucket, day.sample_count, day.minimum, day.maximum, day.last) == (
        datetime(2026, 11, 20, tzinfo=UTC),
        4,
        60.0,
        80.0,
        60.0,
    )
    assert day.average == pytest.approx(71.25)


def test_shared_queries_and_rollups_on_the_suites_backend(database_url: str) -> None:
    check_shared_queries(database_url)


def test_rollups_follow_late_data(database_url: str) -> None:
    write(database_url, sample_rows())
    maintain(database_url)
    assert differences(database_url) == {}
    write(database_url, [(HOUR + timedelta(minutes=59), "sl-1", "battery_soc", 10.0)])
    write(database_url, [(HOUR + timedelta(minutes=59), "sl-2", "battery_soc", 30.0)])
    assert differences(database_url) != {}, "late samples are not in the rollups before a refresh"
    maintain(database_url)
    assert differences(database_url) == {}
    with psycopg.connect(database_url) as connection:
        [first, _] = rollup_series(
            connection, "sl-1", "battery_soc", start=HOUR, end=HOUR + timedelta(days=1)
        )
        [day] = days_of_sl1(connection)
    assert (first.sample_count, first.minimum, first.last) == (4, 10.0, 10.0)
    assert (day.sample_count, day.minimum) == (5, 10.0), "the day follows its late hour"


def test_old_data_is_stored_and_dropped_after_retention(database_url: str) -> None:
    if uses_timescaledb(database_url):
        check_chunks_and_retention(database_url)
    else:
        check_partitions_and_retention(database_url)


def check_chunks_and_retention(url: str) -> None:
    """TimescaleDB: a chunk for old data; its retention policy drops what is past 400 days
    for streetlights, not for buildings (800)."""
    now = datetime.now(UTC)
    kept, expired = now - timedelta(days=60), now - timedelta(days=402)
    assert write(url, [(kept, "sl-1", "tilt", 1.0), (expired, "sl-1", "tilt", 2.0)]) == 2
    building = telemetry_rows(DeviceClass.BUILDING, {("bz-1", expired): {"co2": 400.0}})
    with psycopg.connect(url, autocommit=True) as connection:
        BatchWriter(connection).write(StorageBatch(telemetry={DeviceClass.BUILDING: building}))
        chunks = connection.execute(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'telemetry_streetlight'"
            " AND range_start <= %s AND range_end > %s",
            (kept, kept),
        ).fetchone()
        assert chunks == (1,)
        jobs = connection.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention' AND hypertable_name LIKE 'telemetry_%'"
        ).fetchall()
        assert len(jobs) == len(DeviceClass)
        for (job_id,) in jobs:
            connection.execute("CALL run_job(%s)", (job_id,))
        left = connection.execute(
            "SELECT device_class, value FROM telemetry ORDER BY device_class, value"
        ).fetchall()
    assert left == [("building", 400.0), ("streetlight", 1.0)]


def check_partitions_and_retention(database_url: str) -> None:
    old = datetime.now(UTC) - timedelta(days=60)
    assert write(database_url, [(old, "sl-1", "tilt", 1.0)]) == 1
    partition = f"telemetry_streetlight_p{old:%Y%m%d}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        assert connection.execute("SELECT to_regclass(%s)", (partition,)).fetchone() == (partition,)
        report = connection.execute(
            "SELECT smartcity_maintain(now() + INTERVAL '360 days')"
        ).fetchone()
        assert report is not None
        assert report[0]["streetlight"]["partitions_dropped"] >= 1
        assert connection.execute("SELECT to_regclass(%s)", (partition,)).fetchone() == (None,)
        # Buildings keep raw data longer than streetlights.
        assert report[0]["building"]["partitions_dropped"] == 0
        assert connection.execute("SELECT count(*) FROM telemetry").fetchone() == (0,)


def test_a_dead_letter_redelivered_is_kept_once(database_url: str) -> None:
    from storage.writer import DeadLetter

    letter = DeadLetter(HOUR, "sc/x/streetlight/a/telemetry", "a", "malformed", "bad", b"{")
    with psycopg.connect(database_url, autocommit=True) as connection:
        writer = BatchWriter(connection)
        assert writer.write(StorageBatch(dead_letters=[letter])).dead_letters_stored == 1
        assert writer.write(StorageBatch(dead_letters=[letter])).dead_letters_stored == 0


@pytest.fixture
def timescale_database_url(timescale_empty_database_url: str) -> str:
    migrate(timescale_empty_database_url)
    return timescale_empty_database_url


@pytest.mark.timescaledb
def test_timescaledb_path_makes_hypertables_policies_and_aggregates(
    timescale_database_url: str,
) -> None:
    url = timescale_database_url
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT timescaledb FROM storage_backend").fetchone() == (True,)
        hypertables = {
            row[0]
            for row in connection.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
            )
        }
        jobs = connection.execute(
            "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs"
            " WHERE proc_name <> 'policy_job_error_retention'"
        ).fetchall()
        aggregates = {
            row[0]
            for row in connection.execute(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates"
            )
        }
        compressed = {
            row[0]
            for row in connection.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
                " WHERE compression_enabled"
            )
        }
    classes = [c.value for c in DeviceClass]
    assert hypertables >= {f"telemetry_{c}" for c in classes} | {"device_events", "device_states"}
    assert compressed == {f"telemetry_{c}" for c in classes}
    assert aggregates == {f"telemetry_{c}_{g}" for c in classes for g in ("hourly", "daily")}
    procs = [proc for proc, _ in jobs]
    assert procs.count("policy_compression") == 3
    assert procs.count("policy_retention") == 3
    assert procs.count("policy_refresh_continuous_aggregate") == 0, (
        "the platform refreshes the aggregates itself, in grain order (migration 0009)"
    )


@pytest.mark.timescaledb
def test_shared_queries_and_rollups_on_timescaledb(timescale_database_url: str) -> None:
    check_shared_queries(timescale_database_url)


def test_a_sample_sent_in_two_parts_is_completed_and_stored_values_never_change(
    database_url: str,
) -> None:
    at = HOUR + timedelta(minutes=1)
    assert write(database_url, [(at, "sl-1", "battery_soc", 50.0)]) == 1
    assert write(database_url, [(at, "sl-1", "lamp_power", 20.0)]) == 1
    assert write(database_url, [(at, "sl-1", "battery_soc", 99.0)]) == 0
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT metric, value FROM telemetry WHERE device_id = 'sl-1' ORDER BY metric"
        ).fetchall()
    assert rows == [("battery_soc", 50.0), ("lamp_power", 20.0)]


def test_asking_for_timescaledb_where_it_is_missing_is_a_clear_error(
    postgres_server: PostgresServer,
) -> None:
    name = f"f_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
            preloaded = connection.execute("SHOW shared_preload_libraries").fetchone()
        if row == (1,) and preloaded is not None and "timescaledb" in preloaded[0]:
            pytest.skip("this server has TimescaleDB: nothing is missing")
        with pytest.raises(MigrationError, match="extension is not installed"):
            migrate(url + "?options=-c%20smartcity.storage_backend%3Dtimescaledb")
    finally:
        postgres_server.drop_database(name)


@pytest.mark.timescaledb
def test_plain_postgresql_can_be_forced_on_a_timescaledb_server(
    timescale_server: PostgresServer,
) -> None:
    name = f"p_{uuid.uuid4().hex[:12]}"
    url = timescale_server.create_database(name)
    try:
        migrate(url + "?options=-c%20smartcity.storage_backend%3Dplain")
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT timescaledb FROM storage_backend").fetchone() == (
                False,
            )
        check_shared_queries(url)
    finally:
        timescale_server.drop_database(name)


def test_rollups_see_a_sample_completed_after_they_ran(database_url: str) -> None:
    at = HOUR + timedelta(minutes=1)
    write(database_url, [(at, "sl-1", "battery_soc", 50.0)])
    maintain(database_url)
    write(database_url, [(at, "sl-1", "lamp_power", 20.0)])  # completes the stored row
    maintain(database_url)
    with psycopg.connect(database_url) as connection:
        [point] = rollup_series(
            connection, "sl-1", "lamp_power", start=HOUR, end=HOUR + timedelta(hours=1)
        )
    assert (point.sample_count, point.last) == (1, 20.0)


def test_retention_ignores_relations_that_are_not_partitions(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        for index in range(300):  # names a date parser would choke on
            connection.execute(f"CREATE TABLE noise_{index}_version (id int)")
    report = maintain(database_url, datetime.now(UTC) + timedelta(days=360))
    expected = "timescaledb" if uses_timescaledb(database_url) else "postgresql"
    assert report["backend"] == expected


def _day_reads(url: str) -> dict[date, int]:
    """Scans (sequential and index) so far of each day's streetlight partition (plain) or
    chunk (TimescaleDB), by day."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_force_next_flush()")
        if rollups.uses_timescaledb(connection):
            rows = connection.execute(
                "SELECT (c.range_start AT TIME ZONE 'UTC')::date,"
                " coalesce(s.seq_scan, 0) + coalesce(s.idx_scan, 0)"
                " FROM timescaledb_information.chunks c JOIN pg_stat_user_tables s"
                " ON s.schemaname = c.chunk_schema AND s.relname = c.chunk_name"
                " WHERE c.hypertable_name = 'telemetry_streetlight'"
            ).fetchall()
            return dict(rows)
        rows = connection.execute(
            "SELECT relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0)"
            " FROM pg_stat_user_tables WHERE relname LIKE 'telemetry_streetlight_p%'"
        ).fetchall()
    return {datetime.strptime(name[-8:], "%Y%m%d").date(): scans for name, scans in rows}  # noqa: DTZ007


def test_a_rollup_refresh_reads_only_the_days_with_new_samples(database_url: str) -> None:
    """A late sample for one day makes the refresh read that day's partition (or chunk), not
    the rest of the history. (The first refresh function passes this on so little data, where
    the planner prunes at run time; on 90 days of Sefrou its plan read every partition once
    per dirty hour: migration 0007.)"""
    if uses_timescaledb(database_url):
        # Only the refresh may read: TimescaleDB's compression job would read every chunk of
        # these days, all older than its 7 days.
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("SELECT _timescaledb_functions.stop_background_workers()")
    days = [HOUR - timedelta(days=back) for back in range(6)]
    write(database_url, [(day, "sl-1", "battery_soc", 50.0) for day in days])
    maintain(database_url)
    before = _day_reads(database_url)
    late = days[3] + timedelta(minutes=20)
    write(database_url, [(late, "sl-1", "battery_soc", 20.0)])
    maintain(database_url)
    after = _day_reads(database_url)
    assert len(after) >= len(days)
    read = {day for day, scans in after.items() if scans > before.get(day, 0)}
    # TimescaleDB also reads the newest chunk, past the aggregates' watermark, for new buckets.
    newest = {days[0].date()} if uses_timescaledb(database_url) else set()
    assert read == {late.date()} | newest
    with psycopg.connect(database_url) as connection:
        [point] = rollup_series(
            connection, "sl-1", "battery_soc", start=days[3], end=days[3] + timedelta(hours=1)
        )
    assert (point.sample_count, point.minimum, point.last) == (2, 20.0, 20.0)
