"""Energy: versioned strategies with an audit trail, the active strategy, and device commands.

``strategies`` keeps every version of every strategy as the YAML it was written in;
``strategy_events`` is the audit trail (who saved, activated or rolled back what, when, why);
``active_strategy`` is a single row naming the strategy in force (read by the control services,
changed only together with an event); ``commands`` records the commands sent to devices and
what came of them.

Plain tables only, so the migration is the same on plain PostgreSQL and on TimescaleDB.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIONS = "'saved', 'activated', 'rolled_back'"
_OUTCOMES = "'applied', 'rejected', 'expired', 'failed', 'unanswered'"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE strategies (
            name text NOT NULL CHECK (name <> ''),
            version integer NOT NULL CHECK (version >= 1),
            body text NOT NULL,
            digest text NOT NULL,
            author text NOT NULL CHECK (author <> ''),
            reason text NOT NULL CHECK (reason <> ''),
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (name, version)
        )"""
    )
    op.execute(
        f"""
        CREATE TABLE strategy_events (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            actor text NOT NULL CHECK (actor <> ''),
            action text NOT NULL CHECK (action IN ({_ACTIONS})),
            name text NOT NULL,
            version integer NOT NULL,
            reason text NOT NULL CHECK (reason <> ''),
            previous_name text,
            previous_version integer,
            FOREIGN KEY (name, version) REFERENCES strategies (name, version),
            CHECK ((previous_name IS NULL) = (previous_version IS NULL))
        )"""
    )
    op.execute("CREATE INDEX strategy_events_name ON strategy_events (name, at)")
    op.execute(
        """
        CREATE TABLE active_strategy (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            name text NOT NULL,
            version integer NOT NULL,
            activated_at timestamptz NOT NULL,
            activated_by text NOT NULL,
            FOREIGN KEY (name, version) REFERENCES strategies (name, version)
        )"""
    )
    op.execute(
        "COMMENT ON TABLE active_strategy IS 'at most one row: the strategy in force; "
        "changed only in the same transaction as its strategy_events row'"
    )
    op.execute(
        f"""
        CREATE TABLE commands (
            id text PRIMARY KEY,
            device_id text NOT NULL,
            action text NOT NULL,
            params jsonb NOT NULL,
            source text NOT NULL,
            reason text NOT NULL DEFAULT '',
            issued_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            attempts integer NOT NULL DEFAULT 1,
            last_sent_at timestamptz NOT NULL,
            outcome text CHECK (outcome IN ({_OUTCOMES})),
            outcome_at timestamptz,
            outcome_reason text NOT NULL DEFAULT ''
        )"""
    )
    op.execute("CREATE INDEX commands_device ON commands (device_id, issued_at DESC)")
    op.execute(
        "COMMENT ON TABLE commands IS 'commands sent to devices (source: hvac-control, "
        "lighting-control, cli, ...) and their outcome; outcome NULL while awaiting an answer'"
    )


def downgrade() -> None:
    for table in ("commands", "active_strategy", "strategy_events", "strategies"):
        op.execute(f"DROP TABLE {table}")
