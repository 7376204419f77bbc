"""What a caller and an operator get when a request goes wrong: one request id in the
response header, in the problem body and in the log line with the traceback."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi import FastAPI

from tests.integration.api_fixtures import ApiSession

pytestmark = pytest.mark.integration


def _failing_route(app: FastAPI) -> str:
    def fail() -> None:
        raise RuntimeError("a bug met by this request")

    app.add_api_route("/api/v1/test-failure", fail, methods=["GET"])
    return "/api/v1/test-failure"


def test_an_unexpected_error_is_a_500_problem_whose_request_id_names_the_logged_traceback(
    api: ApiSession, caplog: pytest.LogCaptureFixture
) -> None:
    path = _failing_route(api.client.app)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="smartcity.api"):
        response = api.get("admin", path)
    assert response.status_code == 500  # type: ignore[attr-defined]
    problem = response.json()  # type: ignore[attr-defined]
    request_id = response.headers["X-Request-ID"]  # type: ignore[attr-defined]
    assert problem["request_id"] == request_id
    assert request_id in problem["detail"]
    [record] = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert record.__dict__["request_id"] == request_id
    assert record.exc_info is not None
    assert "a bug met by this request" in logging.Formatter().formatException(record.exc_info)


def test_every_answer_carries_the_callers_request_id_or_a_new_one(api: ApiSession) -> None:
    given = api.client.get(
        "/api/v1/auth/me", headers={**api.headers("admin"), "X-Request-ID": "crew-phone-42"}
    )
    assert given.headers["X-Request-ID"] == "crew-phone-42"
    refused = api.client.get("/api/v1/devices/no-such-device", headers=api.headers("admin"))
    assert refused.status_code == 404
    assert refused.json()["request_id"] == refused.headers["X-Request-ID"]
    hostile = api.client.get(
        "/api/v1/auth/me", headers={**api.headers("admin"), "X-Request-ID": "x" * 65 + "\x7f"}
    )
    made = hostile.headers["X-Request-ID"]
    assert len(made) == 32
    assert made != given.headers["X-Request-ID"]


NOT_JSON = [
    pytest.param(b"{not json", id="malformed"),
    pytest.param(b'{"username": "\xff\xfe"}', id="not-utf8"),
]


@pytest.mark.parametrize("body", NOT_JSON)
def test_a_body_that_is_not_json_is_judged_after_the_caller(api: ApiSession, body: bytes) -> None:
    """The caller first: without a token 401, with a role that may not 403, whatever the
    body; only a caller who may gets the body's refusal, 422 as every invalid request."""
    as_json = {"Content-Type": "application/json"}
    anonymous = api.client.post("/api/v1/users", content=body, headers=as_json)
    assert anonymous.status_code == 401, anonymous.text
    technician = api.client.post(
        "/api/v1/users", content=body, headers={**api.headers("technician"), **as_json}
    )
    assert technician.status_code == 403, technician.text
    assert technician.headers["content-type"] == "application/problem+json"
    admin = api.client.post(
        "/api/v1/users", content=body, headers={**api.headers("admin"), **as_json}
    )
    assert admin.status_code == 422, admin.text
    assert admin.headers["content-type"] == "application/problem+json"
    problem = admin.json()
    assert problem["type"] == "/problems/invalid-request"
    [error] = problem["errors"]
    assert error["location"] == "body"
    assert error["message"].startswith("the body is not JSON:"), error


def test_every_operation_with_a_body_checks_the_caller_before_the_body(api: ApiSession) -> None:
    schema = api.client.get("/api/v1/openapi.json").json()
    checked = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation or path == "/api/v1/auth/login":
                continue
            url = re.sub(r"\{[^}]+\}", "1", path)
            for body in (b"{not json", b'{"a": "\xff"}'):
                response = api.client.request(
                    method, url, content=body, headers={"Content-Type": "application/json"}
                )
                assert response.status_code == 401, (method, path, body, response.text)
            checked += 1
    assert checked >= 15


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def test_a_method_a_path_does_not_support_is_a_405_allowing_exactly_the_schemas_methods(
    api: ApiSession,
) -> None:
    """Every path of the schema, every method it lacks: 405, and ``Allow`` lists the path's
    methods, all of them (schemathesis's ``unsupported_method`` and ``allow_header_conformance``
    compare it with the schema)."""
    schema = api.client.get("/api/v1/openapi.json").json()
    answers = {}
    for path, item in schema["paths"].items():
        documented = ", ".join(sorted(method.upper() for method in item))
        url = re.sub(r"\{[^}]+\}", "1", path)
        for method in sorted(set(METHODS) - set(documented.split(", "))):
            response = api.client.request(method, url, headers=api.headers("admin"))
            allowed = ", ".join(
                sorted(m.strip() for m in response.headers.get("Allow", "").split(","))
            )
            answers[f"{method} {path}"] = (
                response.status_code,
                response.headers["content-type"],
                allowed,
                documented,
            )
    wrong = {
        request: answer
        for request, answer in answers.items()
        if answer[:2] != (405, "application/problem+json") or answer[2] != answer[3]
    }
    assert len(answers) >= 100
    assert wrong == {}
