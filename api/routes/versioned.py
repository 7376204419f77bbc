"""Routes shared by the two kinds of versioned documents: rule sets and energy strategies.

Both are kept the same way (:mod:`control.strategy_store`): list, the versions of a name, one
version's body, validate, save a version, activate, roll back, the trail. :func:`add_routes`
puts those routes on a router for one kind, described by a :class:`Documents`; the rule and
strategy routers add what is theirs (the rules in force, backtests, what-ifs).

Every change is made and audited in one transaction: the kind's own trail (who, why, what was
active before) and the API's audit log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, Field
from starlette.convertors import StringConvertor, register_url_convertor

from api.audit import record_action
from api.deps import Caller, Db, Now, Reader, require
from api.problems import (
    ApiError,
    ConflictError,
    NotFoundError,
    UnprocessableError,
    problem_responses,
)
from api.roles import Permission
from control.errors import ControlError
from rules.errors import RuleError
from storage import versions as store

NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"
RESERVED_NAMES: Final = frozenset({"history", "rollback", "validate", "whatif", "backtests"})
"""Names that are routes of their own (``GET /rule-sets/history``)."""


class _DocumentName(StringConvertor):
    """A document's name as the last segment of a path: anything but a reserved name, so that
    ``GET /rule-sets/rollback`` is the rollback route's 405, not a search for a rule set."""

    regex = "(?!(?:" + "|".join(sorted(RESERVED_NAMES)) + ")$)[^/]+"


register_url_convertor("document_name", _DocumentName())
MAX_BODY: Final = 200_000
"""Characters of YAML in a body; the packaged rule file has 13,000."""
MAX_VERSION: Final = 2**31 - 1

NamePath = Annotated[str, Path(pattern=NAME_PATTERN, examples=["sefrou-default"])]
VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION)]
Body = Annotated[str, Field(min_length=1, max_length=MAX_BODY, description="The YAML text.")]
ReasonText = Annotated[
    str, Field(min_length=1, max_length=2000, description="Why; kept in the trail.")
]


class VersionRef(BaseModel):
    """A stored version."""

    name: str = Field(pattern=NAME_PATTERN, examples=["sefrou-default"])
    version: int = Field(ge=1, le=MAX_VERSION)


class VersionOut(BaseModel):
    name: str
    version: int
    digest: str = Field(description="sha256 of the body, hexadecimal.")
    author: str
    reason: str
    created_at: datetime
    active: bool = Field(description="Whether this version is the one in force.")

    @classmethod
    def of(cls, stored: store.StoredVersion, active: store.ActiveVersion | None) -> VersionOut:
        in_force = active is not None and (active.name, active.version) == (
            stored.name,
            stored.version,
        )
        return cls(
            name=stored.name,
            version=stored.version,
            digest=stored.digest,
            author=stored.author,
            reason=stored.reason,
            created_at=stored.created_at,
            active=in_force,
        )


class VersionWithBody(VersionOut):
    body: str = Field(description="The YAML exactly as it was saved.")


class SummaryOut(BaseModel):
    name: str
    latest: int
    versions: int
    updated_at: datetime = Field(description="When the latest version was saved.")
    active_version: int | None = Field(description="The version of this name in force, if any.")


class VersionsOut(BaseModel):
    name: str
    active_version: int | None
    versions: list[VersionOut] = Field(description="Oldest first.")


class EventOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: store.Action
    name: str | None = Field(
        description="The version now in force; null for a rollback to the packaged one."
    )
    version: int | None
    reason: str
    previous_name: str | None = Field(
        description="Saved: the name again; activated or rolled back: the one in force before."
    )
    previous_version: int | None


class Document(BaseModel):
    body: Body


class NewVersion(BaseModel):
    body: Body
    reason: ReasonText


class Reason(BaseModel):
    reason: ReasonText


class CheckProblem(BaseModel):
    """One mistake the checker found."""

    line: int | None = Field(description="Its line in the body (1 is the first), if known.")
    column: int | None = Field(None, description="Its column, for a YAML syntax error.")
    message: str


class Validation(BaseModel):
    valid: bool
    detail: str = Field(description="What the checker said: a summary, or every mistake.")
    errors: list[CheckProblem] = Field(description="The mistakes, each at its line; none if valid.")


