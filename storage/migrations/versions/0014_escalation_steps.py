"""Escalation in steps: how far each alert has gone, and which step each notice is.

An alert left unacknowledged used to escalate once (``alerts.escalated``). The routing file
may now give several steps (the supervisors, then the technician on call): an alert keeps
how many steps it went through (``escalation_step``, 1 where it had escalated) and when the
last one was (``escalated_at``), and a notification which step it tells (its routes and the
on-call rota are read when it is sent, even after a restart). Nothing differs between plain
PostgreSQL and TimescaleDB: these tables are ordinary ones on both.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE alerts ADD COLUMN escalation_step smallint NOT NULL DEFAULT 0"
        " CHECK (escalation_step >= 0), ADD COLUMN escalated_at timestamptz"
    )
    op.execute("UPDATE alerts SET escalation_step = 1 WHERE escalated")
    op.execute("ALTER TABLE alerts DROP COLUMN escalated")
    op.execute(
        "ALTER TABLE notifications ADD COLUMN escalation_step smallint NOT NULL DEFAULT 0"
        " CHECK (escalation_step >= 0)"
    )


def downgrade() -> None:
    raise NotImplementedError("not downgraded: an alert's steps would be lost")
