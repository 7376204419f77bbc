"""Errors as problem details (RFC 9457): one JSON shape for every error the API returns.

Routes raise :class:`ApiError` (or a subclass); the handlers installed by
:func:`install_problem_handlers` turn it, FastAPI's validation errors and Starlette's HTTP
errors into ``application/problem+json`` bodies. The ``type`` of a problem is a relative URI
naming its kind (``/problems/forbidden``); ``about:blank`` when the status says it all.

Routes are :class:`CallerFirstRoute`: a body that is not JSON is refused (422) only after the
caller's token and role were checked, as every other invalid body is, so a caller who may not
use a route hears 401 or 403 whatever it sends.

Every request has an id (:class:`RequestIds`): the caller's ``X-Request-ID`` when it is a
sane one, else a new one; every response carries it back in ``X-Request-ID``, and every
problem in ``request_id``. An unexpected error is logged with its traceback and that id, so
the line a caller reports is the line in the log.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Coroutine, Sequence
from http import HTTPStatus
from typing import Any, Final

import psycopg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_log: Final = logging.getLogger("smartcity.api")
REQUEST_ID_HEADER: Final = "X-Request-ID"
_SANE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class InvalidParameter(BaseModel):
    """One field of a request that was refused, and why."""

    location: str = Field(description="Where the field is: body, query, path or header.")
    field: str = Field(description="The field's path, dotted (``params.heating_setpoint``).")
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = Field("about:blank", description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(ge=400, le=599)
    detail: str = Field("", description="What went wrong this time, and what to do.")
    instance: str = Field("", description="The request path the problem arose on.")
    errors: list[InvalidParameter] = Field(
        default_factory=list, description="The refused fields of a request that did not validate."
    )
    request_id: str | None = Field(
        None,
        description="The request's id (also in the X-Request-ID header): give it when you"
        " report a problem; the server's log names it.",
    )


class RequestIds:
    """ASGI middleware: each request's id in ``request.state.request_id`` and in the
    response's ``X-Request-ID`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = given if _SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


class _BodyReadLater(Request):
    """A request whose JSON body, when it does not decode, is handed on as its raw bytes, the
    reason kept in ``state.body_not_json``. FastAPI decodes a JSON body before it runs a
    route's dependencies and refuses an undecodable one at once (422, or 400 for bytes that are
    not UTF-8), before the caller's token and role are checked; raw bytes, as FastAPI hands on
    a body of another media type, are refused with the other invalid fields, after them."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            self.state.body_not_json = str(error)
            return await self.body()


class CallerFirstRoute(APIRoute):
    """A route that checks its caller before it judges its body (the ``route_class`` of
    every router of the API)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def caller_first(request: Request) -> Response:
            return await handle(_BodyReadLater(request.scope, request.receive))

        return caller_first