class Saved(BaseModel):
    created: bool = Field(description="False: identical to the latest version, nothing saved.")
    version: VersionOut


class Activation(BaseModel):
    active: VersionRef | None = Field(
        description="Now in force; null: none, the packaged one is (a rollback of the first"
        " activation)."
    )
    previous: VersionRef | None = Field(description="In force before, if any.")


DOCUMENT_ERRORS: Final = (RuleError, ControlError, store.VersionStoreError)
"""What a checker (rule file, strategy) or the store raises for a document it refuses."""


def refused(error: Exception) -> ApiError:
    """The problem for an error of the store or of a checker."""
    if isinstance(error, store.UnknownVersionError):
        return NotFoundError(str(error))
    if isinstance(error, store.VersionConflictError):
        return ConflictError(str(error))
    return UnprocessableError(str(error))


_SYNTAX: Final = re.compile(r"^:(\d+):(\d+): (.*)$", re.DOTALL)
_AT_LINE: Final = re.compile(r"\s*\(line (\d+)\)(?:;\s*|$)")


def check_problems(message: str, source: str) -> list[CheckProblem]:
    """A checker's message (``SOURCE: path: what (line N); ...``) as one problem per mistake."""
    text = message.removeprefix(source)
    syntax = _SYNTAX.match(text)
    if syntax is not None:
        return [CheckProblem(line=int(syntax[1]), column=int(syntax[2]), message=syntax[3])]
    text = text.removeprefix(": ")
    problems, position = [], 0
    for found in _AT_LINE.finditer(text):
        problems.append(CheckProblem(line=int(found[1]), message=text[position : found.start()]))
        position = found.end()
    rest = text[position:].strip()
    if rest:
        problems.append(CheckProblem(line=None, message=rest))
    return problems


def validation(check: Callable[[], str], source: str) -> Validation:
    """Run ``check`` (it returns a summary, or raises the checker's error naming ``source``)."""
    try:
        summary = check()
    except DOCUMENT_ERRORS as error:
        return Validation(valid=False, detail=str(error), errors=check_problems(str(error), source))
    return Validation(valid=True, detail=summary, errors=[])


@contextmanager
def refusing(connection: Db) -> Iterator[None]:
    """One transaction for a change and its audit row; store errors as problems."""
    try:
        with connection.transaction():
            yield
    except DOCUMENT_ERRORS as error:
        raise refused(error) from error


def _ref(pair: tuple[str, int] | None) -> VersionRef | None:
    return None if pair is None else VersionRef(name=pair[0], version=pair[1])


@dataclass(frozen=True, slots=True)
class Documents:
    """One kind of versioned document, as the API offers it."""

    kind: Callable[[], store.Kind]
    """The kind, with the check a body must pass to be saved."""
    collection: str
    """The routes' path: ``/rule-sets``."""
    noun: str
    """``rule set``; ``rule sets`` in summaries."""
    audit: str
    """Prefix of the audit log's actions: ``rule_set`` gives ``rule_set.save``."""
    permission: Permission
    """Needed to save, activate and roll back (reading needs READ)."""


