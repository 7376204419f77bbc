"""As whom an MQTT client connects to the platform's broker: its account and, over TLS, the
files that prove who it is and whom it talks to (pure data, plus applying it to a client).

Every service has its own account (``svc.<name>``) and every device its own (user name = device
id); the broker's ACL gives each exactly its rights (broker_config/acl.conf). Services usually
talk to the broker over loopback; devices over TLS with a client certificate as well.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: Path
    """The CA that signed the broker's certificate (the platform's own CA)."""
    certificate_file: Path | None = None
    """This client's certificate: required by the devices' listener."""
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class MqttAccount:
    username: str
    password: str | None = field(repr=False)
    """None: the account is proven by the TLS client certificate alone."""
    tls: TlsFiles | None = None


class _Configurable(Protocol):
    def username_pw_set(self, username: str | None, password: str | None = None) -> None: ...

    def tls_set(
        self,
        *,
        ca_certs: str | None,
        certfile: str | None,
        keyfile: str | None,
        cert_reqs: ssl.VerifyMode | None,
        tls_version: int | None,
    ) -> None: ...


def apply_account(client: _Configurable, account: MqttAccount | None) -> None:
    """Give ``client`` the account's login and, if any, its TLS files (anonymous for None)."""
    if account is None:
        return
    client.username_pw_set(account.username, account.password)
    if account.tls is not None:
        tls = account.tls
        client.tls_set(
            ca_certs=str(tls.ca_file),
            certfile=str(tls.certificate_file) if tls.certificate_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
