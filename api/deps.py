"""What routes are given: a database connection, the caller, the clock, the services.

Routes declare them with the ``Annotated`` aliases below, and permissions with
``Depends(require(Permission.X))``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import psycopg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BeforeValidator

from api.accounts import principal_for_token
from api.problems import ForbiddenError, UnauthorizedError
from api.roles import Permission, Principal, role_names, roles_with
from api.state import ApiState

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `POST /api/v1/auth/login` or made by an admin "
    "(`smartcity users token NAME`).",
)

_NUMBER: Final = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _written_as_a_moment(value: object) -> object:
    """A moment comes as ISO 8601 text: pydantic would read a bare number as UNIX seconds
    (``fired_until=0.5`` as 1970), which the schema (``date-time``) does not allow."""
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and _NUMBER.fullmatch(value)
    ):
        raise ValueError("write a date and time in ISO 8601, e.g. 2026-12-01T18:00:00Z")
    return value


Moment = Annotated[datetime, BeforeValidator(_written_as_a_moment)]
"""A date and time in a request (no zone: UTC, where the route says so)."""
AwareMoment = Annotated[AwareDatetime, BeforeValidator(_written_as_a_moment)]
"""A date and time in a request, with its time zone."""


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(api_state)]


def database(state: State) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection; its transaction commits when the route returns without error."""
    with state.pool.connection() as connection:
        yield connection


Db = Annotated[psycopg.Connection[Any], Depends(database, scope="function")]
"""``scope="function"``: the transaction commits before the response leaves, so what a
response reports (a token, an acknowledgement) is stored when the caller reads it; a failed
commit is an error response, not a silent loss."""


def now(state: State) -> datetime:
    return state.clock() if state.clock is not None else datetime.now(UTC)


Now = Annotated[datetime, Depends(now)]


def current_principal(
    state: State,
    at: Now,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from its bearer token (in its own short transaction)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError("no bearer token: send `Authorization: Bearer <token>`")
    with state.pool.connection() as connection:
        principal = principal_for_token(connection, credentials.credentials, at)
    if principal is None:
        raise UnauthorizedError("the token is unknown, revoked or expired: log in again")
    return principal


Caller = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission) -> Callable[[Principal], Principal]:
    """A dependency refusing callers whose role lacks ``permission`` (403)."""

    def check(caller: Caller) -> Principal:
        if not caller.may(permission):
            role = caller.role.value.replace("_", " ")
            article = "an" if role[0] in "aeiou" else "a"
            raise ForbiddenError(
                f"{article} {role} may not do this; "
                f"it needs the role {role_names(roles_with(permission))}"
            )
        return caller

    return check


Reader = Annotated[Principal, Depends(require(Permission.READ))]
Admin = Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]
