"""The device registry through the API: listing, detail, groups, provisioning with MQTT
credentials, changes and decommissioning, against the real database (and ingest for a newly
provisioned device)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.config import ApiConfig, DeviceBroker
from broker_config.accounts import Service, mosquitto_hash_matches
from protocol.mqtt_account import MqttAccount
from protocol.topics import DeviceClass
from runtime.local_services import LocalMosquitto
from smartcity.broker_security import sync_access
from storage.registry import load_registry, upsert_site
from storage.writer import BatchWriter, StorageBatch, telemetry_rows
from tests.integration.api_fixtures import ApiSession, add_people, sefrou
from tests.integration.helpers import publisher, running_ingest, wait_until
from tests.integration.secured_broker import SecuredBroker, connect, secured_broker

pytestmark = pytest.mark.integration
__all__ = ["secured_broker"]

DEVICES = "/api/v1/devices"
NOT_ADMINS = ("technician", "energy", "crew-north")
READERS = ("technician", "energy", "admin")
NEW_LIGHT = {
    "id": "sl-new-001",
    "device_class": "streetlight",
    "site_id": "sefrou",
    "name": "New light, rue 1",
    "model": "sl-60w",
    "latitude": 33.8301,
    "longitude": -4.8402,
    "street_group": "route-el-menzel-north",
    "cabinet": "menzel-n-c1",
    "metadata": {"place_kind": "road", "ratings": {"lamp_w": 1}},
}


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


def _add_state(url: str, device_id: str, status: str, at: datetime) -> None:
    with psycopg.connect(url) as connection:
        connection.execute(
            "INSERT INTO device_states (ts, device_id, status, reason, boot_id, firmware,"
            " received_at) VALUES (%s, %s, %s, %s, 'boot-1', '1.4.2', %s)",
            (at, device_id, status, "lost" if status == "offline" else None, at),
        )


def _credentials(url: str, device_id: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as connection:
        return [
            (row[0], row[1], row[2])
            for row in connection.execute(
                "SELECT username, password_hash, created_by FROM device_credentials"
                " WHERE device_id = %s",
                (device_id,),
            )
        ]


def _audit(url: str, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    with psycopg.connect(url) as connection:
        return [
            (row[0], row[1], row[2])
            for row in connection.execute(
                "SELECT actor, target, detail FROM audit_log WHERE action = %s ORDER BY id",
                (action,),
            )
        ]


# ----------------------------------------------------------------------------- reading


def test_readers_list_the_registry_by_page_with_filters(api: ApiSession) -> None:
    fleet = sefrou().devices
    for who in READERS:
        response = api.client.get(DEVICES, headers=api.headers(who), params={"limit": 5})
        assert response.status_code == 200, (who, response.text)
    page = response.json()
    assert page["total"] == len(fleet)
    assert [d["device_id"] for d in page["items"]] == sorted(d.id for d in fleet)[:5]
    second = api.client.get(
        DEVICES, headers=api.headers("technician"), params={"limit": 5, "offset": 5}
    ).json()
    assert [d["device_id"] for d in second["items"]] == sorted(d.id for d in fleet)[5:10]

    def ids(**params: str) -> list[str]:
        query: dict[str, str | int] = {"limit": 500, **params}
        found = api.client.get(DEVICES, headers=api.headers("technician"), params=query)
        assert found.status_code == 200, found.text
        return [d["device_id"] for d in found.json()["items"]]

    assert (
        len(ids(device_class="building"))
        == Counter(d.device_class for d in fleet)[DeviceClass.BUILDING]
    )
    north = [d for d in fleet if d.street_group == "route-el-menzel-north"]
    assert ids(street_group="route-el-menzel-north") == sorted(d.id for d in north)
    assert ids(cabinet="menzel-n-c2") == sorted(d.id for d in north if d.cabinet == "menzel-n-c2")
    assert ids(building="town-hall", zone="archives") == ["town-hall-archives"]
    assert len(ids(model="vms-3-line-amber")) == sum(d.model == "vms-3-line-amber" for d in fleet)
    assert ids(q="MENZEL-N-00", device_class="streetlight") == [
        f"sl-menzel-n-{n:03d}" for n in range(1, 10)
    ]
    assert ids(q="100%_") == [], "wildcards in the search are taken literally"


def test_status_comes_from_the_latest_state_message(api: ApiSession) -> None:
    now = datetime.now(UTC)
    _add_state(api.database_url, "sl-menzel-n-001", "online", now - timedelta(hours=2))
    _add_state(api.database_url, "sl-menzel-n-002", "online", now - timedelta(hours=2))
    _add_state(api.database_url, "sl-menzel-n-002", "offline", now - timedelta(minutes=5))
    headers = api.headers("technician")

    def ids(status: str) -> list[str]:
        response = api.client.get(
            DEVICES,
            headers=headers,
            params={"status": status, "street_group": "route-el-menzel-north", "limit": 500},
        )
        return [d["device_id"] for d in response.json()["items"]]

    assert ids("online") == ["sl-menzel-n-001"]
    assert ids("offline") == ["sl-menzel-n-002"]
    assert len(ids("never-seen")) == 69 - 2
    offline = api.client.get(f"{DEVICES}/sl-menzel-n-002", headers=headers).json()
    assert (offline["status"], offline["status_reason"]) == ("offline", "lost")
    assert offline["firmware"] == "1.4.2"


def test_the_detail_of_a_device_shows_last_seen_and_open_alerts(api: ApiSession) -> None:
    sample_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    with psycopg.connect(api.database_url, autocommit=True) as connection:
        BatchWriter(connection).write(
            StorageBatch(
                telemetry={
                    DeviceClass.STREETLIGHT: telemetry_rows(
                        DeviceClass.STREETLIGHT,
                        {("sl-menzel-n-003", sample_at): {"battery_soc": 50.0}},
                    )
                }
            )
        )
        for rule, status in (("lamp-out", "firing"), ("tilt", "acknowledged"), ("x", "closed")):
            connection.execute(
                "INSERT INTO alerts (rule_id, subject, severity, status, started_at, fired_at)"
                " VALUES (%s, 'sl-menzel-n-003', 'warning', %s, now(), now())",
                (rule, status),
            )
    response = api.client.get(f"{DEVICES}/sl-menzel-n-003", headers=api.headers("energy"))
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["device_class"] == "streetlight"
    assert detail["street_group"] == "route-el-menzel-north"
    assert detail["metadata"]["ratings"]["lamp_w"] == 60
    assert datetime.fromisoformat(detail["last_seen_at"]) == sample_at
    assert detail["open_alerts"] == 2
    assert detail["status"] == "never-seen"
    assert detail["has_credentials"] is False


def test_reading_devices_is_refused_to_crews_and_bad_ids(api: ApiSession) -> None:
    assert api.client.get(DEVICES).status_code == 401
    for url in (DEVICES, f"{DEVICES}/sl-menzel-n-001", "/api/v1/groups"):
        problem = _problem(api.client.get(url, headers=api.headers("crew-north")), 403)
        assert "needs the role" in problem["detail"]
    tech = api.headers("technician")
    assert (
        "no device 'sl-nowhere'"
        in _problem(api.client.get(f"{DEVICES}/sl-nowhere", headers=tech), 404)["detail"]
    )
    _problem(api.client.get(f"{DEVICES}/Bad_Id", headers=tech), 422)
    _problem(api.client.get(DEVICES, headers=tech, params={"limit": 501}), 422)
    _problem(api.client.get(DEVICES, headers=tech, params={"status": "asleep"}), 422)
    _problem(api.client.get(DEVICES, headers=tech, params={"q": "x" * 101}), 422)


def test_groups_list_places_with_their_device_counts(api: ApiSession) -> None:
    response = api.client.get("/api/v1/groups", headers=api.headers("technician"))
    assert response.status_code == 200, response.text
    groups = response.json()
    north = next(g for g in groups["street_groups"] if g["name"] == "route-el-menzel-north")
    assert north["devices"] == 69
    assert north["cabinets"] == ["menzel-n-c1", "menzel-n-c2"]
    assert set(north["device_classes"]) == {"streetlight", "signage"}
    cabinet = next(c for c in groups["cabinets"] if c["name"] == "menzel-n-c1")
    assert (cabinet["devices"], cabinet["street_groups"]) == (33, ["route-el-menzel-north"])
    hall = next(b for b in groups["buildings"] if b["name"] == "town-hall")
    assert hall["devices"] == 5
    assert {z["name"] for z in hall["zones"]} >= {"archives", "reception"}
    assert hall["display_name"] != ""
    classes = {c["device_class"]: c["devices"] for c in groups["classes"]}
    fleet = Counter(d.device_class.value for d in sefrou().devices)
    assert classes == dict(fleet)
    other_site = api.client.get(
        "/api/v1/groups", headers=api.headers("technician"), params={"site": "elsewhere"}
    ).json()
    assert other_site == {"street_groups": [], "cabinets": [], "buildings": [], "classes": []}


# ----------------------------------------------------------------------------- provisioning


def test_an_admin_provisions_a_device_and_sees_its_password_once(api: ApiSession) -> None:
    admin = api.headers("admin")
    response = api.client.post(DEVICES, headers=admin, json=NEW_LIGHT)
    assert response.status_code == 201, response.text
    provisioned = response.json()
    credentials = provisioned["credentials"]
    password = credentials["password"]
    assert credentials["username"] == "sl-new-001"
    assert credentials["topic_prefix"] == "sc/sefrou/streetlight/sl-new-001"
    config = api.client.app.state.api.config  # type: ignore[attr-defined]
    assert credentials["broker_port"] == config.device_broker.password_port
    assert credentials["broker_port"] != config.mqtt_port, "never the services' listener"
    assert credentials["broker_tls_port"] == config.device_broker.tls_port
    [(username, stored_hash, created_by)] = _credentials(api.database_url, "sl-new-001")
    assert (username, created_by) == ("sl-new-001", "admin")
    assert stored_hash.startswith("$7$")
    assert mosquitto_hash_matches(password, stored_hash)
    assert not mosquitto_hash_matches(password + "x", stored_hash)
    device = provisioned["device"]
    assert device["status"] == "never-seen"
    assert device["has_credentials"] is True
    # The model's ratings, not the caller's, as a site file would have written them.
    assert device["metadata"] == {
        "place_kind": "road",
        "ratings": {"lamp_w": 60.0, "panel_wp": 200.0, "battery_wh": 1300.0},
    }
    again = api.client.get(f"{DEVICES}/sl-new-001", headers=admin)
    assert again.status_code == 200
    assert password not in again.text
    assert "password" not in again.json()
    with psycopg.connect(api.database_url) as connection:
        assert load_registry(connection)["sl-new-001"].device_class is DeviceClass.STREETLIGHT
        logged = connection.execute("SELECT detail::text FROM audit_log").fetchall()
    assert _audit(api.database_url, "device.provision") == [
        (
            "admin",
            "sl-new-001",
            {"site": "sefrou", "device_class": "streetlight", "model": "sl-60w"},
        )
    ]
    assert not any(password in text for (text,) in logged)


def test_provisioning_is_refused_to_non_admins_and_for_bad_devices(api: ApiSession) -> None:
    for who in NOT_ADMINS:
        problem = _problem(api.client.post(DEVICES, headers=api.headers(who), json=NEW_LIGHT), 403)
        assert "needs the role admin" in problem["detail"]
    admin = api.headers("admin")
    for bad_id in ("SL-1", "-sl", "sl_1", "x" * 65, ""):
        _problem(api.client.post(DEVICES, headers=admin, json={**NEW_LIGHT, "id": bad_id}), 422)
    taken = api.client.post(DEVICES, headers=admin, json={**NEW_LIGHT, "id": "sl-menzel-n-001"})
    assert "already exists" in _problem(taken, 409)["detail"]
    site = api.client.post(DEVICES, headers=admin, json={**NEW_LIGHT, "site_id": "fes"})
    assert "unknown site 'fes'; known sites: sefrou" in _problem(site, 422)["detail"]
    model = api.client.post(DEVICES, headers=admin, json={**NEW_LIGHT, "model": "sl-90w"})
    assert "unknown streetlight model 'sl-90w'" in _problem(model, 422)["detail"]
    assert "sl-60w" in _problem(model, 422)["detail"]
    wrong_class = api.client.post(
        DEVICES, headers=admin, json={**NEW_LIGHT, "model": "vms-3-line-amber"}
    )
    _problem(wrong_class, 422)
    zone = api.client.post(
        DEVICES,
        headers=admin,
        json={"id": "hall-new", "device_class": "building", "site_id": "sefrou",
              "building": "town-hall"},
    )  # fmt: skip
    assert "building and its zone" in json.dumps(_problem(zone, 422))
    far = api.client.post(DEVICES, headers=admin, json={**NEW_LIGHT, "latitude": 91})
    _problem(far, 422)
    assert _credentials(api.database_url, "sl-new-001") == []


def test_a_building_zone_is_provisioned_without_a_rated_model(api: ApiSession) -> None:
    response = api.client.post(
        DEVICES,
        headers=api.headers("admin"),
        json={"id": "town-hall-annex", "device_class": "building", "site_id": "sefrou",
              "building": "town-hall", "zone": "annex", "model": "knx zone sensor",
              "metadata": {"area_m2": 40, "heating": True, "cooling": False}},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    device = response.json()["device"]
    assert device["metadata"] == {"area_m2": 40, "heating": True, "cooling": False, "ratings": {}}
    groups = api.client.get("/api/v1/groups", headers=api.headers("technician")).json()
    hall = next(b for b in groups["buildings"] if b["name"] == "town-hall")
    assert "annex" in {z["name"] for z in hall["zones"]}


def test_credentials_are_rotated_and_the_old_password_stops_matching(api: ApiSession) -> None:
    admin = api.headers("admin")
    first = api.client.post(DEVICES, headers=admin, json=NEW_LIGHT).json()["credentials"]
    url = f"{DEVICES}/sl-new-001/credentials"
    for who in NOT_ADMINS:
        _problem(api.client.post(url, headers=api.headers(who)), 403)
    rotated = api.client.post(url, headers=admin)
    assert rotated.status_code == 201, rotated.text
    second = rotated.json()
    assert second["password"] != first["password"]
    [(_, stored_hash, _)] = _credentials(api.database_url, "sl-new-001")
    assert mosquitto_hash_matches(second["password"], stored_hash)
    assert not mosquitto_hash_matches(first["password"], stored_hash)
    # A device of a site file gets its first credentials the same way.
    fleet_device = api.client.post(f"{DEVICES}/sl-menzel-n-004/credentials", headers=admin)
    assert fleet_device.status_code == 201
    _problem(api.client.post(f"{DEVICES}/sl-nowhere/credentials", headers=admin), 404)
    assert [target for _, target, _ in _audit(api.database_url, "device.credentials")] == [
        "sl-new-001",
        "sl-menzel-n-004",
    ]


def test_an_admin_changes_a_device_and_its_ratings_stay(api: ApiSession) -> None:
    admin = api.headers("admin")
    url = f"{DEVICES}/sl-menzel-n-005"
    change = {"name": "Menzel north #5 (moved)", "latitude": 33.9, "cabinet": None,
              "metadata": {"place_kind": "square"}}  # fmt: skip
    for who in NOT_ADMINS:
        _problem(api.client.patch(url, headers=api.headers(who), json=change), 403)
    response = api.client.patch(url, headers=admin, json=change)
    assert response.status_code == 200, response.text
    device = response.json()
    assert device["name"] == "Menzel north #5 (moved)"
    assert device["latitude"] == 33.9
    assert device["cabinet"] is None
    assert device["street_group"] == "route-el-menzel-north", "fields left out are kept"
    assert device["metadata"] == {"place_kind": "square", "ratings": {
        "lamp_w": 60.0, "panel_wp": 200.0, "battery_wh": 1300.0}}  # fmt: skip
    assert _audit(api.database_url, "device.change") == [
        ("admin", "sl-menzel-n-005", {"fields": ["cabinet", "latitude", "metadata", "name"]})
    ]
    _problem(api.client.patch(f"{DEVICES}/sl-nowhere", headers=admin, json=change), 404)
    _problem(api.client.patch(url, headers=admin, json={"longitude": 200}), 422)
    _problem(api.client.patch(url, headers=admin, json={"street_group": "Not An Id"}), 422)
    hall = api.client.patch(f"{DEVICES}/town-hall-archives", headers=admin, json={"zone": None})
    assert "keeps its building and zone" in _problem(hall, 422)["detail"]


def test_a_decommissioned_device_leaves_service_and_keeps_its_history(api: ApiSession) -> None:
    admin = api.headers("admin")
    api.client.post(DEVICES, headers=admin, json=NEW_LIGHT)
    url = f"{DEVICES}/sl-new-001"
    for who in NOT_ADMINS:
        _problem(api.client.delete(url, headers=api.headers(who)), 403)
    assert api.client.delete(url, headers=admin).status_code == 204
    detail = api.client.get(url, headers=admin).json()
    assert detail["decommissioned_at"] is not None
    assert detail["has_credentials"] is False
    listed = api.client.get(DEVICES, headers=admin, params={"q": "sl-new"}).json()
    assert listed["total"] == 0
    everything = api.client.get(
        DEVICES, headers=admin, params={"q": "sl-new", "include_decommissioned": True}
    ).json()
    assert [d["device_id"] for d in everything["items"]] == ["sl-new-001"]
    with psycopg.connect(api.database_url) as connection:
        assert "sl-new-001" not in load_registry(connection)
    assert "decommissioned" in _problem(api.client.delete(url, headers=admin), 409)["detail"]
    _problem(api.client.patch(url, headers=admin, json={"name": "x"}), 409)
    _problem(api.client.post(f"{url}/credentials", headers=admin), 409)
    again = api.client.post(DEVICES, headers=admin, json=NEW_LIGHT)
    assert "already exists (decommissioned)" in _problem(again, 409)["detail"]
    _problem(api.client.delete(f"{DEVICES}/sl-nowhere", headers=admin), 404)
    assert [a[1] for a in _audit(api.database_url, "device.decommission")] == ["sl-new-001"]


def test_ingest_stores_the_telemetry_of_a_device_provisioned_through_the_api(
    api: ApiSession, broker: LocalMosquitto
) -> None:
    with running_ingest(api.database_url, broker.port):
        response = api.client.post(DEVICES, headers=api.headers("admin"), json=NEW_LIGHT)
        prefix = response.json()["credentials"]["topic_prefix"]
        sample = {"ts": datetime.now(UTC).isoformat(), "values": {"battery_soc": 77.5}}
        payload = json.dumps({"v": 1, "seq": 1, "samples": [sample]}).encode()
        with publisher(broker.port) as device:
            device.publish_all([(f"{prefix}/telemetry", payload)])

        def stored() -> bool:
            latest = api.client.get(
                f"{DEVICES}/sl-new-001/telemetry/latest", headers=api.headers("technician")
            ).json()
            return [v["value"] for v in latest["values"]] == [77.5]

        wait_until(stored, timeout_s=20, what="the new device's sample in the database")


def test_a_device_provisioned_through_the_api_gets_in_where_the_answer_sends_it(
    secured_broker: SecuredBroker, database_url: str
) -> None:
    """The answer names the broker's listener for devices, not the services' (which refuses
    devices with CONNACK 135), and the password works there once the broker has synced."""
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, sefrou())
    tokens = add_people(database_url)
    config = ApiConfig(
        database_url=database_url,
        mqtt_port=secured_broker.broker.port,
        mqtt_account=secured_broker.service(Service.API),
        device_broker=DeviceBroker(
            "127.0.0.1", secured_broker.device_port, secured_broker.tls_port
        ),
    )
    with TestClient(create_app(config)) as client:
        answer = client.post(
            DEVICES, headers={"Authorization": f"Bearer {tokens['admin']}"}, json=NEW_LIGHT
        )
    assert answer.status_code == 201, answer.text
    credentials = answer.json()["credentials"]
    assert (credentials["broker_port"], credentials["broker_tls_port"]) == (
        secured_broker.device_port,
        secured_broker.tls_port,
    )
    sync_access(secured_broker.access(database_url))
    secured_broker.broker.reload()
    account = MqttAccount(credentials["username"], credentials["password"])
    at_the_services = connect(secured_broker.broker.port, account, account.username)
    assert at_the_services.refused
    admitted = connect(credentials["broker_port"], account, account.username)
    assert not admitted.refused, admitted.connect_reason
    admitted.close()


def test_a_device_is_refused_a_street_group_or_building_its_site_lacks(api: ApiSession) -> None:
    """A device in a place no crew has would be seen by nobody: 422, as for silences."""
    admin = api.headers("admin")
    typo = {**NEW_LIGHT, "street_group": "route-el-menzel-xyz"}
    problem = _problem(api.client.post(DEVICES, headers=admin, json=typo), 422)
    assert "street group 'route-el-menzel-xyz'" in problem["detail"]
    assert _credentials(api.database_url, "sl-new-001") == []
    assert api.client.post(DEVICES, headers=admin, json=NEW_LIGHT).status_code == 201
    moved = api.client.patch(
        f"{DEVICES}/sl-new-001", headers=admin, json={"street_group": "route-el-menzel-xyz"}
    )
    assert "route-el-menzel-xyz" in _problem(moved, 422)["detail"]
    zone = api.client.patch(
        f"{DEVICES}/sl-new-001", headers=admin, json={"building": "no-such-building"}
    )
    assert "building 'no-such-building'" in _problem(zone, 422)["detail"]
    kept = api.client.get(f"{DEVICES}/sl-new-001", headers=admin).json()
    assert (kept["street_group"], kept["building"]) == ("route-el-menzel-north", None)
    elsewhere = api.client.patch(
        f"{DEVICES}/sl-new-001", headers=admin, json={"street_group": "route-de-fes"}
    )
    assert elsewhere.status_code == 200, elsewhere.text
