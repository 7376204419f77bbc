"""Motorised windows and external blinds of building zones.

Night ventilation and solar shading (issue 18): a zone with motorised windows reports whether
they are open (``vents_open``), one with external blinds whether they are lowered
(``blinds_down``). The wide building table gains the two columns, and what depends on the list
of building metrics is recreated as revision 0006 did: the rollups' columns and refresh
function on plain PostgreSQL (the refresh of revision 0012), the continuous aggregates on
TimescaleDB (without refresh policies since revision 0009; ``storage.migrate`` fills them from
the raw rows once this revision has committed), and the narrow views over every class.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

from storage.telemetry_sql import (
    AGGREGATES,
    continuous_aggregates,
    refresh_by_generation_function,
    union_views,
)

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADDED_METRICS = {"building": ("vents_open", "blinds_down")}
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
        "vents_open",
        "blinds_down",
    ),
}
"""Every class's metric columns after this migration, in column order."""
TABLE = "telemetry_building"


def upgrade() -> None:
    timescale = op.get_bind().exec_driver_sql("SELECT timescaledb FROM storage_backend").scalar()
    added = ADDED_METRICS["building"]
    op.execute("DROP VIEW telemetry_daily")
    op.execute("DROP VIEW telemetry_hourly")
    op.execute("DROP VIEW telemetry")
    op.execute(
        f"ALTER TABLE {TABLE} "
        + ", ".join(f"ADD COLUMN {metric} double precision" for metric in added)
    )
    metrics = METRICS_NOW["building"]
    if timescale:
        op.execute(f"DROP MATERIALIZED VIEW {TABLE}_daily")
        op.execute(f"DROP MATERIALIZED VIEW {TABLE}_hourly")
        for statement in continuous_aggregates(TABLE, metrics):
            op.execute(statement)
    else:
        for grain in ("hourly", "daily"):
            columns = ", ".join(
                f"ADD COLUMN {metric}_{aggregate} "
                + ("bigint NOT NULL DEFAULT 0" if aggregate == "count" else "double precision")
                for metric in added
                for aggregate in AGGREGATES
            )
            op.execute(f"ALTER TABLE {TABLE}_{grain} {columns}")
        op.execute(refresh_by_generation_function("building", metrics))
    for statement in union_views(METRICS_NOW):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("not downgraded: the columns would take their readings with it")
