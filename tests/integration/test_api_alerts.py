"""The alert routes against the real database: lists, history, actions, silences and who may
see and do what (a crew only in its own places)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from alerts import lifecycle, store
from alerts.catalogue import NoticeKind
from alerts.delivery import Delivery
from api.fault_guides import fault_guides, parse_fault_guides
from protocol.payloads import Severity
from tests.integration.api_fixtures import ApiSession

pytestmark = pytest.mark.integration

ALERTS = "/api/v1/alerts"
SILENCES = "/api/v1/silences"
NOW = datetime.now(UTC)

# name: (rule, subject, severity, title, minutes since it fired)
SEEDED = {
    "north-lamp": ("lamp-out", "sl-menzel-n-010", Severity.CRITICAL, "Lamp out at night", 50),
    "north-sign": ("sign-door-open", "sign-menzel-station", Severity.WARNING, "Sign door", 40),
    "south-lamp": ("lamp-out", "sl-menzel-s-010", Severity.CRITICAL, "Lamp out at night", 30),
    "hall-window": ("window-open-heating", "town-hall-reception", Severity.INFO, "Window", 20),
    "south-street": (
        "group-offline", "street:route-el-menzel-south", Severity.CRITICAL, "Several", 15,
    ),
    "north-cabinet": ("group-offline", "cabinet:menzel-n-c1", Severity.CRITICAL, "Several", 10),
    "site": ("group-offline", "site:sefrou", Severity.CRITICAL, "Several devices", 5),
    "fes-lamp": ("lamp-out", "sl-fes-001", Severity.CRITICAL, "Lamp out at night", 60),
}  # fmt: skip
NORTH = {"north-lamp", "north-sign", "hall-window", "north-cabinet"}
SOUTH = {"south-lamp", "south-street"}


def seed_alerts(database_url: str, now: datetime = NOW) -> dict[str, int]:
    """The alerts of :data:`SEEDED`, fired by the engine as the rules engine would."""
    ids = {}
    with psycopg.connect(database_url) as connection:
        for name, (rule_id, subject, severity, title, minutes) in SEEDED.items():
            fired = now - timedelta(minutes=minutes)
            outcome = lifecycle.fire(rule_id, subject, severity, fired, fired)
            alert, _ = store.insert_alert(connection, outcome, title)
            assert alert.alert_id is not None
            ids[name] = alert.alert_id
    return ids


@pytest.fixture
def seeded(api: ApiSession) -> dict[str, int]:
    return seed_alerts(api.database_url)


def listed(api: ApiSession, who: str, **params: Any) -> dict[str, Any]:
    response = api.client.get(ALERTS, headers=api.headers(who), params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def ids_of(page: dict[str, Any]) -> set[int]:
    return {alert["alert_id"] for alert in page["alerts"]}


def named(seeded: dict[str, int], *names: str) -> set[int]:
    return {seeded[name] for name in names}


def post(api: ApiSession, who: str, url: str, body: dict[str, Any] | None = None) -> Any:
    return api.client.post(url, headers=api.headers(who), json=body or {})


def assert_problem(response: Any, status: int, words: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert words in problem["detail"]
    return problem


def audit(database_url: str, target: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT actor, action FROM audit_log WHERE target = %s ORDER BY id", (target,)
        ).fetchall()
    return [(actor, action) for actor, action in rows]


# ----------------------------------------------------------------------------- listing


def test_a_technician_lists_every_open_alert_with_its_place(
    api: ApiSession, seeded: dict[str, int]
) -> None:
    page = listed(api, "technician")
    assert ids_of(page) == set(seeded.values())
    assert page["total"] == len(seeded)
    assert page["next_offset"] is None
    by_id = {alert["alert_id"]: alert for alert in page["alerts"]}
    assert page["alerts"][0]["alert_id"] == seeded["site"]  # newest first

    lamp = by_id[seeded["north-lamp"]]
    assert lamp["device_id"] == "sl-menzel-n-010"
    assert lamp["device_class"] == "streetlight"
    assert lamp["device_name"] == "Route El Menzel, north carriageway #10"
    assert lamp["street_groups"] == ["route-el-menzel-north"]
    assert lamp["buildings"] == []
    assert lamp["latitude"] == pytest.approx(33.8285, abs=0.01)
    assert lamp["map_url"].startswith("https://www.openstreetmap.org/?mlat=33.8")
    assert lamp["titles"] == {
        "en": "Lamp out at night",
        "fr": "Lampe éteinte la nuit",
        "ar": "مصباح مطفأ ليلا",
    }
    assert lamp["status"] == "firing"
    assert "what_to_check" not in lamp  # only in the single view

    window = by_id[seeded["hall-window"]]
    assert (window["street_groups"], window["buildings"]) == ([], ["town-hall"])
    cabinet = by_id[seeded["north-cabinet"]]
    assert cabinet["device_id"] is None
    assert cabinet["street_groups"] == ["route-el-menzel-north"]
    assert 33.82 < cabinet["latitude"] < 33.84  # the centroid of the cabinet's lights
    assert cabinet["titles"]["fr"] == "Plusieurs équipements muets"
    site = by_id[seeded["site"]]
    assert (site["street_groups"], site["latitude"], site["map_url"]) == ([], None, None)


def test_a_crew_sees_only_the_alerts_of_its_places(api: ApiSession, seeded: dict[str, int]) -> None:
    assert ids_of(listed(api, "crew-north")) == named(seeded, *NORTH)
    assert ids_of(listed(api, "crew-south")) == named(seeded, *SOUTH)
    # filters narrow a crew's view, never widen it
    assert ids_of(listed(api, "crew-north", street_group="route-el-menzel-south")) == set()
    assert ids_of(listed(api, "crew-north", status="all")) == named(seeded, *NORTH)
    assert listed(api, "crew-north", subject="sl-menzel-s-010")["total"] == 0
    # the energy manager reads every alert
    assert ids_of(listed(api, "energy")) == set(seeded.values())


def test_a_crew_gets_404_for_another_zones_alert_as_if_it_did_not_exist(
    api: ApiSession, seeded: dict[str, int]
) -> None:
    south = seeded["south-lamp"]
    unknown = 10**9
    hidden = api.client.get(f"{ALERTS}/{south}", headers=api.headers("crew-north"))
    missing = api.client.get(f"{ALERTS}/{unknown}", headers=api.headers("crew-north"))
    assert_problem(hidden, 404, "in your street groups and buildings")
    assert_problem(missing, 404)
    assert hidden.json()["detail"].replace(str(south), "N") == missing.json()["detail"].replace(
        str(unknown), "N"
    )
    assert_problem(post(api, "crew-north", f"{ALERTS}/{south}/acknowledge"), 404)
    assert_problem(post(api, "crew-north", f"{ALERTS}/{south}/repaired", {"note": "x"}), 404)
    assert_problem(post(api, "crew-north", f"{ALERTS}/{south}/comments", {"body": "x"}), 404)
    assert_problem(post(api, "crew-south", f"{ALERTS}/{seeded['site']}/acknowledge"), 404)
    with psycopg.connect(api.database_url) as connection:
        assert store.load_alert(connection, south).status is lifecycle.Status.FIRING
        comments = connection.execute("SELECT count(*) FROM alert_comments").fetchone()
    assert comments == (0,)
    # its own: fine, including a building's alert and a cabinet's
    for name in ("hall-window", "north-cabinet"):
        response = api.client.get(f"{ALERTS}/{seeded[name]}", headers=api.headers("crew-north"))
        assert response.status_code == 200


def test_filters_select_alerts_and_pages_follow_each_other(
    api: ApiSession, seeded: dict[str, int]
) -> None:
    tech = "technician"
    post(api, tech, f"{ALERTS}/{seeded['fes-lamp']}/close", {"note": "duplicate"})
    post(api, tech, f"{ALERTS}/{seeded['north-sign']}/repaired", {"note": "door shut"})
    assert seeded["fes-lamp"] not in ids_of(listed(api, tech))
    assert ids_of(listed(api, tech, status="closed")) == {seeded["fes-lamp"]}
    assert ids_of(listed(api, tech, status=["resolved", "closed"])) == named(
        seeded, "fes-lamp", "north-sign"
    )
    assert listed(api, tech, status="all")["total"] == len(seeded)
    assert ids_of(listed(api, tech, severity="info")) == {seeded["hall-window"]}
    assert ids_of(listed(api, tech, rule_id="group-offline")) == named(
        seeded, "south-street", "north-cabinet", "site"
    )
    assert ids_of(listed(api, tech, subject=["sl-menzel-n-010", "site:sefrou"])) == named(
        seeded, "north-lamp", "site"
    )
    assert ids_of(listed(api, tech, street_group="route-el-menzel-south")) == named(
        seeded, "south-lamp", "south-street"
    )
    assert ids_of(listed(api, tech, building="town-hall")) == {seeded["hall-window"]}
    since = (NOW - timedelta(minutes=12)).isoformat()
    assert ids_of(listed(api, tech, fired_since=since)) == named(seeded, "north-cabinet", "site")
    until = (NOW - timedelta(minutes=45)).replace(tzinfo=None).isoformat()  # no zone: UTC
    assert ids_of(listed(api, tech, fired_until=until)) == named(seeded, "north-lamp")
    assert listed(api, tech, fired_since=since, fired_until=until)["total"] == 0  # empty range

    first = listed(api, tech, limit=4)
    second = listed(api, tech, limit=4, offset=first["next_offset"])
    assert (first["total"], first["next_offset"], second["next_offset"]) == (6, 4, None)
    assert len(ids_of(first) | ids_of(second)) == 6


def test_near_sorts_by_severity_then_distance(api: ApiSession, seeded: dict[str, int]) -> None:
    with psycopg.connect(api.database_url) as connection:
        row = connection.execute(
            "SELECT latitude, longitude FROM devices WHERE device_id = 'sl-menzel-s-010'"
        ).fetchone()
    assert row is not None
    page = listed(api, "technician", near=f"{row[0]},{row[1]}", sort="severity")
    order = [alert["alert_id"] for alert in page["alerts"]]
    severities = [alert["severity"] for alert in page["alerts"]]
    assert severities == ["critical"] * 6 + ["warning", "info"]
    assert order[0] == seeded["south-lamp"]
    assert page["alerts"][0]["distance_m"] == pytest.approx(0, abs=0.5)
    critical = [a for a in page["alerts"] if a["severity"] == "critical"]
    distances = [a["distance_m"] for a in critical if a["distance_m"] is not None]
    assert distances == sorted(distances)
    assert critical[-1]["alert_id"] == seeded["site"]  # no position: last of its severity
    fes = next(a for a in critical if a["alert_id"] == seeded["fes-lamp"])
    assert 1_000 < fes["distance_m"] < 10_000
    assert ids_of(listed(api, "crew-north", near="33.83,-4.82", sort="severity")) == named(
        seeded, *NORTH
    )


# ----------------------------------------------------------------------------- one alert


def test_one_alert_has_its_history_comments_notifications_and_what_to_check(
    api: ApiSession, seeded: dict[str, int]
) -> None:
    alert_id = seeded["north-lamp"]
    with psycopg.connect(api.database_url) as connection:
        notification_id = connection.execute(
            "SELECT notification_id FROM notifications WHERE alert_id = %s", (alert_id,)
        ).fetchone()
        assert notification_id is not None
        delivery = Delivery(
            alert_id, NoticeKind.FIRING, "night-crew", "mailto://***@example.ma", "fr", 1,
            NOW, ok=True,
        )  # fmt: skip
        store.record_attempt(connection, notification_id[0], delivery)
    commented = post(api, "crew-north", f"{ALERTS}/{alert_id}/comments", {"body": "on my way"})
    assert commented.status_code == 201
    post(api, "crew-north", f"{ALERTS}/{alert_id}/acknowledge", {"note": "seen"})

    response = api.client.get(f"{ALERTS}/{alert_id}", headers=api.headers("crew-north"))
    assert response.status_code == 200
    alert = response.json()
    assert [(t["from_status"], t["to_status"], t["actor"]) for t in alert["transitions"]] == [
        (None, "firing", "engine"),
        ("firing", "acknowledged", "crew-north"),
    ]
    assert alert["transitions"][1]["note"] == "seen"
    assert [(c["author"], c["body"]) for c in alert["comments"]] == [("crew-north", "on my way")]
    [sent] = alert["notifications"]
    assert (sent["kind"], sent["route"], sent["ok"], sent["url"]) == (
        "firing", "night-crew", True, None,
    )  # fmt: skip  # a crew is not shown where notices go
    technician = api.client.get(f"{ALERTS}/{alert_id}", headers=api.headers("technician"))
    assert technician.json()["notifications"][0]["url"] == "mailto://***@example.ma"

    guides = alert["what_to_check"]
    assert set(guides) == {"en", "fr", "ar"}
    assert {guide["language"] for guide in guides.values()} == {"en", "fr", "ar"}
    assert guides["en"]["steps"][0].startswith("The pole first")
    assert guides["fr"]["steps"][0].startswith("D'abord le poteau")
    assert guides["ar"]["steps"][0].startswith("العمود أولا")
    assert "LED driver" in guides["en"]["bring"]
    assert "**" not in guides["en"]["meaning"]

    group = api.client.get(f"{ALERTS}/{seeded['site']}", headers=api.headers("technician"))
    assert group.json()["what_to_check"] == {}  # no section of the catalogue for it
    assert group.json()["titles"]["ar"] == "عدة أجهزة لا ترسل بياناتها"


def test_the_fault_catalogue_gives_every_rule_its_checks_in_three_languages() -> None:
    guides = fault_guides()
    assert len(guides) >= 20
    for rule_id, guide in guides.items():
        assert set(guide.guides) == {"en", "fr", "ar"}, rule_id
        assert set(guide.titles) == {"en", "fr", "ar"}, rule_id
        assert all(len(g.steps) >= 2 and g.meaning and g.bring for g in guide.guides.values())
    intro = guides["charge-controller-fault"].guides["fr"].check_intro
    assert intro == "De jour :"


def test_a_rule_described_only_in_english_falls_back_to_english() -> None:
    text = """## made-up

