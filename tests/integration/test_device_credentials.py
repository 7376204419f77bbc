"""`smartcity provision --credentials` end to end: a device's bundle gets a real edge agent
over TLS into the secured broker, and what it sends is stored; nothing else gets in."""

from __future__ import annotations

import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from broker_config import BrokerSecurity
from broker_config.accounts import Service, mosquitto_hash_matches
from protocol.mqtt_account import MqttAccount, TlsFiles
from runtime.local_services import LocalMosquitto, free_port
from smartcity.broker_security import BrokerAccess, SecurityFolder, sync_access
from smartcity.cli import app
from tests.integration.helpers import TEST_SITE, running_ingest, scalar, wait_until
from tests.integration.secured_broker import connect

pytestmark = pytest.mark.integration
DEVICE = "sl-001"


def provision(site: Path, env: dict[str, str], *options: str) -> str:
    result = CliRunner().invoke(app, ["provision", str(site), *options], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_provisioned_device_reports_over_tls_and_its_samples_are_stored(
    database_url: str, tmp_path: Path
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(TEST_SITE)
    state_dir, bundles = tmp_path / "state", tmp_path / "bundles"
    tls_port = free_port()
    env = {"DATABASE_URL": database_url, "SMARTCITY_STATE_DIR": str(state_dir)}
    output = provision(
        site, env, "--credentials", str(bundles), "--broker-host", "localhost",
        "--broker-port", str(tls_port),
    )  # fmt: skip
    assert "credentials: 22 devices" in output
    bundle = bundles / DEVICE
    for secret in ("password", "device.key"):
        assert stat.S_IMODE((bundle / secret).stat().st_mode) == 0o600
    password = (bundle / "password").read_text().strip()
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT password_hash FROM device_credentials WHERE device_id = %s", (DEVICE,)
        ).fetchone()
    assert row is not None
    assert mosquitto_hash_matches(password, row[0])
    again = provision(site, env, "--credentials", str(tmp_path / "more"))
    assert "credentials: 0 devices" in again  # existing credentials are kept without --rotate
    assert not (tmp_path / "more").exists()

    security = SecurityFolder(state_dir.resolve() / "security")
    listener = security.device_listener(tls_port, ["localhost"], "127.0.0.1")
    broker = LocalMosquitto(tmp_path / "broker", free_port(), security=BrokerSecurity(listener))
    access = BrokerAccess(
        broker.layout, security.service_logins(), database_url, security.certificate_authority()
    )
    sync_access(access)
    broker.start()
    agent_process: subprocess.Popen[bytes] | None = None
    try:
        ingest_account = security.service_account(Service.INGEST)
        with running_ingest(database_url, broker.port, mqtt_account=ingest_account):
            agent_file = tmp_path / "agent.yaml"
            agent_file.write_text(agent_configuration(bundle, site, tmp_path / "spool.sqlite"))
            smartcity = shutil.which("smartcity", path=str(Path(sys.executable).parent))
            assert smartcity, "the smartcity command is installed beside this Python"
            with (tmp_path / "agent.log").open("ab") as log:
                agent_process = subprocess.Popen(
                    [smartcity, "agent", "--config", str(agent_file)], stdout=log, stderr=log
                )
            count = "SELECT count(DISTINCT ts) FROM telemetry WHERE device_id = %s"
            wait_until(
                lambda: scalar(database_url, count, (DEVICE,)) >= 3, 60, "three samples stored"
            )
            # The same password without the certificate, or anonymously, is refused.
            assert connect(broker.port, None, "anonymous").refused
            stolen_password = MqttAccount(DEVICE, password, TlsFiles(bundle / "ca.crt"))
            assert connect(tls_port, stolen_password, "thief").refused
            # Rotated: the old certificate is revoked at the next sync, the new one works.
            output = provision(
                site, env, "--credentials", str(tmp_path / "new"), "--device", DEVICE
            )
            assert "credentials: 1 devices" in output
            assert sync_access(access).revoked == 1
            broker.reload()
            old = MqttAccount(
                DEVICE,
                None,
                TlsFiles(bundle / "ca.crt", bundle / "device.crt", bundle / "device.key"),
            )
            wait_until(lambda: connect(tls_port, old, DEVICE).refused, 10, "the old one refused")
            renewed = tmp_path / "new" / DEVICE
            new = MqttAccount(
                DEVICE,
                None,
                TlsFiles(renewed / "ca.crt", renewed / "device.crt", renewed / "device.key"),
            )
            assert not connect(tls_port, new, DEVICE + "-new").refused
            agent_process.send_signal(signal.SIGTERM)
            assert agent_process.wait(20) == 0
        assert scalar(database_url, "SELECT count(*) FROM dead_letters") == 0
    finally:
        if agent_process is not None and agent_process.poll() is None:
            agent_process.kill()
        broker.kill()


def agent_configuration(bundle: Path, site: Path, spool: Path) -> str:
    """The bundle's broker section, with its files where the test keeps them, in a whole agent
    configuration (docs/agent.md)."""
    section = yaml.safe_load((bundle / "broker.yaml").read_text())["broker"]
    for key in ("password_file", "ca_file", "certificate_file", "key_file"):
        section[key] = str(bundle / Path(section[key]).name)
    return yaml.safe_dump(
        {
            "site": "sefrou", "device_id": DEVICE, "device_class": "streetlight",
            "latitude": 33.83, "longitude": -4.84, "timezone": "Africa/Casablanca",
            "broker": section, "spool": {"path": str(spool)},
            "sampling": {"interval_s": 1},
            "driver": {"kind": "simulated", "site_file": str(site)},
        }
    )  # fmt: skip
