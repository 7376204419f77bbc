"""Citizens' reports through Open311 GeoReport v2 on the running API and a real database
holding the Sefrou fleet: matched to the lights around the place, answered by the alert that
already knows the fault or by one raised for the crews, closed when the alert closes; bad
reports, keys and floods refused with GeoReport's errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import psycopg
import pytest
from typer.testing import CliRunner

from alerts import lifecycle, store
from alerts.catalogue import CITIZEN_REPORT
from alerts.lifecycle import Status
from alerts.routing import parse_notification_config
from field_ops.reports import add_client
from field_ops.services import SERVICES, metres_between
from protocol.payloads import Severity
from protocol.sites import Device
from protocol.topics import DeviceClass
from rules import PACKAGED_RULES
from rules.service import RulesConfig
from runtime.local_services import LocalMosquitto
from smartcity.cli import app
from tests.integration.api_fixtures import ApiSession, sefrou
from tests.integration.helpers import wait_until
from tests.integration.receivers import Webhook
from tests.integration.test_rules_engine import running_engine

pytestmark = pytest.mark.integration
BASE = "/open311/v2"
NEARBY = 0.0001
"""About 11 m north [deg of latitude]."""


def light() -> Device:
    """A streetlight of Sefrou, the first in the file."""
    return next(d for d in sefrou().devices if d.device_class is DeviceClass.STREETLIGHT)


def key_for(api: ApiSession, client_id: str = "city-app") -> str:
    with psycopg.connect(api.database_url) as connection:
        return add_client(connection, client_id, "The city's reporting page")


def report(api: ApiSession, key: str, **fields: object) -> Any:
    device = light()
    form: dict[str, object] = {
        "api_key": key,
        "service_code": "streetlight-dark",
        "lat": (device.latitude or 0.0) + NEARBY,
        "long": device.longitude,
        "description": "La lampe ne s'allume plus depuis hier",
        "locale": "fr",
    }
    form.update(fields)
    return api.client.post(
        f"{BASE}/requests.json", data={k: str(v) for k, v in form.items() if v is not None}
    )


def alerts_on(api: ApiSession, device_id: str) -> list[lifecycle.Alert]:
    with psycopg.connect(api.database_url) as connection:
        return [a for a, _ in store.alerts(connection, subject=device_id, limit=100)]


def test_the_services_are_named_in_french_arabic_and_english(api: ApiSession) -> None:
    for locale, dark in (
        ("fr", "Lampadaire éteint"),
        ("ar", "مصباح الشارع مطفأ"),
        ("en", "Streetlight out"),
    ):
        answer = api.client.get(f"{BASE}/services.json", params={"locale": locale})
        assert answer.status_code == 200
        services = answer.json()
        assert [s["service_code"] for s in services] == [kind.code for kind in SERVICES]
        assert services[0]["service_name"] == dark
    xml = api.client.get(f"{BASE}/services.xml")
    assert xml.headers["content-type"].startswith("text/xml")
    codes = [e.text for e in ElementTree.fromstring(xml.content).iter("service_code")]  # noqa: S314 - our own answer
    assert codes == [kind.code for kind in SERVICES]


def test_a_report_no_alert_knew_of_names_the_nearest_lights_and_raises_one_for_the_crews(
    api: ApiSession,
) -> None:
    key = key_for(api)
    answer = report(api, key)
    assert answer.status_code == 201, answer.text
    [filed] = answer.json()
    assert filed["service_notice"] == "Transmis à l'équipe de maintenance."
    request_id = int(filed["service_request_id"])
    device = light()
    with psycopg.connect(api.database_url) as connection:
        row = connection.execute(
            "SELECT devices, alert_id, client_id FROM citizen_reports WHERE request_id = %s",
            (request_id,),
        ).fetchone()
    assert row is not None
    devices, alert_id, client_id = row
    assert devices[0] == device.id, "the nearest light first"
    assert 1 <= len(devices) <= 3
    placed = {d.id: d for d in sefrou().devices}
    for other in devices:
        there = placed[other]
        assert (
            metres_between(
                (device.latitude or 0) + NEARBY,
                device.longitude or 0,
                there.latitude or 0,
                there.longitude or 0,
            )
            <= 40.0
        )
    assert client_id == "city-app"
    [raised] = alerts_on(api, device.id)
    assert (raised.alert_id, raised.rule_id, raised.status) == (
        alert_id,
        CITIZEN_REPORT,
        Status.FIRING,
    )
    assert raised.last_notified_at is None, "held for the rules engine to notify"
    assert f"citizen report {request_id}" in (raised.cause or "")
    shown = api.client.get(f"{BASE}/requests/{request_id}.json").json()
    assert shown[0]["status"] == "open"
    assert shown[0]["service_name"] == "Lampadaire éteint"
    english = api.client.get(f"{BASE}/requests/{request_id}.json", params={"locale": "en"})
    assert english.json()[0]["status_notes"] == "Sent to the maintenance crew."


def test_a_report_of_a_known_fault_is_linked_to_its_alert_and_closes_with_the_repair(
    api: ApiSession,
) -> None:
    device = light()
    now = datetime.now(UTC)
    with psycopg.connect(api.database_url) as connection:
        outcome = lifecycle.fire("lamp-out", device.id, Severity.CRITICAL, now, now)
        known, _ = store.insert_alert(connection, outcome, "Lamp out at night")
    answer = report(api, key_for(api), locale="ar")
    [filed] = answer.json()
    assert filed["service_notice"] == "العطل معروف: فريق يتكفل به."
    request_id = filed["service_request_id"]
    assert [a.rule_id for a in alerts_on(api, device.id)] == ["lamp-out"], "no second alert"
    again = report(api, key_for(api, "fixmystreet"))
    assert again.status_code == 201
    with psycopg.connect(api.database_url) as connection:
        repeated = connection.execute(
            "SELECT duplicate_of, alert_id FROM citizen_reports WHERE request_id = %s",
            (int(again.json()[0]["service_request_id"]),),
        ).fetchone()
        assert repeated == (int(request_id), known.alert_id), "grouped with the first report"
        store.change_alert(
            connection,
            known.alert_id or 0,
            lambda a: lifecycle.close(a, datetime.now(UTC), "crew-north", "LED driver replaced"),
        )
    closed = api.client.get(f"{BASE}/requests.json", params={"service_request_id": request_id})
    assert closed.json()[0]["status"] == "closed"
    assert closed.json()[0]["status_notes"] == "LED driver replaced"
    listed = api.client.get(f"{BASE}/requests.json", params={"status": "open"}).json()
    assert request_id not in [item["service_request_id"] for item in listed]


def test_a_report_far_from_any_light_is_kept_for_the_technical_service(api: ApiSession) -> None:
    device = light()
    answer = report(api, key_for(api), lat=(device.latitude or 0) + 0.02)  # 2 km north
    assert answer.status_code == 201
    assert answer.json()[0]["service_notice"].startswith("Aucun équipement de ce type ici")
    request_id = answer.json()[0]["service_request_id"]
    shown = api.client.get(f"{BASE}/requests/{request_id}.xml")
    assert ElementTree.fromstring(shown.content).findtext("request/status") == "open"  # noqa: S314 - our own answer


@pytest.mark.parametrize(
    ("fields", "status", "complaint"),
    [
        ({"api_key": "guess"}, 403, "api_key: unknown or revoked"),
        ({"api_key": None}, 403, "api_key"),
        ({"service_code": "pothole"}, 400, "service_code 'pothole': give one of"),
        ({"lat": "north"}, 400, "lat: give the place's lat"),
        ({"lat": 95}, 400, "is not a lat"),
        ({"long": "nan"}, 400, "is not a long"),
        ({"lat": 48.85, "long": 2.35}, 400, "outside the city"),
        ({"media_url": "ftp://example.ma/photo.jpg"}, 400, "media_url"),
        ({"email": "not-an-address"}, 400, "is not an e-mail address"),
        ({"description": "x" * 4_001}, 400, "at most 4000 characters"),
        ({"locale": "de"}, 400, "give fr, ar or en"),
        ({"description": "dark\x01lamp"}, 400, "description: control characters"),
    ],
)
def test_bad_reports_are_refused_with_geo_reports_errors(
    api: ApiSession, fields: dict[str, object], status: int, complaint: str
) -> None:
    key = key_for(api)
    answer = report(api, key, **({"api_key": key} | fields))
    assert answer.status_code == status
    [error] = answer.json()
    assert error["code"] == status
    assert complaint in error["description"]
    with psycopg.connect(api.database_url) as connection:
        stored = connection.execute("SELECT count(*) FROM citizen_reports").fetchone()
    assert stored == (0,), "nothing stored"


def test_unknown_formats_and_requests_are_refused(api: ApiSession) -> None:
    assert api.client.get(f"{BASE}/services.html").status_code == 404
    missing = api.client.get(f"{BASE}/requests/999.json")
    assert missing.status_code == 404
    assert missing.json()[0]["description"] == "there is no service request 999"
    assert api.client.get(f"{BASE}/requests.json", params={"status": "lost"}).status_code == 400
    bad_date = api.client.get(f"{BASE}/requests.json", params={"start_date": "yesterday"})
    assert bad_date.status_code == 400


def test_one_address_may_not_flood_the_crews(api: ApiSession) -> None:
    key = key_for(api)
    for _ in range(10):
        assert report(api, key).status_code == 201
    flooded = report(api, key)
    assert flooded.status_code == 429
    assert int(flooded.headers["Retry-After"]) > 0
    assert "too many reports from this address" in flooded.json()[0]["description"]


def test_a_client_key_from_the_command_line_works_until_revoked(api: ApiSession) -> None:
    env = {"DATABASE_URL": api.database_url, "SMARTCITY_DATABASE_URL": None}
    added = CliRunner().invoke(
        app, ["open311", "client-add", "fixmystreet", "--name", "FixMyStreet"], env=env
    )
    assert added.exit_code == 0, added.output
    key = added.stdout.split("api_key ")[1].split()[0]
    assert report(api, key).status_code == 201
    again = CliRunner().invoke(
        app, ["open311", "client-add", "fixmystreet", "--name", "x"], env=env
    )
    assert again.exit_code != 0
    assert "already a client 'fixmystreet'" in again.output
    revoked = CliRunner().invoke(app, ["open311", "client-revoke", "fixmystreet"], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert report(api, key).status_code == 403
    bad = CliRunner().invoke(
        app, ["open311", "client-add", "Fix My Street", "--name", "x"], env=env
    )
    assert bad.exit_code != 0
    assert "lower-case" in bad.output


def test_the_rules_engine_tells_the_crews_of_a_citizens_report(
    api: ApiSession, broker: LocalMosquitto, webhook: Webhook
) -> None:
    """The alert raised for a report is held, like the control services' alerts, and the
    rules engine notifies it at its next check, with the citizen's words in its cause."""
    config = RulesConfig(
        api.database_url,
        PACKAGED_RULES,
        mqtt_port=broker.port,
        notifications=parse_notification_config(
            "link_base: https://smartcity.sefrou.test/console\n"
            f'routes: [{{name: crews, urls: ["json://127.0.0.1:{webhook.port}/crews"]}}]\n'
        ),
        tick_s=0.2,
    )
    answer = report(api, key_for(api))
    assert answer.status_code == 201
    with running_engine(config):
        wait_until(lambda: bool(webhook.posts), 20, "the crews' notice")
    [(path, posted)] = webhook.posts
    assert path == "/crews"
    text = json.dumps(posted, ensure_ascii=False)
    assert "Panne signalée par un citoyen" in text
    [raised] = alerts_on(api, light().id)
    assert raised.last_notified_at is not None, "released and told"


