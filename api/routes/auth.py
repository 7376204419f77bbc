"""Routes: log in with a password for a session token, log out, who am I."""

from __future__ import annotations

import math
from datetime import datetime

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field

from api.accounts import check_password, find_user, issue_token, revoke_token
from api.deps import Caller, Db, Now, State
from api.device_queries import place_names
from api.problems import (
    CallerFirstRoute,
    TooManyRequestsError,
    UnauthorizedError,
    problem_responses,
)
from api.roles import PERMISSIONS, Permission, Role

router = APIRouter(prefix="/auth", tags=["auth"], route_class=CallerFirstRoute)


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=63, examples=["crew-north"])
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    username: str
    display_name: str
    role: Role
    street_groups: list[str]
    buildings: list[str]
    street_group_names: dict[str, str] = Field(
        description="The registry's names of the user's street groups, by id (one without a"
        " name is left out).",
        examples=[{"route-el-menzel-north": "Route El Menzel, north carriageway"}],
    )
    building_names: dict[str, str] = Field(
        description="The registry's names of the user's buildings, by id.",
        examples=[{"town-hall": "Town hall"}],
    )
    language: str
    permissions: list[Permission] = Field(description="What this user may do.")


class Session(BaseModel):
    token: str = Field(description="The bearer token: shown once, kept only as a hash.")
    expires_at: datetime
    user: Me


def _me(connection: Db, username: str) -> Me:
    user = find_user(connection, username)
    if user is None:
        raise UnauthorizedError("the user of this token no longer exists")
    role = Role(user.role)
    names = place_names(connection, user.street_groups, user.buildings)
    return Me(
        username=user.username,
        display_name=user.display_name,
        role=role,
        street_groups=user.street_groups,
        buildings=user.buildings,
        street_group_names=names.street_groups,
        building_names=names.buildings,
        language=user.language,
        permissions=sorted(PERMISSIONS[role]),
    )


@router.post(
    "/login",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 422, 429),
    summary="Log in with a password; get a session token",
)
def login(
    credentials: Credentials, request: Request, connection: Db, state: State, at: Now
) -> Session:
    """A session token for the console, valid for one shift (``SMARTCITY_API_SESSION_HOURS``).

    Scripts use long-lived tokens made by an admin instead. After 5 failed log-ins for a user
    name, or 20 from an address, in 15 minutes, log-ins wait (429 with ``Retry-After``)."""
    address = request.client.host if request.client is not None else "unknown"
    wait = state.logins.attempt(credentials.username, address, at)  # a failure until it passes
    if wait is not None:
        seconds = max(1, math.ceil(wait.total_seconds()))
        raise TooManyRequestsError(
            f"too many failed log-ins: try again in {seconds} s, or ask an admin", seconds
        )
    if not check_password(connection, credentials.username, credentials.password):
        raise UnauthorizedError("wrong user name or password")
    state.logins.succeeded(credentials.username, address, at)
    token, info = issue_token(
        connection,
        credentials.username,
        kind="session",
        label="console log-in",
        lifetime=state.config.session_lifetime,
        now=at,
    )
    assert info.expires_at is not None  # noqa: S101 - sessions always have a lifetime
    return Session(token=token, expires_at=info.expires_at, user=_me(connection, info.username))


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401),
    summary="Revoke the token of this request",
)
def logout(caller: Caller, connection: Db, at: Now) -> None:
    if caller.token_id is not None:
        revoke_token(connection, caller.token_id, at)


@router.get("/me", responses=problem_responses(401), summary="The caller: role and places")
def me(caller: Caller, connection: Db) -> Me:
    return _me(connection, caller.username)
