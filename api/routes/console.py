"""Routes: the crew console, a single page (plain HTML, JavaScript and CSS from api/console/).

The same page answers ``/console/`` and ``/console/alerts/{id}``: notification links are
``{link_base}/alerts/{id}`` with ``link_base`` ending in ``/console``, and the page's script
reads the path and opens that alert once the crew has logged in. Nothing is fetched from
outside the platform (no CDN), so the console works on the city network alone. These routes
are not part of the API's schema.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Request
from fastapi import Path as PathParameter
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from api.problems import CallerFirstRoute, NotFoundError

CONSOLE_DIR: Final = Path(__file__).resolve().parents[1] / "console"
ASSETS: Final = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "en.json": "application/json",
    "fr.json": "application/json",
    "ar.json": "application/json",
}
"""The files the page may load, and their media types: nothing else is served."""

_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE_HEADERS: Final = _HEADERS | {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}

router = APIRouter(include_in_schema=False, route_class=CallerFirstRoute)


@cache
def _page_template() -> str:
    return (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")


def _page(request: Request) -> HTMLResponse:
    """The console page, its links made absolute under the application's root path."""
    root = html.escape(str(request.scope.get("root_path", "")).rstrip("/"), quote=True)
    return HTMLResponse(_page_template().replace("{{ROOT}}", root), headers=_PAGE_HEADERS)


@router.get("/console")
def console_without_slash(request: Request) -> RedirectResponse:
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return RedirectResponse(f"{root}/console/", status_code=308)


@router.get("/console/", response_class=HTMLResponse)
def console(request: Request) -> HTMLResponse:
    return _page(request)


@router.get("/console/alerts/{alert_id}", response_class=HTMLResponse)
def console_alert(
    request: Request, alert_id: Annotated[str, PathParameter(max_length=40)]
) -> HTMLResponse:
    """The page of a notification link; the script opens the alert (or says it cannot)."""
    del alert_id  # read by the page's script, from the address
    return _page(request)


@router.get("/console/assets/{name}")
def console_asset(name: Annotated[str, PathParameter(max_length=40)]) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundError(f"the console has no file {name!r}")
    return FileResponse(CONSOLE_DIR / name, media_type=media_type, headers=_HEADERS)
