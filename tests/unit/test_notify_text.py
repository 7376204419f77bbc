"""Notifications without a network: text, routing, routing files, backoff, the worker."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import apprise
import pytest

from alerts.catalogue import NoticeKind
from alerts.delivery import Delivery, DeliveryList, DeliveryLog
from alerts.dispatch import Dispatcher
from alerts.errors import AlertError
from alerts.routing import (
    NotificationConfig,
    NotificationConfigError,
    RetryPolicy,
    load_notification_config,
    parse_notification_config,
)
from alerts.wording import AlertNotice, map_link, render
from protocol.payloads import Severity

LINK = "https://smartcity.sefrou.ma/console/alerts/42"
ARABIC_LETTER = re.compile(r"[\u0621-\u064A]")
EASTERN_DIGIT = re.compile(r"[\u0660-\u0669\u06F0-\u06F9]")

NOTICE = AlertNotice(
    alert_id=42,
    rule_id="lamp-out",
    severity=Severity.CRITICAL,
    kind=NoticeKind.FIRING,
    titles={"en": "Lamp out at night", "fr": "Lampe éteinte la nuit", "ar": "مصباح مطفأ ليلًا"},
    device_id="sl-menzel-012",
    device_name="Menzel #12",
    place="Menzel entrance",
    zone="menzel-entrance",
    latitude=33.8268,
    longitude=-4.8236,
    # outside Ramadan, before September 2026: Morocco at UTC+1, 17:42 UTC is 18:42 in Sefrou
    since=datetime(2026, 6, 29, 17, 42, tzinfo=UTC),
    timezone="Africa/Casablanca",
    cause="communication",
    link=LINK,
)

ROUTING = """\
link_base: https://smartcity.sefrou.ma/console/
retry: {attempts: 3, first_delay_s: 1}
routes:
  - name: night-crew-lights
    severities: [critical, warning]
    zones: [menzel-entrance, oued-aggai]
    rules: [lamp-out]
    language: fr
    urls: ["mailto://crew:s3cret@smtp.example.ma?to=crew@example.ma"]
  - name: buildings-ar
    zones: [town-hall]
    language: ar
    urls: ["json://hooks.example.ma/alerts"]
  - name: on-call-critical
    severities: [critical]
    language: en
    urls: ["ntfy://ntfy.sh/sefrou-on-call", "json://hooks.example.ma/critical"]
