"""The platform's own certificate authority: it signs the broker's server certificate and one
client certificate per device, and revokes those no longer in use.

Devices connect to the broker's TLS listener with a certificate this CA signed; its common name
is the device id, which the broker takes as the device's account (the ACL binds it to its own
topics). Keys are ECDSA P-256; files are PEM. The CA's key never leaves the folder it was
created in (mode 600); a device's key is written only into that device's credential bundle.

``issued.tsv`` in the CA's folder lists every device certificate put in force (serial,
device id); the revocation list names each one superseded by a newer one of its device, or
whose device is out of service, so a rotated or decommissioned device's certificate stops
working. ``pending.tsv`` journals every device certificate from the moment it is signed
until it is put in force: one whose handing-out was interrupted (a crash, Ctrl-C, a full
disk between the bundle and the index) stays there, and the revocation list names it too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker_config.files import write_private

_HOST_NAME: Final = re.compile(
    r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)

CA_YEARS: Final = 20
SERVER_DAYS: Final = 825
"""Browsers' and most TLS stacks' ceiling for a leaf certificate."""
DEVICE_YEARS: Final = 10
"""A streetlight controller lives about as long as its battery pack; re-issue with the pack."""
CRL_DAYS: Final = 7
"""How long a revocation list is valid; the broker's sync makes a new one every day."""


class PkiError(RuntimeError):
    """A certificate authority folder that cannot be used (unreadable, half written)."""


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    certificate_pem: bytes
    key_pem: bytes

    @property
    def serial(self) -> int:
        return x509.load_pem_x509_certificate(self.certificate_pem).serial_number


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _tsv(entries: Iterable[tuple[int, str]]) -> str:
    return "".join(f"{serial}\t{device_id}\n" for serial, device_id in entries)


def _append(path: Path, entries: Sequence[tuple[int, str]]) -> None:
    """Append entries and make them durable before the caller goes on."""
    with path.open("a", encoding="utf-8") as file:
        file.write(_tsv(entries))
        file.flush()
        os.fsync(file.fileno())


