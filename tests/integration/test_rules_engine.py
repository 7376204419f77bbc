"""The rules engine end to end: readings over a real broker, alerts in a real database,
notifications to a real SMTP server and webhook, and restarts that lose and double nothing."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest

from alerts import lifecycle, store
from alerts.catalogue import CITIZEN_REPORT
from alerts.lifecycle import OPEN_STATUSES, Alert, Policy, Status
from alerts.routing import parse_notification_config
from protocol.payloads import DeviceStatus, Severity, StatePayload, encode
from rules.service import RulesConfig, RulesService
from runtime.local_services import LocalMosquitto
from tests.integration.helpers import (
    Publisher,
    provision_test_site,
    publisher,
    wait_until,
)
from tests.integration.receivers import MailCollector, Webhook
from tests.simulation_helpers import Recorder

pytestmark = pytest.mark.integration

TEST_RULES = """
rules:
  - id: lamp-out
    class: streetlight
    title: {en: Lamp out at night, fr: Lampe éteinte la nuit, ar: مصباح مطفأ ليلا}
    when: lamp_on and lamp_power < 0.05 * lamp_w and sun_elevation < -4
    for: 20m
    clear: lamp_power > 0.2 * lamp_w
    severity: critical
  - id: light-offline
    class: streetlight
    title: {en: Light not reporting}
    missing: {after: 3, grace: 0s}
"""
"""The engine's behaviour, not the default catalogue's tuning (test_fault_alerts has that).
A will counts at once here (``grace: 0s``); the grace has its own test."""
NIGHT = (datetime.now(UTC) - timedelta(days=1)).replace(hour=22, minute=0, second=0, microsecond=0)
"""Yesterday at 22:00 UTC: dark in Sefrou all year round."""
FIVE_MINUTES = timedelta(minutes=5)


def light_values(lamp_power: float) -> dict[str, float | bool]:
    return {
        "lamp_on": True,
        "lamp_power": lamp_power,
        "battery_soc": 80.0,
        "tilt": 0.5,
        "pv_power": 0.0,
        "controller_status": 0,
    }


def publish_reading(
    client: Publisher, device_id: str, seq: int, ts: datetime, values: dict[str, float | bool]
) -> None:
    sample = {"ts": ts.isoformat(), "values": values}
    payload = json.dumps({"v": 1, "seq": seq, "samples": [sample]}).encode()
    client.publish_all([(f"sc/sefrou/streetlight/{device_id}/telemetry", payload)])


def dark(client: Publisher, device_id: str, index: int) -> None:
    """Reading ``index`` of a light whose lamp is on and draws nothing, at night."""
    publish_reading(client, device_id, index, NIGHT + index * FIVE_MINUTES, light_values(0.0))


def routing(smtp_port: int, webhook_port: int) -> str:
    return f"""
link_base: https://smartcity.sefrou.test/console
retry: {{attempts: 2, first_delay_s: 0.05}}
routes:
  - name: crew-mail
    language: fr
    urls: ["mailto://127.0.0.1:{smtp_port}?from=alerts@sefrou.test&to=crew@sefrou.test"]
  - name: crew-hook
    language: ar
    urls: ["json://127.0.0.1:{webhook_port}/alerts"]
