"""Ground truth of the faults a simulation injected, to score fault detection against.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE fault_ground_truth (
            run text NOT NULL,
            device_id text NOT NULL,
            fault text NOT NULL,
            started_at timestamptz NOT NULL,
            ended_at timestamptz,
            PRIMARY KEY (run, device_id, fault, started_at),
            CHECK (ended_at IS NULL OR ended_at > started_at)
        )"""
    )
    op.execute(
        "CREATE INDEX fault_ground_truth_device ON fault_ground_truth (device_id, started_at)"
    )
    op.execute(
        "COMMENT ON TABLE fault_ground_truth IS 'faults injected by the simulator; "
        "run names the simulation, ended_at NULL while the fault lasts'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE fault_ground_truth")
