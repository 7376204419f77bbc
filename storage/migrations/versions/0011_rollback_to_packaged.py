"""A rollback may return to the packaged document: its trail row names no version.

Rolling back the first activation of a rule set or strategy leaves none active, and the
packaged rules or strategy are in force again. Its ``rolled_back`` row in the trail then has
no name and version (and names the version it replaced in ``previous_*``); every other row
still names one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRAILS = ("rule_set_events", "strategy_events")


def upgrade() -> None:
    for trail in _TRAILS:
        op.execute(
            f"ALTER TABLE {trail} ALTER COLUMN name DROP NOT NULL,"
            " ALTER COLUMN version DROP NOT NULL"
        )
        op.execute(
            f"ALTER TABLE {trail} ADD CONSTRAINT {trail}_version_named CHECK ("
            " (name IS NULL) = (version IS NULL)"
            " AND (name IS NOT NULL OR (action = 'rolled_back' AND previous_name IS NOT NULL)))"
        )


def downgrade() -> None:
    for trail in _TRAILS:
        op.execute(  # the older schema cannot hold them: refuse rather than lose the trail
            f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM {trail} WHERE name IS NULL) THEN"
            f" RAISE EXCEPTION '{trail} records rollbacks to the packaged document, which"
            " revision 0010 cannot hold'; END IF; END $$"
        )
        op.execute(f"ALTER TABLE {trail} DROP CONSTRAINT {trail}_version_named")
        op.execute(
            f"ALTER TABLE {trail} ALTER COLUMN name SET NOT NULL, ALTER COLUMN version SET NOT NULL"
        )
