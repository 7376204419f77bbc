"""Initial schema: registry, telemetry per device class, events, states, dead letters, rollups.

Telemetry is stored wide: one table per device class, one row per sample (device, time), one
column per metric of the class's catalogue, NULL where the sample did not carry it. A sample of
13 values is one row and one index entry, not 13; Grafana reads a metric as a column. The views
``telemetry``, ``telemetry_hourly`` and ``telemetry_daily`` show every class in the narrow
(device, time, metric, value) shape for queries across classes.

On TimescaleDB: hypertables, compression and retention policies, continuous aggregates.
On plain PostgreSQL: daily range partitions and rollup tables, kept up to date by
``smartcity_maintain()``, which the platform calls periodically.

Both paths install functions of the same names, so the rest of the platform never asks which.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

from storage.telemetry_sql import (
    continuous_aggregates,
    plain_refresh_function,
    rollup_columns,
    union_views,
)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The metric catalogue of protocol/catalogue.py as it was when this migration was written: a
# metric added to the catalogue needs a migration adding its column (a unit test checks).
METRICS = {
    "streetlight": (
        "pv_voltage",
        "pv_current",
        "pv_power",
        "battery_voltage",
        "battery_soc",
        "battery_temperature",
        "charge_current",
        "lamp_power",
        "lamp_on",
        "dimming_level",
        "ambient_light",
        "tilt",
        "controller_status",
    ),
    "signage": (
        "power",
        "supply_voltage",
        "enclosure_temperature",
        "ambient_light",
        "brightness_level",
        "message_id",
        "failed_pixels",
        "door_open",
        "fault_bits",
    ),
    "building": (
        "air_temperature",
        "humidity",
        "co2",
        "occupancy",
        "window_open",
        "heating_active",
        "cooling_active",
        "valve_position",
        "supply_water_temperature",
        "energy",
        "power",
    ),
}
DEVICE_CLASSES = tuple(METRICS)
# Raw telemetry kept per class; rollups are kept for ever. Buildings keep two years so the
# energy manager can compare a winter with the last two.
RAW_RETENTION = {"streetlight": "400 days", "signage": "400 days", "building": "800 days"}
COMPRESS_AFTER = "7 days"
# Samples up to this old are accepted (protocol.decoding.AcceptanceWindow); aggregates must
# still see them.
BACKFILL_WINDOW = "91 days"


def timescaledb_usable() -> bool:
    """The extension is installed on the server and preloaded, so CREATE EXTENSION works."""
    row = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
            " strpos(current_setting('shared_preload_libraries'), 'timescaledb') > 0,"
            " coalesce(current_setting('smartcity.storage_backend', true), 'auto')"
        )
        .one()
    )
    available, preloaded, choice = row
    if choice == "plain":
        return False
    if choice == "timescaledb" and not (available and preloaded):
        raise RuntimeError(
            "smartcity.storage_backend=timescaledb, but the TimescaleDB extension is not "
            "installed and listed in shared_preload_libraries on this server: install it, or "
            "leave smartcity.storage_backend unset to use plain PostgreSQL"
        )
    return bool(available and preloaded)


def upgrade() -> None:
    timescale = timescaledb_usable()
    if timescale:
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    op.execute(
        """
        CREATE TABLE storage_backend (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            timescaledb boolean NOT NULL,
            chosen_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(f"INSERT INTO storage_backend (timescaledb) VALUES ({str(timescale).lower()})")
    _registry()
    _device_tables(timescale)
    op.execute(
        """
        CREATE TABLE retention_policies (
            device_class text PRIMARY KEY,
            raw_retention interval NOT NULL,
            compress_after interval NOT NULL
        )"""
    )
    if not timescale:
        _plain_rollup_marking()
    for device_class in DEVICE_CLASSES:
        op.execute(
            "INSERT INTO retention_policies VALUES "
            f"('{device_class}', '{RAW_RETENTION[device_class]}', '{COMPRESS_AFTER}')"
        )
        _telemetry_table(device_class, timescale)
    _union_views()
    if timescale:
        _timescale_functions()
    else:
        _plain_functions()


def _registry() -> None:
    op.execute(
        """
        CREATE TABLE sites (
            site_id text PRIMARY KEY CHECK (site_id ~ '^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$'),
            name text NOT NULL,
            timezone text NOT NULL,
            latitude double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
            longitude double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
            metadata jsonb NOT NULL DEFAULT '{}'
        )"""
    )
    classes = ", ".join(f"'{c}'" for c in DEVICE_CLASSES)
    op.execute(
        f"""
        CREATE TABLE devices (
            device_id text PRIMARY KEY CHECK (device_id ~ '^[a-z0-9]([a-z0-9-]{{0,62}}[a-z0-9])?$'),
            site_id text NOT NULL REFERENCES sites,
            device_class text NOT NULL CHECK (device_class IN ({classes})),
            name text NOT NULL DEFAULT '',
            model text NOT NULL DEFAULT '',
            latitude double precision CHECK (latitude BETWEEN -90 AND 90),
            longitude double precision CHECK (longitude BETWEEN -180 AND 180),
            street_group text,
            cabinet text,
            building text,
            zone text,
            metadata jsonb NOT NULL DEFAULT '{{}}',
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            decommissioned_at timestamptz
        )"""
    )
    op.execute("CREATE INDEX devices_site_class ON devices (site_id, device_class)")


def _device_tables(timescale: bool) -> None:
    op.execute(
        """
        CREATE TABLE device_events (
            ts timestamptz NOT NULL,
            device_id text NOT NULL,
            kind text NOT NULL,
            seq bigint NOT NULL,
            severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
            message text NOT NULL DEFAULT '',
            data jsonb NOT NULL DEFAULT '{}',
            received_at timestamptz NOT NULL,
            PRIMARY KEY (device_id, ts, kind)
        )"""
    )
    op.execute(
        """
        CREATE TABLE device_states (
            ts timestamptz NOT NULL,
            device_id text NOT NULL,
            status text NOT NULL CHECK (status IN ('online', 'offline')),
            reason text,
            boot_id text,
            firmware text,
            received_at timestamptz NOT NULL,
            PRIMARY KEY (device_id, ts, status)
        )"""
    )
    op.execute(
        """
        CREATE TABLE command_acks (
            device_id text NOT NULL,
            command_id text NOT NULL,
            ts timestamptz NOT NULL,
            outcome text NOT NULL CHECK (outcome IN ('applied', 'rejected', 'expired', 'failed')),
            reason text NOT NULL DEFAULT '',
            received_at timestamptz NOT NULL,
            PRIMARY KEY (device_id, command_id, ts)
        )"""
    )
    # A redelivered bad message is the same bytes on the same topic: the digest keeps it once.
    op.execute(
        """
        CREATE TABLE dead_letters (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            digest bytea NOT NULL UNIQUE,
            received_at timestamptz NOT NULL,
            topic text NOT NULL,
            device_id text,
            reason text NOT NULL,
            detail text NOT NULL,
            payload bytea NOT NULL
        )"""
    )
    op.execute("CREATE INDEX dead_letters_received_at ON dead_letters (received_at)")
    if timescale:
        for table in ("device_events", "device_states"):
            op.execute(
                f"SELECT create_hypertable('{table}', 'ts', chunk_time_interval => INTERVAL '30 days')"
            )


def _telemetry_table(device_class: str, timescale: bool) -> None:
    table = f"telemetry_{device_class}"
    metric_columns = "".join(f"\n            {m} double precision," for m in METRICS[device_class])
    partitioning = "" if timescale else " PARTITION BY RANGE (ts)"
    op.execute(
        f"""
        CREATE TABLE {table} (
            ts timestamptz NOT NULL,
            device_id text NOT NULL,{metric_columns}
            PRIMARY KEY (device_id, ts)
        ){partitioning}"""
    )
    columns = rollup_columns(METRICS[device_class])
    if timescale:
        op.execute(
            f"SELECT create_hypertable('{table}', 'ts', chunk_time_interval => INTERVAL '1 day')"
        )
        op.execute(
            f"ALTER TABLE {table} SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'device_id',"
            " timescaledb.compress_orderby = 'ts DESC')"
        )
        op.execute(f"SELECT add_compression_policy('{table}', INTERVAL '{COMPRESS_AFTER}')")
        op.execute(
            f"SELECT add_retention_policy('{table}', INTERVAL '{RAW_RETENTION[device_class]}')"
        )
        for statement in continuous_aggregates(table, METRICS[device_class]):
            op.execute(statement)
        for view, schedule in ((f"{table}_hourly", "10 minutes"), (f"{table}_daily", "1 hour")):
            op.execute(
                f"SELECT add_continuous_aggregate_policy('{view}',"
                f" start_offset => INTERVAL '{BACKFILL_WINDOW}', end_offset => NULL,"
                f" schedule_interval => INTERVAL '{schedule}')"
            )
        return
    aggregate_columns = "".join(
        f"\n                {c} {'bigint NOT NULL' if c.endswith('_count') else 'double precision'},"
        for c in columns
    )
    for grain in ("hourly", "daily"):
        op.execute(
            f"""
            CREATE TABLE {table}_{grain} (
                bucket timestamptz NOT NULL,
                device_id text NOT NULL,{aggregate_columns}
                PRIMARY KEY (device_id, bucket)
            )"""
        )
        op.execute(f"CREATE INDEX {table}_{grain}_bucket ON {table}_{grain} (bucket)")
    # Inserts, and the updates by which the writer completes a sample (ON CONFLICT DO
    # UPDATE), both change an hour; PostgreSQL wants one trigger per event for this.
    for event in ("INSERT", "UPDATE"):
        op.execute(
            f"""
            CREATE TRIGGER {table}_mark_rollup_{event.lower()} AFTER {event} ON {table}
            REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
            EXECUTE FUNCTION mark_rollup_dirty('{device_class}')"""
        )
    op.execute(plain_refresh_function(device_class, METRICS[device_class]))


def _union_views() -> None:
    for statement in union_views(METRICS):
        op.execute(statement)


def _timescale_functions() -> None:
    # TimescaleDB creates chunks, compresses, drops old data and refreshes the continuous
    # aggregates itself (background jobs); real-time aggregation keeps rollups current.
    op.execute(
        """
        CREATE FUNCTION ensure_telemetry_partitions(p_class text, p_from timestamptz, p_to timestamptz)
        RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$"""
    )
    op.execute(
        """
        CREATE FUNCTION smartcity_maintain(p_now timestamptz DEFAULT now())
        RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_build_object('backend', 'timescaledb') $$"""
    )


def _plain_rollup_marking() -> None:
    op.execute(
        """
        CREATE TABLE rollup_dirty (
            device_class text NOT NULL,
            bucket timestamptz NOT NULL,
            marked_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (device_class, bucket)
        )"""
    )
    # ON CONFLICT DO UPDATE (not DO NOTHING) locks an existing marker, so a refresh that is
    # deleting it waits for this transaction and then sees its rows; sorted to avoid deadlocks.
    op.execute(
        """
        CREATE FUNCTION mark_rollup_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO rollup_dirty (device_class, bucket)
            SELECT DISTINCT TG_ARGV[0], date_trunc('hour', ts, 'UTC') FROM new_rows ORDER BY 2
            ON CONFLICT (device_class, bucket) DO UPDATE SET marked_at = now();
            RETURN NULL;
        END $$"""
    )


def _plain_functions() -> None:
    op.execute(
        """
        CREATE FUNCTION refresh_rollups(p_class text) RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE
            refreshed integer;
        BEGIN
            EXECUTE format('SELECT refresh_rollups_%s()', p_class) INTO refreshed;
            RETURN refreshed;
        END $$"""
    )
    op.execute(
        """
        CREATE FUNCTION ensure_telemetry_partitions(p_class text, p_from timestamptz, p_to timestamptz)
        RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE
            day date;
            partition_name text;
            created integer := 0;
        BEGIN
            FOR day IN
                SELECT generate_series((p_from AT TIME ZONE 'UTC')::date,
                                       (p_to AT TIME ZONE 'UTC')::date, INTERVAL '1 day')::date
            LOOP
                partition_name := format('telemetry_%s_p%s', p_class, to_char(day, 'YYYYMMDD'));
                CONTINUE WHEN to_regclass(partition_name) IS NOT NULL;
                PERFORM pg_advisory_xact_lock(hashtext(partition_name));
                CONTINUE WHEN to_regclass(partition_name) IS NOT NULL;
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    partition_name, 'telemetry_' || p_class,
                    day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
                created := created + 1;
            END LOOP;
            RETURN created;
        END $$"""
    )
    op.execute(
        """
        CREATE FUNCTION drop_expired_partitions(p_class text, p_now timestamptz)
        RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE
            keep_from date;
            partition record;
            dropped integer := 0;
        BEGIN
            SELECT ((p_now - raw_retention) AT TIME ZONE 'UTC')::date INTO keep_from
            FROM retention_policies WHERE device_class = p_class;
            FOR partition IN
                SELECT c.relname FROM pg_inherits i
                JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = ('telemetry_' || p_class)::regclass
                  AND to_date(right(c.relname, 8), 'YYYYMMDD') < keep_from
            LOOP
                EXECUTE format('DROP TABLE %I', partition.relname);
                dropped := dropped + 1;
            END LOOP;
            RETURN dropped;
        END $$"""
    )
    # Partitions exist a week ahead so ingest rarely creates one on its hot path.
    op.execute(
        """
        CREATE FUNCTION smartcity_maintain(p_now timestamptz DEFAULT now())
        RETURNS jsonb LANGUAGE plpgsql AS $$
        DECLARE
            device_class text;
            report jsonb := jsonb_build_object('backend', 'postgresql');
        BEGIN
            FOREACH device_class IN ARRAY ARRAY['streetlight', 'signage', 'building'] LOOP
                report := report || jsonb_build_object(device_class, jsonb_build_object(
                    'partitions_created', ensure_telemetry_partitions(
                        device_class, p_now - INTERVAL '1 day', p_now + INTERVAL '7 days'),
                    'hours_rolled_up', refresh_rollups(device_class),
                    'partitions_dropped', drop_expired_partitions(device_class, p_now)));
            END LOOP;
            RETURN report;
        END $$"""
    )


def downgrade() -> None:
    raise NotImplementedError("the initial schema is not downgraded; drop the database instead")
