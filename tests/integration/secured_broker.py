"""A Mosquitto started with broker_config's secured configuration, and an MQTT client that
records what the broker answers (for the ACL matrix and the services' accounts)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker_config import BrokerSecurity, replace_if_changed, write_config
from broker_config.accounts import MqttLogin, Service, mosquitto_hash, password_file_text
from protocol.mqtt_account import MqttAccount, TlsFiles, apply_account
from runtime.local_services import LocalMosquitto, free_port
from smartcity.broker_security import BrokerAccess, SecurityFolder, sync_access

DEVICES: Mapping[str, str] = {"sl-a": "a-" + "x" * 30, "sl-b": "b-" + "y" * 30}
"""Two streetlights of site ``s`` and their passwords."""


def topic(device_id: str, channel: str) -> str:
    return f"sc/s/streetlight/{device_id}/{channel}"


@dataclass
class SecuredBroker:
    broker: LocalMosquitto
    folder: SecurityFolder
    logins: dict[Service, MqttLogin]
    device_port: int
    """The loopback listener for devices with a password."""
    tls_port: int

    @property
    def ca_file(self) -> Path:
        return self.folder.ca_dir / "ca.crt"

    def access(self, database_url: str | None = None) -> BrokerAccess:
        authority = self.folder.certificate_authority()
        return BrokerAccess(self.broker.layout, self.logins, database_url, authority)

    def service(self, service: Service) -> MqttAccount:
        login = self.logins[service]
        return MqttAccount(login.username, login.password)

    def device(self, device_id: str) -> MqttAccount:
        """A device's password account (the loopback device listener)."""
        return MqttAccount(device_id, DEVICES[device_id])

    def certificate(self, device_id: str, name: str = "cert") -> MqttAccount:
        """A new certificate of ``device_id``, issued and recorded as its newest (TLS)."""
        authority = self.folder.certificate_authority()
        issued = authority.issue_device(device_id)
        authority.record_issued([(issued.serial, device_id)])
        certificate_file = self.folder.root / f"{device_id}-{name}.crt"
        key_file = self.folder.root / f"{device_id}-{name}.key"
        certificate_file.write_bytes(issued.certificate_pem)
        key_file.write_bytes(issued.key_pem)
        return MqttAccount(device_id, None, TlsFiles(self.ca_file, certificate_file, key_file))

    def without_certificate(self, device_id: str) -> MqttAccount:
        """The device's password over TLS, with no client certificate."""
        return MqttAccount(device_id, DEVICES[device_id], TlsFiles(self.ca_file))


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    folder = SecurityFolder(tmp_path / "security")
    device_port, tls_port = free_port(), free_port()
    listener = folder.device_listener(tls_port, ["localhost"], "127.0.0.1")
    security = BrokerSecurity(listener, device_port)
    broker = LocalMosquitto(tmp_path / "broker", free_port(), security=security)
    secured = SecuredBroker(broker, folder, folder.service_logins(), device_port, tls_port)
    write_config(broker.layout)
    sync_access(secured.access())
    hashes = {device_id: mosquitto_hash(password) for device_id, password in DEVICES.items()}
    observer = secured.logins[Service.OBSERVER]  # as the sync writes it, with the devices
    hashes[observer.username] = mosquitto_hash(observer.password)
    replace_if_changed(broker.layout.device_password_file, password_file_text(hashes).encode())
    broker.start()
    yield secured
    broker.kill()


@dataclass
class Probe:
    """One MQTT 5 client and what the broker told it."""

    client: mqtt.Client
    connect_reason: str | None = None
    refused: bool = False
    disconnected: threading.Event = field(default_factory=threading.Event)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    acknowledged: dict[int, str] = field(default_factory=dict)
    answered: threading.Condition = field(default_factory=threading.Condition)

    def publish(self, topic_name: str, payload: bytes = b"{}", timeout_s: float = 5.0) -> str:
        """Publish QoS 1: "Success" if the broker accepted it, else its PUBACK reason ("Not
        authorized")."""
        info = self.client.publish(topic_name, payload, qos=1)
        with self.answered:
            self.answered.wait_for(lambda: info.mid in self.acknowledged, timeout_s)
        return self.acknowledged.get(info.mid, "no answer")

    def subscribe(self, *filters: str, settle_s: float = 0.3) -> None:
        if filters:
            self.client.subscribe([(name, 1) for name in filters])
            time.sleep(settle_s)

    def topics(self) -> set[str]:
        return {name for name, _ in self.received}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    port: int, account: MqttAccount | None, client_id: str, timeout_s: float = 5.0
) -> Probe:
    """A connected (or refused) probe; ``refused`` says which."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    apply_account(client, account)
    probe = Probe(client)
    answered = threading.Event()

    def on_connect(
        _c: mqtt.Client,
        _u: object,
        _f: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        probe.connect_reason = str(reason)
        probe.refused = reason.is_failure
        answered.set()

    def on_disconnect(
        _c: mqtt.Client,
        _u: object,
        _f: mqtt.DisconnectFlags,
        _r: ReasonCode,
        _p: Properties | None,
    ) -> None:
        probe.disconnected.set()
        answered.set()

    def on_publish(
        _c: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: Properties | None
    ) -> None:
        with probe.answered:
            # "No matching subscribers" is an acceptance too.
            probe.acknowledged[mid] = str(reason) if reason.is_failure else "Success"
            probe.answered.notify_all()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    client.on_message = lambda _c, _u, message: probe.received.append(
        (message.topic, bytes(message.payload))
    )
    try:
        client.connect("127.0.0.1", port, keepalive=30)
    except OSError as error:  # TLS handshake refused (no certificate, unknown CA)
        probe.connect_reason = f"{type(error).__name__}: {error}"
        probe.refused = True
        _close_socket(client)
        return probe
    client.loop_start()
    if not answered.wait(timeout_s):
        probe.connect_reason = "no answer"
        probe.refused = True
    if probe.refused or probe.connect_reason is None:
        probe.refused = True
        client.loop_stop()
        _close_socket(client)
    return probe


def _close_socket(client: mqtt.Client) -> None:
    """Close a refused client's socket now, not when the garbage collector finds it (pytest
    would report that ResourceWarning in whichever test runs then)."""
    sock = client.socket()
    if sock is not None:
        sock.close()
