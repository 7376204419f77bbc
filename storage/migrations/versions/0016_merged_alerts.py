"""An alert closed into another: a citizen's report that telemetry confirms.

When the rules engine raises an alert on a device that has a ``citizen-report`` alert (issue
19), the citizen's alert is closed into the engine's (``merged_into``) and the reports follow
that one. An ordinary column on plain PostgreSQL and TimescaleDB alike.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE alerts ADD COLUMN merged_into bigint REFERENCES alerts")


def downgrade() -> None:
    raise NotImplementedError("not downgraded: which alert a report follows would be lost")
