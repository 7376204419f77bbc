"""`smartcity up` end to end, with the test database: rows arrive, and it stops cleanly."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx2
import psycopg
import pytest

from broker_config.pki import CertificateAuthority
from protocol.mqtt_account import MqttAccount, TlsFiles
from runtime.local_services import free_port
from smartcity.up import UpOptions, run_platform
from tests.integration.helpers import TEST_SITE, scalar, wait_until
from tests.integration.secured_broker import connect

pytestmark = pytest.mark.integration


def test_up_runs_the_platform_until_asked_to_stop(empty_database_url: str, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(TEST_SITE)
    stop = threading.Event()
    options = UpOptions(
        site_file=site,
        state_dir=tmp_path / "state",
        mqtt_port=free_port(),
        postgres_port=free_port(),
        database_url=empty_database_url,
        metrics_port=0,
        api_port=free_port(),
        speed=600.0,  # every device reports within seconds
        mqtt_device_port=free_port(),
        mqtt_tls_port=free_port(),
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_platform(options, stop)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    def every_device_heard() -> bool:
        try:
            sql = "SELECT count(DISTINCT device_id) FROM telemetry"
            return scalar(empty_database_url, sql) == 22
        except psycopg.errors.UndefinedTable:
            return False  # not migrated yet

    logins = tmp_path / "state" / "demo-logins.txt"
    platform = threading.Thread(target=run)
    platform.start()
    try:
        wait_until(every_device_heard, timeout_s=60, what="every device of the site to be heard")
        wait_until(logins.exists, timeout_s=30, what="the demo logins to be written")
        crew_password = next(
            line.split()[2] for line in logins.read_text().splitlines() if line.startswith("crew ")
        )
        login = httpx2.post(
            f"http://127.0.0.1:{options.api_port}/api/v1/auth/login",
            json={"username": "crew", "password": crew_password},
        )
        assert login.status_code == 201, login.text
        assert set(login.json()["user"]["street_groups"]) == {"menzel"}
        # Every device got in with its own account; strangers do not.
        for port in (options.mqtt_port, options.mqtt_device_port):
            anonymous = connect(port, None, "stranger")
            assert anonymous.refused
            assert anonymous.connect_reason == "Not authorized"
        # The devices' TLS listener takes a certificate of the platform's CA.
        assert options.mqtt_tls_port is not None
        assert connect(options.mqtt_tls_port, None, "stranger-over-tls").refused
        authority = CertificateAuthority.load_or_create(tmp_path / "state" / "security" / "ca")
        issued = authority.issue_device("sl-099")
        (tmp_path / "d.crt").write_bytes(issued.certificate_pem)
        (tmp_path / "d.key").write_bytes(issued.key_pem)
        tls = TlsFiles(authority.certificate_file, tmp_path / "d.crt", tmp_path / "d.key")
        device = connect(options.mqtt_tls_port, MqttAccount("sl-099", None, tls), "sl-099")
        assert not device.refused, device.connect_reason
        # (its own topics would reach ingest as an unknown device's: a dead letter)
        assert device.publish("sc/sefrou/streetlight/sl-001/event") == "Not authorized"
        device.close()
    finally:
        stop.set()
        stopping = time.monotonic()
        platform.join(60)
    assert not platform.is_alive(), "up stopped"
    assert time.monotonic() - stopping < 30
    assert errors == []
    assert scalar(empty_database_url, "SELECT count(*) FROM dead_letters") == 0