def add_routes(router: APIRouter, documents: Documents) -> None:
    """List, versions, show, save, activate, roll back and history routes of ``documents``."""
    path, noun, audit = documents.collection, documents.noun, documents.audit
    writer = [Depends(require(documents.permission))]

    @router.get(path, summary=f"Every {noun} stored, its latest version and the active one")
    def list_documents(_: Reader, connection: Db) -> list[SummaryOut]:
        return [
            SummaryOut(
                name=item.name,
                latest=item.latest,
                versions=item.versions,
                updated_at=item.updated_at,
                active_version=item.active_version,
            )
            for item in store.summaries(connection, documents.kind())
        ]

    @router.get(f"{path}/history", summary=f"The trail of {noun} changes, newest first")
    def history(
        _: Reader,
        connection: Db,
        name: Annotated[
            str | None, Query(pattern=NAME_PATTERN, description="Only events naming it.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[EventOut]:
        return [
            EventOut(
                id=event.id,
                at=event.at,
                actor=event.actor,
                action=event.action,
                name=event.name,
                version=event.version,
                reason=event.reason,
                previous_name=event.previous_name,
                previous_version=event.previous_version,
            )
            for event in store.events(connection, documents.kind(), name, limit)
        ]

    @router.get(
        f"{path}/{{name:document_name}}",
        responses=problem_responses(404),
        summary=f"The versions of a {noun}",
    )
    def versions(name: NamePath, _: Reader, connection: Db) -> VersionsOut:
        kind = documents.kind()
        try:
            found = store.versions_of(connection, kind, name)
        except DOCUMENT_ERRORS as error:
            raise refused(error) from error
        active = store.active_version(connection, kind)
        return VersionsOut(
            name=name,
            active_version=active.version if active is not None and active.name == name else None,
            versions=[VersionOut.of(item, active) for item in found],
        )

    @router.get(
        f"{path}/{{name}}/versions/{{version}}",
        responses=problem_responses(404),
        summary=f"One version of a {noun}: its YAML and digest",
        name=f"{audit}_version",
    )
    def show(name: NamePath, version: VersionPath, _: Reader, connection: Db) -> VersionWithBody:
        kind = documents.kind()
        try:
            body, stored = store.stored_version(connection, kind, name, version)
        except DOCUMENT_ERRORS as error:
            raise refused(error) from error
        out = VersionOut.of(stored, store.active_version(connection, kind))
        return VersionWithBody(**out.model_dump(), body=body)

    @router.post(
        f"{path}/{{name}}/versions",
        status_code=status.HTTP_201_CREATED,
        dependencies=writer,
        responses={
            200: {"model": Saved, "description": "Identical to the latest version: not saved."},
            **problem_responses(422),
        },
        summary=f"Save a new version of a {noun} (checked first; not active until activated)",
    )
    def save(  # noqa: PLR0917 - FastAPI parameters
        name: NamePath,
        new: NewVersion,
        caller: Caller,
        connection: Db,
        at: Now,
        request: Request,
        response: Response,
    ) -> Saved:
        """A body that does not check is refused (422) with the checker's messages, each at
        its line; a body identical to the latest version is not saved again (200)."""
        if name in RESERVED_NAMES:
            raise UnprocessableError(
                f"{name!r} names a route and cannot name a {noun}: choose another name"
            )
        with refusing(connection):
            saved, created = store.save_version(
                connection, documents.kind(), name, new.body, caller.username, new.reason
            )
            if created:
                record_action(
                    connection, caller, f"{audit}.save", name, at,
                    version=saved.version, reason=new.reason, digest=saved.digest,
                )  # fmt: skip
        if created:
            response.headers["Location"] = request.app.url_path_for(
                f"{audit}_version", name=name, version=str(saved.version)
            )
        else:
            response.status_code = status.HTTP_200_OK
        active = store.active_version(connection, documents.kind())
        return Saved(created=created, version=VersionOut.of(saved, active))

    @router.post(
        f"{path}/{{name}}/versions/{{version}}/activate",
        dependencies=writer,
        responses=problem_responses(404, 409),
        summary=f"Put a version of a {noun} in force (recorded with the reason)",
    )
    def activate(  # noqa: PLR0917 - FastAPI parameters
        name: NamePath,
        version: VersionPath,
        given: Reason,
        caller: Caller,
        connection: Db,
        at: Now,
    ) -> Activation:
        """409 when it is already the active version."""
        with refusing(connection):
            previous = store.activate_version(
                connection, documents.kind(), name, version, caller.username, given.reason
            )
            record_action(
                connection, caller, f"{audit}.activate", name, at,
                version=version, reason=given.reason,
                previous=None if previous is None else list(previous),
            )  # fmt: skip
        return Activation(active=VersionRef(name=name, version=version), previous=_ref(previous))

    @router.post(
        f"{path}/rollback",
        dependencies=writer,
        responses=problem_responses(409),
        summary=f"Re-activate the {noun} in force before the current one",
    )
    def rollback(given: Reason, caller: Caller, connection: Db, at: Now) -> Activation:
        """Again: one step further back; the first activation rolled back, no version is
        active and the packaged one is in force again. 409 when none was activated."""
        with refusing(connection):
            target, replaced = store.rollback_version(
                connection, documents.kind(), caller.username, given.reason
            )
            record_action(
                connection, caller, f"{audit}.rollback", replaced[0], at,
                to=None if target is None else list(target), reason=given.reason,
                replaced=list(replaced),
            )  # fmt: skip
        return Activation(active=_ref(target), previous=_ref(replaced))
