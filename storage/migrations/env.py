"""Alembic environment: runs migrations on the connection handed over by storage.migrate,
each revision in a transaction of its own."""

from alembic import context
from sqlalchemy.engine import Connection

attributes = context.config.attributes
connection = attributes.get("connection")
if not isinstance(connection, Connection):
    raise TypeError("run migrations with `smartcity db migrate`, not the alembic command")

context.configure(
    connection=connection,
    transaction_per_migration=True,
    on_version_apply=attributes.get("on_version_apply"),
)
with context.begin_transaction():
    context.run_migrations()
