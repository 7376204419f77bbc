"""The broker's configuration, accounts and certificates (no broker runs here; the ACL matrix
against a real Mosquitto is tests/integration/test_broker_security.py)."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker_config import (
    DEFAULT_AUTOSAVE,
    Autosave,
    BrokerConfigError,
    BrokerLayout,
    BrokerSecurity,
    DeviceListener,
    render,
    replace_if_changed,
    write_config,
)
from broker_config.accounts import (
    AccountError,
    Service,
    ensure_service_accounts,
    mosquitto_hash,
    mosquitto_hash_matches,
    new_device_password,
    password_file_text,
    service_hashes,
)
from broker_config.files import write_private
from broker_config.pki import CertificateAuthority, PkiError
from runtime.local_services import free_port
from smartcity.broker_security import BrokerAccess, SecurityFolder, sync_access

T0 = dt.datetime(2026, 12, 6, 8, tzinfo=dt.UTC)


def settings_of(text: str) -> list[tuple[str, str]]:
    return [
        tuple(line.split(" ", 1))  # type: ignore[misc]
        for line in text.splitlines()
        if line and not line.startswith("#")
    ]


def test_rendered_config_keeps_an_hour_of_outage_and_persists_often(tmp_path: Path) -> None:
    text = render(BrokerLayout(18830, tmp_path))
    settings = dict(settings_of(text))
    assert settings["listener"] == "18830 127.0.0.1"
    assert settings["persistence"] == "true"
    assert settings["persistence_location"] == f"{tmp_path}/"
    assert int(settings["autosave_interval"]) <= 5
    assert int(settings["max_queued_messages"]) >= 600_000
    assert "$" not in text


def test_the_platform_saves_every_2_s_unless_told_otherwise(tmp_path: Path) -> None:
    default = settings_of(render(BrokerLayout(18830, tmp_path)))
    assert ("autosave_interval", "2") in default
    assert ("autosave_on_changes", "false") in default
    explicit = BrokerLayout(18830, tmp_path, autosave=Autosave(interval=2, on_changes=False))
    assert render(explicit) == render(BrokerLayout(18830, tmp_path))
    assert Autosave(2, on_changes=False) == DEFAULT_AUTOSAVE


def test_an_autosave_setting_changes_those_two_lines_only(tmp_path: Path) -> None:
    default = settings_of(render(BrokerLayout(18830, tmp_path)))
    changed = settings_of(render(BrokerLayout(18830, tmp_path, autosave=Autosave(100, True))))
    assert [pair for pair in changed if pair not in default] == [
        ("autosave_interval", "100"),
        ("autosave_on_changes", "true"),
    ]
    assert len(changed) == len(default)


def test_an_autosave_that_would_never_save_is_refused() -> None:
    with pytest.raises(BrokerConfigError, match="1 or more"):
        Autosave(0)
    assert Autosave(1).label == "interval=1"
    assert Autosave(1000, on_changes=True).label == "changes=1000"


def test_an_open_broker_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigError, match="loopback"):
        render(BrokerLayout(18830, tmp_path, bind_address="0.0.0.0"))  # noqa: S104


def listener_blocks(text: str) -> dict[str, list[tuple[str, str]]]:
    """Each listener's settings, by its port."""
    blocks: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for key, value in settings_of(text):
        if key == "listener":
            current = blocks.setdefault(value.split()[0], [])
        elif current is not None and key in LISTENER_KEYS:
            current.append((key, value))
    return blocks


LISTENER_KEYS = {
    "allow_anonymous", "password_file", "acl_file", "use_username_as_clientid", "cafile",
    "certfile", "keyfile", "crlfile", "require_certificate", "use_identity_as_username",
    "tls_version",
}  # fmt: skip


