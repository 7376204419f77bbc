"""Mosquitto configuration for the platform's broker, rendered for a port and a data folder.

Two shapes:

- **secured** (what ``smartcity up`` and ``smartcity broker`` run): anonymous access off,
  settings per listener, the ACL of ``acl.conf`` on each, and up to three listeners:

  - the services' (loopback): the services' accounts only (``services.passwords``);
  - the local devices' (loopback, optional): device accounts by password
    (``devices.passwords``), for the simulated fleet, and the observer's account (handed to
    people, so it must not be able to take over a service's session); each session is named
    after its account (``use_username_as_clientid``);
  - the devices' TLS listener (optional): a client certificate signed by the platform's CA
    (:mod:`broker_config.pki`) and not revoked (``revoked.crl``) is required, and its common
    name, the device id, is the account; sessions are named after it too.

  A device can thus never log in on the services' listener, and no device can take over
  another's session (or a service's).
- **open** (``security=None``): anonymous, one listener, for tests of components that are not
  about the broker. It binds to loopback only; asking for anything else is an error.
"""

from __future__ import annotations

import getpass
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from string import Template

from broker_config.files import write_private

TEMPLATE = Path(__file__).with_name("mosquitto.conf")
ACL_TEMPLATE = Path(__file__).with_name("acl.conf")


class BrokerConfigError(ValueError):
    """A broker layout that would be unsafe or cannot be rendered."""


@dataclass(frozen=True, slots=True)
class DeviceListener:
    """The TLS listener devices connect to."""

    port: int
    ca_file: Path
    """The CA whose signature a device's certificate must carry."""
    certificate_file: Path
    key_file: Path
    bind_address: str = "0.0.0.0"  # noqa: S104 - devices reach it over the city network


@dataclass(frozen=True, slots=True)
class BrokerSecurity:
    device_listener: DeviceListener | None = None
    local_device_port: int | None = None
    """A loopback listener for devices with a password (the simulated fleet); None: none."""


@dataclass(frozen=True, slots=True)
class Autosave:
    """When Mosquitto writes its in-memory store to its persistence file (besides at a clean
    stop). What it accepted since its last save is lost if it crashes (docs/chaos.md).

    Each save writes the whole store (sessions, subscriptions, retained messages and every
    message queued for a client) and fsyncs it; the broker serves no one meanwhile.
    """

    interval: int = 2
    """Without ``on_changes``: seconds. Mosquitto 2.0 saves once more than ``interval`` whole
    seconds have passed since the last save began, so every ``interval + 1`` s. With
    ``on_changes``: a count of changes (a message queued for a client or moved from its queue
    to in flight, a persistent session connecting, a subscription, a retained message)."""
    on_changes: bool = False

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise BrokerConfigError(
                f"autosave interval {self.interval}: give 1 or more (0 would save only at a"
                " clean stop, so a crash would lose everything queued since the start)"
            )

    @property
    def label(self) -> str:
        return f"changes={self.interval}" if self.on_changes else f"interval={self.interval}"

    @classmethod
    def parse(cls, text: str) -> Autosave:
        """``interval=N`` (a save every N + 1 s) or ``changes=N`` (after N changes), as
        :attr:`label` writes them."""
        kind, _, number = text.strip().partition("=")
        try:
            value = int(number)
        except ValueError:
            value = -1
        if kind not in {"interval", "changes"} or value < 1:
            raise BrokerConfigError(
                f"autosave setting {text!r}: write interval=N (seconds) or changes=N (a count),"
                " N at least 1, e.g. interval=1 or changes=100"
            )
        return cls(value, on_changes=kind == "changes")


