"""Alerts and their history, silences, notifications, and the rules engine's saved state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'firing', 'acknowledged', 'resolved', 'closed'"
_SEVERITIES = "'info', 'warning', 'critical'"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE alerts (
            alert_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            rule_id text NOT NULL,
            subject text NOT NULL,
            severity text NOT NULL CHECK (severity IN ({_SEVERITIES})),
            status text NOT NULL CHECK (status IN ({_STATUSES})),
            title text NOT NULL DEFAULT '',
            started_at timestamptz NOT NULL,
            fired_at timestamptz NOT NULL,
            acknowledged_at timestamptz,
            acknowledged_by text,
            resolved_at timestamptz,
            closed_at timestamptz,
            cause text,
            muted_by text,
            last_notified_at timestamptz,
            reminders integer NOT NULL DEFAULT 0,
            escalated boolean NOT NULL DEFAULT false,
            repaired_at timestamptz,
            repaired_by text,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CHECK (fired_at >= started_at)
        )"""
    )
    op.execute(
        "CREATE UNIQUE INDEX alerts_one_open ON alerts (rule_id, subject)"
        " WHERE status IN ('firing', 'acknowledged')"
    )
    op.execute(
        "CREATE UNIQUE INDEX alerts_one_awaiting_verification ON alerts (rule_id, subject)"
        " WHERE status = 'resolved' AND repaired_at IS NOT NULL"
    )
    op.execute("CREATE INDEX alerts_status ON alerts (status, severity, fired_at)")
    op.execute("CREATE INDEX alerts_subject ON alerts (subject, fired_at)")
    op.execute(
        f"""
        CREATE TABLE alert_transitions (
            transition_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            alert_id bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
            at timestamptz NOT NULL,
            from_status text CHECK (from_status IN ({_STATUSES})),
            to_status text NOT NULL CHECK (to_status IN ({_STATUSES})),
            actor text NOT NULL,
            note text NOT NULL DEFAULT ''
        )"""
    )
    op.execute("CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, at)")
    op.execute(
        """
        CREATE TABLE silences (
            silence_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL,
            maintenance boolean NOT NULL DEFAULT false,
            rule_ids text[] NOT NULL DEFAULT '{}',
            device_ids text[] NOT NULL DEFAULT '{}',
            street_groups text[] NOT NULL DEFAULT '{}',
            buildings text[] NOT NULL DEFAULT '{}',
            reason text NOT NULL DEFAULT '',
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK (ends_at > starts_at)
        )"""
    )
    op.execute(
        """
        CREATE TABLE notifications (
            notification_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            alert_id bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
            kind text NOT NULL,
            queued_at timestamptz NOT NULL,
            sent_at timestamptz,
            gave_up_at timestamptz
        )"""
    )
    op.execute(
        "CREATE INDEX notifications_unsent ON notifications (queued_at)"
        " WHERE sent_at IS NULL AND gave_up_at IS NULL"
    )
    op.execute(
        """
        CREATE TABLE notification_attempts (
            attempt_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            notification_id bigint REFERENCES notifications ON DELETE CASCADE,
            alert_id bigint NOT NULL,
            route text NOT NULL,
            url text NOT NULL,
            language text NOT NULL,
            attempt integer NOT NULL,
            at timestamptz NOT NULL,
            ok boolean NOT NULL,
            error text NOT NULL DEFAULT ''
        )"""
    )
    op.execute("CREATE INDEX notification_attempts_alert ON notification_attempts (alert_id)")
    op.execute(
        """
        CREATE TABLE rule_states (
            rule_id text NOT NULL,
            device_id text NOT NULL,
            state jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (rule_id, device_id)
        )"""
    )
    op.execute(
        "COMMENT ON TABLE rule_states IS 'the rules engine''s per-rule, per-device state "
        "(pending timers, hysteresis, presence), saved with each change so restarts continue'"
    )


def downgrade() -> None:
    for table in (
        "rule_states",
        "notification_attempts",
        "notifications",
        "silences",
        "alert_transitions",
        "alerts",
    ):
        op.execute(f"DROP TABLE {table}")
