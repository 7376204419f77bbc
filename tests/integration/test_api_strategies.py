"""The API's energy strategies and what-ifs, against the real database and broker."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from httpx2 import Response

from control import strategy_store as store
from control.strategy import PACKAGED_STRATEGY
from tests.integration.api_fixtures import ApiSession

pytestmark = pytest.mark.integration

V1 = "/api/v1"
DEFAULT = PACKAGED_STRATEGY.read_text(encoding="utf-8")
NAME = "sefrou-default"
WARMER = DEFAULT.replace("heating: 20.5", "heating: 21.0")
TOO_HOT = DEFAULT.replace("heating: 20.5", "heating: 50")
"""Out of range on line 10."""
REASON = {"reason": "tested through the API"}


def post(api: ApiSession, who: str, path: str, body: dict[str, Any]) -> Response:
    return api.client.post(f"{V1}{path}", headers=api.headers(who), json=body)


def get(api: ApiSession, who: str, path: str, **params: Any) -> Response:
    return api.client.get(f"{V1}{path}", headers=api.headers(who), params=params)


def save(api: ApiSession, body: str, who: str = "energy", name: str = NAME) -> Response:
    return post(api, who, f"/strategies/{name}/versions", {"body": body, "reason": "winter"})


def assert_problem(response: Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"], response.json()["detail"]


def audit_actions(database_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT actor, action FROM audit_log ORDER BY id")
        return [(str(actor), str(action)) for actor, action in rows]


def test_a_crew_cannot_touch_strategies_and_a_technician_only_reads(api: ApiSession) -> None:
    assert save(api, DEFAULT).status_code == 201
    reads = ["/strategies", "/strategies/history", f"/strategies/{NAME}"]
    for path in [*reads, f"/strategies/{NAME}/versions/1"]:
        assert_problem(get(api, "crew-south", path), 403, "needs the role")
        assert get(api, "technician", path).status_code == 200, path
    writes = [
        (f"/strategies/{NAME}/versions", {"body": WARMER, **REASON}),
        (f"/strategies/{NAME}/versions/1/activate", REASON),
        ("/strategies/rollback", REASON),
        ("/strategies/whatif", {"body": DEFAULT, "start": "2027-01-04T00:00:00Z",
                                "end": "2027-01-05T00:00:00Z"}),
    ]  # fmt: skip
    for path, body in writes:
        for who in ("crew-south", "technician"):
            assert_problem(post(api, who, path, body), 403, "energy manager, admin")
    assert_problem(post(api, "crew-south", "/strategies/validate", {"body": DEFAULT}), 403, "crew")


def test_versions_activation_and_rollback_are_those_of_the_cli_store(api: ApiSession) -> None:
    created = save(api, DEFAULT)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{V1}/strategies/{NAME}/versions/1"
    assert save(api, DEFAULT).json()["created"] is False
    assert save(api, WARMER, "admin").json()["version"]["version"] == 2
    assert post(api, "energy", f"/strategies/{NAME}/versions/1/activate", REASON).status_code == 200
    warmer = post(api, "admin", f"/strategies/{NAME}/versions/2/activate", {"reason": "cold"})
    assert warmer.json()["previous"] == {"name": NAME, "version": 1}
    with psycopg.connect(api.database_url) as connection:
        active = store.active_strategy(connection)  # what the control services read
    assert active is not None
    assert (active.version, active.activated_by, active.strategy.hvac.comfort.heating) == (
        2,
        "admin",
        21.0,
    )
    shown = get(api, "technician", f"/strategies/{NAME}/versions/2").json()
    assert (shown["body"], shown["active"], shown["author"]) == (WARMER, True, "admin")
    [summary] = get(api, "technician", "/strategies").json()
    assert (summary["latest"], summary["versions"], summary["active_version"]) == (2, 2, 2)

    rolled = post(api, "energy", "/strategies/rollback", {"reason": "complaints"})
    assert rolled.json()["active"] == {"name": NAME, "version": 1}
    packaged = post(api, "energy", "/strategies/rollback", {"reason": "the packaged one"})
    assert packaged.json() == {"active": None, "previous": {"name": NAME, "version": 1}}
    assert_problem(post(api, "energy", "/strategies/rollback", REASON), 409, "no strategy is")
    trail = get(api, "technician", "/strategies/history", limit=3).json()
    assert [(e["action"], e["name"], e["actor"], e["reason"]) for e in trail] == [
        ("rolled_back", None, "energy", "the packaged one"),
        ("rolled_back", NAME, "energy", "complaints"),
        ("activated", NAME, "admin", "cold"),
    ]
    assert audit_actions(api.database_url) == [
        ("energy", "strategy.save"),
        ("admin", "strategy.save"),
        ("energy", "strategy.activate"),
        ("admin", "strategy.activate"),
        ("energy", "strategy.rollback"),
        ("energy", "strategy.rollback"),
    ]


def test_bad_strategies_unknown_versions_and_conflicts_are_refused(api: ApiSession) -> None:
    checked = post(api, "technician", "/strategies/validate", {"body": TOO_HOT}).json()
    assert checked["valid"] is False
    assert checked["errors"][0]["line"] == 10
    assert "hvac.comfort.heating" in checked["errors"][0]["message"]
    fine = post(api, "technician", "/strategies/validate", {"body": DEFAULT}).json()
    assert fine == {"valid": True, "detail": f"strategy {NAME} OK", "errors": []}
    assert_problem(save(api, TOO_HOT), 422, "(line 10)")
    assert_problem(save(api, DEFAULT, name="summer"), 422, "its text says 'sefrou-default'")
    assert_problem(get(api, "technician", f"/strategies/{NAME}"), 404, "none is stored yet")
    assert_problem(
        post(api, "energy", "/strategies/rollback", REASON), 409, "no strategy is active"
    )
    assert save(api, DEFAULT).status_code == 201
    assert_problem(
        post(api, "energy", f"/strategies/{NAME}/versions/3/activate", REASON), 404, "1 to 1"
    )
    assert_problem(get(api, "technician", "/strategies/winter/versions/1"), 404, "no strategy")
    assert post(api, "energy", f"/strategies/{NAME}/versions/1/activate", REASON).status_code == 200
    assert_problem(
        post(api, "energy", f"/strategies/{NAME}/versions/1/activate", REASON), 409, "already"
    )
    assert post(api, "energy", "/strategies/validate", {"body": ""}).status_code == 422
    assert get(api, "technician", "/strategies/history", limit=0).status_code == 422
    assert [action for _, action in audit_actions(api.database_url)] == [
        "strategy.save",
        "strategy.activate",
    ]


def test_a_whatif_of_one_day_runs_as_a_job(api: ApiSession) -> None:
    assert save(api, WARMER).status_code == 201
    order = {
        "strategy": {"name": NAME, "version": 1},
        "start": "2027-01-04T00:00:00Z",
        "end": "2027-01-05T00:00:00Z",
        "step_s": 300,
    }
    accepted = post(api, "energy", "/strategies/whatif", order)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    deadline = time.monotonic() + 60
    job = accepted.json()
    while job["status"] not in {"succeeded", "failed"} and time.monotonic() < deadline:
        time.sleep(0.1)
        job = api.client.get(location, headers=api.headers("energy")).json()
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["contenders"] == {
        "candidate": NAME,
        "current": "sefrou-default (packaged default: none activated)",
    }
    assert set(result["figures"]) == {"candidate", "current", "class C", "class C+blinds", "24/7"}
    warmer, packaged = result["figures"]["candidate"], result["figures"]["current"]
    assert warmer["total"]["heating_kwh"] > packaged["total"]["heating_kwh"]  # 21 C, not 20.5
    assert set(result["savings_vs_class_c"]) == {"candidate", "current"}
    assert result["savings_vs_24_7"]["candidate"] > 0
    assert result["plot"] is None
    assert ("energy", "strategies.whatif") in audit_actions(api.database_url)


def test_a_whatif_that_cannot_run_is_refused_at_once(api: ApiSession) -> None:
    day = {"start": "2027-01-04T00:00:00Z", "end": "2027-01-05T00:00:00Z"}
    refusals: list[tuple[dict[str, Any], int, str]] = [
        ({}, 422, "give the candidate"),
        ({"body": DEFAULT, "strategy": {"name": NAME, "version": 1}}, 422, "give the candidate"),
        ({"body": TOO_HOT}, 422, "(line 10)"),
        ({"strategy": {"name": NAME, "version": 4}}, 404, "no strategy named"),
        ({"body": DEFAULT, "current": {"name": "winter", "version": 1}}, 404, "winter"),
        ({"body": DEFAULT, "site": "atlantis"}, 404, "no site file 'atlantis'"),
        ({"body": DEFAULT, "step_s": 70}, 422, "must divide 300"),
        ({"body": DEFAULT, "end": "2027-01-03T00:00:00Z"}, 422, "must end after it starts"),
        ({"body": DEFAULT, "end": "2029-01-03T00:00:00Z"}, 422, "longer than 400 days"),
        ({"body": DEFAULT, "end": "2028-01-03T00:00:00Z", "step_s": 10}, 422, "longer step_s"),
    ]
    for change, status, words in refusals:
        assert_problem(post(api, "admin", "/strategies/whatif", day | change), status, words)
    assert get(api, "admin", "/jobs").json() == []