def test_when_telemetry_confirms_a_report_it_follows_the_engines_alert(api: ApiSession) -> None:
    """The citizen's alert merged into the rules engine's (as the engine does when it raises
    one on the device): the report is answered by that alert, and closes with it."""
    answer = report(api, key_for(api))
    request_id = answer.json()[0]["service_request_id"]
    [citizens] = alerts_on(api, light().id)
    now = datetime.now(UTC)
    with psycopg.connect(api.database_url) as connection:
        outcome = lifecycle.fire("lamp-out", light().id, Severity.CRITICAL, now, now)
        confirmed, _ = store.insert_alert(connection, outcome, "Lamp out at night")
        assert store.merge_citizen_reports(connection, confirmed, now) == [citizens.alert_id]
    shown = api.client.get(f"{BASE}/requests/{request_id}.json", params={"locale": "en"})
    assert shown.json()[0]["status"] == "open"
    assert shown.json()[0]["status_notes"] == "Known fault: a crew is on it."
    again = report(api, key_for(api, "second-app"))
    with psycopg.connect(api.database_url) as connection:
        linked = connection.execute(
            "SELECT alert_id FROM citizen_reports WHERE request_id = %s",
            (int(again.json()[0]["service_request_id"]),),
        ).fetchone()
        store.change_alert(
            connection,
            confirmed.alert_id or 0,
            lambda a: lifecycle.close(a, datetime.now(UTC), "crew-north", "lamp replaced"),
        )
    assert linked == (confirmed.alert_id,), "the next report is grouped, answered by lamp-out"
    closed = api.client.get(f"{BASE}/requests/{request_id}.json").json()[0]
    assert (closed["status"], closed["status_notes"]) == ("closed", "lamp replaced")
