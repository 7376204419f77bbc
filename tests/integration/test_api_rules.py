"""The API's rules, rule sets, backtests and jobs, against the real database and broker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from api.app import create_app
from api.config import ApiConfig
from runtime.local_services import LocalMosquitto
from simulators.history import HistoryOptions, generate_history
from tests.integration.api_fixtures import ApiSession, sefrou

pytestmark = pytest.mark.integration

V1 = "/api/v1"
LAMPS = """\
rules:
  - id: lamp-out
    class: streetlight
    title: {en: Lamp out at night, fr: Lampe éteinte la nuit}
    description: The lamp is on but draws nothing.
    when: lamp_on and lamp_power < 0.05 * lamp_w and sun_elevation < -4
    for: 20m
    severity: critical
    detects: [lamp_failure]
"""
SILENCE = """\
rules:
  - id: light-offline
    class: streetlight
    title: {en: Light not reporting}
    missing: {after: 3}
"""
MISSPELT = LAMPS.replace("lamp_power < 0.05", "lamp_pwer < 0.05")
"""A mistake on line 6."""
REASON = {"reason": "tested through the API"}


def post(api: ApiSession, who: str, path: str, body: dict[str, Any]) -> Response:
    return api.client.post(f"{V1}{path}", headers=api.headers(who), json=body)


def get(api: ApiSession, who: str, path: str, **params: Any) -> Response:
    return api.client.get(f"{V1}{path}", headers=api.headers(who), params=params)


def save(api: ApiSession, name: str, body: str, who: str = "energy") -> Response:
    return post(api, who, f"/rule-sets/{name}/versions", {"body": body, "reason": f"{name} rules"})


def assert_problem(response: Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"], response.json()["detail"]


def audit_actions(database_url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT actor, action, target FROM audit_log ORDER BY id")
        return [(str(a), str(b), str(c)) for a, b, c in rows]


def wait_for_job(api: ApiSession, who: str, location: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.client.get(location, headers=api.headers(who)).json()
        if job["status"] in {"succeeded", "failed"}:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {location} did not finish in {timeout_s} s")


# ----------------------------------------------------------------------------- roles


READS = ["/rules", "/rule-sets", "/rule-sets/history", "/rule-sets/lamps", "/jobs"]
WRITES = [
    ("/rule-sets/lamps/versions", {"body": LAMPS, **REASON}),
    ("/rule-sets/lamps/versions/1/activate", REASON),
    ("/rule-sets/rollback", REASON),
    ("/rules/backtests", {"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T01:00:00Z"}),
]


def test_a_crew_cannot_touch_any_rule_and_a_technician_only_reads(api: ApiSession) -> None:
    assert save(api, "lamps", LAMPS).status_code == 201
    for path in [*READS, "/rule-sets/lamps/versions/1"]:
        assert_problem(get(api, "crew-north", path), 403, "needs the role")
        assert get(api, "technician", path).status_code == 200, path
    assert_problem(post(api, "crew-north", "/rules/validate", {"body": LAMPS}), 403, "crew")
    for path, body in WRITES:
        for who in ("crew-north", "technician"):
            refused = post(api, who, path, body)
            assert_problem(refused, 403, "energy manager, admin")
    assert [action for _, action, _ in audit_actions(api.database_url)] == ["rule_set.save"]


# ----------------------------------------------------------------------------- versions


def test_without_a_rule_set_the_packaged_rules_are_in_force(api: ApiSession) -> None:
    response = get(api, "technician", "/rules")
    assert response.status_code == 200
    in_force = response.json()
    assert in_force["rule_set"] is None
    assert in_force["source"] == "default_rules.yaml"
    lamp_out = next(rule for rule in in_force["rules"] if rule["id"] == "lamp-out")
    assert lamp_out["device_class"] == "streetlight"
    assert lamp_out["severity"] == "critical"
    assert lamp_out["titles"]["fr"]
    assert "lamp_failure" in lamp_out["detects"]


def test_save_activate_roll_back_with_the_trail_and_the_audit_log(api: ApiSession) -> None:
    first = save(api, "lamps", LAMPS)
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"{V1}/rule-sets/lamps/versions/1"
    assert first.json()["version"]["author"] == "energy"
    assert save(api, "lamps", LAMPS).status_code == 200  # identical: not a new version
    assert save(api, "lamps", LAMPS + SILENCE.removeprefix("rules:\n"), "admin").status_code == 201

    activated = post(api, "energy", "/rule-sets/lamps/versions/1/activate", REASON)
    assert activated.json() == {"active": {"name": "lamps", "version": 1}, "previous": None}
    again = post(api, "admin", "/rule-sets/lamps/versions/2/activate", {"reason": "both"})
    assert again.json()["previous"] == {"name": "lamps", "version": 1}
    in_force = get(api, "technician", "/rules").json()
    assert in_force["rule_set"] == {"name": "lamps", "version": 2}
    assert [rule["id"] for rule in in_force["rules"]] == ["lamp-out", "light-offline"]

    shown = get(api, "technician", "/rule-sets/lamps/versions/1").json()
    assert (shown["body"], shown["active"], len(shown["digest"])) == (LAMPS, False, 64)
    listed = get(api, "technician", "/rule-sets").json()
    assert [(s["name"], s["latest"], s["active_version"]) for s in listed] == [("lamps", 2, 2)]
    versions = get(api, "technician", "/rule-sets/lamps").json()
    assert [(v["version"], v["author"], v["active"]) for v in versions["versions"]] == [
        (1, "energy", False),
        (2, "admin", True),
    ]

    rolled = post(api, "energy", "/rule-sets/rollback", {"reason": "too noisy"})
    assert rolled.json() == {
        "active": {"name": "lamps", "version": 1},
        "previous": {"name": "lamps", "version": 2},
    }
    # The first activation rolled back: none is active, the rule file is in force again.
    packaged = post(api, "energy", "/rule-sets/rollback", {"reason": "back to the catalogue"})
    assert packaged.json() == {"active": None, "previous": {"name": "lamps", "version": 1}}
    listed = get(api, "technician", "/rule-sets").json()
    assert [s["active_version"] for s in listed] == [None]
    assert_problem(post(api, "energy", "/rule-sets/rollback", REASON), 409, "no rule set is active")
    trail = get(api, "technician", "/rule-sets/history", name="lamps").json()
    assert [(e["actor"], e["action"], e["version"], e["reason"]) for e in trail][:3] == [
        ("energy", "rolled_back", None, "back to the catalogue"),
        ("energy", "rolled_back", 1, "too noisy"),
        ("admin", "activated", 2, "both"),
    ]
    assert audit_actions(api.database_url) == [
        ("energy", "rule_set.save", "lamps"),
        ("admin", "rule_set.save", "lamps"),
        ("energy", "rule_set.activate", "lamps"),
        ("admin", "rule_set.activate", "lamps"),
        ("energy", "rule_set.rollback", "lamps"),
        ("energy", "rule_set.rollback", "lamps"),
    ]


def test_validate_names_each_mistake_at_its_line(api: ApiSession) -> None:
    good = post(api, "technician", "/rules/validate", {"body": LAMPS})
    assert good.json() == {"valid": True, "detail": "1 rules OK (streetlight 1)", "errors": []}
    bad = post(api, "energy", "/rules/validate", {"body": MISSPELT}).json()
    assert bad["valid"] is False
    [error] = bad["errors"]
    assert error["line"] == 6
    assert "did you mean lamp_power" in error["message"]
    indented = "rules:\n  - id: x\n   class: streetlight\n"
    syntax = post(api, "energy", "/rules/validate", {"body": indented}).json()
    assert syntax["valid"] is False
    assert (syntax["errors"][0]["line"], syntax["errors"][0]["column"]) == (3, 4)
    assert "not valid YAML" in syntax["errors"][0]["message"]
    unknown = post(api, "energy", "/rules/validate", {"body": LAMPS.replace("lamp_f", "lamp_x")})
    assert "unknown fault type 'lamp_xailure'" in unknown.json()["detail"]


def test_bad_bodies_unknown_versions_and_conflicts_are_refused(api: ApiSession) -> None:
    assert_problem(save(api, "lamps", MISSPELT), 422, "did you mean lamp_power")
    assert_problem(save(api, "lamps", "rules: []\n"), 422, "rules")
    assert_problem(save(api, "history", LAMPS), 422, "names a route")
    assert_problem(get(api, "technician", "/rule-sets/lamps"), 404, "none is stored yet")
    assert save(api, "lamps", LAMPS).status_code == 201
    assert_problem(get(api, "technician", "/rule-sets/lamps/versions/2"), 404, "versions 1 to 1")
    assert_problem(post(api, "energy", "/rule-sets/lamps/versions/9/activate", REASON), 404, "9")
    assert_problem(post(api, "energy", "/rule-sets/rollback", REASON), 409, "no rule set is active")
    assert post(api, "energy", "/rule-sets/lamps/versions/1/activate", REASON).status_code == 200
    assert_problem(
        post(api, "energy", "/rule-sets/lamps/versions/1/activate", REASON), 409, "already active"
    )
    blank = post(api, "energy", "/rule-sets/lamps/versions", {"body": LAMPS, "reason": "  "})
    assert_problem(blank, 422, "a reason is required")
    for path in (
        "/rule-sets/Bad_Name",
        "/rule-sets/lamps/versions/0",
        "/rule-sets/lamps/versions/99999999999",
    ):
        assert get(api, "technician", path).status_code == 422, path
    assert post(api, "energy", "/rule-sets/lamps/versions/1/activate", {}).status_code == 422
    assert [action for _, action, _ in audit_actions(api.database_url)] == [
        "rule_set.save",
        "rule_set.activate",
    ]


# ----------------------------------------------------------------------------- backtests

HOUR = datetime(2026, 1, 12, 21, tzinfo=UTC)
"""A January night in Sefrou: lamps on."""
LIGHTS = [device.id for device in sefrou().devices if device.device_class == "streetlight"][:6]


def test_a_backtest_runs_as_a_job_over_stored_history(api: ApiSession) -> None:
    generate_history(
        HistoryOptions(sefrou().only(*LIGHTS), HOUR, HOUR + timedelta(hours=1), seed=3),
        api.database_url,
        progress=lambda _line: None,
    )
    assert save(api, "lamps", LAMPS).status_code == 201
    order = {
        "rule_set": {"name": "lamps", "version": 1},
        "start": HOUR.isoformat(),
        "end": (HOUR + timedelta(hours=1)).isoformat(),
        "site": "sefrou",
        "devices": LIGHTS,
        "warmup_hours": 0,
    }
    accepted = post(api, "energy", "/rules/backtests", order)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    assert location == f"{V1}/jobs/{accepted.json()['job_id']}"
    assert accepted.json()["status"] == "queued"
    job = wait_for_job(api, "energy", location)
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["rules"] == "rule set lamps version 1"
    assert result["devices"] == len(LIGHTS)
    assert result["readings"] == len(LIGHTS) * 60 // 5  # a reading every 5 minutes
    assert result["alerts_total"] == len(result["alerts"])
    assert job["params"]["devices"] == sorted(LIGHTS)
    assert job["started_at"] <= job["finished_at"]

    # Its own job, and an admin's view of every job; not another's.
    assert [j["job_id"] for j in get(api, "energy", "/jobs").json()] == [job["job_id"]]
    assert [j["job_id"] for j in get(api, "admin", "/jobs").json()] == [job["job_id"]]
    assert get(api, "technician", "/jobs").json() == []
    assert_problem(api.client.get(location, headers=api.headers("technician")), 404, "no job")
    assert ("energy", "rules.backtest", job["job_id"]) in audit_actions(api.database_url)


def test_a_backtest_of_the_rules_in_force_over_no_history_finds_nothing(api: ApiSession) -> None:
    order = {"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T01:00:00Z", "devices": LIGHTS}
    accepted = post(api, "admin", "/rules/backtests", {**order, "warmup_hours": 0})
    job = wait_for_job(api, "admin", accepted.headers["location"])
    assert job["status"] == "succeeded", job["error"]
    assert (job["result"]["readings"], job["result"]["alerts"]) == (0, [])


REFUSED_BACKTESTS: list[tuple[dict[str, Any], int, str]] = [
    ({"end": "2026-01-04T00:00:00Z"}, 422, "must end after it starts"),
    ({"end": "2026-06-01T00:00:00Z"}, 422, "longer than 92 days"),
    ({"start": "2026-01-05T00:00:00"}, 422, "timezone"),
    ({"start": "1999-12-31T00:00:00Z"}, 422, "within the years 2000 to 2099"),
    ({"site": "atlantis"}, 404, "no site 'atlantis'"),
    ({"devices": ["sl-nowhere"]}, 422, "no device sl-nowhere in service"),
    ({"devices": []}, 422, "at least 1 item"),
    ({"body": MISSPELT}, 422, "did you mean lamp_power"),
    ({"body": LAMPS, "rule_set": {"name": "x", "version": 1}}, 422, "not both"),
    ({"rule_set": {"name": "ghost", "version": 1}}, 404, "no rule set named 'ghost'"),
    ({"warmup_hours": -1}, 422, "greater than or equal to 0"),
]


def test_a_backtest_that_cannot_run_is_refused_at_once(api: ApiSession) -> None:
    for change, status, words in REFUSED_BACKTESTS:
        order = {"start": "2026-01-05T00:00:00Z", "end": "2026-01-06T00:00:00Z"} | change
        assert_problem(post(api, "energy", "/rules/backtests", order), status, words)
    assert get(api, "admin", "/jobs").json() == []


# ----------------------------------------------------------------------------- jobs


def test_a_job_cut_short_by_a_restart_is_marked_failed_at_start_up(
    api: ApiSession, broker: LocalMosquitto
) -> None:
    """Jobs of a runner that is gone fail when an API process starts; those of a live one
    (this test's API) are left to it."""
    live_runner = api.client.app.state.api.jobs.runner  # type: ignore[attr-defined]
    with psycopg.connect(api.database_url) as connection:
        for job_id, status, runner in (
            ("a" * 32, "running", "gone-host:1:dead"),
            ("b" * 32, "queued", "gone-host:1:dead"),
            ("d" * 32, "queued", live_runner),
        ):
            connection.execute(
                "INSERT INTO api_jobs (job_id, kind, params, status, created_by, runner)"
                " VALUES (%s, 'rules.backtest', '{}', %s, 'energy', %s)",
                (job_id, status, runner),
            )
    config = ApiConfig(database_url=api.database_url, mqtt_port=broker.port, pool_size=2)
    with TestClient(create_app(config), raise_server_exceptions=False):
        pass  # starting is enough
    jobs = {job["job_id"]: job for job in get(api, "energy", "/jobs").json()}
    assert jobs.pop("d" * 32)["status"] == "queued"
    assert {job["status"] for job in jobs.values()} == {"failed"}
    assert "stopped while this job was running" in jobs["a" * 32]["error"]
    assert "submit it again" in jobs["b" * 32]["error"]
    assert jobs["a" * 32]["finished_at"] is not None
    assert_problem(get(api, "energy", f"/jobs/{'c' * 32}"), 404, "no job")
    assert get(api, "energy", "/jobs/not-a-job").status_code == 422
    assert get(api, "energy", "/jobs", status="running").json() == []
