"""Push the dashboards to a running Grafana through its HTTP API (grafana-client).

For a Grafana that does not read the provisioning files (a hosted one, or one a team already
runs): the folder is created when missing, then every dashboard is posted with ``overwrite``,
so pushing again replaces the previous version (Grafana keeps it in the dashboard's history).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaUnauthorizedError,
)

from dashboards.build import rendered
from dashboards.errors import PushError

DEFAULT_FOLDER: Final = "Smart city"
COMMIT_MESSAGE: Final = "smartcity dashboards push"


@dataclass(frozen=True, slots=True)
class PushReport:
    folder_uid: str
    folder_created: bool
    dashboards: tuple[str, ...]
    """The uids pushed, in order."""


def check_url(url: str) -> str:
    """The Grafana base URL, or ValueError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{url!r} is not a Grafana URL: write it like http://grafana.example:3000")
    return url.rstrip("/")


def folder_uid_for(title: str) -> str:
    """A folder uid from its title (Grafana uids: at most 40 letters, digits, - and _)."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-")
    if not slug:
        raise ValueError(f"folder name {title!r} has no letter or digit to make a uid from")
    return slug


def push(
    url: str,
    token: str,
    folder: str = DEFAULT_FOLDER,
    *,
    files: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> PushReport:
    """Post every dashboard (``files``: name -> JSON text, default the generated ones) into
    ``folder`` of the Grafana at ``url``, authenticated by the bearer ``token``."""
    if not token.strip():
        raise ValueError("the token is empty: create a service account token in Grafana")
    new_folder_uid = folder_uid_for(folder)
    grafana = GrafanaApi.from_url(check_url(url), credential=token, timeout=timeout_s)
    models = [json.loads(text) for _, text in sorted((files or rendered()).items())]
    try:
        folder_uid, created = _ensure_folder(grafana, folder, new_folder_uid)
        for model in models:
            grafana.dashboard.update_dashboard(
                {
                    "dashboard": model,
                    "folderUid": folder_uid,
                    "message": COMMIT_MESSAGE,
                    "overwrite": True,
                }
            )
    except (GrafanaException, OSError) as error:
        # grafana-client wraps HTTP errors and time-outs; a refused connection or a name that
        # does not resolve comes from its HTTP library (niquests) as an OSError.
        raise PushError(explain(url, error)) from error
    return PushReport(folder_uid, created, tuple(str(m["uid"]) for m in models))


def _ensure_folder(grafana: GrafanaApi, title: str, new_uid: str) -> tuple[str, bool]:
    """The uid of the folder called ``title``, created (as ``new_uid``) when there is none;
    and whether it was created."""
    # grafana-client's methods carry no annotations: their results are typed here.
    folders: list[dict[str, Any]] = grafana.folder.get_all_folders()  # type: ignore[no-untyped-call]
    for existing in folders:
        if existing.get("title") == title:
            return str(existing["uid"]), False
    created: dict[str, Any] = grafana.folder.create_folder(  # type: ignore[no-untyped-call]
        title, uid=new_uid
    )
    return str(created["uid"]), True


def explain(url: str, error: Exception) -> str:
    """What a failed request means for the person pushing, and what to do about it."""
    if isinstance(error, GrafanaUnauthorizedError):
        return (
            f"Grafana at {url} refused the token (401 Unauthorized): give a valid service "
            "account token"
        )
    if isinstance(error, GrafanaClientError) and error.status_code == 403:
        return (
            f"Grafana at {url} does not let this token write dashboards (403 Forbidden): give "
            "its service account the Editor role (Admin to create the folder)"
        )
    if isinstance(error, GrafanaClientError | GrafanaServerError):
        return f"Grafana at {url} refused the push: {error.message}"
    return f"cannot reach Grafana at {url} ({error}): check the URL and that Grafana is running"
