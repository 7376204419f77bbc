"""The audit log: every action through the API that changes something, with who did it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api.roles import Principal


def record_action(
    connection: psycopg.Connection[Any],
    caller: Principal,
    action: str,
    target: str,
    at: datetime,
    **detail: Any,
) -> None:
    """Record ``action`` on ``target`` in the caller's transaction: it commits with the change.

    ``detail`` must hold no secret (passwords and tokens are never passed here)."""
    connection.execute(
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (%s, %s, %s, %s, %s)",
        (at, caller.username, action, target, Jsonb(detail)),
    )
