"""Plain PostgreSQL: a rollup refresh no longer makes ingest's writes wait.

The refresh of 0007 deleted an hour's dirty marker before recomputing it, and a writer
marking that hour again waited on the delete until the whole recompute committed: at
800 messages/s, stored rows froze for seconds at every maintenance. Each marker now carries a
``generation`` that every marking renews; the refresh (see
:func:`storage.telemetry_sql.refresh_by_generation_function`) reads the markers without a
lock, recomputes, and deletes only the markers nobody renewed meanwhile. Nothing changes on
TimescaleDB, whose continuous aggregates have no markers.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

from storage.migrations import rolled_up_metrics
from storage.telemetry_sql import refresh_by_generation_function

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLASSES = ("streetlight", "signage", "building")


def upgrade() -> None:
    connection = op.get_bind()
    if connection.exec_driver_sql("SELECT timescaledb FROM storage_backend").scalar():
        return
    op.execute("CREATE SEQUENCE rollup_dirty_generation")
    op.execute(
        "ALTER TABLE rollup_dirty ADD COLUMN generation bigint NOT NULL"
        " DEFAULT nextval('rollup_dirty_generation')"
    )
    # Markers are still taken in hour order, and renewed (not left alone) on conflict.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION mark_rollup_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO rollup_dirty (device_class, bucket)
            SELECT DISTINCT TG_ARGV[0], date_trunc('hour', ts, 'UTC') FROM new_rows ORDER BY 2
            ON CONFLICT (device_class, bucket) DO UPDATE
                SET marked_at = now(), generation = nextval('rollup_dirty_generation');
            RETURN NULL;
        END $$"""
    )
    for device_class in CLASSES:
        op.execute(
            refresh_by_generation_function(
                device_class, rolled_up_metrics(connection, device_class)
            )
        )


def downgrade() -> None:
    raise NotImplementedError("not downgraded: the old refresh makes writers wait")
