"""Retention on plain PostgreSQL: compare partition names as text, never parse them.

The first version parsed every candidate's name as a date in the WHERE clause; the planner
may evaluate that condition on any relation of the catalogue before the join keeps only the
partitions, and then fails on a name such as ``..._version``. Day suffixes ``YYYYMMDD``
compare as text in date order, which can never fail.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    timescale = op.get_bind().exec_driver_sql("SELECT timescaledb FROM storage_backend").scalar()
    if timescale:
        return  # TimescaleDB's retention policies do this work
    op.execute(
        """
        CREATE OR REPLACE FUNCTION drop_expired_partitions(p_class text, p_now timestamptz)
        RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE
            keep_from text;
            partition record;
            dropped integer := 0;
        BEGIN
            SELECT to_char((p_now - raw_retention) AT TIME ZONE 'UTC', 'YYYYMMDD') INTO keep_from
            FROM retention_policies WHERE device_class = p_class;
            FOR partition IN
                SELECT c.relname FROM pg_inherits i
                JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = ('telemetry_' || p_class)::regclass
                  AND c.relname LIKE 'telemetry\\_' || p_class || '\\_p________'
                  AND right(c.relname, 8) < keep_from
            LOOP
                EXECUTE format('DROP TABLE %I', partition.relname);
                dropped := dropped + 1;
            END LOOP;
            RETURN dropped;
        END $$"""
    )


def downgrade() -> None:
    raise NotImplementedError("not downgraded; the 0001 version had the bug this fixes")
