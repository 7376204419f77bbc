"""Citizens' reports through Open311 GeoReport v2, and the client applications that send them.

``open311_clients``: each reporting app (the city's site, FixMyStreet, SeeClickFix...) with the
hash of its API key. ``citizen_reports``: each report, the devices it was matched to, the
alert that answers it (an open fault alert on those devices, or the one raised for the crews)
and the earlier report it repeats. Ordinary tables on plain PostgreSQL and TimescaleDB alike.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE open311_clients (
            client_id text PRIMARY KEY CHECK (client_id ~ '^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$'),
            name text NOT NULL,
            key_sha256 text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )"""
    )
    op.execute(
        """
        CREATE TABLE citizen_reports (
            request_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            client_id text NOT NULL REFERENCES open311_clients,
            source_address text NOT NULL,
            service_code text NOT NULL,
            latitude double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
            longitude double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
            address_string text NOT NULL DEFAULT '',
            description text NOT NULL DEFAULT '',
            media_url text,
            email text,
            phone text,
            first_name text,
            last_name text,
            locale text NOT NULL CHECK (locale IN ('fr', 'ar', 'en')),
            requested_at timestamptz NOT NULL,
            devices text[] NOT NULL DEFAULT '{}',
            alert_id bigint REFERENCES alerts ON DELETE SET NULL,
            duplicate_of bigint REFERENCES citizen_reports
        )"""
    )
    op.execute("CREATE INDEX citizen_reports_time ON citizen_reports (requested_at)")
    op.execute("CREATE INDEX citizen_reports_alert ON citizen_reports (alert_id)")


def downgrade() -> None:
    raise NotImplementedError("not downgraded: the citizens' reports would be lost")