"""


def notice(**changes: object) -> AlertNotice:
    return dataclasses.replace(NOTICE, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- text


def test_french_text_names_place_failure_device_time_cause_map_and_link() -> None:
    title, body = render(NOTICE, "fr")
    assert title == "Alerte critique : Lampe éteinte la nuit - Menzel entrance"
    assert "Lieu : Menzel entrance" in body
    assert "Menzel #12 (sl-menzel-012)" in body
    assert "Depuis le 29/06/2026 à 18:42" in body
    assert "Cause probable : perte de communication" in body
    assert map_link(33.8268, -4.8236) in body
    assert body.endswith(f"Alerte n° 42 : {LINK}")


def test_arabic_text_is_arabic_with_western_digits() -> None:
    title, body = render(NOTICE, "ar")
    assert "مصباح مطفأ ليلًا" in title
    assert ARABIC_LETTER.search(title)
    assert ARABIC_LETTER.search(body)
    assert not EASTERN_DIGIT.search(title + body)
    assert "المكان: Menzel entrance" in body
    assert "منذ 29/06/2026 على الساعة 18:42" in body
    assert "انقطاع الاتصال" in body
    assert LINK in body
    assert "openstreetmap.org/?mlat=33.826800&mlon=-4.823600#map=19/33.826800/-4.823600" in body


def test_english_text() -> None:
    title, body = render(NOTICE, "en")
    assert title == "Critical alert: Lamp out at night - Menzel entrance"
    assert "Since 29/06/2026 at 18:42 (local time)" in body
    assert "Likely cause: loss of communication" in body
    assert LINK in body


@pytest.mark.parametrize(
    ("utc", "local"),
    [
        (datetime(2026, 6, 29, 17, 42, tzinfo=UTC), "29/06/2026 à 18:42"),  # UTC+1
        (datetime(2026, 6, 29, 23, 30, tzinfo=UTC), "30/06/2026 à 00:30"),  # next day
        (datetime(2026, 3, 1, 17, 42, tzinfo=UTC), "01/03/2026 à 17:42"),  # Ramadan: UTC+0
        # UTC+0 for good from 20 September 2026 (IANA tzdata 2026f)
        (datetime(2026, 11, 29, 17, 42, tzinfo=UTC), "29/11/2026 à 17:42"),
    ],
)
def test_time_is_the_sites_local_time(utc: datetime, local: str) -> None:
    assert f"Depuis le {local}" in render(notice(since=utc), "fr")[1]


def test_since_given_in_another_zone_is_converted_too() -> None:
    tashkent = datetime(2026, 6, 29, 22, 42, tzinfo=timezone(timedelta(hours=5)))
    assert "Since 29/06/2026 at 18:42" in render(notice(since=tashkent), "en")[1]


@pytest.mark.parametrize("language", ["fr", "ar", "en"])
def test_wording_differs_by_kind(language: str) -> None:
    titles = {render(notice(kind=kind), language)[0] for kind in NoticeKind}
    leads = {render(notice(kind=kind), language)[1].splitlines()[0] for kind in NoticeKind}
    assert len(titles) == len(leads) == len(NoticeKind)


def test_resolved_says_since_when_things_are_back_to_normal() -> None:
    assert "Revenu à la normale le 29/06/2026 à 18:42" in render(notice(kind="resolved"), "fr")[1]
    assert "Back to normal on 29/06/2026 at 18:42" in render(notice(kind="resolved"), "en")[1]
    assert "عاد إلى طبيعته يوم 29/06/2026" in render(notice(kind="resolved"), "ar")[1]


def test_missing_language_falls_back_to_english() -> None:
    title, body = render(notice(titles={"en": "Lamp out at night"}), "ar")
    assert "Lamp out at night" in title
    assert ARABIC_LETTER.search(body)


def test_no_map_without_coordinates_and_no_cause_when_unknown() -> None:
    _, body = render(notice(latitude=None, longitude=None, cause=""), "fr")
    assert "openstreetmap" not in body
    assert "Cause" not in body
    assert LINK in body


def test_unknown_cause_is_shown_as_given_and_empty_place_uses_the_device() -> None:
    title, body = render(notice(cause="vandalism", place=""), "en")
    assert "Likely cause: vandalism" in body
    assert title.endswith("- Menzel #12")
    assert "Place:" not in body


def test_title_is_one_short_line() -> None:
    for language in ("fr", "ar", "en"):
        for kind in NoticeKind:
            title, _ = render(notice(kind=kind), language)
            assert "\n" not in title
            assert len(title) <= 80


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"since": datetime(2026, 6, 29, 17, 42)}, "aware"),  # noqa: DTZ001 - the naive time is the point
        ({"severity": "urgent"}, "severity"),
        ({"timezone": "Africa/Sefrou"}, "IANA"),
        ({"latitude": None}, "both"),
        ({"link": "/alerts/42"}, "http"),
        ({"titles": {}}, "title"),
    ],
)
def test_notice_checks_itself(changes: dict[str, object], complaint: str) -> None:
    with pytest.raises(AlertError, match=complaint):
        notice(**changes)


def test_unknown_language_refused() -> None:
    with pytest.raises(AlertError, match="fr, ar, en"):
        render(NOTICE, "de")


# ------------------------------------------------------------------------------- routing


@pytest.fixture(scope="module")
def config() -> NotificationConfig:
    return parse_notification_config(ROUTING, "notifications.yaml")


def route_names(config: NotificationConfig, **changes: object) -> list[str]:
    return [route.name for route in config.routes_for(notice(**changes))]


def test_routing_by_severity_zone_and_rule(config: NotificationConfig) -> None:
    assert route_names(config) == ["night-crew-lights", "on-call-critical"]
    assert route_names(config, severity=Severity.WARNING) == ["night-crew-lights"]
    assert route_names(config, severity=Severity.INFO) == []
    assert route_names(config, zone="oued-aggai", severity=Severity.WARNING) == [
        "night-crew-lights"
    ]
    assert route_names(config, zone="town-hall", severity=Severity.INFO) == ["buildings-ar"]
    assert route_names(config, zone=None, severity=Severity.WARNING) == []
    assert route_names(config, rule_id="battery-low") == ["on-call-critical"]


def test_defaults_and_link(config: NotificationConfig) -> None:
    assert config.link(42) == LINK
    assert config.retry == RetryPolicy(attempts=3, first_delay_s=1, factor=3, max_delay_s=120)
    assert config.routes[2].zones is None
    assert config.routes[2].language == "en"


def test_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "notifications.yaml"
    path.write_text(ROUTING, encoding="utf-8")
    assert len(load_notification_config(path).routes) == 3
    with pytest.raises(NotificationConfigError, match=r"missing\.yaml: cannot read"):
        load_notification_config(tmp_path / "missing.yaml")


def broken(line: str, replacement: str) -> str:
    assert line in ROUTING
    return ROUTING.replace(line, replacement)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            broken("    language: fr\n", "    langage: fr\n"),
            r"routes\[0\] \(night-crew-lights\)\.langage: unknown field.*language.* \(line 8\)",
        ),
        (
            broken("    language: ar\n", "    language: de\n"),
            r"routes\[1\] \(buildings-ar\)\.language: .*'fr', 'ar' or 'en', not 'de' \(line 12\)",
        ),
        (
            broken("severities: [critical]\n", "severities: [urgent]\n"),
            r"routes\[2\] \(on-call-critical\)\.severities\[0\]: .*not 'urgent' \(line 15\)",
        ),
        (
            broken("zones: [town-hall]", "zones: []"),
            r"routes\[1\] \(buildings-ar\)\.zones: empty: give at least one .* \(line 11\)",
        ),
        (
            broken("{attempts: 3,", "{attempts: 0,"),
            r"retry\.attempts: .*greater than or equal to 1 \(line 2\)",
        ),
        (broken("{attempts: 3,", "{tries: 3,"), r"retry\.tries: unknown field.*attempts"),
        (broken("name: buildings-ar", "name: Buildings AR"), r"routes\[1\].*\.name: .*lower-case"),
        (
            broken("name: buildings-ar", "name: night-crew-lights"),
            r"routes\[1\].*\.name: .*also the name of routes\[0\].* \(line 10\)",
        ),
        (broken("link_base: https://", "link_base: ftp://"), r"link_base: .*http\(s\).*line 1"),
        (broken("routes:\n", "routes: [\n"), r":\d+:\d+: not valid YAML"),
        ("", r"empty"),
        ("- just a list\n", r"\(top\): give key: value pairs"),
    ],
)
def test_config_errors_name_the_key_and_the_line(text: str, expected: str) -> None:
    with pytest.raises(NotificationConfigError, match=expected) as caught:
        parse_notification_config(text, "notifications.yaml")
    assert str(caught.value).startswith("notifications.yaml")


@pytest.mark.parametrize(
    "url",
    ["bogus://crew:s3cret@example.ma", "not a url", "json://a.ma/x json://b.ma/y", "mailto://"],
)
def test_unusable_apprise_url_refused_without_showing_secrets(url: str) -> None:
    text = broken('"json://hooks.example.ma/critical"', f'"{url}"')
    with pytest.raises(NotificationConfigError) as caught:
        parse_notification_config(text, "notifications.yaml")
    message = str(caught.value)
    assert "routes[2] (on-call-critical).urls[1]: apprise cannot use" in message
    assert "(line 17)" in message
    assert "s3cret" not in message


def test_many_problems_reported_together() -> None:
    text = ROUTING.replace("language: ", "lang: ").replace("urls:", "url:")
    with pytest.raises(NotificationConfigError) as caught:
        parse_notification_config(text)
    assert str(caught.value).count(" (line ") == 5
    assert str(caught.value).endswith("; and 4 more problems")


# ------------------------------------------------------------------------------- backoff


def test_backoff_delays() -> None:
    policy = RetryPolicy(attempts=6, first_delay_s=2, factor=3, max_delay_s=60)
    assert policy.delays_s() == (2, 6, 18, 54, 60)
    assert RetryPolicy(attempts=1).delays_s() == ()
    assert RetryPolicy().delays_s() == (2, 6, 18)


class FakeTime:
    """A clock that only moves when the worker sleeps."""

    def __init__(self) -> None:
        self.now_s = 1_000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now_s

    def clock(self) -> datetime:
        return datetime(2026, 6, 29, 17, 42, tzinfo=UTC) + timedelta(seconds=self.now_s)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds


class FakeSender:
    """Fails the first ``failures`` calls, then accepts; remembers what it was given."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[tuple[str, str, str, apprise.NotifyType]] = []

    def __call__(self, url: str, title: str, body: str, notify_type: apprise.NotifyType) -> str:
        self.calls.append((url, title, body, notify_type))
        return "503 from the gateway" if len(self.calls) <= self.failures else ""


