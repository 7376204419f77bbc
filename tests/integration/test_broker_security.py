"""The ACL matrix against a real Mosquitto started with broker_config's secured configuration:
what a device, a stranger and each service may and may not do."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from broker_config.accounts import Service
from broker_config.pki import CertificateAuthority
from protocol.mqtt_account import MqttAccount, TlsFiles
from smartcity.broker_security import AccessSync, issue_device_passwords, sync_access
from tests.integration.helpers import provision_test_site, wait_until
from tests.integration.secured_broker import (
    DEVICES,
    Probe,
    SecuredBroker,
    connect,
    secured_broker,
    topic,
)

pytestmark = pytest.mark.integration
__all__ = ["secured_broker"]

DEVICE_TO_PLATFORM = ("telemetry", "event", "state", "cmd_ack")
NOT_AUTHORIZED = "Not authorized"


def lets_in(port: int, account: MqttAccount) -> bool:
    probe = connect(port, account, account.username)
    probe.close()
    return not probe.refused


def listening(secured: SecuredBroker, service: Service, *filters: str) -> Probe:
    port = secured.device_port if service.logs_in_with_devices else secured.broker.port
    probe = connect(port, secured.service(service), f"test-{service.value}")
    assert not probe.refused, probe.connect_reason
    probe.subscribe(*filters)
    return probe


def device(secured: SecuredBroker, device_id: str) -> Probe:
    probe = connect(secured.device_port, secured.device(device_id), device_id)
    assert not probe.refused, probe.connect_reason
    return probe


def test_a_device_publishes_its_own_messages_and_no_one_elses(
    secured_broker: SecuredBroker,
) -> None:
    ingest = listening(secured_broker, Service.INGEST, "sc/#")
    a = device(secured_broker, "sl-a")
    for channel in DEVICE_TO_PLATFORM:
        assert a.publish(topic("sl-a", channel)) == "Success", channel
        assert a.publish(topic("sl-b", channel)) == NOT_AUTHORIZED, channel
    assert a.publish(topic("sl-a", "cmd")) == NOT_AUTHORIZED
    assert a.publish(topic("sl-b", "cmd")) == NOT_AUTHORIZED
    assert a.publish("alerts/s/x/y") == NOT_AUTHORIZED
    wait_until(lambda: len(ingest.received) >= len(DEVICE_TO_PLATFORM), 5, "deliveries")
    time.sleep(0.3)
    assert ingest.topics() == {topic("sl-a", channel) for channel in DEVICE_TO_PLATFORM}


def test_a_device_reads_only_its_own_commands_even_subscribed_to_everything(
    secured_broker: SecuredBroker,
) -> None:
    a = device(secured_broker, "sl-a")
    a.subscribe("#", "sc/+/+/+/cmd", topic("sl-b", "cmd"), topic("sl-a", "cmd"), "$SYS/#")
    control = listening(secured_broker, Service.CONTROL)
    b = device(secured_broker, "sl-b")
    assert control.publish(topic("sl-a", "cmd"), b"for a") == "Success"
    assert control.publish(topic("sl-b", "cmd"), b"for b") == "Success"
    for channel in DEVICE_TO_PLATFORM:
        assert b.publish(topic("sl-b", channel)) == "Success"
    wait_until(lambda: bool(a.received), 5, "deliveries")
    time.sleep(0.5)
    # The broker grants the subscriptions but delivers only what the ACL lets a read (one
    # copy per overlapping subscription).
    assert set(a.received) == {(topic("sl-a", "cmd"), b"for a")}


def test_wrong_passwords_unknown_users_and_anonymous_clients_are_refused(
    secured_broker: SecuredBroker,
) -> None:
    attempts = {
        "wrong password": (secured_broker.device_port, MqttAccount("sl-a", DEVICES["sl-b"])),
        "unknown device": (secured_broker.device_port, MqttAccount("sl-z", DEVICES["sl-a"])),
        "anonymous device": (secured_broker.device_port, None),
        "a device on the services' listener": (
            secured_broker.broker.port,
            secured_broker.device("sl-a"),
        ),
        "a service on the devices' listener": (
            secured_broker.device_port,
            secured_broker.service(Service.CONTROL),
        ),
        "anonymous service": (secured_broker.broker.port, None),
        "wrong service password": (
            secured_broker.broker.port,
            MqttAccount("svc.ingest", secured_broker.logins[Service.API].password),
        ),
    }
    for case, (port, account) in attempts.items():
        probe = connect(port, account, f"x-{len(case)}")
        assert probe.refused, case
        assert probe.connect_reason == NOT_AUTHORIZED, case
        probe.close()


def test_the_device_listener_wants_a_certificate_of_the_platforms_ca(
    secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    port = secured_broker.tls_port
    assert connect(port, secured_broker.without_certificate("sl-a"), "sl-a").refused
    assert connect(port, secured_broker.device("sl-a"), "sl-a").refused  # no TLS at all
    stranger = CertificateAuthority.load_or_create(tmp_path / "other-ca")
    issued = stranger.issue_device("sl-a")
    (tmp_path / "forged.crt").write_bytes(issued.certificate_pem)
    (tmp_path / "forged.key").write_bytes(issued.key_pem)
    forged = MqttAccount(
        "sl-a",
        None,
        TlsFiles(secured_broker.ca_file, tmp_path / "forged.crt", tmp_path / "forged.key"),
    )
    assert connect(port, forged, "sl-a").refused
    accepted = connect(port, secured_broker.certificate("sl-a"), "sl-a")
    assert not accepted.refused, accepted.connect_reason
    assert accepted.publish(topic("sl-a", "telemetry")) == "Success"
    assert accepted.publish(topic("sl-b", "telemetry")) == NOT_AUTHORIZED


def test_the_certificate_not_the_user_name_says_who_a_device_is(
    secured_broker: SecuredBroker,
) -> None:
    a_certificate = secured_broker.certificate("sl-a")
    assert a_certificate.tls is not None
    posing_as_b = MqttAccount("sl-b", DEVICES["sl-b"], a_certificate.tls)
    probe = connect(secured_broker.tls_port, posing_as_b, "sl-b")
    assert not probe.refused, probe.connect_reason
    assert probe.publish(topic("sl-b", "telemetry")) == NOT_AUTHORIZED
    assert probe.publish(topic("sl-a", "telemetry")) == "Success"


def test_a_superseded_certificate_is_revoked_at_the_next_sync(
    secured_broker: SecuredBroker,
) -> None:
    port = secured_broker.tls_port
    first = secured_broker.certificate("sl-a", "first")
    assert not connect(port, first, "sl-a").refused
    second = secured_broker.certificate("sl-a", "second")  # rotated
    assert sync_access(secured_broker.access()).revoked == 1
    secured_broker.broker.reload()
    time.sleep(0.5)
    assert connect(port, first, "sl-a").refused
    fresh = connect(port, second, "sl-a")
    assert not fresh.refused, fresh.connect_reason


def test_a_device_cannot_take_over_another_devices_session_over_tls(
    secured_broker: SecuredBroker,
) -> None:
    a, b = secured_broker.certificate("sl-a"), secured_broker.certificate("sl-b")
    assert_no_takeover(secured_broker, secured_broker.tls_port, a, b)


def test_a_device_cannot_take_over_another_devices_session_with_a_password(
    secured_broker: SecuredBroker,
) -> None:
    a, b = secured_broker.device("sl-a"), secured_broker.device("sl-b")
    assert_no_takeover(secured_broker, secured_broker.device_port, a, b)


def assert_no_takeover(
    secured: SecuredBroker, port: int, a_account: MqttAccount, b_account: MqttAccount
) -> None:
    a = connect(port, a_account, "sl-a")
    assert not a.refused
    a.subscribe(topic("sl-a", "cmd"))
    intruder = connect(port, b_account, "sl-a")  # b asks for a's session
    assert not intruder.refused  # connected, but as the session "sl-b": its account
    intruder.subscribe(topic("sl-a", "cmd"), topic("sl-b", "cmd"))
    time.sleep(0.5)
    assert not a.disconnected.is_set()
    control = listening(secured, Service.CONTROL)
    assert control.publish(topic("sl-a", "cmd"), b"still a's") == "Success"
    assert control.publish(topic("sl-b", "cmd"), b"b's") == "Success"
    wait_until(lambda: bool(a.received), 5, "a's command")
    wait_until(lambda: bool(intruder.received), 5, "b's command")
    assert {name for name, _ in a.received} == {topic("sl-a", "cmd")}
    assert {name for name, _ in intruder.received} == {topic("sl-b", "cmd")}


def test_each_service_has_exactly_the_rights_its_job_needs(
    secured_broker: SecuredBroker,
) -> None:
    watchers = {
        service: listening(secured_broker, service, "sc/#", "alerts/#") for service in Service
    }
    a = device(secured_broker, "sl-a")
    for channel in DEVICE_TO_PLATFORM:
        assert a.publish(topic("sl-a", channel)) == "Success"
    control = watchers[Service.CONTROL]
    assert control.publish(topic("sl-a", "cmd")) == "Success"
    rules = watchers[Service.RULES]
    assert rules.publish("alerts/s/lamp-out/sl-a") == "Success"
    time.sleep(1.0)
    reads = {service: probe.topics() for service, probe in watchers.items()}
    assert reads[Service.INGEST] == {topic("sl-a", c) for c in DEVICE_TO_PLATFORM}
    assert reads[Service.RULES] == {topic("sl-a", "telemetry"), topic("sl-a", "state")}
    assert reads[Service.CONTROL] == {topic("sl-a", "telemetry"), topic("sl-a", "cmd_ack")}
    assert reads[Service.API] == set()
    everything = {topic("sl-a", c) for c in (*DEVICE_TO_PLATFORM, "cmd")}
    assert reads[Service.OBSERVER] == everything | {"alerts/s/lamp-out/sl-a"}
    api = watchers[Service.API]
    assert api.publish(topic("sl-a", "cmd")) == "Success"
    assert rules.publish(topic("sl-a", "cmd")) == NOT_AUTHORIZED
    ingest = watchers[Service.INGEST]
    for service in (Service.INGEST, Service.RULES, Service.API, Service.CONTROL, Service.OBSERVER):
        probe = watchers[service]
        if service is not Service.RULES:
            assert probe.publish("alerts/s/lamp-out/sl-a") == NOT_AUTHORIZED, service
        assert probe.publish(topic("sl-a", "telemetry")) == NOT_AUTHORIZED, service
    assert ingest.publish(topic("sl-a", "cmd")) == NOT_AUTHORIZED
    assert watchers[Service.OBSERVER].publish(topic("sl-a", "cmd")) == NOT_AUTHORIZED


def test_the_observer_can_take_over_no_session_and_is_refused_beside_the_services(
    secured_broker: SecuredBroker,
) -> None:
    """The observer's password is handed to people. On the devices' listener its session is
    named after its account whatever client id it asks for; the services' refuses it."""
    observer = secured_broker.service(Service.OBSERVER)
    assert connect(secured_broker.broker.port, observer, "watcher").refused
    ingest = listening(secured_broker, Service.INGEST, "sc/+/+/+/telemetry")
    a = device(secured_broker, "sl-a")
    for client_id in (f"test-{Service.INGEST.value}", "sl-a"):
        observe_as(secured_broker, client_id, a)
    wait_until(lambda: len(ingest.received) == 2, 5, "ingest still receives")
    assert not ingest.disconnected.is_set(), "ingest's session was not taken over"
    assert not a.disconnected.is_set(), "nor the device's"


