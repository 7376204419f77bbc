"""Messages a service set aside (``set_aside_messages``): what it was, where it came from, and
the error it met every time it was handled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

MAX_ERROR_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class SetAside:
    service: str
    """Which service set it aside ("rules", "hvac-control"...)."""
    topic: str
    payload: bytes
    received_at: datetime
    error: str
    """The error's type and message."""


def record_set_aside(connection: psycopg.Connection, message: SetAside, at: datetime) -> None:
    """Record ``message``, committed (the connection may be in autocommit or not)."""
    connection.execute(
        "INSERT INTO set_aside_messages (service, set_aside_at, received_at, topic, error, payload)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (
            message.service,
            at,
            message.received_at,
            message.topic,
            message.error[:MAX_ERROR_CHARS],
            message.payload,
        ),
    )
    if not connection.autocommit:
        connection.commit()


def set_aside_messages(connection: psycopg.Connection, service: str) -> list[SetAside]:
    """What ``service`` set aside, oldest first."""
    rows = connection.execute(
        "SELECT service, topic, payload, received_at, error FROM set_aside_messages"
        " WHERE service = %s ORDER BY id",
        (service,),
    ).fetchall()
    return [SetAside(*row) for row in rows]


def describe(error: BaseException) -> str:
    """An error as recorded: its type and message."""
    return f"{type(error).__name__}: {error}"