def test_a_secured_broker_keeps_services_and_devices_apart(tmp_path: Path) -> None:
    listener = DeviceListener(18883, tmp_path / "ca.crt", tmp_path / "s.crt", tmp_path / "s.key")
    layout = BrokerLayout(18830, tmp_path, security=BrokerSecurity(listener, 18831))
    text = render(layout)
    assert ("per_listener_settings", "true") in settings_of(text)
    blocks = listener_blocks(text)
    assert set(blocks) == {"18830", "18831", "18883"}
    for settings in blocks.values():
        assert ("allow_anonymous", "false") in settings
        assert ("acl_file", str(layout.acl_file)) in settings
    assert ("password_file", str(layout.service_password_file)) in blocks["18830"]
    assert ("use_username_as_clientid", "true") not in blocks["18830"]
    assert ("password_file", str(layout.device_password_file)) in blocks["18831"]
    assert ("use_username_as_clientid", "true") in blocks["18831"]
    tls = blocks["18883"]
    assert ("require_certificate", "true") in tls
    assert ("use_identity_as_username", "true") in tls
    assert ("use_username_as_clientid", "true") in tls
    assert ("crlfile", str(layout.crl_file)) in tls
    assert ("cafile", str(tmp_path / "ca.crt")) in tls
    assert not any(key == "password_file" for key, _ in tls)
    assert layout.ports == [18830, 18831, 18883]


def test_writing_a_secured_config_starts_with_empty_private_password_files(
    tmp_path: Path,
) -> None:
    layout = BrokerLayout(18830, tmp_path / "broker", security=BrokerSecurity())
    write_config(layout)
    for path in (layout.service_password_file, layout.device_password_file):
        assert path.read_text() == ""
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "pattern read sc/+/+/%u/cmd" in layout.acl_file.read_text()
    assert replace_if_changed(layout.device_password_file, b"a:$7$x\n") is True
    assert replace_if_changed(layout.device_password_file, b"a:$7$x\n") is False


def test_a_secret_file_is_never_written_through_a_symbolic_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (tmp_path / "secret").symlink_to(target)
    with pytest.raises(OSError, match=r"symbolic link|Too many levels"):
        write_private(tmp_path / "secret", b"password")
    assert target.read_text() == "untouched"


def test_a_device_password_hash_is_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd (Debian package mosquitto) is not installed")
    password = new_device_password()
    password_file = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(password_file), "sl-menzel-n-001", password],
        check=True,
    )
    user, stored = password_file.read_text().strip().split(":", 1)
    assert user == "sl-menzel-n-001"
    assert mosquitto_hash_matches(password, stored)
    assert not mosquitto_hash_matches(password + "x", stored)
    salt = base64.b64decode(stored.split("$")[3])
    assert mosquitto_hash(password, salt) == stored


def test_a_malformed_mosquitto_hash_matches_nothing() -> None:
    assert not mosquitto_hash_matches("x", "plain-text")
    assert not mosquitto_hash_matches("x", "$6$abc$def")


def test_service_accounts_are_made_once_kept_private_and_hash_stably(tmp_path: Path) -> None:
    first = ensure_service_accounts(tmp_path / "accounts")
    again = ensure_service_accounts(tmp_path / "accounts")
    assert first == again
    assert {login.username for login in first.values()} == {
        "svc.ingest",
        "svc.rules",
        "svc.control",
        "svc.api",
        "svc.observer",
    }
    for service in Service:
        path = tmp_path / "accounts" / service.value
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    hashes = service_hashes(first)
    assert hashes == service_hashes(again)
    assert mosquitto_hash_matches(first[Service.API].password, hashes["svc.api"])


def test_the_password_file_is_sorted_and_refuses_what_mosquitto_would_misread() -> None:
    text = password_file_text({"b": "$7$1$s$h", "a": "$7$1$t$i"})
    assert text == "a:$7$1$t$i\nb:$7$1$s$h\n"
    with pytest.raises(AccountError, match="user name"):
        password_file_text({"a:b": "$7$1$s$h"})
    with pytest.raises(AccountError, match="not a Mosquitto"):
        password_file_text({"a": "plain"})


def test_the_ca_signs_a_server_and_a_device_certificate(tmp_path: Path) -> None:
    now = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", now=now)
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    server = x509.load_pem_x509_certificate(
        ca.issue_server(["broker.sefrou.ma", "127.0.0.1"], now).certificate_pem
    )
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.sefrou.ma"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    issued = ca.issue_device("sl-0001", now)
    device = x509.load_pem_x509_certificate(issued.certificate_pem)
    assert issued.serial == device.serial_number
    assert device.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sl-0001"
    usage = device.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    device.verify_directly_issued_by(ca.certificate)
    reloaded = CertificateAuthority.load_or_create(tmp_path / "ca")
    assert reloaded.certificate == ca.certificate


