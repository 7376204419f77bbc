"""TimescaleDB: the platform refreshes the continuous aggregates itself, in grain order.

The refresh policies of 0001 and 0006 ran the hourly and the daily aggregates on their own
schedules, so a daily refresh could materialize days from hours still being filled (seen: 120
daily rows for 420 device-days after the jobs ran), and TimescaleDB 2.28 on PostgreSQL 15.20
marks every background job failed and backs it off (docs/storage.md). The policies are removed;
``storage.rollups.maintain`` refreshes each class's hourly aggregate, then its daily one, every
minute from ingest. Compression and retention stay TimescaleDB's policies. Nothing changes on
plain PostgreSQL.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLASSES = ("streetlight", "signage", "building")


def upgrade() -> None:
    if not op.get_bind().exec_driver_sql("SELECT timescaledb FROM storage_backend").scalar():
        return
    for device_class in CLASSES:
        for grain in ("hourly", "daily"):
            op.execute(
                f"SELECT remove_continuous_aggregate_policy('telemetry_{device_class}_{grain}',"
                " if_exists => true)"
            )


def downgrade() -> None:
    raise NotImplementedError("not downgraded: the policies raced each other")