**Made up** · *Inventé* · <span dir="rtl" lang="ar">مختلق</span>

**What it means.** Something **bold** and `code`, see [lamp-out](#lamp-out).

**What to check on site.**

1. First step,
   on two lines.
2. Second step:
   - a detail.

Bring: a torch.

## Not a rule section
"""
    guide = parse_fault_guides(text)["made-up"]
    assert set(guide.guides) == {"en"}
    english = guide.in_language("ar")
    assert english is not None
    assert english.language == "en"
    assert english.meaning == "Something bold and code, see lamp-out."
    assert english.steps == ("First step, on two lines.", "Second step:\n- a detail.")
    assert english.bring == "a torch."
    assert guide.titles["fr"] == "Inventé"


# ----------------------------------------------------------------------------- actions


def test_a_crew_acknowledges_then_marks_repaired_with_a_note(
    api: ApiSession, seeded: dict[str, int]
) -> None:
    alert_id = seeded["north-lamp"]
    url = f"{ALERTS}/{alert_id}"
    acknowledged = post(api, "crew-north", f"{url}/acknowledge", {"note": "on our way"})
    assert acknowledged.status_code == 200
    assert acknowledged.json()["status"] == "acknowledged"
    assert acknowledged.json()["acknowledged_by"] == "crew-north"
    assert_problem(post(api, "crew-north", f"{url}/acknowledge"), 409, "only a firing alert")

    assert_problem(post(api, "crew-north", f"{url}/repaired", {"note": "  "}), 422, "note")
    repaired = post(api, "crew-north", f"{url}/repaired", {"note": "LED driver replaced"})
    assert repaired.status_code == 200
    assert (repaired.json()["status"], repaired.json()["repaired_by"]) == (
        "resolved", "crew-north",
    )  # fmt: skip
    assert_problem(post(api, "crew-north", f"{url}/repaired", {"note": "again"}), 409, "nothing")

    with psycopg.connect(api.database_url) as connection:
        transitions = store.transitions_of(connection, alert_id)
    assert [(t.to_status.value, t.actor) for t in transitions] == [
        ("firing", "engine"),
        ("acknowledged", "crew-north"),
        ("resolved", "crew-north"),
    ]
    assert "LED driver replaced" in transitions[-1].note
    assert audit(api.database_url, f"alert:{alert_id}") == [
        ("crew-north", "alert.acknowledge"),
        ("crew-north", "alert.repaired"),
    ]
    # a technician may mark repaired without a note
    other = post(api, "technician", f"{ALERTS}/{seeded['fes-lamp']}/repaired")
    assert other.json()["status"] == "resolved"


def test_an_energy_manager_reads_but_may_not_act(api: ApiSession, seeded: dict[str, int]) -> None:
    alert_id = seeded["north-lamp"]
    assert api.client.get(f"{ALERTS}/{alert_id}", headers=api.headers("energy")).status_code == 200
    for action, body in (
        ("acknowledge", {}),
        ("repaired", {"note": "x"}),
        ("close", {}),
        ("assign", {"username": "technician"}),
        ("comments", {"body": "x"}),
    ):
        assert_problem(post(api, "energy", f"{ALERTS}/{alert_id}/{action}", body), 403, "role")
    with psycopg.connect(api.database_url) as connection:
        assert store.load_alert(connection, alert_id).status is lifecycle.Status.FIRING


def test_only_technicians_and_admins_assign_and_close(
    api: ApiSession, seeded: dict[str, int]
) -> None:
    url = f"{ALERTS}/{seeded['north-lamp']}"
    assert_problem(post(api, "crew-north", f"{url}/close"), 403, "technician")
    assert_problem(post(api, "crew-north", f"{url}/assign", {"username": "crew-north"}), 403)

    given = post(api, "technician", f"{url}/assign", {"username": "crew-north"})
    assert given.status_code == 200
    assert given.json()["assigned_to"] == "crew-north"
    assert ids_of(listed(api, "technician", assigned_to="crew-north")) == {seeded["north-lamp"]}
    assert_problem(post(api, "technician", f"{url}/assign", {"username": "crew-south"}), 422)
    assert_problem(post(api, "technician", f"{url}/assign", {"username": "energy"}), 422)
    assert_problem(post(api, "technician", f"{url}/assign", {"username": "ghost"}), 422)
    assert_problem(post(api, "technician", f"{url}/assign", {"username": "Bad Name"}), 422)
    assert_problem(post(api, "technician", f"{ALERTS}/{10**9}/assign", {"username": None}), 404)
    unassigned = post(api, "admin", f"{url}/assign", {"username": None})
    assert unassigned.json()["assigned_to"] is None

    closed = post(api, "technician", f"{url}/close", {"note": "false alarm"})
    assert closed.json()["status"] == "closed"
    assert_problem(post(api, "technician", f"{url}/close"), 409, "already closed")
    assert_problem(post(api, "technician", f"{url}/acknowledge"), 409, "only a firing alert")
    assert_problem(post(api, "technician", f"{url}/assign", {"username": "technician"}), 409)
    assert audit(api.database_url, f"alert:{seeded['north-lamp']}") == [
        ("technician", "alert.assign"),
        ("admin", "alert.assign"),
        ("technician", "alert.close"),
    ]


def test_comments_need_a_body(api: ApiSession, seeded: dict[str, int]) -> None:
    url = f"{ALERTS}/{seeded['south-lamp']}/comments"
    assert_problem(post(api, "crew-south", url, {"body": "   "}), 422, "pattern")
    assert_problem(post(api, "crew-south", url, {}), 422)
    assert_problem(post(api, "crew-south", url, {"body": "x" * 2001}), 422)
    created = post(api, "crew-south", url, {"body": "cable cut by road works"})
    assert created.status_code == 201
    assert created.json()["author"] == "crew-south"
    # comments are allowed on a closed alert (a word after the fact)
    post(api, "technician", f"{ALERTS}/{seeded['south-lamp']}/close")
    assert post(api, "technician", url, {"body": "closed: works done"}).status_code == 201


# ----------------------------------------------------------------------------- silences


def test_a_technician_silences_a_street_and_lists_silences(api: ApiSession) -> None:
    created = post(
        api, "technician", SILENCES,
        {"street_groups": ["route-el-menzel-north"], "duration": "4h", "maintenance": True,
         "reason": "cable work"},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["in_force"] is True
    assert silence["maintenance"] is True
    assert silence["created_by"] == "technician"
    starts = datetime.fromisoformat(silence["starts_at"])
    ends = datetime.fromisoformat(silence["ends_at"])
    assert ends - starts == timedelta(hours=4)

    later = (NOW + timedelta(days=1)).isoformat()
    planned = post(
        api, "admin", SILENCES,
        {"rule_ids": ["panel-soiled"], "starts_at": later,
         "ends_at": (NOW + timedelta(days=2)).isoformat(), "reason": "cleaning week"},
    )  # fmt: skip
    assert planned.status_code == 201
    assert planned.json()["in_force"] is False

    with psycopg.connect(api.database_url) as connection:
        in_force = store.silences_in_force(connection, NOW + timedelta(hours=1))
    assert in_force[0].matches(
        "lamp-out",
        lifecycle.Scope("sl-menzel-n-001", street_group="route-el-menzel-north"),
        NOW + timedelta(hours=1),
    )
    listing = api.client.get(SILENCES, headers=api.headers("energy"))
    assert listing.status_code == 200
    assert {s["silence_id"] for s in listing.json()} == {
        silence["silence_id"],
        planned.json()["silence_id"],
    }
    assert api.client.get(
        SILENCES, headers=api.headers("technician"), params={"include_past": True}
    ).json()
    assert audit(api.database_url, f"silence:{silence['silence_id']}") == [
        ("technician", "silence.create")
    ]


REFUSED_SILENCES: list[tuple[dict[str, Any], str]] = [
        ({"duration": "2h", "reason": "r"}, "say what to silence"),
        ({"device_ids": ["sl-fes-001"], "reason": "r"}, "either ends_at or duration"),
        ({"device_ids": ["sl-fes-001"], "duration": "2h", "ends_at": "2030-01-01T00:00:00Z",
          "reason": "r"}, "either ends_at or duration"),
        ({"device_ids": ["sl-fes-001"], "duration": "soon", "reason": "r"}, "duration"),
        ({"device_ids": ["sl-fes-001"], "duration": "0h", "reason": "r"}, "duration"),
        ({"device_ids": ["sl-fes-001"], "duration": "999999d", "reason": "r"}, "at most 366"),
        ({"device_ids": ["sl-fes-001"], "ends_at": "2000-01-01T00:00:00Z", "reason": "r"},
         "after starts_at"),
        ({"device_ids": ["sl-fes-001"], "starts_at": "2000-01-01T00:00:00Z",
          "ends_at": "2000-01-02T00:00:00Z", "reason": "r"}, "over already"),
        ({"device_ids": ["sl-nowhere-1"], "duration": "2h", "reason": "r"}, "sl-nowhere-1"),
        ({"buildings": ["castle"], "duration": "2h", "reason": "r"}, "building 'castle'"),
        ({"device_ids": ["sl-fes-001"], "duration": "2h", "reason": ""}, "reason"),
        ({"device_ids": ["sl-fes-001"], "starts_at": "9999-12-31T23:00:00Z", "duration": "2d",
          "reason": "r"}, "duration"),
]  # fmt: skip


def test_a_silence_that_makes_no_sense_is_refused(api: ApiSession) -> None:
    for body, words in REFUSED_SILENCES:
        assert_problem(post(api, "technician", SILENCES, body), 422, words)
    with psycopg.connect(api.database_url) as connection:
        assert connection.execute("SELECT count(*) FROM silences").fetchone() == (0,)


def test_crews_and_energy_managers_may_not_silence(api: ApiSession) -> None:
    body = {"street_groups": ["route-el-menzel-north"], "duration": "1h", "reason": "r"}
    for who in ("crew-north", "energy"):
        assert_problem(post(api, who, SILENCES, body), 403, "technician")
    assert_problem(api.client.get(SILENCES, headers=api.headers("crew-north")), 403)


# ----------------------------------------------------------------------------- bad input


BAD_QUERIES: list[tuple[str, dict[str, Any]]] = [
    (f"{ALERTS}/0", {}),
    (f"{ALERTS}/{2**63}", {}),
    (f"{ALERTS}/abc", {}),
    (ALERTS, {"near": "north"}),
    (ALERTS, {"near": "95,0"}),
    (ALERTS, {"near": "33.8,-181"}),
    (ALERTS, {"near": "-90.5,0"}),
    (ALERTS, {"near": "33.8, -4.8"}),
    (ALERTS, {"limit": 0}),
    (ALERTS, {"limit": 501}),
    (ALERTS, {"offset": -1}),
    (ALERTS, {"status": "gone"}),
    (ALERTS, {"severity": "fatal"}),
    (ALERTS, {"sort": "random"}),
    (ALERTS, {"rule_id": "bad name!"}),
    (ALERTS, {"fired_since": "yesterday"}),
    (ALERTS, {"subject": "a\x00b"}),
]


def test_bad_queries_are_refused_as_problems(api: ApiSession) -> None:
    for url, params in BAD_QUERIES:
        response = api.client.get(url, headers=api.headers("technician"), params=params)
        assert_problem(response, 422)


def test_alerts_need_a_token(api: ApiSession) -> None:
    assert_problem(api.client.get(ALERTS), 401)
    assert_problem(api.client.post(f"{ALERTS}/1/acknowledge", json={}), 401)
    assert_problem(api.client.get(f"{ALERTS}/1", headers=api.headers("technician")), 404)


def test_the_openapi_schema_documents_every_alert_route_and_its_errors(api: ApiSession) -> None:
    paths = api.client.get("/api/v1/openapi.json").json()["paths"]
    expected = {
        ("/api/v1/alerts", "get"): {"200", "401", "403", "422"},
        ("/api/v1/alerts/{alert_id}", "get"): {"200", "401", "403", "404", "422"},
        ("/api/v1/alerts/{alert_id}/acknowledge", "post"): {"200", "404", "409"},
        ("/api/v1/alerts/{alert_id}/repaired", "post"): {"200", "404", "409"},
        ("/api/v1/alerts/{alert_id}/close", "post"): {"200", "404", "409"},
        ("/api/v1/alerts/{alert_id}/assign", "post"): {"200", "404", "409"},
        ("/api/v1/alerts/{alert_id}/comments", "post"): {"201", "404"},
        ("/api/v1/silences", "post"): {"201", "403", "422"},
        ("/api/v1/silences", "get"): {"200", "403"},
    }
    for (path, method), statuses in expected.items():
        operation = paths[path][method]
        assert operation["tags"] == ["alerts"]
        assert statuses <= set(operation["responses"]), (path, method)
        assert "application/problem+json" in operation["responses"]["401"]["content"]


@pytest.mark.parametrize("written", ["0.5", "1767225600", "-3", "1e9"])
def test_a_moment_written_as_a_number_is_refused_not_read_as_unix_seconds(
    api: ApiSession, written: str
) -> None:
    """Seen by the schema fuzzer: ``fired_until=0.5`` was read as 1970-01-01T00:00:00.5."""
    refused = api.get("technician", f"/api/v1/alerts?fired_until={written}")
    assert refused.status_code == 422, refused.text  # type: ignore[attr-defined]
    assert "ISO 8601" in refused.text  # type: ignore[attr-defined]
    silence = api.client.post(
        "/api/v1/silences",
        headers=api.headers("technician"),
        json={"street_groups": ["route-de-fes"], "starts_at": float(written), "duration": "1h"},
    )
    assert silence.status_code == 422, silence.text
    assert "starts_at" in silence.text
    assert "ISO 8601" in silence.text
    read = api.get("technician", "/api/v1/alerts?fired_until=2026-01-01T00:00:00Z")
    assert read.status_code == 200  # type: ignore[attr-defined]
