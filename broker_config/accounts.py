"""Who may connect to the broker: one account per service and one per device (pure, plus the
few file writes that keep secrets private).

- A device's user name is its device id; the ACL patterns (``acl.conf``) bind it to its own
  topics. Its password is random, shown once at provisioning and stored only as a hash in
  Mosquitto's own password-file format (``$7$``: PBKDF2-SHA512, 101 iterations, 12-byte salt),
  so the database's hashes go into the broker's password file as they are.
- Each service has its own account, ``svc.<name>``, whose password lives in a file of its own
  (mode 600) in the accounts folder; the service reads it at start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from broker_config.files import write_private

MOSQUITTO_ITERATIONS: Final = 101
_MOSQUITTO_SALT_BYTES: Final = 12
_USER_NAME: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class AccountError(ValueError):
    """An account that cannot be written into the broker's password file."""


class Service(StrEnum):
    """The platform's services, each with its own broker account and rights (``acl.conf``)."""

    INGEST = "ingest"
    RULES = "rules"
    CONTROL = "control"
    API = "api"
    OBSERVER = "observer"
    """Read-only: troubleshooting and integrations that follow the alerts."""

    @property
    def user_name(self) -> str:
        return f"svc.{self.value}"

    @property
    def logs_in_with_devices(self) -> bool:
        """Whether the account logs in on the devices' password listener, where a session is
        always named after its account, rather than on the services' listener, where any
        account may use any client id (and so take over another client's session). The
        observer's password is handed to people; the services' stay with the platform."""
        return self is Service.OBSERVER


@dataclass(frozen=True, slots=True)
class MqttLogin:
    """A user name and its password, as a client presents them."""

    username: str
    password: str


def new_device_password() -> str:
    """A device's MQTT password: 24 random bytes, URL-safe, typed into no keyboard."""
    return secrets.token_urlsafe(24)


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """``password`` as a line of a Mosquitto password file holds it (after ``user:``)."""
    salt = salt if salt is not None else secrets.token_bytes(_MOSQUITTO_SALT_BYTES)
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_ITERATIONS)
    encoded_salt = base64.b64encode(salt).decode()
    return f"$7${MOSQUITTO_ITERATIONS}${encoded_salt}${base64.b64encode(derived).decode()}"


def mosquitto_hash_matches(password: str, stored_hash: str) -> bool:
    """Whether ``password`` is the one ``stored_hash`` (``$7$...``) was made from."""
    parts = stored_hash.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    salt, expected = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(derived, expected)


def password_file_text(hashes_by_user: Mapping[str, str]) -> str:
    """A Mosquitto password file: one ``user:hash`` line each, sorted (stable bytes, so a
    rewrite that changes nothing is seen as such and the broker is not reloaded for it)."""
    lines = []
    for user, password_hash in sorted(hashes_by_user.items()):
        if not _USER_NAME.fullmatch(user):
            raise AccountError(f"user name {user!r} cannot go into a password file")
        if not password_hash.startswith("$7$") or ":" in password_hash or "\n" in password_hash:
            raise AccountError(f"the password hash of {user!r} is not a Mosquitto $7$ hash")
        lines.append(f"{user}:{password_hash}\n")
    return "".join(lines)


def service_password_file(accounts_dir: Path, service: Service) -> Path:
    return accounts_dir / service.value


def ensure_service_accounts(accounts_dir: Path) -> dict[Service, MqttLogin]:
    """Every service's login, each password made on first use and kept in its own file."""
    accounts_dir.mkdir(parents=True, exist_ok=True)
    accounts_dir.chmod(0o700)
    logins = {}
    for service in Service:
        path = service_password_file(accounts_dir, service)
        if not path.exists():
            write_private(path, (secrets.token_urlsafe(32) + "\n").encode())
        logins[service] = MqttLogin(service.user_name, read_password(path))
    return logins


def read_password(path: Path) -> str:
    """The password kept in ``path`` (its first line)."""
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise AccountError(f"cannot read the password file {path}: {error.strerror}") from error
    except ValueError as error:  # not UTF-8 text
        raise AccountError(f"cannot read the password file {path}: {error}") from error
    if not password:
        raise AccountError(f"the password file {path} is empty")
    return password


def service_hashes(logins: Mapping[Service, MqttLogin]) -> dict[str, str]:
    """The services' password-file entries. The salt is derived from the (random, 256-bit)
    password, so the same password always gives the same line and an unchanged file stays
    byte for byte the same."""
    return {
        login.username: mosquitto_hash(
            login.password, hashlib.sha256(login.password.encode()).digest()[:_MOSQUITTO_SALT_BYTES]
        )
        for login in logins.values()
    }
