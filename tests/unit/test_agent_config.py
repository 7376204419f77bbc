"""A crew's mistakes in an agent's broker section: ``smartcity agent`` names the problem and
exits 2 before it connects anywhere (the agent on a pole must not loop on a bad file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from broker_config.pki import CertificateAuthority
from smartcity.cli import app

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "sl-menzel-n-001"


def run_agent_with(tmp_path: Path, broker: dict[str, object], **spool: object) -> tuple[int, str]:
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": "sefrou",
                "device_id": DEVICE,
                "device_class": "streetlight",
                "latitude": 33.83,
                "longitude": -4.84,
                "timezone": "Africa/Casablanca",
                "broker": broker,
                "spool": {"path": str(tmp_path / "spool.sqlite"), **spool},
                "driver": {"kind": "simulated", "site_file": str(ROOT / "sites" / "sefrou.yaml")},
            }
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["agent", "--config", str(config)])
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("correct horse battery staple\n", encoding="utf-8")
    return path


@pytest.fixture
def device_tls(tmp_path: Path) -> dict[str, object]:
    """A CA and the device's certificate and key, as `smartcity provision` bundles them."""
    authority = CertificateAuthority.load_or_create(tmp_path / "ca")
    issued = authority.issue_device(DEVICE)
    (tmp_path / "device.crt").write_bytes(issued.certificate_pem)
    (tmp_path / "device.key").write_bytes(issued.key_pem)
    return {
        "ca_file": str(authority.certificate_file),
        "certificate_file": str(tmp_path / "device.crt"),
        "key_file": str(tmp_path / "device.key"),
    }


def test_an_account_named_after_another_device_is_refused(
    tmp_path: Path, password_file: Path
) -> None:
    code, output = run_agent_with(
        tmp_path, {"username": "sl-menzel-n-002", "password_file": str(password_file)}
    )
    assert code == 2
    assert "broker.username 'sl-menzel-n-002' must be the device id 'sl-menzel-n-001'" in output


def test_an_empty_password_file_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "password"
    empty.write_text("\n", encoding="utf-8")
    code, output = run_agent_with(tmp_path, {"username": DEVICE, "password_file": str(empty)})
    assert code == 2
    assert f"the broker password file {empty} is empty" in output


def test_a_ca_file_that_is_not_a_certificate_is_named(
    tmp_path: Path, device_tls: dict[str, object]
) -> None:
    not_a_certificate = tmp_path / "ca.pem"
    not_a_certificate.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n", encoding="utf-8")
    code, output = run_agent_with(tmp_path, {**device_tls, "ca_file": str(not_a_certificate)})
    assert code == 2
    assert "broker TLS files" in output
    assert str(not_a_certificate) in output
    assert "cannot be used" in output


def test_a_truncated_device_certificate_is_named(
    tmp_path: Path, device_tls: dict[str, object]
) -> None:
    certificate = Path(str(device_tls["certificate_file"]))
    certificate.write_bytes(certificate.read_bytes()[:200])
    code, output = run_agent_with(tmp_path, device_tls)
    assert code == 2
    assert "broker TLS files" in output
    assert "cannot be used" in output


def test_a_key_of_another_certificate_is_named(
    tmp_path: Path, device_tls: dict[str, object]
) -> None:
    other = CertificateAuthority.load_or_create(tmp_path / "ca").issue_device(DEVICE)
    Path(str(device_tls["key_file"])).write_bytes(other.key_pem)
    code, output = run_agent_with(tmp_path, device_tls)
    assert code == 2
    assert "cannot be used" in output
    assert "key values mismatch" in output


def test_a_certificate_without_its_key_is_refused(
    tmp_path: Path, device_tls: dict[str, object]
) -> None:
    code, output = run_agent_with(tmp_path, {**device_tls, "key_file": None})
    assert code == 2
    assert "give both certificate_file and key_file, or neither" in output


def test_a_negative_replay_window_is_refused(tmp_path: Path) -> None:
    code, output = run_agent_with(tmp_path, {}, replay_window_s=-1)
    assert code == 2
    assert "spool.replay_window_s" in output
    assert "greater than or equal to 0" in output