def one_route(retry: str = "{attempts: 4, first_delay_s: 2, factor: 3, max_delay_s: 120}") -> str:
    return (
        f"link_base: https://smartcity.sefrou.ma/console\nretry: {retry}\nroutes:\n"
        "  - {name: crew, language: fr,"
        ' urls: ["mailto://crew:s3cret@smtp.example.ma?to=crew@example.ma"]}\n'
    )


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def records() -> DeliveryList:
    return DeliveryList()


def dispatcher(
    routing: str, records: DeliveryLog, fake_time: FakeTime, sender: FakeSender, **options: object
) -> Dispatcher:
    return Dispatcher(
        parse_notification_config(routing),
        records,
        send=sender,
        clock=fake_time.clock,
        monotonic=fake_time.monotonic,
        sleep=fake_time.sleep,
        **options,  # type: ignore[arg-type]
    )


def test_retries_follow_the_backoff_and_every_attempt_is_recorded(
    fake_time: FakeTime, records: DeliveryList
) -> None:
    sender = FakeSender(failures=10)
    worker = dispatcher(one_route(), records, fake_time, sender)
    worker.submit(NOTICE)
    assert worker.close(timeout_s=5)
    assert fake_time.sleeps == pytest.approx([2, 6, 18])
    deliveries = records.deliveries
    assert [d.attempt for d in deliveries] == [1, 2, 3, 4]
    assert not any(d.ok for d in deliveries)
    assert {d.error for d in deliveries} == {"503 from the gateway"}
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(deliveries)]
    assert gaps == pytest.approx([2, 6, 18])