class ApiError(Exception):
    """An error a route reports to its caller."""

    status: HTTPStatus = HTTPStatus.BAD_REQUEST
    kind: str = "bad-request"

    def __init__(self, detail: str, *, status: HTTPStatus | None = None, kind: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if kind:
            self.kind = kind


class NotFoundError(ApiError):
    status = HTTPStatus.NOT_FOUND
    kind = "not-found"


class ConflictError(ApiError):
    """The request is valid but the resource's state does not allow it (acknowledging a
    closed alert, reusing a name)."""

    status = HTTPStatus.CONFLICT
    kind = "conflict"


class UnauthorizedError(ApiError):
    status = HTTPStatus.UNAUTHORIZED
    kind = "unauthorized"


class ForbiddenError(ApiError):
    status = HTTPStatus.FORBIDDEN
    kind = "forbidden"


class UnprocessableError(ApiError):
    """Well-formed but meaningless: a rule file that does not check, a range ending before
    it starts."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    kind = "unprocessable"


class TooManyRequestsError(ApiError):
    status = HTTPStatus.TOO_MANY_REQUESTS
    kind = "too-many-requests"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class UnavailableError(ApiError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    kind = "unavailable"


def problem_response(
    status: int,
    detail: str,
    instance: str,
    *,
    kind: str = "",
    errors: Sequence[InvalidParameter] = (),
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> JSONResponse:
    """The ``application/problem+json`` response for one problem."""
    problem = Problem(
        type=f"/problems/{kind}" if kind else "about:blank",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors),
        request_id=request_id,
    )
    if request_id is not None:
        headers = {**(headers or {}), REQUEST_ID_HEADER: request_id}
    return JSONResponse(
        problem.model_dump(),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _invalid_parameters(
    error: RequestValidationError, body_not_json: str | None
) -> list[InvalidParameter]:
    found = []
    for entry in error.errors():
        location, *path = [str(part) for part in entry.get("loc", ("body",))] or ["body"]
        if location == "body" and body_not_json is not None:
            continue  # what was said of the raw bytes: said once, below
        found.append(
            InvalidParameter(location=location, field=".".join(path), message=str(entry["msg"]))
        )
    if body_not_json is not None:
        found.append(
            InvalidParameter(
                location="body", field="", message=f"the body is not JSON: {body_not_json}"
            )
        )
    return found


def documented_methods(schema: dict[str, Any], path: str) -> list[str]:
    """The methods the OpenAPI ``schema`` gives the path ``path`` names, upper case, sorted;
    none if it names no documented path. Where two paths fit, the one with more literal
    segments is meant (``/rule-sets/rollback``, not ``/rule-sets/{name}``), as in routing."""
    best: tuple[int, list[str]] | None = None
    for template, item in schema.get("paths", {}).items():
        literal = _literal_segments_matched(template, path)
        if literal is not None and (best is None or literal > best[0]):
            best = (literal, sorted(method.upper() for method in item))
    return best[1] if best is not None else []


def _literal_segments_matched(template: str, path: str) -> int | None:
    """How many literal segments of ``template`` (``/users/{name}``) ``path`` matches; None
    if it does not fit the template."""
    wanted, given = template.strip("/").split("/"), path.strip("/").split("/")
    if len(wanted) != len(given):
        return None
    literal = 0
    for expected, actual in zip(wanted, given, strict=True):
        if expected.startswith("{") and expected.endswith("}"):
            if not actual:
                return None
        elif expected == actual:
            literal += 1
        else:
            return None
    return literal


def install_problem_handlers(app: FastAPI) -> None:
    """Every error the application raises leaves as problem details."""

    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)  # noqa: S101 - registered for ApiError only
        headers = {}
        if error.status == HTTPStatus.UNAUTHORIZED:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(error, TooManyRequestsError):
            headers["Retry-After"] = str(error.retry_after_s)
        return problem_response(
            error.status,
            error.detail,
            request.url.path,
            kind=error.kind,
            headers=headers or None,
            request_id=request_id_of(request),
        )

    async def on_invalid(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)  # noqa: S101 - registered for it only
        found = _invalid_parameters(error, getattr(request.state, "body_not_json", None))
        summary = "; ".join(f"{p.location} {p.field}: {p.message}" for p in found[:5])
        return problem_response(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"the request did not validate: {summary}",
            request.url.path,
            kind="invalid-request",
            errors=found,
            request_id=request_id_of(request),
        )

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)  # noqa: S101 - registered for it only
        headers = dict(error.headers) if error.headers else {}
        if error.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            # The router names the methods of the first route it found for the path, one
            # method of it only where the path has several (a route per method).
            documented = documented_methods(request.app.openapi(), request.url.path)
            if documented:
                headers["Allow"] = ", ".join(documented)
        return problem_response(
            error.status_code,
            str(error.detail) if error.detail else HTTPStatus(error.status_code).phrase,
            request.url.path,
            headers=headers or None,
            request_id=request_id_of(request),
        )

    async def on_refused_value(request: Request, error: Exception) -> JSONResponse:
        # A value the database cannot hold (SQLSTATE class 22, or psycopg's own check), such
        # as a NUL character in a text or a date out of range: the caller's input, not a bug.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "a value"
        return problem_response(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"the database refused a value of the request: {reason}",
            request.url.path,
            kind="invalid-value",
            request_id=request_id_of(request),
        )

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        request_id = request_id_of(request)
        _log.error(
            "request failed",
            exc_info=error,
            extra={"path": request.url.path, "method": request.method, "request_id": request_id},
        )
        return problem_response(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            f"the request failed on the server; it is logged as request {request_id}. Try"
            " again, or report that id.",
            request.url.path,
            request_id=request_id,
        )

    app.add_middleware(RequestIds)
    app.add_exception_handler(ApiError, on_problem)
    app.add_exception_handler(psycopg.DataError, on_refused_value)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)


def guarded_router(tag: str) -> APIRouter:
    """The router of an API resource tagged ``tag``: each route checks its caller before its
    body (:class:`CallerFirstRoute`) and documents the 401, 403 and 422 problems."""
    return APIRouter(
        tags=[tag], responses=problem_responses(401, 403, 422), route_class=CallerFirstRoute
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problems a route may return (their media type is
    made ``application/problem+json`` by :func:`problems_as_problem_json`)."""
    return {
        status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses
    }


def problems_as_problem_json(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI ``schema`` with every error response documented as problem+json, which is
    what the handlers send (FastAPI would say application/json)."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[:1] in {"4", "5"} and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    return schema