def test_a_half_present_ca_is_refused_rather_than_replaced(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    (ca.folder / "ca.key").unlink()
    with pytest.raises(PkiError, match="only one of"):
        CertificateAuthority.load_or_create(tmp_path / "ca")
    with pytest.raises(PkiError, match="at least one"):
        CertificateAuthority.load_or_create(tmp_path / "other").issue_server([])


def test_the_revocation_list_names_superseded_and_decommissioned_certificates(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    first_a, first_b = ca.issue_device("sl-a"), ca.issue_device("sl-b")
    ca.record_issued([(first_a.serial, "sl-a"), (first_b.serial, "sl-b")])
    never_recorded = ca.issue_device("sl-a")  # a provisioning interrupted half-way
    second_a = ca.issue_device("sl-a")
    ca.record_issued([(second_a.serial, "sl-a")])
    pem, count = ca.revocation_list(in_service={"sl-a"})
    crl = x509.load_pem_x509_crl(pem)
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    revoked = {entry.serial_number for entry in crl}
    # b is no longer in service; the certificate never put in force may sit in a bundle
    assert revoked == {first_a.serial, first_b.serial, never_recorded.serial}
    assert count == 3
    assert second_a.serial not in revoked
    _, without_registry = ca.revocation_list(in_service=None)
    assert without_registry == 2  # the superseded one and the one never put in force
    assert ca.pending_devices() == [(never_recorded.serial, "sl-a")]


def test_a_server_certificate_refuses_names_no_client_could_check(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    for bad in ("é.example", "", "-lead.example", "a" * 64 + ".example", "two words"):
        with pytest.raises(PkiError, match="neither an IP address nor a DNS name"):
            ca.issue_server([bad])
    long_but_valid = ".".join(["a" * 60] * 3)
    certificate = x509.load_pem_x509_certificate(ca.issue_server([long_but_valid]).certificate_pem)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [long_but_valid]


def test_without_its_database_the_sync_keeps_the_revocation_list_alive_and_complete(
    tmp_path: Path,
) -> None:
    """An expired list makes the broker refuse every certificate: with the database away,
    the sync makes it again, still naming a decommissioned device's certificate (which only
    the database knew) and the superseded ones (which the CA's index knows)."""
    folder = SecurityFolder(tmp_path / "security")
    ca = folder.certificate_authority()
    old_a, b = ca.issue_device("sl-a"), ca.issue_device("sl-b")
    ca.record_issued([(old_a.serial, "sl-a"), (b.serial, "sl-b")])
    new_a = ca.issue_device("sl-a")
    ca.record_issued([(new_a.serial, "sl-a")])
    layout = BrokerLayout(free_port(), tmp_path / "broker", security=BrokerSecurity())
    write_config(layout)
    crl_pem, revoked = ca.revocation_list(in_service={"sl-a"}, now=T0)  # b decommissioned
    layout.crl_file.write_bytes(crl_pem)
    assert revoked == 2
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/smartcity"
    access = BrokerAccess(layout, folder.service_logins(), unreachable, ca)
    services_before = layout.service_password_file.read_bytes()

    report = sync_access(access, now=T0 + dt.timedelta(days=2))

    assert report.database_error is not None
    assert report.changed, "a new list: the old one was two days old"
    crl = x509.load_pem_x509_crl(layout.crl_file.read_bytes())
    assert crl.last_update_utc > T0 + dt.timedelta(days=1)
    assert {entry.serial_number for entry in crl} == {old_a.serial, b.serial}
    assert layout.service_password_file.read_bytes() == services_before


def test_the_operator_chooses_the_autosave_through_a_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from smartcity.settings import Settings

    monkeypatch.delenv("SMARTCITY_BROKER_AUTOSAVE", raising=False)
    assert Settings(_env_file=None).autosave == DEFAULT_AUTOSAVE
    monkeypatch.setenv("SMARTCITY_BROKER_AUTOSAVE", " interval=1")
    assert Settings(_env_file=None).autosave == Autosave(1)
    monkeypatch.setenv("SMARTCITY_BROKER_AUTOSAVE", "changes=100")
    assert Settings(_env_file=None).autosave == Autosave(100, on_changes=True)
    monkeypatch.setenv("SMARTCITY_BROKER_AUTOSAVE", "every=3")
    with pytest.raises(ValidationError, match="interval=N"):
        Settings(_env_file=None)
