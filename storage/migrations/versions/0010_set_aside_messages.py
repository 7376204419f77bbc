"""Messages a service set aside: one that made its handler fail every time is recorded here
and acknowledged, so the broker never redelivers it forever (a poison message).

Ingest records the device messages it refuses in ``dead_letters`` with the reason; this table
is for the other services (the rules engine, the control services), whose failures are bugs
met by a message the platform otherwise accepted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE set_aside_messages (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            service text NOT NULL,
            set_aside_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            topic text NOT NULL,
            error text NOT NULL,
            payload bytea NOT NULL
        )"""
    )
    op.execute("CREATE INDEX set_aside_messages_at ON set_aside_messages (set_aside_at)")


def downgrade() -> None:
    op.execute("DROP TABLE set_aside_messages")