def observe_as(secured: SecuredBroker, client_id: str, sender: Probe) -> None:
    """The observer, asking for ``client_id``, reads one telemetry message of ``sender``."""
    intruder = connect(secured.device_port, secured.service(Service.OBSERVER), client_id)
    assert not intruder.refused, intruder.connect_reason
    intruder.subscribe("sc/#")
    assert sender.publish(topic("sl-a", "telemetry"), client_id.encode()) == "Success"
    wait_until(lambda: len(intruder.received) == 1, 5, "the observer reads")
    intruder.close()


def test_ingest_may_share_the_stream_through_a_shared_subscription(
    secured_broker: SecuredBroker,
) -> None:
    first = listening(secured_broker, Service.INGEST, "$share/ingest/sc/+/+/+/telemetry")
    second = connect(secured_broker.broker.port, secured_broker.service(Service.INGEST), "i-2")
    second.subscribe("$share/ingest/sc/+/+/+/telemetry")
    a = device(secured_broker, "sl-a")
    for n in range(20):
        assert a.publish(topic("sl-a", "telemetry"), str(n).encode()) == "Success"
    wait_until(lambda: len(first.received) + len(second.received) == 20, 5, "deliveries")
    assert first.received
    assert second.received


def test_devices_provisioned_in_the_database_get_in_after_a_sync_and_are_put_out_when_removed(
    secured_broker: SecuredBroker, database_url: str
) -> None:
    device_id = provision_test_site(database_url).devices[0].id
    broker = secured_broker.broker
    passwords = issue_device_passwords(
        database_url, [device_id], "test", datetime(2026, 11, 29, tzinfo=UTC)
    )
    account = MqttAccount(device_id, passwords[device_id])
    certificate = secured_broker.certificate(device_id)
    port = secured_broker.device_port
    assert connect(port, account, device_id).refused  # not yet in the password file
    sync = AccessSync(secured_broker.access(database_url), broker.reload, interval_s=0.2)
    sync.start()
    try:
        wait_until(lambda: lets_in(port, account), 10, "the device to be let in")
        over_tls = connect(secured_broker.tls_port, certificate, device_id)
        assert not over_tls.refused, over_tls.connect_reason
        over_tls.close()  # one session per device: it would take over the one below
        admitted = connect(port, account, device_id)
        assert not admitted.refused, admitted.connect_reason
        assert sync.sync_once() is False  # nothing changed: the broker is not reloaded again
        with psycopg.connect(database_url) as connection:
            connection.execute(
                "UPDATE devices SET decommissioned_at = now() WHERE device_id = %s", (device_id,)
            )
        wait_until(admitted.disconnected.is_set, 10, "the decommissioned device's session to end")
        assert connect(port, account, device_id).refused
        assert connect(secured_broker.tls_port, certificate, device_id).refused  # revoked
    finally:
        sync.stop()
    services_still_in = connect(broker.port, secured_broker.service(Service.INGEST), "svc-i")
    assert not services_still_in.refused
