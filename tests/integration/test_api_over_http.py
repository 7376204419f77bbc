"""The API served by uvicorn on the real database, over HTTP.

Schemathesis over the API's OpenAPI schema: generated requests to every operation find no
server error and no answer the schema does not describe (status, content type, body).

The checks are :data:`CHECKS`. Left out: ``positive_data_acceptance``, which wants a 2xx for
every request the schema allows, whereas some refusals depend on the database, not on the
request's shape (a silence for a street group the registry lacks, a telemetry range naming no
device); those are 4xx answers the schema documents, as the other checks verify. And the
checks that send requests of their own (``ignored_auth``...) through schemathesis's transport,
which cannot run here (see :func:`_send`); the last test checks what ``ignored_auth`` would:
every operation refuses a request without a valid token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx2
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.openapi import from_url
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.config import ApiConfig
from api.server import BackgroundApiServer
from runtime.local_services import LocalMosquitto, free_port
from storage.registry import upsert_site
from tests.integration.api_fixtures import PASSWORD, add_people, sefrou

pytestmark = pytest.mark.integration
MAX_EXAMPLES = 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
SKIPPED = {
    # Revokes the token the run uses; tested in test_api_auth.py.
    "POST /api/v1/auth/logout",
}


@pytest.fixture
def running_api(
    database_url: str, broker: LocalMosquitto
) -> Iterator[tuple[BackgroundApiServer, dict[str, str]]]:
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, sefrou())
    tokens = add_people(database_url)
    config = ApiConfig(
        database_url=database_url,
        mqtt_port=broker.port,
        pool_size=4,
        session_lifetime=timedelta(hours=1),
    )
    server = BackgroundApiServer(config, port=free_port())
    server.start()
    try:
        yield server, tokens
    finally:
        server.stop()


def _send(client: httpx2.Client, sent: dict[str, Any]) -> httpx2.Response:
    """Send what schemathesis made (keyword arguments in the style of requests) with httpx2:
    schemathesis's own transport (requests) does not work beside urllib3-future, which
    grafana-client brings."""
    data = sent.get("data")
    headers = dict(sent.get("headers") or {})
    if sent.get("cookies"):  # the API reads none, but a generated request may carry some
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in sent["cookies"].items())
    return client.request(
        sent["method"],
        sent["url"],
        params=sent.get("params"),
        headers=headers,
        json=sent.get("json"),
        content=data if isinstance(data, (bytes, str)) else None,
        data=data if isinstance(data, dict) else None,
    )


@pytest.mark.parametrize("who", ["technician", "admin"])
def test_no_request_makes_the_api_fail_or_break_its_schema(
    running_api: tuple[BackgroundApiServer, dict[str, str]], who: str
) -> None:
    """Every operation, MAX_EXAMPLES generated requests each: as a technician (who reads
    everything and is refused most writes, which the schema must describe too), and as an
    admin, whose writes go through."""
    server, tokens = running_api
    schema = from_url(f"{server.url}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {tokens[who]}"}
    failures: list[str] = []
    operations = 0
    client = httpx2.Client(timeout=30)
    for result in schema.get_all_operations():
        assert not isinstance(result, Err), f"the schema is valid: {result}"
        operation = result.ok()
        if operation.label in SKIPPED:
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Case[Any]) -> None:
            sent = case.as_transport_kwargs(base_url=server.url, headers=headers)
            response = _send(client, sent)
            case.validate_response(
                response,
                headers=headers,
                transport_kwargs=sent,
                checks=CHECKS,
            )

        try:
            check()
        except Exception as error:  # noqa: BLE001 - every operation's failures are reported
            failures.append(f"{operation.label}: {error}")
    client.close()
    assert operations >= 10, "the schema lists the API's operations"
    assert not failures, "\n\n".join(failures)


def _dummy_path(path: str) -> str:
    """``path`` with each ``{parameter}`` given a plausible value."""
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_operation_but_log_in_refuses_a_request_without_a_valid_token(
    running_api: tuple[BackgroundApiServer, dict[str, str]],
) -> None:
    server, _ = running_api
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        schema = client.get("/api/v1/openapi.json").json()
        checked = 0
        for path, item in schema["paths"].items():
            for method in item:
                if (method, path) == ("post", "/api/v1/auth/login"):
                    continue
                for headers in ({}, {"Authorization": "Bearer sc_not-a-token"}):
                    response = client.request(method, _dummy_path(path), headers=headers, json={})
                    assert response.status_code == 401, (method, path, response.text)
                    assert response.headers["content-type"] == "application/problem+json"
                checked += 1
    assert checked >= 40


def test_what_a_response_reports_is_committed_before_it_arrives(
    running_api: tuple[BackgroundApiServer, dict[str, str]], database_url: str
) -> None:
    """Against a real server (the test client waits for the commit whatever the order): a
    token works the moment the log-in answers, and a change is in the database when the
    response is read."""
    server, tokens = running_api
    with httpx2.Client(base_url=server.url, timeout=30) as client:
        for attempt in range(20):
            login = client.post(
                "/api/v1/auth/login", json={"username": "crew-north", "password": PASSWORD}
            )
            assert login.status_code == 201
            me = client.get(
                "/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['token']}"}
            )
            assert me.status_code == 200, (attempt, me.text)
            created = client.post(
                "/api/v1/users",
                headers={"Authorization": f"Bearer {tokens['admin']}"},
                json={"username": f"crew-{attempt}", "role": "crew"},
            )
            assert created.status_code == 201
            with psycopg.connect(database_url) as connection:
                stored = connection.execute(
                    "SELECT count(*) FROM api_users WHERE username = %s", (f"crew-{attempt}",)
                ).fetchone()
            assert stored == (1,)
