"""Outdoor temperature of each building zone's outdoor sensor.

Heating plants with weather compensation have an outdoor sensor; the zone devices now report
it as ``outdoor_temperature`` so the platform's control can compensate the heating water,
learn warm-up rates and follow the seasons. The wide building table gains the column, and what
depends on the list of building metrics is recreated: the rollups' columns and refresh
function on plain PostgreSQL, the continuous aggregates on TimescaleDB (a continuous aggregate
cannot gain a column: they are recreated, and filled again from the raw rows, which buildings
keep 800 days, by ``storage.migrate`` once the revision has committed; rollups of older hours,
had there been any, would not come back), and the narrow views over every class.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

from storage.telemetry_sql import (
    AGGREGATES,
    continuous_aggregates,
    plain_refresh_function,
    union_views,
)

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADDED_METRICS = {"building": ("outdoor_temperature",)}
METRICS_NOW = {
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
        "outdoor_temperature",
    ),
}
"""Every class's metric columns after this migration, in column order."""
BACKFILL_WINDOW = "91 days"
TABLE = "telemetry_building"


def upgrade() -> None:
    timescale = op.get_bind().exec_driver_sql("SELECT timescaledb FROM storage_backend").scalar()
    op.execute("DROP VIEW telemetry_daily")
    op.execute("DROP VIEW telemetry_hourly")
    op.execute("DROP VIEW telemetry")
    op.execute(f"ALTER TABLE {TABLE} ADD COLUMN outdoor_temperature double precision")
    metrics = METRICS_NOW["building"]
    if timescale:
        op.execute(f"DROP MATERIALIZED VIEW {TABLE}_daily")
        op.execute(f"DROP MATERIALIZED VIEW {TABLE}_hourly")
        for statement in continuous_aggregates(TABLE, metrics):
            op.execute(statement)
        for view, schedule in ((f"{TABLE}_hourly", "10 minutes"), (f"{TABLE}_daily", "1 hour")):
            op.execute(
                f"SELECT add_continuous_aggregate_policy('{view}',"
                f" start_offset => INTERVAL '{BACKFILL_WINDOW}', end_offset => NULL,"
                f" schedule_interval => INTERVAL '{schedule}')"
            )
        # The aggregates come back empty; storage.migrate fills them from the raw rows over
        # all time once this revision has committed (a refresh cannot run in a transaction),
        # and real-time aggregation answers from the raw rows until then.
    else:
        for grain in ("hourly", "daily"):
            added = ", ".join(
                f"ADD COLUMN outdoor_temperature_{aggregate} "
                + ("bigint NOT NULL DEFAULT 0" if aggregate == "count" else "double precision")
                for aggregate in AGGREGATES
            )
            op.execute(f"ALTER TABLE {TABLE}_{grain} {added}")
        op.execute(plain_refresh_function("building", metrics, replace=True))
    for statement in union_views(METRICS_NOW):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("not downgraded: the column would take its readings with it")
