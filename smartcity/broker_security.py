"""The secured broker of ``smartcity up`` and ``smartcity broker``: the platform's certificate
authority and the broker's server certificate, the services' accounts, and the password file
kept in step with the device credentials in the database (docs/security.md).

Everything lives under one folder, ``<state dir>/security``::

    ca/ca.crt, ca/ca.key          the CA (key mode 600; back it up: it signs every device)
    broker/broker.crt, .key       the broker's TLS certificate, re-issued at each start
    accounts/<service>            each service's broker password (mode 600)
    simulated-fleet-passwords     ``up``'s simulated devices' passwords (mode 600)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import psycopg
from cryptography import x509

from broker_config import BrokerLayout, DeviceListener, replace_if_changed
from broker_config.accounts import (
    MqttLogin,
    Service,
    ensure_service_accounts,
    mosquitto_hash,
    new_device_password,
    password_file_text,
    service_hashes,
)
from broker_config.files import write_private
from broker_config.pki import CertificateAuthority
from protocol.mqtt_account import MqttAccount
from storage.registry import device_password_hashes, load_registry, store_many_credentials

log = logging.getLogger("smartcity.broker")
SYNC_INTERVAL_S: Final = 10.0
"""How soon a device provisioned through the API (or decommissioned) is let in (or out)."""
CRL_REFRESH: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SecurityFolder:
    root: Path

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def accounts_dir(self) -> Path:
        return self.root / "accounts"

    @property
    def simulated_fleet_passwords(self) -> Path:
        return self.root / "simulated-fleet-passwords"

    @property
    def server_certificate(self) -> Path:
        return self.root / "broker" / "broker.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "broker" / "broker.key"

    def certificate_authority(self) -> CertificateAuthority:
        return CertificateAuthority.load_or_create(self.ca_dir)

    def service_logins(self) -> dict[Service, MqttLogin]:
        return ensure_service_accounts(self.accounts_dir)

    def service_account(self, service: Service) -> MqttAccount:
        login = self.service_logins()[service]
        return MqttAccount(login.username, login.password)

    def device_listener(self, port: int, host_names: Iterable[str], bind: str) -> DeviceListener:
        """The TLS listener's settings, with a server certificate for ``host_names`` (and
        loopback) freshly issued by the platform's CA."""
        authority = self.certificate_authority()
        names = list(dict.fromkeys([*host_names, "localhost", "127.0.0.1"]))
        issued = authority.issue_server(names)
        write_private(self.server_key, issued.key_pem)
        self.server_certificate.write_bytes(issued.certificate_pem)
        return DeviceListener(
            port, authority.certificate_file, self.server_certificate, self.server_key, bind
        )


@dataclass(frozen=True, slots=True)
class SyncReport:
    changed: bool
    """Whether a password file or the revocation list changed (the broker must reload)."""
    devices: int
    """Devices with a password, in service."""
    revoked: int
    """Device certificates revoked."""
    database_error: str | None = None
    """The database could not be read: the password files were left as they were, and the
    revocation list was kept alive with every certificate it already named."""


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    """What the broker lets in: the services' logins, the devices' credentials in the
    database (if any) and, with a TLS listener, the CA whose revocation list it keeps."""

    layout: BrokerLayout
    logins: Mapping[Service, MqttLogin]
    database_url: str | None
    authority: CertificateAuthority | None = None


def sync_access(access: BrokerAccess, now: datetime | None = None) -> SyncReport:
    """Write the services' and the devices' password files and the revocation list from the
    logins and the database, each only if its content changed. The observer's account goes
    into the devices' file (:attr:`Service.logs_in_with_devices`)."""
    layout = access.layout
    devices: list[tuple[str, str]] = []
    in_service: set[str] | None = None
    if access.database_url is not None:
        try:
            with psycopg.connect(access.database_url, connect_timeout=10) as connection:
                devices = device_password_hashes(connection)
                in_service = set(load_registry(connection))
        except psycopg.OperationalError as error:
            return _without_database(access, str(error).strip(), now)
    on_services = {s: login for s, login in access.logins.items() if not s.logs_in_with_devices}
    on_devices = {s: login for s, login in access.logins.items() if s.logs_in_with_devices}
    changed = replace_if_changed(
        layout.service_password_file, password_file_text(service_hashes(on_services)).encode()
    )
    changed |= replace_if_changed(
        layout.device_password_file,
        password_file_text(dict(devices) | service_hashes(on_devices)).encode(),
    )
    revoked = 0
    if access.authority is not None:
        crl_changed, revoked = _refresh_revocations(
            layout.crl_file, access.authority, in_service, now
        )
        changed |= crl_changed
    return SyncReport(changed, len(devices), revoked)


def _without_database(access: BrokerAccess, error: str, now: datetime | None) -> SyncReport:
    """The database is away: keep the password files, and keep the revocation list from
    expiring (an expired list makes the broker refuse every certificate), naming what it
    named (the decommissioned devices' certificates) and what the CA's index says."""
    changed, revoked = False, 0
    if access.authority is not None:
        crl_file = access.layout.crl_file
        changed, revoked = _refresh_revocations(
            crl_file, access.authority, None, now, still_revoked=_named_in(crl_file)
        )
    return SyncReport(changed, 0, revoked, database_error=error)