DEFAULT_AUTOSAVE = Autosave()
"""The platform's setting: a save every 3 s (``autosave_interval 2``)."""


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    port: int
    data_dir: Path
    bind_address: str = "127.0.0.1"
    security: BrokerSecurity | None = None
    autosave: Autosave = DEFAULT_AUTOSAVE

    @property
    def config_file(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "mosquitto.log"

    @property
    def service_password_file(self) -> Path:
        return self.data_dir / "services.passwords"

    @property
    def device_password_file(self) -> Path:
        return self.data_dir / "devices.passwords"

    @property
    def acl_file(self) -> Path:
        return self.data_dir / "acl.conf"

    @property
    def crl_file(self) -> Path:
        return self.data_dir / "revoked.crl"

    @property
    def ports(self) -> list[int]:
        """Every port the broker listens on."""
        security = self.security
        ports = [self.port]
        if security is not None and security.local_device_port is not None:
            ports.append(security.local_device_port)
        if security is not None and security.device_listener is not None:
            ports.append(security.device_listener.port)
        return ports


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def render(layout: BrokerLayout) -> str:
    """The configuration text for ``layout``.

    The broker runs as the user who starts it (mosquitto would otherwise switch from root to
    the ``mosquitto`` user, which may not be able to reach a private data folder).
    """
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        listeners=_listeners(layout),
        persistence_location=f"{layout.data_dir}/",
        log_file=layout.log_file,
        user=getpass.getuser(),
        autosave_interval=layout.autosave.interval,
        autosave_on_changes="true" if layout.autosave.on_changes else "false",
    )


def _listeners(layout: BrokerLayout) -> str:
    security = layout.security
    if security is None:
        if not _is_loopback(layout.bind_address):
            raise BrokerConfigError(
                f"an open broker (anonymous access) must bind to loopback, not "
                f"{layout.bind_address}; give it a BrokerSecurity"
            )
        return (
            "# Open: anonymous clients, loopback only (tests).\n"
            "per_listener_settings false\n"
            "allow_anonymous true\n"
            f"listener {layout.port} {layout.bind_address}\n"
        )
    acl = f"acl_file {layout.acl_file}\n"
    text = (
        "per_listener_settings true\n"
        "\n# Services: their accounts only.\n"
        f"listener {layout.port} {layout.bind_address}\n"
        "allow_anonymous false\n"
        f"password_file {layout.service_password_file}\n" + acl
    )
    if security.local_device_port is not None:
        text += (
            "\n# Devices on this machine (the simulated fleet): their passwords; the session\n"
            "# is the account's own.\n"
            f"listener {security.local_device_port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {layout.device_password_file}\n"
            "use_username_as_clientid true\n" + acl
        )
    listener = security.device_listener
    if listener is not None:
        text += (
            "\n# Devices: TLS with a certificate of the platform's CA, not revoked; its common\n"
            "# name (the device id) is the account, and the session is the account's own.\n"
            f"listener {listener.port} {listener.bind_address}\n"
            "allow_anonymous false\n"
            f"cafile {listener.ca_file}\n"
            f"certfile {listener.certificate_file}\n"
            f"keyfile {listener.key_file}\n"
            f"crlfile {layout.crl_file}\n"
            "tls_version tlsv1.2\n"
            "require_certificate true\n"
            "use_identity_as_username true\n"
            "use_username_as_clientid true\n" + acl
        )
    return text


def write_config(layout: BrokerLayout) -> Path:
    """Write the configuration (and, secured, the ACL, and empty password files where there
    are none yet: then nobody gets in until accounts are written)."""
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    if layout.security is not None:
        layout.acl_file.write_text(ACL_TEMPLATE.read_text(encoding="utf-8"), encoding="utf-8")
        for path in (layout.service_password_file, layout.device_password_file):
            if not path.exists():
                replace_if_changed(path, b"")
    layout.config_file.write_text(render(layout), encoding="utf-8")
    return layout.config_file


def replace_if_changed(target: Path, content: bytes) -> bool:
    """Replace a private file atomically (mode 600); whether its content changed."""
    try:
        if target.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    staging = target.with_name(target.name + ".new")
    write_private(staging, content)
    staging.replace(target)
    return True