def test_success_after_failures_stops_retrying(fake_time: FakeTime, records: DeliveryList) -> None:
    sender = FakeSender(failures=2)
    worker = dispatcher(one_route(), records, fake_time, sender)
    worker.submit(NOTICE)
    assert worker.close(timeout_s=5)
    assert [(d.attempt, d.ok) for d in records.deliveries] == [(1, False), (2, False), (3, True)]
    assert fake_time.sleeps == pytest.approx([2, 6])
    url, title, body, notify_type = sender.calls[-1]
    assert url == "mailto://crew:s3cret@smtp.example.ma?to=crew@example.ma"
    assert (title, body) == render(NOTICE, "fr")
    assert notify_type is apprise.NotifyType.FAILURE


def test_record_holds_no_password(fake_time: FakeTime, records: DeliveryList) -> None:
    worker = dispatcher(one_route(), records, fake_time, FakeSender())
    worker.submit(notice(kind=NoticeKind.RESOLVED))
    assert worker.close(timeout_s=5)
    [delivery] = records.deliveries
    assert delivery == Delivery(
        alert_id=42,
        kind=NoticeKind.RESOLVED,
        route="crew",
        url=delivery.url,
        language="fr",
        attempt=1,
        at=fake_time.clock(),
        ok=True,
        error="",
        final=True,
        notice_sent=True,
    )
    assert delivery.url.startswith("mailto://crew:****@smtp.example.ma")
    assert "s3cret" not in delivery.url


def test_each_url_of_each_matching_route_in_its_language(
    fake_time: FakeTime, records: DeliveryList
) -> None:
    sender = FakeSender()
    worker = dispatcher(ROUTING, records, fake_time, sender)
    worker.submit(notice(zone="town-hall"))  # buildings-ar and on-call-critical's two URLs
    assert worker.close(timeout_s=5)
    assert sorted((d.route, d.language) for d in records.deliveries) == [
        ("buildings-ar", "ar"),
        ("on-call-critical", "en"),
        ("on-call-critical", "en"),
    ]
    arabic = next(call for call in sender.calls if call[0] == "json://hooks.example.ma/alerts")
    assert ARABIC_LETTER.search(arabic[2])


def test_handed_off_once_per_notice_before_the_first_attempt(
    fake_time: FakeTime, records: DeliveryList
) -> None:
    handed: list[tuple[int, datetime, int]] = []
    sender = FakeSender(failures=1)
    worker = dispatcher(
        one_route(),
        records,
        fake_time,
        sender,
        on_handed_off=lambda n, at: handed.append((n.alert_id, at, len(sender.calls))),
    )
    worker.submit(NOTICE)
    worker.submit(notice(alert_id=43))
    assert worker.close(timeout_s=5)
    assert [(alert, calls_before) for alert, _, calls_before in handed] == [(42, 0), (43, 2)]
    assert [d.alert_id for d in records.deliveries] == [42, 42, 43]  # one URL: in order


