"""`smartcity broker`: the secured broker as an operator starts it, and its clear refusals."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker_config.accounts import Service
from protocol.mqtt_account import MqttAccount
from runtime.local_services import free_port, wait_for_port
from smartcity.cli import app
from tests.integration.secured_broker import connect

pytestmark = pytest.mark.integration


def test_the_broker_command_runs_secured_and_stops_on_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    port, device_port, tls_port = free_port(), free_port(), free_port()
    state_dir = tmp_path / "state"
    env = {**os.environ, "DATABASE_URL": database_url, "SMARTCITY_STATE_DIR": str(state_dir)}
    smartcity = shutil.which("smartcity", path=str(Path(sys.executable).parent))
    assert smartcity, "the smartcity command is installed beside this Python"
    command = [smartcity, "broker", "--port", str(port), "--tls-port", str(tls_port)]
    command += ["--device-port", str(device_port)]
    command += ["--tls-bind", "127.0.0.1", "--host", "broker.test"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 20)
        wait_for_port(tls_port, 20)
        assert connect(port, None, "anonymous").refused
        accounts = state_dir / "security" / "accounts"
        ingest = MqttAccount(Service.INGEST.user_name, (accounts / "ingest").read_text().strip())
        assert not connect(port, ingest, "svc-ingest").refused
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    text = output.decode()
    assert f"devices: TLS on 127.0.0.1:{tls_port}" in text
    assert f"simulated devices (passwords) on 127.0.0.1:{device_port}" in text
    assert "accounts: 5 services" in text
    assert "0 devices with a password" in text


def test_a_certificate_authority_missing_its_key_is_refused_not_replaced(tmp_path: Path) -> None:
    ca_dir = tmp_path / "state" / "security" / "ca"
    ca_dir.mkdir(parents=True)
    (ca_dir / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    result = CliRunner().invoke(
        app,
        [
            "broker",
            "--port",
            str(free_port()),
            "--tls-port",
            str(free_port()),
            "--device-port",
            "0",
        ],
        env={"SMARTCITY_STATE_DIR": str(tmp_path / "state"), "DATABASE_URL": ""},
    )
    assert result.exit_code == 2
    assert "holds only one of ca.crt and ca.key" in result.output
    assert not (ca_dir / "ca.key").exists()


def test_provisioning_credentials_for_a_bad_site_file_stores_nothing(
    database_url: str, tmp_path: Path
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: Not Valid}\n")
    result = CliRunner().invoke(
        app,
        ["provision", str(site), "--credentials", str(tmp_path / "bundles")],
        env={"DATABASE_URL": database_url, "SMARTCITY_STATE_DIR": str(tmp_path / "state")},
    )
    assert result.exit_code == 2
    assert "site" in result.output
    assert not (tmp_path / "bundles").exists()
    assert not (tmp_path / "state" / "security").exists()


def test_a_host_name_no_device_could_check_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["broker", "--port", str(free_port()), "--host", "é.example", "--device-port", "0"],
        env={"SMARTCITY_STATE_DIR": str(tmp_path / "state"), "DATABASE_URL": ""},
    )
    assert result.exit_code == 2
    assert "neither an IP address nor a DNS name" in result.output


def test_the_broker_command_refuses_a_port_already_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            app,
            ["broker", "--port", str(port), "--tls-port", "0", "--device-port", "0"],
            env={"SMARTCITY_STATE_DIR": str(tmp_path / "state"), "DATABASE_URL": ""},
        )
    assert result.exit_code == 2
    assert f"port {port} is already in use" in result.output


def test_a_second_interrupt_exits_at_once_and_leaves_no_broker_behind(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SMARTCITY_STATE_DIR": str(tmp_path / "state"), "DATABASE_URL": ""}
    smartcity = shutil.which("smartcity", path=str(Path(sys.executable).parent))
    assert smartcity, "the smartcity command is installed beside this Python"
    command = [smartcity, "broker", "--port", str(port), "--tls-port", "0", "--device-port", "0"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 20)
        config = str(tmp_path / "state" / "broker" / "mosquitto.conf")
        assert _running_with(config), "the broker runs"
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode in {0, 130}, output  # the first may have finished the stop already
    assert not _running_with(config), "no broker left running"


def _running_with(config: str) -> bool:
    found = subprocess.run(
        ["pgrep", "-f", f"mosquitto -c {config}"], capture_output=True, check=False
    )
    return found.returncode == 0