def _read_tsv(path: Path) -> list[tuple[int, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(lines, start=1):
        serial, _, device_id = line.partition("\t")
        if not serial.isdigit() or not device_id:
            raise PkiError(f"{path}:{number}: not 'serial<TAB>device id'")
        entries.append((int(serial), device_id))
    return entries


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smartcity"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class CertificateAuthority:
    """A CA kept in a folder as ``ca.crt`` and ``ca.key``."""

    def __init__(
        self, folder: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ):
        self.folder = folder
        self.certificate = certificate
        self._key = key

    @property
    def certificate_file(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load_or_create(
        cls, folder: Path, name: str = "smartcity device CA", now: dt.datetime | None = None
    ) -> CertificateAuthority:
        """The CA in ``folder``, created there first if the folder holds none."""
        certificate_file, key_file = folder / "ca.crt", folder / "ca.key"
        if certificate_file.exists() != key_file.exists():
            raise PkiError(
                f"{folder} holds only one of ca.crt and ca.key; restore the other from a backup "
                "(a new CA would orphan every certificate already issued)"
            )
        if certificate_file.exists():
            try:
                certificate = x509.load_pem_x509_certificate(certificate_file.read_bytes())
                key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            except (OSError, ValueError) as error:
                raise PkiError(
                    f"cannot read the certificate authority in {folder}: {error}"
                ) from error
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise PkiError(f"{key_file} is not an elliptic-curve key")
            return cls(folder, certificate, key)
        return cls._create(folder, name, now or dt.datetime.now(dt.UTC))

    @classmethod
    def _create(cls, folder: Path, name: str, now: dt.datetime) -> CertificateAuthority:
        key = _new_key()
        subject = _name(name)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        write_private(folder / "ca.key", _key_pem(key))
        (folder / "ca.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(folder, certificate, key)

    def issue_server(
        self, host_names: Sequence[str], now: dt.datetime | None = None
    ) -> IssuedCertificate:
        """A server certificate for the broker, valid for each DNS name or IP address given."""
        if not host_names:
            raise PkiError("a server certificate needs at least one host name or address")
        alternative_names: list[x509.GeneralName] = []
        for host in host_names:
            try:
                alternative_names.append(x509.IPAddress(ipaddress.ip_address(host)))
                continue
            except ValueError:
                pass
            if not _HOST_NAME.fullmatch(host) or len(host) > 253:
                raise PkiError(
                    f"host {host!r} is neither an IP address nor a DNS name (letters, digits, "
                    "hyphens and dots; an international name in its xn-- form)"
                )
            alternative_names.append(x509.DNSName(host))
        return self._issue(
            "smartcity broker",
            ExtendedKeyUsageOID.SERVER_AUTH,
            dt.timedelta(days=SERVER_DAYS),
            now,
            x509.SubjectAlternativeName(alternative_names),
        )

    def issue_device(self, device_id: str, now: dt.datetime | None = None) -> IssuedCertificate:
        """A client certificate whose common name is the device id. Once it is handed out,
        :meth:`record_issued` makes it the device's certificate in force (and revokes the
        one before)."""
        issued = self._issue(
            device_id, ExtendedKeyUsageOID.CLIENT_AUTH, dt.timedelta(days=365 * DEVICE_YEARS), now
        )
        _append(self.pending_file, [(issued.serial, device_id)])  # revoked until recorded
        return issued

    def record_issued(self, issued: Iterable[tuple[int, str]]) -> None:
        """Add (serial, device id) pairs to the index: each is now its device's newest, and
        no longer pending."""
        recorded = list(issued)
        _append(self.index_file, recorded)
        serials = {serial for serial, _ in recorded}
        still_pending = [entry for entry in self.pending_devices() if entry[0] not in serials]
        staging = self.pending_file.with_name("pending.tsv.new")
        write_private(staging, _tsv(still_pending).encode())
        staging.replace(self.pending_file)

    @property
    def index_file(self) -> Path:
        return self.folder / "issued.tsv"

    @property
    def pending_file(self) -> Path:
        return self.folder / "pending.tsv"

    def issued_devices(self) -> list[tuple[int, str]]:
        """(serial, device id) of every device certificate put in force, oldest first."""
        return _read_tsv(self.index_file)

    def pending_devices(self) -> list[tuple[int, str]]:
        """(serial, device id) of the device certificates signed and not (yet) in force."""
        return _read_tsv(self.pending_file)

    def revocation_list(
        self,
        in_service: set[str] | None,
        now: dt.datetime | None = None,
        still_revoked: Iterable[int] = (),
    ) -> tuple[bytes, int]:
        """A signed CRL of the device certificates no longer in use (PEM), and how many:
        every one but the newest of each device, and all of a device not ``in_service`` (when
        known). It is valid for 7 days; it is made again long before."""
        now = now or dt.datetime.now(dt.UTC)
        newest: dict[str, int] = {}
        for serial, device_id in self.issued_devices():
            newest[device_id] = serial
        revoked = [
            serial
            for serial, device_id in self.issued_devices()
            if newest[device_id] != serial
            or (in_service is not None and device_id not in in_service)
        ]
        in_force = {serial for serial, _ in self.issued_devices()}
        revoked += [serial for serial, _ in self.pending_devices() if serial not in in_force]
        revoked += still_revoked  # revoked before, for a reason this call cannot see now
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=CRL_DAYS))
        )
        for serial in sorted(set(revoked)):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - dt.timedelta(minutes=5))
                .build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM), len(set(revoked))

    def _issue(
        self,
        common_name: str,
        usage: x509.ObjectIdentifier,
        validity: dt.timedelta,
        now: dt.datetime | None,
        alternative_names: x509.SubjectAlternativeName | None = None,
    ) -> IssuedCertificate:
        now = now or dt.datetime.now(dt.UTC)
        key = _new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + validity, self.certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if alternative_names is not None:
            builder = builder.add_extension(alternative_names, critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key)
        )