def _named_in(crl_file: Path) -> set[int]:
    try:
        return {entry.serial_number for entry in x509.load_pem_x509_crl(crl_file.read_bytes())}
    except (FileNotFoundError, ValueError):
        return set()


def _refresh_revocations(
    crl_file: Path,
    authority: CertificateAuthority,
    in_service: set[str] | None,
    now: datetime | None,
    still_revoked: set[int] | None = None,
) -> tuple[bool, int]:
    """A new revocation list when the revoked certificates changed or the list is a day old
    (it is valid for a week)."""
    now = now or datetime.now(UTC)
    crl_pem, revoked = authority.revocation_list(in_service, now, still_revoked or ())
    try:
        current = x509.load_pem_x509_crl(crl_file.read_bytes())
        fresh = current.last_update_utc > now - CRL_REFRESH
        same = {r.serial_number for r in current} == {
            r.serial_number for r in x509.load_pem_x509_crl(crl_pem)
        }
        if fresh and same:
            return False, revoked
    except (FileNotFoundError, ValueError):
        pass
    return replace_if_changed(crl_file, crl_pem), revoked


class AccessSync:
    """Keeps the broker's password files and revocation list in step with the database, every
    ``interval_s``; ``reload`` (SIGHUP to mosquitto) makes the broker read them again when they
    changed. A failed look is logged and tried again at the next turn."""

    def __init__(
        self,
        access: BrokerAccess,
        reload: Callable[[], None],
        interval_s: float = SYNC_INTERVAL_S,
    ) -> None:
        self.access = access
        self.reload = reload
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync_once(self) -> bool:
        report = sync_access(self.access)
        if report.database_error is not None:
            log.warning(
                "broker accounts not updated: the database cannot be read; the revocation"
                " list is kept alive",
                extra={"error": report.database_error},
            )
        if report.changed:
            self.reload()
            log.info(
                "broker accounts updated",
                extra={"devices": report.devices, "revoked": report.revoked},
            )
        return report.changed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="access-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync_once()
            except Exception as error:  # noqa: BLE001 - the loop must outlive any one failure
                log.warning("broker accounts not updated", extra={"error": str(error)})

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def issue_device_passwords(
    database_url: str, device_ids: Iterable[str], created_by: str, at: datetime
) -> dict[str, str]:
    """New MQTT passwords for ``device_ids``, their hashes stored (replacing any): the
    passwords themselves are returned once and kept nowhere."""
    passwords = {device_id: new_device_password() for device_id in device_ids}
    store_device_passwords(database_url, passwords, created_by, at)
    return passwords


def store_device_passwords(
    database_url: str, passwords: Mapping[str, str], created_by: str, at: datetime
) -> None:
    """Store the hashes of ``passwords`` (device id to password), replacing any."""
    with psycopg.connect(database_url) as connection:
        store_many_credentials(
            connection,
            {device_id: mosquitto_hash(password) for device_id, password in passwords.items()},
            created_by,
            at,
        )


def devices_without_credentials(database_url: str, device_ids: Iterable[str]) -> list[str]:
    wanted = list(device_ids)
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT device_id FROM device_credentials WHERE device_id = ANY(%s)", (wanted,)
        ).fetchall()
    have = {row[0] for row in rows}
    return [device_id for device_id in wanted if device_id not in have]


@dataclass(frozen=True, slots=True)
class BundleTarget:
    """Where devices reach the broker, and where a bundle is installed on a device."""

    broker_host: str
    broker_port: int
    install_dir: Path = Path("/etc/smartcity")


def write_device_bundle(
    authority: CertificateAuthority,
    out_dir: Path,
    device_id: str,
    password: str,
    target: BundleTarget,
) -> tuple[Path, int]:
    """A device's credentials in ``out_dir/<device id>/``: its password and key (mode 600),
    its certificate, the CA's, and the ``broker:`` section of its agent configuration. Returns
    the folder and the certificate's serial (for :meth:`CertificateAuthority.record_issued`)."""
    bundle = out_dir / device_id
    bundle.mkdir(parents=True, exist_ok=True)
    bundle.chmod(0o700)
    issued = authority.issue_device(device_id)
    write_private(bundle / "password", (password + "\n").encode())
    write_private(bundle / "device.key", issued.key_pem)
    (bundle / "device.crt").write_bytes(issued.certificate_pem)
    (bundle / "ca.crt").write_bytes(authority.certificate_pem)
    installed = target.install_dir
    (bundle / "broker.yaml").write_text(
        f"# The broker section of {device_id}'s agent configuration (docs/agent.md); copy this\n"
        f"# folder's files to {installed} on the device.\n"
        "broker:\n"
        f"  host: {target.broker_host}\n"
        f"  port: {target.broker_port}\n"
        f"  username: {device_id}\n"
        f"  password_file: {installed / 'password'}\n"
        f"  ca_file: {installed / 'ca.crt'}\n"
        f"  certificate_file: {installed / 'device.crt'}\n"
        f"  key_file: {installed / 'device.key'}\n",
        encoding="utf-8",
    )
    return bundle, issued.serial
