"""The API's log-in, tokens, users and roles, against the real database."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.config import ApiConfig
from runtime.local_services import LocalMosquitto
from tests.integration.api_fixtures import PASSWORD, ApiSession

pytestmark = pytest.mark.integration


def test_a_request_without_a_token_is_refused_as_a_problem(api: ApiSession) -> None:
    response = api.client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    problem = response.json()
    assert problem["status"] == 401
    assert problem["type"] == "/problems/unauthorized"
    assert "bearer token" in problem["detail"]
    assert problem["instance"] == "/api/v1/auth/me"


def test_a_wrong_token_is_refused(api: ApiSession) -> None:
    response = api.client.get("/api/v1/auth/me", headers={"Authorization": "Bearer sc_nope"})
    assert response.status_code == 401
    assert "unknown, revoked or expired" in response.json()["detail"]


def test_log_in_gives_a_session_token_that_logs_out(api: ApiSession) -> None:
    wrong = api.client.post(
        "/api/v1/auth/login", json={"username": "crew-north", "password": "nope"}
    )
    assert wrong.status_code == 401
    unknown = api.client.post("/api/v1/auth/login", json={"username": "ghost", "password": "x"})
    assert unknown.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]  # no telling who exists

    response = api.client.post(
        "/api/v1/auth/login", json={"username": "crew-north", "password": PASSWORD}
    )
    assert response.status_code == 201
    session = response.json()
    assert session["user"]["role"] == "crew"
    assert session["user"]["street_groups"] == ["route-el-menzel-north"]
    assert session["user"]["street_group_names"] == {
        "route-el-menzel-north": "Route El Menzel, north carriageway"
    }
    assert session["user"]["building_names"] == {"town-hall": "Municipality of Sefrou (town hall)"}
    assert "acknowledge" in session["user"]["permissions"]
    headers = {"Authorization": f"Bearer {session['token']}"}
    assert api.client.get("/api/v1/auth/me", headers=headers).json()["username"] == "crew-north"
    assert api.client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert api.client.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_tokens_are_stored_only_as_digests(api: ApiSession) -> None:
    with psycopg.connect(api.database_url) as connection:
        digests = [row[0] for row in connection.execute("SELECT digest FROM api_tokens")]
    assert len(digests) == len(api.tokens)
    assert not set(api.tokens.values()) & set(digests)


def test_only_an_admin_manages_users(api: ApiSession) -> None:
    for who in ("technician", "energy", "crew-north"):
        response = api.client.get("/api/v1/users", headers=api.headers(who))
        assert response.status_code == 403, who
        assert "needs the role admin" in response.json()["detail"]
    assert api.client.get("/api/v1/users", headers=api.headers("admin")).status_code == 200


def test_an_admin_adds_a_crew_gives_it_a_token_then_disables_it(api: ApiSession) -> None:
    admin = api.headers("admin")
    created = api.client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "crew-east", "role": "crew", "street_groups": ["route-de-fes"]},
    )
    assert created.status_code == 201, created.text
    assert created.json()["has_password"] is False
    again = api.client.post(
        "/api/v1/users", headers=admin, json={"username": "crew-east", "role": "crew"}
    )
    assert again.status_code == 409
    issued = api.client.post("/api/v1/users/crew-east/tokens", headers=admin, json={"days": 30})
    assert issued.status_code == 201
    token = issued.json()["token"]
    crew = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/auth/me", headers=crew).status_code == 200

    disabled = api.client.patch("/api/v1/users/crew-east", headers=admin, json={"disabled": True})
    assert disabled.json()["disabled"] is True
    assert api.client.get("/api/v1/auth/me", headers=crew).status_code == 401
    with psycopg.connect(api.database_url) as connection:
        actions = [
            row[0]
            for row in connection.execute(
                "SELECT action FROM audit_log WHERE target = 'crew-east' ORDER BY id"
            )
        ]
    assert actions == ["user.create", "token.create", "user.change"]


def test_a_bad_request_lists_the_refused_fields(api: ApiSession) -> None:
    response = api.client.post(
        "/api/v1/users",
        headers=api.headers("admin"),
        json={"username": "Bad Name", "role": "mayor"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"username", "role"}


def test_the_openapi_schema_documents_errors_as_problem_details(api: ApiSession) -> None:
    schema = api.client.get("/api/v1/openapi.json").json()
    login = schema["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert "application/problem+json" in login["401"]["content"]
    assert "application/json" not in login["401"]["content"]
    assert "Problem" in schema["components"]["schemas"]


def test_a_new_password_ends_the_sessions_but_not_the_script_tokens(api: ApiSession) -> None:
    login = api.client.post(
        "/api/v1/auth/login", json={"username": "crew-north", "password": PASSWORD}
    )
    session = {"Authorization": f"Bearer {login.json()['token']}"}
    changed = api.client.patch(
        "/api/v1/users/crew-north",
        headers=api.headers("admin"),
        json={"password": "a brand new password"},
    )
    assert changed.status_code == 200
    assert api.client.get("/api/v1/auth/me", headers=session).status_code == 401
    assert api.client.get("/api/v1/auth/me", headers=api.headers("crew-north")).status_code == 200
    relogin = api.client.post(
        "/api/v1/auth/login", json={"username": "crew-north", "password": "a brand new password"}
    )
    assert relogin.status_code == 201


@pytest.mark.parametrize(
    "field", ["role", "display_name", "street_groups", "buildings", "language"]
)
def test_a_user_field_set_to_null_is_refused_not_a_server_error(
    api: ApiSession, field: str
) -> None:
    """Seen by the schema fuzzer: {"display_name": null} was a NOT NULL violation, a 500."""
    refused = api.client.patch(
        "/api/v1/users/crew-north", headers=api.headers("admin"), json={field: None}
    )
    assert refused.status_code == 422, refused.text
    assert f"{field}: give a value, or leave the field out" in refused.text
    kept = api.client.get("/api/v1/users/crew-north", headers=api.headers("admin"))
    assert kept.json()[field] is not None


@pytest.mark.parametrize("value", [0, 1, "yes", "false"])
def test_a_user_disabled_only_by_true_or_false(api: ApiSession, value: object) -> None:
    """Seen by the schema fuzzer: {"disabled": 0} was taken for false. Only a JSON boolean
    disables or enables a user; anything else is refused, and the user stays as it was."""
    refused = api.client.patch(
        "/api/v1/users/crew-north", headers=api.headers("admin"), json={"disabled": value}
    )
    assert refused.status_code == 422, refused.text
    kept = api.client.get("/api/v1/users/crew-north", headers=api.headers("admin"))
    assert kept.json()["disabled"] is False


def test_log_ins_wait_after_five_failures_even_with_the_right_password(api: ApiSession) -> None:
    for _ in range(5):
        wrong = api.client.post(
            "/api/v1/auth/login", json={"username": "crew-north", "password": "guess"}
        )
        assert wrong.status_code == 401
    refused = api.client.post(
        "/api/v1/auth/login", json={"username": "crew-north", "password": PASSWORD}
    )
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 15 * 60
    assert "too many failed log-ins" in refused.json()["detail"]
    other = api.client.post(
        "/api/v1/auth/login", json={"username": "crew-south", "password": PASSWORD}
    )
    assert other.status_code == 201  # another user name from the same place still may


def test_other_sites_pages_get_no_cors_permission_unless_configured(
    api: ApiSession, broker: LocalMosquitto
) -> None:
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    closed = api.client.options("/api/v1/alerts", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    read = api.client.get(
        "/api/v1/auth/me", headers={**api.headers("technician"), "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in read.headers

    config = ApiConfig(
        database_url=api.database_url,
        mqtt_port=broker.port,
        pool_size=2,
        cors_origins=("https://grafana.sefrou.example",),
    )
    with TestClient(create_app(config)) as client:
        allowed = client.options(
            "/api/v1/alerts", headers={**preflight, "Origin": "https://grafana.sefrou.example"}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://grafana.sefrou.example"
        other = client.options("/api/v1/alerts", headers=preflight)
        assert "access-control-allow-origin" not in other.headers


def test_a_crew_is_refused_places_the_registry_lacks(api: ApiSession) -> None:
    """A crew given a misspelt street would never see that street's alerts: 422."""
    admin = api.headers("admin")
    typo = {"username": "crew-east", "role": "crew", "street_groups": ["route-de-fez"]}
    created = api.client.post("/api/v1/users", headers=admin, json=typo)
    assert created.status_code == 422, created.text
    assert "street group 'route-de-fez'" in created.json()["detail"]
    right = {**typo, "street_groups": ["route-de-fes"]}
    assert api.client.post("/api/v1/users", headers=admin, json=right).status_code == 201
    patched = api.client.patch(
        "/api/v1/users/crew-east", headers=admin, json={"buildings": ["no-such-building"]}
    )
    assert patched.status_code == 422, patched.text
    assert "building 'no-such-building'" in patched.json()["detail"]
    user = api.client.get("/api/v1/users/crew-east", headers=admin).json()
    assert (user["street_groups"], user["buildings"]) == (["route-de-fes"], [])


def test_a_refusal_names_the_callers_role_in_good_english(api: ApiSession) -> None:
    refused = api.client.get("/api/v1/users", headers=api.headers("energy"))
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("an energy manager may not do this; ")
    crew = api.client.get("/api/v1/users", headers=api.headers("crew-north"))
    assert crew.json()["detail"].startswith("a crew may not do this; ")
