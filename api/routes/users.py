"""Routes: users, their roles and places, and their tokens (admin only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Path, Query, status
from pydantic import BaseModel, Field, StrictBool, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from api.accounts import (
    AccountError,
    TokenInfo,
    User,
    create_user,
    find_user,
    issue_token,
    list_tokens,
    list_users,
    revoke_token,
    update_user,
)
from api.audit import record_action
from api.deps import Admin, Db, Now
from api.device_queries import unknown_places
from api.problems import (
    ConflictError,
    NotFoundError,
    UnprocessableError,
    guarded_router,
    problem_responses,
)
from api.roles import Role

router = guarded_router("users")

Username = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$"), Field(examples=["crew-north"])
]
PlaceName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Language = Literal["en", "fr", "ar"]
UsernamePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class UserOut(BaseModel):
    username: str
    display_name: str
    role: Role
    street_groups: list[str] = Field(description="A crew's street groups: its alerts.")
    buildings: list[str] = Field(description="A crew's buildings: its alerts.")
    language: Language
    created_at: datetime
    disabled: bool
    has_password: bool = Field(description="Whether the user can log in to the console.")

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            username=user.username,
            display_name=user.display_name,
            role=user.role,
            street_groups=user.street_groups,
            buildings=user.buildings,
            language=user.language,
            created_at=user.created_at,
            disabled=user.disabled_at is not None,
            has_password=user.has_password,
        )


class NewUser(BaseModel):
    username: Username
    role: Role
    display_name: str = Field("", max_length=200)
    street_groups: list[PlaceName] = Field(default_factory=list, max_length=500)
    buildings: list[PlaceName] = Field(default_factory=list, max_length=500)
    language: Language = "fr"
    password: str | None = Field(None, min_length=10, max_length=1024)


class UserChange(BaseModel):
    # Left out: unchanged. Null is refused (below), so the schema does not offer it.
    role: Role | SkipJsonSchema[None] = None
    display_name: str | SkipJsonSchema[None] = Field(None, max_length=200)
    street_groups: list[PlaceName] | SkipJsonSchema[None] = Field(None, max_length=500)
    buildings: list[PlaceName] | SkipJsonSchema[None] = Field(None, max_length=500)
    language: Language | SkipJsonSchema[None] = None
    password: str | None = Field(None, min_length=10, max_length=1024)
    disabled: StrictBool | None = Field(
        None, description="True: the user and its tokens stop working."
    )

    @model_validator(mode="before")
    @classmethod
    def _given_means_a_value(cls, data: Any) -> Any:
        """A field left out is left as it is; a field given must have a value (a user always
        has a role, a name, places and a language: null would erase them)."""
        if isinstance(data, dict):
            erased = sorted(
                name for name in _REQUIRED_VALUES if name in data and data[name] is None
            )
            if erased:
                raise ValueError(f"{', '.join(erased)}: give a value, or leave the field out")
        return data


_REQUIRED_VALUES = ("role", "display_name", "street_groups", "buildings", "language")


class TokenOut(BaseModel):
    token_id: int
    username: str
    label: str
    kind: Literal["api", "session"]
    created_at: datetime
    expires_at: datetime | None
    revoked: bool
    last_used_at: datetime | None

    @classmethod
    def of(cls, info: TokenInfo) -> TokenOut:
        return cls(
            token_id=info.token_id,
            username=info.username,
            label=info.label,
            kind=info.kind,
            created_at=info.created_at,
            expires_at=info.expires_at,
            revoked=info.revoked_at is not None,
            last_used_at=info.last_used_at,
        )


class NewToken(BaseModel):
    label: str = Field("", max_length=200, examples=["grafana alerts script"])
    days: int | None = Field(None, ge=1, le=3650, description="Lifetime; none: until revoked.")


class IssuedToken(BaseModel):
    token: str = Field(description="The token: shown this once, kept only as a hash.")
    info: TokenOut


def _refuse_unknown_places(
    connection: Db, street_groups: Sequence[str], buildings: Sequence[str]
) -> None:
    """422 for places the registry lacks: a crew given one would never see its alerts."""
    unknown = unknown_places(connection, [], street_groups, buildings)
    if unknown:
        raise UnprocessableError(
            f"the registry has no {', '.join(unknown[:5])}: check the names (GET /groups"
            " lists them)"
        )


@router.get("/users", summary="Every user")
def get_users(_: Admin, connection: Db) -> list[UserOut]:
    return [UserOut.of(user) for user in list_users(connection)]


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(409),
    summary="Add a user",
)
def post_user(new: NewUser, caller: Admin, connection: Db, at: Now) -> UserOut:
    _refuse_unknown_places(connection, new.street_groups, new.buildings)
    try:
        user = create_user(
            connection,
            new.username,
            new.role,
            display_name=new.display_name,
            street_groups=new.street_groups,
            buildings=new.buildings,
            language=new.language,
            password=new.password,
        )
    except AccountError as error:
        raise ConflictError(str(error)) from error
    record_action(connection, caller, "user.create", new.username, at, role=new.role.value)
    return UserOut.of(user)


@router.get("/users/{username}", responses=problem_responses(404), summary="One user")
def get_user(username: UsernamePath, _: Admin, connection: Db) -> UserOut:
    user = find_user(connection, username)
    if user is None:
        raise NotFoundError(f"no user {username!r}")
    return UserOut.of(user)


@router.patch(
    "/users/{username}",
    responses=problem_responses(404),
    summary="Change a user's role, places, language, password; disable or enable",
)
def patch_user(
    username: UsernamePath, change: UserChange, caller: Admin, connection: Db, at: Now
) -> UserOut:
    changes = change.model_dump(exclude_unset=True)
    _refuse_unknown_places(
        connection, changes.get("street_groups") or [], changes.get("buildings") or []
    )
    try:
        user = update_user(connection, username, changes)
    except AccountError as error:
        raise NotFoundError(str(error)) from error
    shown = sorted(name for name in changes if name != "password")
    record_action(
        connection, caller, "user.change", username, at,
        fields=shown, password_changed="password" in changes,
    )  # fmt: skip
    return UserOut.of(user)


@router.get("/tokens", summary="Tokens (never the tokens themselves)")
def get_tokens(
    _: Admin,
    connection: Db,
    username: Annotated[str | None, Query(max_length=63)] = None,
) -> list[TokenOut]:
    return [TokenOut.of(info) for info in list_tokens(connection, username)]


@router.post(
    "/users/{username}/tokens",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(404),
    summary="Make an API token for a user (shown once)",
)
def post_token(
    username: UsernamePath, new: NewToken, caller: Admin, connection: Db, at: Now
) -> IssuedToken:
    if find_user(connection, username) is None:
        raise NotFoundError(f"no user {username!r}")
    lifetime = timedelta(days=new.days) if new.days else None
    token, info = issue_token(
        connection, username, kind="api", label=new.label, lifetime=lifetime, now=at
    )
    record_action(connection, caller, "token.create", username, at, token_id=info.token_id)
    return IssuedToken(token=token, info=TokenOut.of(info))


@router.delete(
    "/tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404),
    summary="Revoke a token",
)
def delete_token(
    token_id: Annotated[int, Path(ge=1, le=2**63 - 1)], caller: Admin, connection: Db, at: Now
) -> None:
    if not revoke_token(connection, token_id, at):
        raise NotFoundError(f"no live token {token_id}")
    record_action(connection, caller, "token.revoke", str(token_id), at)
