"""Notifications through apprise to a real SMTP server (aiosmtpd) and a real local webhook."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import itertools
import re
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from alerts.catalogue import NoticeKind
from alerts.delivery import DeliveryList
from alerts.dispatch import Dispatcher
from alerts.routing import NotificationConfig, parse_notification_config
from alerts.wording import AlertNotice, render
from protocol.payloads import Severity
from runtime.local_services import free_port
from tests.integration.receivers import MailCollector, Webhook

pytestmark = pytest.mark.integration

ARABIC_LETTER = re.compile(r"[\u0621-\u064A]")
SMTP_FROM, SMTP_TO = "alerts@sefrou.test", "crew@sefrou.test"

NOTICE = AlertNotice(
    alert_id=42,
    rule_id="lamp-out",
    severity=Severity.CRITICAL,
    kind=NoticeKind.FIRING,
    titles={"en": "Lamp out at night", "fr": "Lampe éteinte la nuit", "ar": "مصباح مطفأ ليلًا"},
    device_id="sl-menzel-012",
    device_name="Menzel #12",
    place="Entrée de Menzel",
    zone="menzel",
    latitude=33.8268,
    longitude=-4.8236,
    since=datetime(2026, 6, 29, 17, 42, tzinfo=UTC),  # Morocco at UTC+1 then
    timezone="Africa/Casablanca",
    cause="communication",
    link="https://smartcity.sefrou.ma/console/alerts/42",
)


def routing(url: str, language: str, retry: str = "{attempts: 3, first_delay_s: 0.05}") -> str:
    return (
        f"link_base: https://smartcity.sefrou.ma/console\nretry: {retry}\nroutes:\n"
        f'  - {{name: crew, language: {language}, urls: ["{url}"]}}\n'
    )


def send(config: NotificationConfig, notice: AlertNotice = NOTICE) -> DeliveryList:
    records = DeliveryList()
    dispatcher = Dispatcher(config, records)
    dispatcher.submit(notice)
    assert dispatcher.close(timeout_s=30)
    return records


def test_french_notice_arrives_by_email(smtp_server: tuple[int, MailCollector]) -> None:
    port, collector = smtp_server
    url = f"mailto://127.0.0.1:{port}?from={SMTP_FROM}&to={SMTP_TO}"
    records = send(parse_notification_config(routing(url, "fr")))

    [delivery] = records.deliveries
    assert (delivery.ok, delivery.attempt, delivery.language) == (True, 1, "fr")
    [envelope] = collector.envelopes
    assert envelope.mail_from == SMTP_FROM
    assert envelope.rcpt_tos == [SMTP_TO]
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    title, body = render(NOTICE, "fr")
    assert message["Subject"] == title  # an encoded UTF-8 header, decoded by the policy
    assert "Lampe éteinte la nuit" in message["Subject"]
    text_part = message.get_body(preferencelist=("plain",))
    assert text_part is not None
    text = text_part.get_content()
    assert "Lieu : Entrée de Menzel" in text
    assert "Depuis le 29/06/2026 à 18:42" in text
    assert "perte de communication" in text
    assert NOTICE.link in text
    assert [line.rstrip() for line in text.strip().splitlines()] == body.splitlines()


def test_arabic_notice_arrives_at_the_webhook(webhook: Webhook) -> None:
    url = f"json://127.0.0.1:{webhook.port}/alerts"
    records = send(parse_notification_config(routing(url, "ar")))

    assert [d.ok for d in records.deliveries] == [True]
    [(path, payload)] = webhook.posts
    assert path == "/alerts"
    title, body = render(NOTICE, "ar")
    assert (payload["title"], payload["message"]) == (title, body)
    assert ARABIC_LETTER.search(str(payload["message"]))
    assert "مصباح مطفأ ليلًا" in str(payload["title"])
    assert "18:42" in str(payload["message"])
    assert payload["type"] == "failure"  # critical


def test_webhook_failing_twice_gets_three_attempts_with_growing_delays(webhook: Webhook) -> None:
    webhook.statuses = itertools.chain([500, 500], itertools.repeat(200))
    url = f"json://hook:w3bh00k-pass@127.0.0.1:{webhook.port}/alerts"
    config = parse_notification_config(routing(url, "fr", "{attempts: 4, first_delay_s: 0.05}"))
    records = send(config)

    deliveries = records.deliveries
    assert [(d.attempt, d.ok) for d in deliveries] == [(1, False), (2, False), (3, True)]
    assert all("500" in d.error for d in deliveries[:2])
    assert len(webhook.posts) == 3
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(deliveries)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.15
    assert gaps[1] > gaps[0]
    assert webhook.authorizations[0].startswith("Basic ")  # the password was used ...
    for delivery in deliveries:  # ... and never recorded
        assert "w3bh00k-pass" not in delivery.url
        assert delivery.url.startswith(f"json://hook:****@127.0.0.1:{webhook.port}/alerts")


def test_unreachable_smtp_server_records_every_attempt_and_never_raises() -> None:
    port = free_port()  # nothing listens there
    url = f"mailto://crew:sm7p-pass@127.0.0.1:{port}?from={SMTP_FROM}&to={SMTP_TO}"
    config = parse_notification_config(routing(url, "ar", "{attempts: 3, first_delay_s: 0.05}"))
    records = send(config, dataclasses.replace(NOTICE, kind=NoticeKind.ESCALATION))

    deliveries = records.deliveries
    assert [(d.attempt, d.ok) for d in deliveries] == [(1, False), (2, False), (3, False)]
    assert all(d.error for d in deliveries)
    assert all(d.kind is NoticeKind.ESCALATION for d in deliveries)
    for delivery in deliveries:
        assert "sm7p-pass" not in delivery.url
        assert "****" in delivery.url


def test_both_routes_together_in_their_languages(
    smtp_server: tuple[int, MailCollector], webhook: Webhook
) -> None:
    port, collector = smtp_server
    config = parse_notification_config(
        "link_base: https://smartcity.sefrou.ma/console\n"
        "routes:\n"
        f'  - {{name: crew-mail, language: fr, zones: [menzel], urls: ["mailto://127.0.0.1:{port}'
        f'?from={SMTP_FROM}&to={SMTP_TO}"]}}\n'
        "  - {name: ops-hook, language: ar, severities: [critical],"
        f' urls: ["json://127.0.0.1:{webhook.port}/alerts"]}}\n'
    )
    handed_off: list[datetime] = []
    records = DeliveryList()
    dispatcher = Dispatcher(config, records, on_handed_off=lambda _, at: handed_off.append(at))
    dispatcher.submit(NOTICE)
    dispatcher.submit(dataclasses.replace(NOTICE, alert_id=43, zone="oued-aggai"))
    assert dispatcher.close(timeout_s=30)

    assert sorted((d.alert_id, d.route) for d in records.deliveries if d.ok) == [
        (42, "crew-mail"),
        (42, "ops-hook"),
        (43, "ops-hook"),
    ]
    assert len(collector.envelopes) == 1
    assert len(webhook.posts) == 2
    assert len(handed_off) == 2
