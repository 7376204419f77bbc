"""`smartcity up` end to end, with the test database: rows arrive, it stops cleanly, the
docs' mosquitto_pub example works as written, and a device added through the API while it
runs gets its first alert."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import psycopg
import pytest

from broker_config.pki import CertificateAuthority
from protocol.mqtt_account import MqttAccount, TlsFiles
from runtime.local_services import free_port
from smartcity.up import UpOptions, run_platform
from tests.integration.helpers import TEST_SITE, scalar, wait_until
from tests.integration.secured_broker import Probe, connect

pytestmark = pytest.mark.integration


ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Platform:
    options: UpOptions
    state_dir: Path
    database_url: str

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.options.api_port}/api/v1"

    def password_of(self, username: str) -> str:
        logins = self.state_dir / "demo-logins.txt"
        wait_until(logins.exists, timeout_s=30, what="the demo logins to be written")
        return next(
            line.split()[2]
            for line in logins.read_text().splitlines()
            if line.split()[0] == username
        )

    def token_of(self, username: str) -> str:
        login = httpx2.post(
            f"{self.api}/auth/login",
            json={"username": username, "password": self.password_of(username)},
        )
        assert login.status_code == 201, login.text
        return str(login.json()["token"])


@contextmanager
def running_up(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    """``up`` on the 22 devices of the test site, simulated 600 times faster than real
    time; stopped (and checked to stop within 30 s, without an error) on leaving."""
    site = tmp_path / "site.yaml"
    site.write_text(TEST_SITE)
    stop = threading.Event()
    options = UpOptions(
        site_file=site,
        state_dir=tmp_path / "state",
        mqtt_port=free_port(),
        postgres_port=free_port(),
        database_url=database_url,
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
            return scalar(database_url, sql) >= 22
        except psycopg.errors.UndefinedTable:
            return False  # not migrated yet

    platform = threading.Thread(target=run)
    platform.start()
    try:
        wait_until(every_device_heard, timeout_s=60, what="every device of the site to be heard")
        yield Platform(options, tmp_path / "state", database_url)
    finally:
        stop.set()
        stopping = time.monotonic()
        platform.join(60)
    assert not platform.is_alive(), "up stopped"
    assert time.monotonic() - stopping < 30
    assert errors == []


def test_up_runs_the_platform_until_asked_to_stop(empty_database_url: str, tmp_path: Path) -> None:
    with running_up(empty_database_url, tmp_path) as platform:
        options = platform.options
        crew_password = platform.password_of("crew")
        login = httpx2.post(
            f"{platform.api}/auth/login", json={"username": "crew", "password": crew_password}
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
    assert scalar(empty_database_url, "SELECT count(*) FROM dead_letters") == 0


def _docs_example() -> str:
    """The shell block of docs/protocol.md's "Try it with mosquitto_pub", for the test site
    (whose Menzel street group is called ``menzel``)."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text[text.index("## Try it with mosquitto_pub") :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, "docs/protocol.md lost its example"
    return match.group(1).replace('"route-el-menzel-north"', '"menzel"')


def test_the_protocol_docs_mosquitto_pub_example_works_as_written(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Every publish of the example is accepted the first time the broker lets the new
    device in (no simulated device takes its session back), and lands where the docs say."""
    with running_up(empty_database_url, tmp_path) as platform:
        platform.password_of("admin")  # up has written the demo logins the example reads
        environment = {
            **os.environ,
            "API": platform.api,
            "PORT": str(platform.options.mqtt_device_port),
            "SMARTCITY_STATE_DIR": str(platform.state_dir),
            "DATABASE_URL": empty_database_url,
        }
        script = "set -eu\n" + _docs_example()
        done = subprocess.run(
            ["bash", "-c", script],
            check=False,
            env=environment,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "battery_soc | 64.5" in done.stdout.replace("  ", " ")
        assert "out_of_range" in done.stdout or "out of range" in done.stdout, done.stdout
        events = "SELECT count(*) FROM device_events WHERE device_id = 'sl-try-001'"
        assert scalar(empty_database_url, events) == 1
        gone = (
            "SELECT count(*) FROM alerts WHERE subject = 'sl-try-001' AND rule_id = 'light-offline'"
        )
        assert scalar(empty_database_url, gone) == 0, "no session was taken over"


def test_a_sign_added_through_the_api_while_up_runs_gets_its_first_alert_within_the_rule_bound(
    empty_database_url: str, tmp_path: Path
) -> None:
    """No restart, no signal: provisioned, it connects with the password the API gave, sends
    its supply voltage at 150 V (the rule: below 180 V for 3 minutes), and the alert comes
    when the rule's 3 minutes since its first low reading are up."""
    with running_up(empty_database_url, tmp_path) as platform:
        token = platform.token_of("admin")
        answer = httpx2.post(
            f"{platform.api}/devices",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "id": "sign-2",
                "device_class": "signage",
                "site_id": "sefrou",
                "name": "New sign",
                "model": "vms-3-line-amber",
                "latitude": 33.828,
                "longitude": -4.822,
            },
        )
        assert answer.status_code == 201, answer.text
        credentials = answer.json()["credentials"]
        assert credentials["broker_port"] == platform.options.mqtt_device_port
        first = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=4)
        samples = [
            {
                "ts": (first + timedelta(seconds=30 * i)).isoformat(),
                "values": {"supply_voltage": 150.0},
            }
            for i in range(9)  # every 30 s for 4 minutes, sent as the agent sends a backlog
        ]
        payload = json.dumps({"v": 1, "seq": 1, "samples": samples}).encode()
        device = _connected_when_let_in(
            credentials["broker_port"], credentials["username"], credentials["password"]
        )
        try:
            topic = f"{credentials['topic_prefix']}/telemetry"
            assert device.publish(topic, payload) == "Success"
        finally:
            device.close()

        def supply_alerts() -> list[tuple[datetime, datetime]]:
            with psycopg.connect(empty_database_url) as connection:
                rows = connection.execute(
                    "SELECT started_at, fired_at FROM alerts"
                    " WHERE subject = 'sign-2' AND rule_id = 'sign-supply-failure'"
                ).fetchall()
            return [(row[0], row[1]) for row in rows]

        wait_until(lambda: bool(supply_alerts()), 30, "the new sign's supply alert")
        [(started_at, fired_at)] = supply_alerts()
    assert started_at == first, "the fault is dated from its first low reading"
    assert fired_at - started_at <= timedelta(minutes=3, seconds=30), "within 3 min + a report"


def _connected_when_let_in(port: int, username: str, password: str) -> Probe:
    """The device's session, once the broker's access sync has let it in (within 10 s)."""
    deadline = time.monotonic() + 30
    while True:
        probe = connect(port, MqttAccount(username, password), username)
        if not probe.refused:
            return probe
        probe.close()
        assert time.monotonic() < deadline, f"the broker never let {username} in"
        time.sleep(1)
