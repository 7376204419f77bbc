"""Alembic's migrations of the platform's schema, and what several of them read."""

from __future__ import annotations

from sqlalchemy.engine import Connection


def rolled_up_metrics(connection: Connection, device_class: str) -> list[str]:
    """The metrics ``telemetry_<device_class>_hourly`` rolls up, read from its columns (one
    ``<metric>_count`` each), so that a function written for them matches the table whatever
    migrations came before."""
    return [
        name.removesuffix("_count")
        for (name,) in connection.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns"
            f" WHERE table_name = 'telemetry_{device_class}_hourly'"
            " AND column_name LIKE '%%\\_count' ORDER BY ordinal_position"
        )
    ]
