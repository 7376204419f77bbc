"""Alembic environment: runs migrations on the connection handed over by storage.migrate."""

from alembic import context
from sqlalchemy.engine import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise TypeError("run migrations with `smartcity db migrate`, not the alembic command")

context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
