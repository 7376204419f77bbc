"""Plain PostgreSQL: rollups refreshed one day partition at a time.

The refresh functions of 0001 and 0006 read every day partition of a class once per dirty
hour once the tables are large (see :func:`storage.telemetry_sql.day_by_day_refresh_function`):
each minute's refresh read the whole retained history, and the rollups of a backfilled
history never came (90 days of Sefrou, 62 million rows: not done after 40 minutes; with these
functions, 6 min 20 s). They are
replaced by functions reading each dirty day's partition once. Their metric columns are read
from the rollup tables themselves, so they match the tables whatever migrations came before.
Nothing changes on TimescaleDB, whose continuous aggregates refresh themselves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

from storage.migrations import rolled_up_metrics
from storage.telemetry_sql import day_by_day_refresh_function

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLASSES = ("streetlight", "signage", "building")


def upgrade() -> None:
    connection = op.get_bind()
    if connection.exec_driver_sql("SELECT timescaledb FROM storage_backend").scalar():
        return
    for device_class in CLASSES:
        op.execute(
            day_by_day_refresh_function(device_class, rolled_up_metrics(connection, device_class))
        )


def downgrade() -> None:
    raise NotImplementedError("not downgraded: the old refresh reads all history every minute")
