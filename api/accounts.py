"""People and tokens in the database: ``api_users`` and ``api_tokens`` (migration 0008)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from api.roles import Places, Principal, Role
from api.secrets import hash_password, new_token, password_matches, token_digest

_USER_COLUMNS: Final = (
    "username, display_name, role, street_groups, buildings, language, created_at, disabled_at,"
    " password_hash IS NOT NULL AS has_password"
)


_LAST_USE_RESOLUTION: Final = timedelta(minutes=1)


class AccountError(Exception):
    """A user or token request that cannot be done (unknown user, name taken)."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    display_name: str
    role: Role
    street_groups: list[str]
    buildings: list[str]
    language: str
    created_at: datetime
    disabled_at: datetime | None
    has_password: bool


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: int
    username: str
    label: str
    kind: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def _user(row: dict[str, Any]) -> User:
    return User(**{**row, "role": Role(row["role"])})


def list_users(connection: psycopg.Connection) -> list[User]:
    with connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"SELECT {_USER_COLUMNS} FROM api_users ORDER BY username"  # noqa: S608
        ).fetchall()
    return [_user(row) for row in rows]


def find_user(connection: psycopg.Connection, username: str) -> User | None:
    with connection.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            f"SELECT {_USER_COLUMNS} FROM api_users WHERE username = %s",  # noqa: S608
            (username,),
        ).fetchone()
    return _user(row) if row else None


def create_user(
    connection: psycopg.Connection,
    username: str,
    role: Role,
    *,
    display_name: str = "",
    street_groups: Sequence[str] = (),
    buildings: Sequence[str] = (),
    language: str = "fr",
    password: str | None = None,
) -> User:
    """A new user; :class:`AccountError` when the name is taken."""
    try:
        connection.execute(
            "INSERT INTO api_users (username, display_name, role, street_groups, buildings,"
            " language, password_hash) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                username,
                display_name,
                role.value,
                list(street_groups),
                list(buildings),
                language,
                hash_password(password) if password else None,
            ),
        )
    except psycopg.errors.UniqueViolation as error:
        raise AccountError(f"user {username!r} already exists") from error
    created = find_user(connection, username)
    if created is None:  # pragma: no cover - inserted just above in the same transaction
        raise AccountError(f"user {username!r} vanished")
    return created


def update_user(connection: psycopg.Connection, username: str, changes: dict[str, Any]) -> User:
    """Change a user's role, places, name, language, password or disabled state."""
    if find_user(connection, username) is None:
        raise AccountError(f"no user {username!r}")
    columns: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "password":
            columns["password_hash"] = hash_password(value) if value else None
        elif name == "disabled":
            columns["disabled_at"] = datetime.now().astimezone() if value else None
        elif name == "role":
            columns["role"] = Role(value).value
        else:
            columns[name] = list(value) if isinstance(value, (list, tuple)) else value
    if columns:
        assignments = ", ".join(f"{name} = %s" for name in columns)
        connection.execute(
            f"UPDATE api_users SET {assignments}, updated_at = now() WHERE username = %s",  # noqa: S608 - column names from the fixed branches above
            [*columns.values(), username],
        )
        if "disabled_at" in columns and columns["disabled_at"] is not None:
            revoke_user_tokens(connection, username)
        elif "password_hash" in columns:
            revoke_user_tokens(connection, username, kind="session")  # log in again
    updated = find_user(connection, username)
    assert updated is not None  # noqa: S101 - checked at the top, same transaction
    return updated


def issue_token(
    connection: psycopg.Connection,
    username: str,
    *,
    kind: str = "api",
    label: str = "",
    lifetime: timedelta | None = None,
    now: datetime,
) -> tuple[str, TokenInfo]:
    """A new token for ``username``: the token itself (shown once) and what is stored."""
    token = new_token()
    expires_at = now + lifetime if lifetime is not None else None
    with connection.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            "INSERT INTO api_tokens (username, digest, label, kind, created_at, expires_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
            " RETURNING token_id, username, label, kind, created_at, expires_at, revoked_at,"
            " last_used_at",
            (username, token_digest(token), label, kind, now, expires_at),
        ).fetchone()
    assert row is not None  # noqa: S101 - INSERT ... RETURNING gives its row
    return token, TokenInfo(**row)


def list_tokens(connection: psycopg.Connection, username: str | None = None) -> list[TokenInfo]:
    with connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            "SELECT token_id, username, label, kind, created_at, expires_at, revoked_at,"
            " last_used_at FROM api_tokens WHERE %(user)s::text IS NULL OR username = %(user)s"
            " ORDER BY token_id",
            {"user": username},
        ).fetchall()
    return [TokenInfo(**row) for row in rows]


def revoke_token(connection: psycopg.Connection, token_id: int, now: datetime) -> bool:
    cursor = connection.execute(
        "UPDATE api_tokens SET revoked_at = %s WHERE token_id = %s AND revoked_at IS NULL",
        (now, token_id),
    )
    return cursor.rowcount == 1


def revoke_user_tokens(
    connection: psycopg.Connection, username: str, kind: str | None = None
) -> None:
    """Revoke a user's live tokens (of one ``kind`` only: ``session`` or ``api``)."""
    connection.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE username = %s AND revoked_at IS NULL"
        " AND (%s::text IS NULL OR kind = %s)",
        (username, kind, kind),
    )


def principal_for_token(
    connection: psycopg.Connection, token: str, now: datetime
) -> Principal | None:
    """The principal a live token belongs to, or None (unknown, revoked, expired, disabled)."""
    with connection.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            "SELECT t.token_id, t.last_used_at, u.username, u.role, u.street_groups, u.buildings,"
            " u.language FROM api_tokens t JOIN api_users u USING (username)"
            " WHERE t.digest = %(digest)s AND t.revoked_at IS NULL"
            " AND (t.expires_at IS NULL OR t.expires_at > %(now)s) AND u.disabled_at IS NULL",
            {"digest": token_digest(token), "now": now},
        ).fetchone()
    if row is not None and (
        row["last_used_at"] is None or now - row["last_used_at"] > _LAST_USE_RESOLUTION
    ):  # a write per minute at most, not per request
        connection.execute(
            "UPDATE api_tokens SET last_used_at = %s WHERE token_id = %s", (now, row["token_id"])
        )
    if row is None:
        return None
    return Principal(
        username=row["username"],
        role=Role(row["role"]),
        places=Places(frozenset(row["street_groups"]), frozenset(row["buildings"])),
        language=row["language"],
        token_id=row["token_id"],
    )


def check_password(connection: psycopg.Connection, username: str, password: str) -> bool:
    """Whether ``password`` is the enabled user's; False for unknown or password-less users."""
    row = connection.execute(
        "SELECT password_hash FROM api_users WHERE username = %s AND disabled_at IS NULL",
        (username,),
    ).fetchone()
    if row is None or row[0] is None:
        password_matches(password, _dummy_hash())  # the same work either way: no user probing
        return False
    return password_matches(password, row[0])


@cache
def _dummy_hash() -> str:
    return hash_password("no such user")
