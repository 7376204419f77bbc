"""The simulator's ground truth in the database: which device had which fault, when."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import psycopg

GroundTruthRow = tuple[str, str, datetime, datetime | None]
"""device id, fault type, start, end (None while it lasts)."""


def record_faults(connection: psycopg.Connection, run: str, rows: Iterable[GroundTruthRow]) -> int:
    """Store the faults of simulation ``run``; a fault recorded before is updated, not doubled."""
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO fault_ground_truth (run, device_id, fault, started_at, ended_at)"
            " VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (run, device_id, fault, started_at)"
            " DO UPDATE SET ended_at = excluded.ended_at",
            [(run, *row) for row in rows],
        )
        return cursor.rowcount
