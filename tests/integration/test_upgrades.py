"""Upgrades: each revision all-or-nothing, and on TimescaleDB from every earlier revision with
data in the tables while the extension's background jobs run."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic.script import ScriptDirectory

from protocol.topics import DeviceClass
from storage import rollups
from storage.errors import MigrationError
from storage.migrate import _config, migrate
from storage.revision import current_revision, head_revision

pytestmark = pytest.mark.integration

WEEK_END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
WEEK_START = WEEK_END - timedelta(days=7)


def earlier_revisions() -> list[str]:
    """Every revision but the head, oldest first."""
    script = ScriptDirectory.from_config(_config())
    revisions = [r.revision for r in script.walk_revisions()]
    return list(reversed(revisions))[:-1]


def test_a_failing_revision_leaves_the_schema_at_the_revision_before(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    migrate(url, "0007")
    with psycopg.connect(url, autocommit=True) as connection:
        # 0008 creates api_users first and audit_log last: it fails at its last statement.
        connection.execute("CREATE TABLE audit_log (x int)")
    with pytest.raises(MigrationError, match=r"at revision 0008.*stays at revision 0007"):
        migrate(url)
    assert current_revision(url) == "0007"
    with psycopg.connect(url) as connection:
        made = connection.execute("SELECT to_regclass('api_users')").fetchone()
    assert made == (None,), "what the failed revision made before its error is rolled back"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP TABLE audit_log")
    migrate(url)
    assert current_revision(url) == head_revision()


def write_week(url: str) -> int:
    """A week of samples of two devices of each class, in SQL of the oldest schema."""
    columns = {"streetlight": "battery_soc", "signage": "power", "building": "air_temperature"}
    step = {"streetlight": "5 minutes", "signage": "1 minute", "building": "1 minute"}
    with psycopg.connect(url, autocommit=True) as connection:
        for device_class, column in columns.items():
            connection.execute(
                f"INSERT INTO telemetry_{device_class} (ts, device_id, {column})"  # noqa: S608
                " SELECT ts, d, extract(epoch FROM ts)::bigint %% 97"
                f" FROM generate_series(%s::timestamptz, %s, INTERVAL '{step[device_class]}') ts,"
                f" (VALUES ('{device_class[:2]}-1'), ('{device_class[:2]}-2')) v(d)",
                (WEEK_START, WEEK_END - timedelta(seconds=1)),
            )
        row = connection.execute(
            "SELECT (SELECT count(*) FROM telemetry_streetlight)"
            " + (SELECT count(*) FROM telemetry_signage)"
            " + (SELECT count(*) FROM telemetry_building)"
        ).fetchone()
    assert row is not None
    return int(row[0])


def run_jobs_continuously(url: str) -> int:
    """Every job of the database due now and every second; returns how many jobs there are."""
    with psycopg.connect(url, autocommit=True) as connection:
        jobs = connection.execute(
            "SELECT alter_job(job_id, schedule_interval => INTERVAL '1 second',"
            " next_start => now()) FROM timescaledb_information.jobs WHERE job_id >= 1000"
        ).fetchall()
    return len(jobs)


def a_job_seen_running(url: str, within_s: float) -> bool:
    """Whether a job of the database was seen running within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    with psycopg.connect(url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            if connection.execute(
                "SELECT 1 FROM pg_stat_activity a"
                " JOIN timescaledb_information.jobs j USING (application_name)"
                " WHERE a.datname = current_database()"
            ).fetchone():
                return True
            time.sleep(0.01)
    return False


@pytest.mark.timescaledb
@pytest.mark.parametrize("base", earlier_revisions())
def test_an_upgrade_from_an_earlier_revision_with_data_and_running_jobs_succeeds(
    timescale_empty_database_url: str, base: str
) -> None:
    url = timescale_empty_database_url
    migrate(url, base)
    stored = write_week(url)
    assert run_jobs_continuously(url) >= 6  # compression and retention of three tables
    assert a_job_seen_running(url, 30.0), "the jobs run while the upgrade starts"
    migrate(url)
    assert current_revision(url) == head_revision()
    with psycopg.connect(url, autocommit=True) as connection:
        unscheduled = connection.execute(
            "SELECT count(*) FROM timescaledb_information.jobs WHERE NOT scheduled"
        ).fetchone()
        assert unscheduled == (0,), "every job paused for the upgrade runs again"
        refresh_policies = connection.execute(
            "SELECT count(*) FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        ).fetchone()
        assert refresh_policies == (0,), "the platform refreshes the aggregates itself"
        row = connection.execute("SELECT count(*) FROM telemetry WHERE ts >= %s", (WEEK_START,))
        assert row.fetchone() == (stored,), "the narrow view shows every stored sample"
        rollups.refresh_period(connection, WEEK_START, WEEK_END)
        for device_class in DeviceClass:
            for grain, _ in rollups.GRAINS:
                assert rollups.rollup_differences(connection, device_class, grain) == 0, (
                    f"{device_class.value} {grain}"
                )


@pytest.mark.timescaledb
def test_jobs_a_killed_migration_left_paused_are_resumed_and_no_others(
    timescale_empty_database_url: str,
) -> None:
    url = timescale_empty_database_url
    migrate(url)
    with psycopg.connect(url, autocommit=True) as connection:
        jobs = [j for (j,) in connection.execute("SELECT job_id FROM timescaledb_information.jobs")]
        by_migration, by_hand = jobs[:-1], jobs[-1]
        # What a migration killed after pausing the jobs leaves behind, and a job paused by hand.
        connection.execute(
            "INSERT INTO migration_paused_jobs SELECT unnest(%s::int[])", (by_migration,)
        )
        connection.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
        )
    migrate(url)
    with psycopg.connect(url, autocommit=True) as connection:
        paused = [
            j
            for (j,) in connection.execute(
                "SELECT job_id FROM timescaledb_information.jobs WHERE NOT scheduled"
            )
        ]
        left = connection.execute("SELECT count(*) FROM migration_paused_jobs").fetchone()
    assert paused == [by_hand]
    assert left == (0,)