"""


@contextmanager
def running_engine(config: RulesConfig) -> Iterator[RulesService]:
    service = RulesService(config)
    thread = threading.Thread(target=service.run, name="rules")
    thread.start()
    try:
        assert service.ready.wait(30), "the rules engine did not subscribe"
        yield service
    finally:
        service.stop()
        thread.join(30)
        assert not thread.is_alive(), "the rules engine did not stop"


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(TEST_RULES, encoding="utf-8")
    return path


@pytest.fixture
def config(
    database_url: str,
    broker: LocalMosquitto,
    smtp_server: tuple[int, MailCollector],
    webhook: Webhook,
    rules_file: Path,
) -> RulesConfig:
    provision_test_site(database_url)
    return RulesConfig(
        database_url,
        rules_file,
        mqtt_port=broker.port,
        notifications=parse_notification_config(routing(smtp_server[0], webhook.port)),
        tick_s=0.2,
        group_wait_s=1.0,
        event_time=True,
    )


def open_alerts(database_url: str, rule_id: str) -> list[Alert]:
    with psycopg.connect(database_url) as connection:
        return [
            alert
            for alert, _ in store.alerts(connection, subject=None, limit=1000)
            if alert.rule_id == rule_id
        ]


def test_lamp_out_fires_notifies_and_publishes(
    config: RulesConfig,
    broker: LocalMosquitto,
    smtp_server: tuple[int, MailCollector],
    webhook: Webhook,
) -> None:
    watcher = Recorder(broker.port, client_id="alert-watcher")
    watcher._client.subscribe("alerts/#", qos=1)
    try:
        with running_engine(config), publisher(broker.port) as client:
            for index in range(6):  # dark for 25 minutes at night
                publish_reading(
                    client, "sl-001", index, NIGHT + index * FIVE_MINUTES, light_values(0.0)
                )
            wait_until(lambda: bool(open_alerts(config.database_url, "lamp-out")), 20, "lamp-out")
            alert = open_alerts(config.database_url, "lamp-out")[0]
            assert (alert.subject, alert.status) == ("sl-001", Status.FIRING)
            assert alert.started_at == NIGHT
            assert alert.fired_at == NIGHT + 4 * FIVE_MINUTES, (
                "for: 20m, at the first reading after"
            )
            wait_until(lambda: bool(smtp_server[1].envelopes), 20, "the e-mail")
            wait_until(lambda: bool(webhook.posts), 20, "the webhook call")
            wait_until(lambda: any(t.startswith("alerts/") for t, _, _ in watcher.messages), 10)
            # The lamp lights again: the alert resolves by itself.
            publish_reading(client, "sl-001", 6, NIGHT + 6 * FIVE_MINUTES, light_values(55.0))
            wait_until(
                lambda: open_alerts(config.database_url, "lamp-out")[0].status is Status.RESOLVED,
                20,
                "the resolution",
            )
    finally:
        watcher.close()
    content = smtp_server[1].envelopes[0].content
    assert isinstance(content, bytes)
    mail = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    body = mail.get_body(("plain", "html"))
    assert body is not None
    text = body.get_content()
    assert "Lampe éteinte la nuit" in str(mail["Subject"]) + text
    assert "/alerts/" in text
    _, posted = webhook.posts[0]
    assert "مصباح" in json.dumps(posted, ensure_ascii=False)
    with psycopg.connect(config.database_url) as connection:
        history = store.transitions_of(connection, alert.alert_id or 0)
        attempts = connection.execute(
            "SELECT count(*) FILTER (WHERE ok) FROM notification_attempts WHERE alert_id = %s",
            (alert.alert_id,),
        ).fetchone()
    assert [(t.from_status, t.to_status) for t in history] == [
        (None, Status.FIRING),
        (Status.FIRING, Status.RESOLVED),
    ]
    assert attempts is not None
    assert attempts[0] >= 2, "mail and webhook recorded"


def test_restart_mid_incident_continues_timers_without_duplicates(config: RulesConfig) -> None:
    with publisher(config.mqtt_port) as client:
        with running_engine(config) as engine:
            for index in range(5):  # sl-001 fires (20 min); sl-002 is 10 minutes into pending
                publish_reading(
                    client, "sl-001", index, NIGHT + index * FIVE_MINUTES, light_values(0.0)
                )
            for index in range(3):
                publish_reading(
                    client, "sl-002", index, NIGHT + index * FIVE_MINUTES, light_values(0.0)
                )
            wait_until(lambda: engine.messages_applied >= 8, 20, "the readings applied")
        with running_engine(config):
            for index in range(3, 6):
                publish_reading(
                    client, "sl-002", index, NIGHT + index * FIVE_MINUTES, light_values(0.0)
                )
            dark(client, "sl-001", 5)
            wait_until(
                lambda: len(open_alerts(config.database_url, "lamp-out")) == 2, 20, "sl-002 fires"
            )
            by_device = {a.subject: a for a in open_alerts(config.database_url, "lamp-out")}
            assert by_device["sl-002"].started_at == NIGHT, "the pending timer went on"
            assert by_device["sl-002"].fired_at == NIGHT + 4 * FIVE_MINUTES
            assert len(open_alerts(config.database_url, "lamp-out")) == 2, "no duplicate"


def test_will_then_birth_with_new_boot_is_a_power_loss(config: RulesConfig) -> None:
    topic = "sc/sefrou/streetlight/sl-003/state"
    with running_engine(config), publisher(config.mqtt_port) as client:
        online = StatePayload(v=1, status=DeviceStatus.ONLINE, ts=NIGHT, boot_id="boot-a")
        client.publish_all([(topic, encode(online))])
        will = StatePayload(
            v=1, status=DeviceStatus.OFFLINE, ts=NIGHT, reason="connection_lost", boot_id="boot-a"
        )
        client.publish_all([(topic, encode(will))])
        wait_until(lambda: bool(open_alerts(config.database_url, "light-offline")), 20, "offline")
        back = StatePayload(v=1, status=DeviceStatus.ONLINE, ts=NIGHT, boot_id="boot-b")
        client.publish_all([(topic, encode(back))])
        wait_until(
            lambda: open_alerts(config.database_url, "light-offline")[0].status is Status.RESOLVED,
            20,
            "back online",
        )
    assert open_alerts(config.database_url, "light-offline")[0].cause == "power"


def test_a_bad_rule_file_never_replaces_the_running_rules(
    config: RulesConfig, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "rules:\n  - id: x\n    class: streetlight\n    title: {en: X}\n    when: lamp_pwer < 1\n",
        encoding="utf-8",
    )
    with running_engine(config) as engine, publisher(config.mqtt_port) as client:
        before = engine.rules
        outcome = engine.reload(broken)
        assert outcome.startswith("refused")
        assert "line 5" in outcome
        assert "did you mean lamp_power" in outcome
        for index in range(5):
            publish_reading(
                client, "sl-004", index, NIGHT + index * FIVE_MINUTES, light_values(0.0)
            )
        wait_until(lambda: bool(open_alerts(config.database_url, "lamp-out")), 20, "lamp-out")
        assert engine.rules is before
        fewer = tmp_path / "fewer.yaml"
        lamp_out_only = TEST_RULES.partition("  - id: light-offline")[0]
        fewer.write_text(lamp_out_only, encoding="utf-8")
        assert engine.reload(fewer) == "accepted: 1 rules"
        dark(client, "sl-004", 5)  # the swap happens at the next batch
        wait_until(lambda: len(engine.rules.rules) == 1, 20, "the new rules in service")
        assert engine.evaluator.conditions["lamp-out", "sl-004"].phase.value == "firing", (
            "the states of the rules kept carry over"
        )


def test_a_repair_is_verified_by_light_or_reopened(config: RulesConfig) -> None:
    config = replace(config, policy=Policy(verify_for=timedelta(minutes=30)))
    with running_engine(config), publisher(config.mqtt_port) as client:
        for index in range(5):
            dark(client, "sl-005", index)
            dark(client, "sl-006", index)
        wait_until(lambda: len(open_alerts(config.database_url, "lamp-out")) == 2, 20, "fired")
        by_device = {a.subject: a for a in open_alerts(config.database_url, "lamp-out")}
        # A crew reports each repair on its own, as the API and the command line do: one
        # alert per transaction, so the engine's periodic check cannot deadlock with them.
        with psycopg.connect(config.database_url) as connection:
            for alert in by_device.values():
                with connection.transaction():
                    store.change_alert(
                        connection,
                        alert.alert_id or 0,
                        lambda a: lifecycle.mark_repaired(a, a.fired_at, "crew-north", "fixed"),
                    )
        # sl-005 lights again; sl-006 stays dark for the whole verification window.
        publish_reading(client, "sl-005", 5, NIGHT + 5 * FIVE_MINUTES, light_values(55.0))
        for index in range(5, 13):
            dark(client, "sl-006", index)

        def status_of(device: str) -> Status:
            return {a.subject: a for a in open_alerts(config.database_url, "lamp-out")}[
                device
            ].status

        wait_until(lambda: status_of("sl-005") is Status.CLOSED, 20, "sl-005 verified")
        wait_until(lambda: status_of("sl-006") is Status.FIRING, 20, "sl-006 reopened")
    with psycopg.connect(config.database_url) as connection:
        notes = {
            device: [t.note for t in store.transitions_of(connection, alert.alert_id or 0)]
            for device, alert in by_device.items()
        }
    assert notes["sl-005"][-1] == "repair verified"
    assert notes["sl-006"][-1].startswith("reopened: not confirmed within")
    assert len(open_alerts(config.database_url, "lamp-out")) == 2, "reopened, not raised anew"


@pytest.mark.parametrize(("count", "cause_subject"), [(10, "street:menzel"), (12, "site:sefrou")])
def test_a_street_gone_dark_is_one_alert_that_mutes_its_lights(
    config: RulesConfig, count: int, cause_subject: str
) -> None:
    """Lights of the Menzel run (20 of the site's 22 devices) lose their link at once: one
    alert for the cause, the street (half its lights) or, past half the site, the site link;
    the lights' own offline alerts are recorded but muted."""
    lights = [f"sl-{index:03d}" for index in range(1, count + 1)]
    watcher = Recorder(config.mqtt_port, client_id="alert-watcher")
    watcher._client.subscribe("alerts/#", qos=1)
    with running_engine(config), publisher(config.mqtt_port) as client:
        for device in lights:
            dark(client, device, 0)  # heard once, so they are known to be there
        for device in lights:
            will = StatePayload(
                v=1, status=DeviceStatus.OFFLINE, ts=NIGHT, reason="connection_lost", boot_id="b"
            )
            client.publish_all([(f"sc/sefrou/streetlight/{device}/state", encode(will))])
        wait_until(lambda: bool(open_alerts(config.database_url, "group-offline")), 20, "cause")
        wait_until(
            lambda: len(open_alerts(config.database_url, "light-offline")) == len(lights),
            20,
            "the lights' alerts",
        )

        def causes_still_open() -> list[Alert]:
            return [
                alert
                for alert in open_alerts(config.database_url, "group-offline")
                if alert.status in OPEN_STATUSES
            ]

        # Past half the street the street is the cause, past half the site the site. Whether
        # the engine reads the wills in one batch or the street's half first (then the site's
        # alert closes the street's) depends on timing; the last word is one open cause.
        wait_until(
            lambda: [alert.subject for alert in causes_still_open()] == [cause_subject],
            20,
            f"one cause, {cause_subject}",
        )
        [cause] = causes_still_open()
        wait_until(
            lambda: (
                {a.muted_by for a in open_alerts(config.database_url, "light-offline")}
                == {f"suppressed:{cause.alert_id}"}
            ),
            20,
            "the lights muted by the cause",
        )
        topic = f"alerts/sefrou/group-offline/{cause_subject.replace(':', '-')}"
        wait_until(lambda: any(t == topic for t, _, _ in watcher.messages), 10, topic)
    watcher.close()
    assert notified_rules(config.database_url) == {"group-offline"}, "only the cause is told"


def notified_rules(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT DISTINCT a.rule_id FROM notifications n JOIN alerts a USING (alert_id)"
        ).fetchall()
    return {rule_id for (rule_id,) in rows}


def test_a_street_failure_widening_to_the_site_hands_over_quietly(config: RulesConfig) -> None:
    """Ten lights go (the street), then two more (the site link): the site's alert takes
    over the street's mutes; nobody is told of the single lights in between."""
    will = StatePayload(
        v=1, status=DeviceStatus.OFFLINE, ts=NIGHT, reason="connection_lost", boot_id="b"
    )
    with running_engine(config), publisher(config.mqtt_port) as client:
        for index in range(1, 13):
            dark(client, f"sl-{index:03d}", 0)
        for index in range(1, 11):
            client.publish_all([(f"sc/sefrou/streetlight/sl-{index:03d}/state", encode(will))])
        wait_until(lambda: bool(open_alerts(config.database_url, "group-offline")), 20, "street")
        for index in (11, 12):
            client.publish_all([(f"sc/sefrou/streetlight/sl-{index:03d}/state", encode(will))])

        def causes() -> dict[str, Status]:
            return {a.subject: a.status for a in open_alerts(config.database_url, "group-offline")}

        wait_until(lambda: causes().get("site:sefrou") is Status.FIRING, 20, "the site")
        wait_until(lambda: len(open_alerts(config.database_url, "light-offline")) == 12, 20)
        assert causes() == {"street:menzel": Status.CLOSED, "site:sefrou": Status.FIRING}
        [site] = [
            a
            for a in open_alerts(config.database_url, "group-offline")
            if a.subject == "site:sefrou"
        ]
        muted = {a.muted_by for a in open_alerts(config.database_url, "light-offline")}
        assert muted == {f"suppressed:{site.alert_id}"}
    assert notified_rules(config.database_url) == {"group-offline"}


def test_devices_added_changed_or_decommissioned_while_it_runs_are_taken_up(
    config: RulesConfig, broker: LocalMosquitto
) -> None:
    """No restart, no signal: a light provisioned after the start gets its alert, a street
    group change and a decommissioning are seen within the registry check (0.5 s here)."""
    config = replace(config, registry_check_s=0.5)
    with running_engine(config) as engine, publisher(broker.port) as client:
        assert "sl-099" not in engine.fleet
        with psycopg.connect(config.database_url) as connection:
            connection.execute(
                "INSERT INTO devices (device_id, site_id, device_class, name, model, latitude,"
                " longitude, street_group, cabinet, metadata)"
                " SELECT 'sl-099', site_id, device_class, 'New light', model, latitude,"
                " longitude, street_group, cabinet, metadata FROM devices"
                " WHERE device_id = 'sl-001'"
            )
            connection.execute(
                "UPDATE devices SET street_group = 'moved-street', updated_at = now()"
                " WHERE device_id = 'sl-002'"
            )
            connection.execute(
                "UPDATE devices SET decommissioned_at = now(), updated_at = now()"
                " WHERE device_id = 'sl-003'"
            )
        wait_until(lambda: "sl-099" in engine.fleet, 10, "the new light taken up")
        assert engine.fleet["sl-002"].scope.street_group == "moved-street"
        assert "sl-003" not in engine.fleet
        for index in range(6):  # the new light dark for 25 minutes at night
            dark(client, "sl-099", index)
        wait_until(
            lambda: [a.subject for a in open_alerts(config.database_url, "lamp-out")] == ["sl-099"],
            20,
            "the new light's lamp-out",
        )


def test_a_new_device_that_speaks_before_the_next_registry_check_is_taken_up_at_once(
    config: RulesConfig, broker: LocalMosquitto
) -> None:
    """Its first readings are not ignored until the periodic check (an hour away here): a
    message from a device the engine does not know makes it look at the registry then."""
    config = replace(config, registry_check_s=3600.0)
    with running_engine(config) as engine, publisher(broker.port) as client:
        with psycopg.connect(config.database_url) as connection:
            connection.execute(
                "INSERT INTO devices (device_id, site_id, device_class, name, model, latitude,"
                " longitude, street_group, cabinet, metadata)"
                " SELECT 'sl-098', site_id, device_class, 'New light', model, latitude,"
                " longitude, street_group, cabinet, metadata FROM devices"
                " WHERE device_id = 'sl-001'"
            )
        for index in range(6):  # dark for 25 minutes at night, from its very first reading
            dark(client, "sl-098", index)
        wait_until(
            lambda: [a.subject for a in open_alerts(config.database_url, "lamp-out")] == ["sl-098"],
            20,
            "the new light's lamp-out",
        )
        assert "sl-098" in engine.fleet


def test_a_will_followed_by_a_birth_within_the_grace_raises_no_alert(
    config: RulesConfig, rules_file: Path
) -> None:
    """A client taking a device's session over for a moment (or a quick reconnection) is
    not an outage: no alert unless the device stays gone longer than the rule's grace. On the
    wall clock here; sl-006's will comes after sl-005 is back, so once sl-006's alert fired,
    sl-005's grace is over too."""
    rules_file.write_text(TEST_RULES.replace("grace: 0s", "grace: 1s"), encoding="utf-8")
    config = replace(config, event_time=False)

    def state(device_id: str, online: bool) -> tuple[str, bytes]:
        payload = StatePayload(
            v=1,
            status=DeviceStatus.ONLINE if online else DeviceStatus.OFFLINE,
            ts=datetime.now(UTC),
            reason=None if online else "connection_lost",
            boot_id="boot-a",
        )
        return f"sc/sefrou/streetlight/{device_id}/state", encode(payload)

    with running_engine(config), publisher(config.mqtt_port) as client:
        client.publish_all([state("sl-005", True), state("sl-006", True)])
        client.publish_all([state("sl-005", False), state("sl-005", True)])  # taken over, back
        client.publish_all([state("sl-006", False)])  # gone for good
        wait_until(lambda: bool(open_alerts(config.database_url, "light-offline")), 20, "sl-006")
        [alert] = open_alerts(config.database_url, "light-offline")
    assert alert.subject == "sl-006"
    assert alert.fired_at - alert.started_at >= timedelta(seconds=1), "after the grace"


def escalating_routing(webhook_port: int) -> str:
    hook = f"json://127.0.0.1:{webhook_port}"
    return f"""
link_base: https://smartcity.sefrou.test/console
retry: {{attempts: 2, first_delay_s: 0.05}}
routes:
  - {{name: crew-hook, urls: ["{hook}/crew"]}}
  - {{name: supervisors, language: ar, urls: ["{hook}/supervisors"]}}
escalation:
  - {{after: {{critical: 30m}}, routes: [supervisors]}}
  - {{after: {{critical: 30m}}, on_call: true}}
on_call:
  timezone: Africa/Casablanca
  handover: mon 08:00
  first_week: 2026-12-07
  rota: [{{name: youssef, language: en, urls: ["{hook}/youssef"]}}]
"""


def test_an_alert_left_unacknowledged_goes_to_the_supervisors_then_to_whoever_is_on_call(
    config: RulesConfig, broker: LocalMosquitto, webhook: Webhook
) -> None:
    """In the readings' time: the lamp is dark from 22:00, the alert fires at 22:20 to the
    crew, goes at 22:50 to the supervisors (and to nobody else), at 23:20 to the technician
    on call; each notice is recorded with its route, and the alert keeps its step."""
    escalating = replace(
        config, notifications=parse_notification_config(escalating_routing(webhook.port))
    )

    def paths() -> list[str]:
        return [path for path, _ in webhook.posts]

    with running_engine(escalating), publisher(broker.port) as client:
        for index in range(19):  # dark for 90 minutes at night
            dark(client, "sl-001", index)
            if index == 5:
                wait_until(lambda: "/crew" in paths(), 20, "the crew's notice")
            if index == 11:
                wait_until(lambda: "/supervisors" in paths(), 20, "the supervisors' notice")
        wait_until(lambda: "/youssef" in paths(), 20, "the on-call technician's notice")
    assert paths().count("/crew") == 1, "the crew: the firing notice only"
    assert paths().count("/supervisors") == 1
    assert paths().count("/youssef") == 1
    alert = open_alerts(config.database_url, "lamp-out")[0]
    assert alert.escalation_step == 2
    assert alert.escalated_at is not None
    assert alert.escalated_at >= NIGHT + 16 * FIVE_MINUTES, "30 min after the first step"
    with psycopg.connect(config.database_url) as connection:
        told = connection.execute(
            "SELECT n.kind, n.escalation_step, a.route FROM notifications n"
            " JOIN notification_attempts a USING (notification_id)"
            " WHERE n.alert_id = %s AND a.ok ORDER BY n.notification_id",
            (alert.alert_id,),
        ).fetchall()
    assert told == [
        ("firing", 0, "crew-hook"),
        ("escalation", 1, "supervisors"),
        ("escalation", 2, "on-call-youssef"),
    ]


def test_a_citizens_alert_is_merged_into_the_alert_telemetry_raises_on_its_device(
    config: RulesConfig, broker: LocalMosquitto
) -> None:
    """A citizen reported sl-001 dark (the API raised a citizen-report alert); when the lamp's
    readings fire lamp-out, the citizen's alert closes into it: one alert for the crews."""
    with psycopg.connect(config.database_url) as connection:
        outcome = lifecycle.fire(
            CITIZEN_REPORT, "sl-001", Severity.WARNING, NIGHT, NIGHT, cause="citizen report 1"
        )
        citizens, _ = store.insert_alert(connection, outcome, "Fault reported by a citizen")
    with running_engine(config), publisher(broker.port) as client:
        for index in range(6):
            dark(client, "sl-001", index)
        wait_until(lambda: bool(open_alerts(config.database_url, "lamp-out")), 20, "lamp-out")
    [lamp_out] = open_alerts(config.database_url, "lamp-out")
    with psycopg.connect(config.database_url) as connection:
        merged = store.load_alert(connection, citizens.alert_id or 0)
        history = store.transitions_of(connection, citizens.alert_id or 0)
    assert merged.status is Status.CLOSED
    assert merged.merged_into == lamp_out.alert_id
    assert history[-1].note.startswith(f"merged into alert {lamp_out.alert_id} (lamp-out)")