def test_unexpected_exception_is_logged_recorded_and_the_worker_goes_on(
    fake_time: FakeTime, records: DeliveryList, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def flaky(url: str, title: str, body: str, notify_type: apprise.NotifyType) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("plugin bug")
        return ""

    worker = Dispatcher(
        parse_notification_config(one_route("{attempts: 1}")),
        records,
        send=flaky,
        clock=fake_time.clock,
        monotonic=fake_time.monotonic,
        sleep=fake_time.sleep,
    )
    with caplog.at_level(logging.ERROR, logger="smartcity.alerts.dispatch"):
        worker.submit(NOTICE)
        worker.submit(notice(alert_id=43))
        assert worker.close(timeout_s=5)
    first, second = records.deliveries
    assert (first.ok, second.ok) == (False, True)
    assert first.error == "unexpected KeyError: 'plugin bug'"
    assert "failed unexpectedly" in caplog.text


def test_a_failing_delivery_log_does_not_stop_sending(fake_time: FakeTime) -> None:
    class BrokenLog:
        def record(self, delivery: Delivery) -> None:
            raise OSError("disk full")

    sender = FakeSender()
    worker = dispatcher(one_route(), BrokenLog(), fake_time, sender)
    worker.submit(NOTICE)
    worker.submit(notice(alert_id=43))
    assert worker.close(timeout_s=5)
    assert len(sender.calls) == 2


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_submit_never_waits_for_a_slow_sender(records: DeliveryList, gate: threading.Event) -> None:
    def stuck(url: str, title: str, body: str, notify_type: apprise.NotifyType) -> str:
        gate.wait(10)
        return ""

    worker = Dispatcher(parse_notification_config(one_route()), records, send=stuck)
    started = time.perf_counter()
    for alert_id in range(100):
        worker.submit(notice(alert_id=alert_id))
    assert time.perf_counter() - started < 0.5
    gate.set()
    assert worker.close(timeout_s=10)
    assert len(records.deliveries) == 100
    assert all(d.ok for d in records.deliveries)


def test_close_gives_up_a_long_backoff_and_records_it(records: DeliveryList) -> None:
    sender = FakeSender(failures=10)
    routing = one_route("{attempts: 3, first_delay_s: 60}")
    worker = Dispatcher(parse_notification_config(routing), records, send=sender)
    worker.submit(NOTICE)
    deadline = time.monotonic() + 5
    while not records.deliveries and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    assert not worker.close(timeout_s=0.2)
    assert time.monotonic() - started < 2  # the 60 s wait was cut short
    first, given_up = records.deliveries
    assert (first.attempt, first.ok) == (1, False)
    assert (given_up.attempt, given_up.ok) == (2, False)
    assert "closed" in given_up.error
    assert len(sender.calls) == 1


def test_submit_after_close_is_logged_and_dropped(
    records: DeliveryList, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Dispatcher(parse_notification_config(one_route()), records, send=FakeSender())
    assert worker.close(timeout_s=5)
    with caplog.at_level(logging.ERROR, logger="smartcity.alerts.dispatch"):
        worker.submit(NOTICE)
    assert "dropped" in caplog.text
    assert records.deliveries == []


def test_a_notice_nobody_gets_is_logged(
    fake_time: FakeTime, records: DeliveryList, caplog: pytest.LogCaptureFixture
) -> None:
    worker = dispatcher(ROUTING, records, fake_time, FakeSender())
    with caplog.at_level(logging.INFO, logger="smartcity.alerts.dispatch"):
        worker.submit(notice(severity=Severity.INFO, zone="oued-aggai"))
        assert worker.close(timeout_s=5)
    assert "no route for alert 42" in caplog.text
    assert records.deliveries == []


def test_a_notice_is_done_only_when_every_url_is(fake_time: FakeTime) -> None:
    """One URL takes it at once, the other fails twice and gives up: the notice is done (and
    was sent somewhere) only with the last attempt of the last URL."""
    routing = (
        "link_base: https://x.test/console\nretry: {attempts: 2, first_delay_s: 1}\nroutes:\n"
        "  - {name: a, language: fr, urls: ['json://a.test/hook']}\n"
        "  - {name: b, language: fr, urls: ['json://b.test/hook']}\n"
    )

    class RefusesB(FakeSender):
        def __call__(self, url: str, title: str, body: str, notify_type: apprise.NotifyType) -> str:
            super().__call__(url, title, body, notify_type)
            return "refused" if "b.test" in url else ""

    records = DeliveryList()
    worker = dispatcher(routing, records, fake_time, RefusesB())
    worker.submit(notice())
    assert worker.close(timeout_s=5)
    outcome = [(d.route, d.attempt, d.ok, d.final, d.notice_sent) for d in records.deliveries]
    assert outcome == [
        ("a", 1, True, False, True),
        ("b", 1, False, False, True),
        ("b", 2, False, True, True),
    ]
