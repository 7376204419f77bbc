"""The HTTP API: people and their tokens, alert assignment and comments, device credentials,
versioned rule sets, background jobs and the audit log.

``api_users`` are the people (and scripts) the API knows, each with one role; a crew's
``street_groups`` and ``buildings`` are the places whose alerts it works on. ``api_tokens``
keeps only a SHA-256 digest of each token: a token is shown once, when it is made.
``device_credentials`` keeps the MQTT password of a provisioned device as a PBKDF2-SHA512 hash
in Mosquitto's password-file format. ``rule_sets``, ``rule_set_events`` and
``active_rule_set`` version the rule files as 0005 versions the energy strategies.
``api_jobs`` are the long requests (backtests, what-ifs) run in the background by the API
process named in ``runner`` (which holds an advisory lock on that name while it lives), and
``audit_log`` records every action that changes something, with who did it.

Plain tables only, so the migration is the same on plain PostgreSQL and on TimescaleDB.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLES = "'technician', 'crew', 'energy_manager', 'admin'"
_JOB_STATUSES = "'queued', 'running', 'succeeded', 'failed'"
_RULE_SET_ACTIONS = "'saved', 'activated', 'rolled_back'"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE api_users (
            username text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{{0,62}}$'),
            display_name text NOT NULL DEFAULT '',
            role text NOT NULL CHECK (role IN ({_ROLES})),
            street_groups text[] NOT NULL DEFAULT '{{}}',
            buildings text[] NOT NULL DEFAULT '{{}}',
            language text NOT NULL DEFAULT 'fr' CHECK (language IN ('en', 'fr', 'ar')),
            password_hash text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            disabled_at timestamptz
        )"""
    )
    op.execute(
        """
        CREATE TABLE api_tokens (
            token_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            username text NOT NULL REFERENCES api_users ON DELETE CASCADE,
            digest text NOT NULL UNIQUE,
            label text NOT NULL DEFAULT '',
            kind text NOT NULL CHECK (kind IN ('api', 'session')),
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            revoked_at timestamptz,
            last_used_at timestamptz
        )"""
    )
    op.execute("CREATE INDEX api_tokens_user ON api_tokens (username)")
    op.execute("ALTER TABLE alerts ADD COLUMN assigned_to text, ADD COLUMN assigned_at timestamptz")
    op.execute(
        """
        CREATE TABLE alert_comments (
            comment_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            alert_id bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
            at timestamptz NOT NULL DEFAULT now(),
            author text NOT NULL,
            body text NOT NULL CHECK (body <> '')
        )"""
    )
    op.execute("CREATE INDEX alert_comments_alert ON alert_comments (alert_id, at)")
    op.execute(
        """
        CREATE TABLE device_credentials (
            device_id text PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
            username text NOT NULL UNIQUE,
            password_hash text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by text NOT NULL
        )"""
    )
    op.execute(
        """
        CREATE TABLE rule_sets (
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
        CREATE TABLE rule_set_events (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            actor text NOT NULL CHECK (actor <> ''),
            action text NOT NULL CHECK (action IN ({_RULE_SET_ACTIONS})),
            name text NOT NULL,
            version integer NOT NULL,
            reason text NOT NULL CHECK (reason <> ''),
            previous_name text,
            previous_version integer,
            FOREIGN KEY (name, version) REFERENCES rule_sets (name, version),
            CHECK ((previous_name IS NULL) = (previous_version IS NULL))
        )"""
    )
    op.execute("CREATE INDEX rule_set_events_name ON rule_set_events (name, at)")
    op.execute(
        """
        CREATE TABLE active_rule_set (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            name text NOT NULL,
            version integer NOT NULL,
            activated_at timestamptz NOT NULL,
            activated_by text NOT NULL,
            FOREIGN KEY (name, version) REFERENCES rule_sets (name, version)
        )"""
    )
    op.execute(
        f"""
        CREATE TABLE api_jobs (
            job_id text PRIMARY KEY,
            kind text NOT NULL,
            params jsonb NOT NULL,
            status text NOT NULL CHECK (status IN ({_JOB_STATUSES})),
            progress text NOT NULL DEFAULT '',
            result jsonb,
            error text,
            created_by text NOT NULL,
            runner text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            finished_at timestamptz
        )"""
    )
    op.execute(
        """
        CREATE TABLE audit_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            actor text NOT NULL,
            action text NOT NULL,
            target text NOT NULL DEFAULT '',
            detail jsonb NOT NULL DEFAULT '{}'
        )"""
    )
    op.execute("CREATE INDEX audit_log_at ON audit_log (at)")


def downgrade() -> None:
    for table in (
        "audit_log",
        "api_jobs",
        "active_rule_set",
        "rule_set_events",
        "rule_sets",
        "device_credentials",
        "alert_comments",
        "api_tokens",
        "api_users",
    ):
        op.execute(f"DROP TABLE {table}")
    op.execute("ALTER TABLE alerts DROP COLUMN assigned_to, DROP COLUMN assigned_at")
