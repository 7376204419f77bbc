"""Alert notifications through apprise: text, routing, retries, and a record of every attempt.

:func:`render` (the text, in French, Arabic or English) and :meth:`NotificationConfig.routes_for`
(who gets what) are pure. :class:`Dispatcher` does the sending in a worker thread of its own, so
the rules engine never waits for a slow mail server; every attempt, good or bad, goes to a
:class:`DeliveryLog`.

A routing file (YAML) looks like::

    link_base: https://smartcity.sefrou.ma/console
    retry: {attempts: 4, first_delay_s: 2, factor: 3, max_delay_s: 120}
    routes:
      - name: night-crew-lights
        severities: [critical, warning]     # all when absent
        zones: [menzel, oued-aggai]         # street groups or building ids; all when absent
        rules: [lamp-out]                   # rule ids; all when absent
        language: fr                        # fr | ar | en
        urls: ["mailto://user:pass@smtp.example.ma?to=crew@example.ma"]
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Final, Literal, Protocol, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import apprise
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from alerts.errors import AlertError
from protocol.payloads import Severity
from protocol.topics import IDENTIFIER_PATTERN
from protocol.yamlfile import YamlLocator, read_yaml

with warnings.catch_warnings():
    # apprise's PGP helper imports the standard imghdr module, deprecated in Python 3.11 and
    # 3.12; importing it here, once and quietly, keeps that warning out of whichever thread
    # first parses an apprise URL (apprise shims the module itself on 3.13, where it is gone).
    warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
    with contextlib.suppress(ImportError):
        importlib.import_module("imghdr")

log = logging.getLogger("smartcity.alerts.notify")

Language = Literal["fr", "ar", "en"]
SEVERITIES: Final[tuple[str, ...]] = tuple(severity.value for severity in Severity)
LANGUAGES: Final[tuple[str, ...]] = get_args(Language)


class NotificationConfigError(AlertError):
    """A routing file that cannot be read or is not valid; says where (key path, line)."""


class NoticeKind(StrEnum):
    """Why a notice is sent: the wording of the text depends on it."""

    FIRING = "firing"
    REMINDER = "reminder"
    ESCALATION = "escalation"
    RESOLVED = "resolved"
    REOPENED = "reopened"


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One thing to tell people about an alert.

    ``titles`` maps a language code to what failed ("en" is the fallback). ``since`` is when
    the state being told began: the fault for firing, reminder, escalation and reopened
    notices, the return to normal for resolved ones. ``zone`` (street group or building id) is
    the routing key; ``place`` is its name for people.
    """

    alert_id: int
    rule_id: str
    severity: Severity
    kind: NoticeKind
    titles: Mapping[str, str]
    device_id: str
    device_name: str
    place: str
    zone: str | None
    latitude: float | None
    longitude: float | None
    since: datetime
    timezone: str
    link: str
    cause: str = ""
    notification_id: int | None = None
    """The stored notification this notice sends, when there is one."""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise AlertError(f"severity {self.severity!r}: give one of {', '.join(SEVERITIES)}")
        try:
            object.__setattr__(self, "kind", NoticeKind(self.kind))
        except ValueError:
            kinds = ", ".join(NoticeKind)
            raise AlertError(f"kind {self.kind!r}: give one of {kinds}") from None
        if not any(self.titles.values()):
            raise AlertError(f"alert {self.alert_id}: give a title, at least in English ('en')")
        if self.since.utcoffset() is None:
            raise AlertError(f"since {self.since.isoformat()}: give an aware time (UTC)")
        if (self.latitude is None) != (self.longitude is None):
            raise AlertError("give both latitude and longitude, or neither")
        if not self.link.startswith(("https://", "http://")):
            raise AlertError(f"link {self.link!r}: give a full http(s) URL to the alert")
        _zone_info(self.timezone)
        object.__setattr__(self, "titles", MappingProxyType(dict(self.titles)))

    def title(self, language: str) -> str:
        """What failed, in ``language``; in English, or any language given, when missing."""
        for candidate in (language, "en"):
            if self.titles.get(candidate):
                return self.titles[candidate]
        return next(text for text in self.titles.values() if text)


@lru_cache(maxsize=64)
def _zone_info(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise AlertError(
            f"timezone {name!r} is not an IANA time zone: give one such as 'Africa/Casablanca'"
        ) from error


# ---------------------------------------------------------------------------------- text


@dataclass(frozen=True, slots=True)
class _Wording:
    """The phrases of one language. Templates take {alert}, {Alert}, {what} and {place}."""

    alert: Mapping[str, str]
    """The alert by severity: 'alerte critique'."""
    title: Mapping[NoticeKind, str]
    lead: Mapping[NoticeKind, str]
    since: str
    """Templates with {date} and {time}: since when the fault lasts ..."""
    back_since: str
    """... or since when things are back to normal (resolved notices)."""
    place: str
    device: str
    cause: str
    map: str
    link: str
    """Takes {alert_id}."""
    colon: str
    causes: Mapping[str, str]


_WORDING: Final[Mapping[str, _Wording]] = {
    "fr": _Wording(
        alert={"critical": "alerte critique", "warning": "avertissement", "info": "information"},
        title={
            NoticeKind.FIRING: "{Alert} : {what} - {place}",
            NoticeKind.REMINDER: "Rappel, {alert} : {what} - {place}",
            NoticeKind.ESCALATION: "Escalade, {alert} : {what} - {place}",
            NoticeKind.RESOLVED: "Résolu : {what} - {place}",
            NoticeKind.REOPENED: "Réouverture, {alert} : {what} - {place}",
        },
        lead={
            NoticeKind.FIRING: "{Alert} : {what}.",
            NoticeKind.REMINDER: "Rappel : {what}, toujours en cours ({alert}).",
            NoticeKind.ESCALATION: "Escalade : {what}, toujours sans intervention ({alert}).",
            NoticeKind.RESOLVED: "Résolu : {what}, la situation est revenue à la normale.",
            NoticeKind.REOPENED: "Réouverture : {what}, le problème est revenu ({alert}).",
        },
        since="Depuis le {date} à {time} (heure locale)",
        back_since="Revenu à la normale le {date} à {time} (heure locale)",
        place="Lieu",
        device="Appareil",
        cause="Cause probable",
        map="Carte",
        link="Alerte n° {alert_id}",
        colon=" : ",
        causes={
            "communication": "perte de communication",
            "power": "alimentation électrique",
            "battery": "batterie",
            "lamp": "lampe",
            "solar_panel": "panneau solaire",
            "sensor": "capteur",
        },
    ),
    "ar": _Wording(
        alert={"critical": "تنبيه حرج", "warning": "تحذير", "info": "إشعار"},
        title={
            NoticeKind.FIRING: "{alert}: {what} - {place}",
            NoticeKind.REMINDER: "تذكير، {alert}: {what} - {place}",
            NoticeKind.ESCALATION: "تصعيد، {alert}: {what} - {place}",
            NoticeKind.RESOLVED: "انتهى التنبيه: {what} - {place}",
            NoticeKind.REOPENED: "أُعيد فتح {alert}: {what} - {place}",
        },
        lead={
            NoticeKind.FIRING: "{alert}: {what}.",
            NoticeKind.REMINDER: "تذكير: {what}، ما زال مستمرًا ({alert}).",
            NoticeKind.ESCALATION: "تصعيد: {what}، لم تتم معالجته بعد ({alert}).",
            NoticeKind.RESOLVED: "انتهى التنبيه: {what}، عاد الوضع إلى طبيعته.",
            NoticeKind.REOPENED: "أُعيد فتح التنبيه: {what}، عاد المشكل من جديد ({alert}).",
        },
        since="منذ {date} على الساعة {time} (بالتوقيت المحلي)",
        back_since="عاد إلى طبيعته يوم {date} على الساعة {time} (بالتوقيت المحلي)",
        place="المكان",
        device="الجهاز",
        cause="السبب المحتمل",
        map="الخريطة",
        link="التنبيه رقم {alert_id}",
        colon=": ",
        causes={
            "communication": "انقطاع الاتصال",
            "power": "التغذية الكهربائية",
            "battery": "البطارية",
            "lamp": "المصباح",
            "solar_panel": "اللوح الشمسي",
            "sensor": "المستشعر",
        },
    ),
    "en": _Wording(
        alert={"critical": "critical alert", "warning": "warning", "info": "notice"},
        title={
            NoticeKind.FIRING: "{Alert}: {what} - {place}",
            NoticeKind.REMINDER: "Reminder, {alert}: {what} - {place}",
            NoticeKind.ESCALATION: "Escalation, {alert}: {what} - {place}",
            NoticeKind.RESOLVED: "Resolved: {what} - {place}",
            NoticeKind.REOPENED: "Reopened, {alert}: {what} - {place}",
        },
        lead={
            NoticeKind.FIRING: "{Alert}: {what}.",
            NoticeKind.REMINDER: "Reminder: {what}, still ongoing ({alert}).",
            NoticeKind.ESCALATION: "Escalation: {what}, still not handled ({alert}).",
            NoticeKind.RESOLVED: "Resolved: {what}, back to normal.",
            NoticeKind.REOPENED: "Reopened: {what}, the problem is back ({alert}).",
        },
        since="Since {date} at {time} (local time)",
        back_since="Back to normal on {date} at {time} (local time)",
        place="Place",
        device="Device",
        cause="Likely cause",
        map="Map",
        link="Alert #{alert_id}",
        colon=": ",
        causes={
            "communication": "loss of communication",
            "power": "power supply",
            "battery": "battery",
            "lamp": "lamp",
            "solar_panel": "solar panel",
            "sensor": "sensor",
        },
    ),
}


def map_link(latitude: float, longitude: float) -> str:
    """An OpenStreetMap link with a marker on the point, zoomed to the street."""
    lat, lon = f"{latitude:.6f}", f"{longitude:.6f}"
    return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=19/{lat}/{lon}"


def render(notice: AlertNotice, language: str) -> tuple[str, str]:
    """The title (one short line, fit for an SMS) and the body of ``notice`` in ``language``.

    Times are the site's local time, written with Western digits in every language.
    """
    if language not in _WORDING:
        raise AlertError(f"language {language!r}: give one of {', '.join(LANGUAGES)}")
    wording = _WORDING[language]
    alert = wording.alert[notice.severity]
    words = {
        "alert": alert,
        "Alert": alert[:1].upper() + alert[1:],
        "what": notice.title(language),
        "place": notice.place or notice.device_name or notice.device_id,
    }
    local = notice.since.astimezone(_zone_info(notice.timezone))
    when = {"date": local.strftime("%d/%m/%Y"), "time": local.strftime("%H:%M")}
    since = wording.back_since if notice.kind is NoticeKind.RESOLVED else wording.since
    device = notice.device_id
    if notice.device_name and notice.device_name != notice.device_id:
        device = f"{notice.device_name} ({notice.device_id})"
    colon = wording.colon
    lines = [wording.lead[notice.kind].format(**words)]
    if notice.place:
        lines.append(f"{wording.place}{colon}{notice.place}")
    lines += [f"{wording.device}{colon}{device}", since.format(**when)]
    if notice.cause:
        lines.append(f"{wording.cause}{colon}{wording.causes.get(notice.cause, notice.cause)}")
    if notice.latitude is not None and notice.longitude is not None:
        lines.append(f"{wording.map}{colon}{map_link(notice.latitude, notice.longitude)}")
    lines.append(f"{wording.link.format(alert_id=notice.alert_id)}{colon}{notice.link}")
    return wording.title[notice.kind].format(**words), "\n".join(lines)


# ------------------------------------------------------------------------------- routing


def hide_secrets(url: str) -> str:
    """``url`` as apprise shows it with privacy on (passwords and tokens masked).

    A URL apprise cannot use is shown by its scheme alone: it may hold a secret anywhere.
    """
    service = apprise.Apprise.instantiate(url)
    if service is None:
        scheme, separator, _ = url.partition("://")
        return f"{scheme}://(unusable URL)" if separator else "(unusable URL)"
    shown: str = service.url(privacy=True)  # type: ignore[no-untyped-call]  # untyped in apprise
    return shown


def _check_apprise_url(url: str) -> str:
    service = apprise.Apprise()
    if not service.add(url) or len(service) != 1:
        scheme = url.partition("://")[0] if "://" in url else ""
        what = f"this {scheme}:// URL" if scheme else "this text (no scheme://)"
        raise ValueError(
            f"apprise cannot use {what}: check it against the apprise documentation "
            "(https://github.com/caronc/apprise/wiki); give one URL per item"
        )
    return url


_Name = Annotated[str, Field(min_length=1, max_length=64)]
_AppriseUrl = Annotated[str, Field(min_length=1), AfterValidator(_check_apprise_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RetryPolicy(_Strict):
    """At most ``attempts`` attempts per URL; the n-th wait is first_delay_s * factor**(n-1)."""

    attempts: int = Field(4, ge=1, le=20)
    first_delay_s: float = Field(2.0, ge=0, le=3600)
    factor: float = Field(3.0, ge=1, le=10)
    max_delay_s: float = Field(120.0, ge=0, le=86_400)

    def delay_s(self, failed_attempts: int) -> float:
        """The wait [s] before the next attempt, after ``failed_attempts`` (1 or more) failed."""
        return min(self.first_delay_s * self.factor ** (failed_attempts - 1), self.max_delay_s)

    def delays_s(self) -> tuple[float, ...]:
        """Every wait [s] between attempts, when all of them fail."""
        return tuple(self.delay_s(failed) for failed in range(1, self.attempts))


class Route(_Strict):
    """Who is told, in which language: the notices matching every filter given."""

    name: Annotated[str, Field(pattern=IDENTIFIER_PATTERN.pattern)]
    severities: Annotated[tuple[Severity, ...], Field(min_length=1)] | None = None
    zones: Annotated[tuple[_Name, ...], Field(min_length=1)] | None = None
    rules: Annotated[tuple[_Name, ...], Field(min_length=1)] | None = None
    language: Language = "fr"
    urls: Annotated[tuple[_AppriseUrl, ...], Field(min_length=1)]

    def matches(self, notice: AlertNotice) -> bool:
        """Whether ``notice`` passes the filters: a filter left out lets everything through."""
        return (
            (self.severities is None or notice.severity in self.severities)
            and (self.zones is None or notice.zone in self.zones)
            and (self.rules is None or notice.rule_id in self.rules)
        )


class NotificationConfig(_Strict):
    """Where notices go: the routes, the retry policy and the base of alert links."""

    link_base: Annotated[str, Field(pattern=r"^https?://\S+$")]
    retry: RetryPolicy = RetryPolicy()
    routes: tuple[Route, ...] = ()

    def routes_for(self, notice: AlertNotice) -> list[Route]:
        """Every route matching ``notice``, in file order."""
        return [route for route in self.routes if route.matches(notice)]

    def link(self, alert_id: int) -> str:
        """The URL of an alert in the crew console."""
        return f"{self.link_base.rstrip('/')}/alerts/{alert_id}"


_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "": tuple(NotificationConfig.model_fields),
    "retry": tuple(RetryPolicy.model_fields),
    "routes": tuple(Route.model_fields),
}


def load_notification_config(path: str | Path) -> NotificationConfig:
    """Read and check a routing file; a NotificationConfigError says what to fix, and where."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as error:
        raise NotificationConfigError(f"{path}: cannot read the routing file: {error}") from error
    return parse_notification_config(text, str(path))


def parse_notification_config(text: str, source: str = "<notifications>") -> NotificationConfig:
    """Check routing YAML; errors name ``source``, the key path and the line."""
    root, data = read_yaml(text, source, NotificationConfigError)
    where = YamlLocator(source, root, NotificationConfigError, label_keys=("name",))
    if data is None:
        raise NotificationConfigError(f"{source}: empty; give at least link_base and routes")
    try:
        config = NotificationConfig.model_validate(data)
    except ValidationError as error:
        raise where.validation_error(error, _message) from None
    first_seen: dict[str, int] = {}
    for index, route in enumerate(config.routes):
        if route.name in first_seen:
            raise where.error(
                ("routes", index, "name"),
                f"route name {route.name!r} is also the name of routes[{first_seen[route.name]}]:"
                " give each route its own name",
            )
        first_seen[route.name] = index
    return config


def _message(problem: ErrorDetails) -> str:
    """Pydantic's message, made to say what to change where it can."""
    kind, value = problem["type"], problem.get("input")
    if kind == "extra_forbidden":
        loc = problem["loc"]
        known = _FIELDS.get(str(loc[0]) if len(loc) > 1 else "", ())
        return f"unknown field: check its spelling (known: {', '.join(known)})"
    if kind in {"literal_error", "enum"}:
        return f"{problem['msg']}, not {value!r}"
    if kind == "string_pattern_mismatch" and problem["loc"][-1] == "name":
        return f"{value!r}: use 1-64 lower-case letters, digits and inner hyphens"
    if kind == "string_pattern_mismatch" and problem["loc"][-1] == "link_base":
        return f"{value!r}: give the console's http(s) URL, such as https://example.ma/console"
    if kind == "too_short":
        return "empty: give at least one item, or leave the key out"
    if kind == "value_error":
        return str(problem.get("ctx", {}).get("error", problem["msg"]))
    if kind == "model_type":
        return "give key: value pairs here"
    return problem["msg"]


# ------------------------------------------------------------------------------ delivery


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt to send one notice to one URL, as recorded. ``url`` has its secrets hidden."""

    alert_id: int
    kind: NoticeKind
    route: str
    url: str
    language: Language
    attempt: int
    at: datetime
    ok: bool
    error: str = ""
    notification_id: int | None = None
    final: bool = False
    """The notice is done with: every URL of every route it goes to has succeeded or spent
    its retries (a notice dropped at shutdown is never final: it is sent after a restart)."""
    notice_sent: bool = False
    """Whether at least one URL has received the notice so far."""


class DeliveryLog(Protocol):
    """Where every attempt is recorded; called from the dispatcher's worker thread."""

    def record(self, delivery: Delivery) -> None: ...


class DeliveryList:
    """A DeliveryLog in memory, safe across threads (tests, benchmarks, small tools)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []

    def record(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    @property
    def deliveries(self) -> list[Delivery]:
        """A copy of what was recorded, oldest first."""
        with self._lock:
            return list(self._deliveries)


class Sender(Protocol):
    """Sends one message to one apprise URL: "" when it was accepted, else why not."""

    def __call__(self, url: str, title: str, body: str, notify_type: apprise.NotifyType) -> str: ...


def send_with_apprise(url: str, title: str, body: str, notify_type: apprise.NotifyType) -> str:
    """Send through apprise: "" when accepted, else the warnings apprise logged.

    A fresh apprise object each time: its plugins throttle calls made on one instance.
    """
    service = apprise.Apprise()
    if not service.add(url):
        return "apprise cannot use this URL"
    result = service.notify(
        body=body, title=title, notify_type=notify_type, body_format=apprise.NotifyFormat.TEXT
    )
    if result:
        return ""
    reasons = [
        entry.message
        for outcome in result.results
        for attempt in outcome.attempts
        for entry in attempt.logs
        if entry.level in {"WARNING", "ERROR", "CRITICAL"}
    ]
    return "; ".join(dict.fromkeys(reasons)) or f"apprise: {result.status.name.lower()}"


def _notify_type(notice: AlertNotice) -> apprise.NotifyType:
    if notice.kind is NoticeKind.RESOLVED:
        return apprise.NotifyType.SUCCESS
    return {
        "critical": apprise.NotifyType.FAILURE,
        "warning": apprise.NotifyType.WARNING,
    }.get(notice.severity, apprise.NotifyType.INFO)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class _Submission:
    notice: AlertNotice
    handed_off: bool = False
    jobs_left: int = 0
    """(route, URL) pairs still to send it to."""
    sent_somewhere: bool = False


@dataclass(eq=False)
class _Job:
    """One notice for one (route, URL): the attempts made so far and when the next is due."""

    submission: _Submission
    route: Route
    url: str
    sequence: int
    due: float
    attempts: int = 0


@dataclass(eq=False)
class _Lanes:
    """A queue of jobs per (route, URL): one destination gets its notices in order."""

    queues: dict[tuple[str, str], deque[_Job]] = field(default_factory=dict)

    def add(self, job: _Job) -> None:
        self.queues.setdefault((job.route.name, job.url), deque()).append(job)

    def next_job(self) -> _Job | None:
        """The head job due first (submission order among equals), or None when idle."""
        heads = [queue[0] for queue in self.queues.values()]
        return min(heads, key=lambda job: (job.due, job.sequence), default=None)

    def finish(self, job: _Job) -> None:
        key = (job.route.name, job.url)
        self.queues[key].popleft()
        if not self.queues[key]:
            del self.queues[key]

    def drain(self) -> list[_Job]:
        jobs = [job for queue in self.queues.values() for job in queue]
        self.queues.clear()
        return jobs


class Dispatcher:
    """Sends notices from a worker thread: :meth:`submit` returns at once.

    Each notice goes to every URL of every matching route, in the route's language. A URL's
    notices go out in order; a failed attempt is retried after the backoff of
    ``config.retry`` while other URLs go on. Every attempt is recorded through ``log``;
    nothing raises out of the worker. ``on_handed_off(notice, at)`` is called right before the
    first send attempt of a notice. ``sleep`` waits between attempts (by default an event wait,
    cut short by new notices and by :meth:`close`); ``clock`` stamps the records and
    ``monotonic`` times the backoff.
    """

    def __init__(
        self,
        config: NotificationConfig,
        log: DeliveryLog,
        *,
        on_handed_off: Callable[[AlertNotice, datetime], object] | None = None,
        send: Sender = send_with_apprise,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self._config = config
        self._log = log
        self._on_handed_off = on_handed_off
        self._send = send
        self._clock = clock
        self._monotonic = monotonic
        self._wake = threading.Event()
        self._sleep = sleep if sleep is not None else self._wake.wait
        self._abandon = threading.Event()
        self._lock = threading.Lock()
        self._closing = False
        self._submitted: deque[_Submission] = deque()
        self._lanes = _Lanes()
        self._sequence = 0
        self._shown_urls: dict[str, str] = {}
        self._abandoned = 0
        self._thread = threading.Thread(target=self._run, name="smartcity-notify", daemon=True)
        self._thread.start()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def submit(self, notice: AlertNotice) -> None:
        """Queue ``notice`` for sending and return at once (after close, log and drop it)."""
        with self._lock:
            if self._closing:
                log.error(
                    "notification for alert %d dropped: the dispatcher is closed",
                    notice.alert_id,
                    extra={"alert_id": notice.alert_id, "kind": str(notice.kind)},
                )
                return
            self._submitted.append(_Submission(notice))
        self._wake.set()

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop taking notices, send what is queued (retries too) for up to ``timeout_s``.

        Past that, what is left is given up, recorded as failed, and False is returned.
        """
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abandon.set()
            self._wake.set()
            self._thread.join(1.0)  # a send under way finishes on its own, then the worker ends
        return self._abandoned == 0 and not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            self._wake.clear()
            self._take_submitted()
            if self._abandon.is_set():
                self._give_up()
                return
            job = self._lanes.next_job()
            if job is None:
                with self._lock:
                    if self._closing and not self._submitted:
                        return
                self._wake.wait()
                continue
            wait_s = job.due - self._monotonic()
            if wait_s > 0:
                self._sleep(wait_s)
                continue
            self._attempt(job)

    def _take_submitted(self) -> None:
        with self._lock:
            submissions = list(self._submitted)
            self._submitted.clear()
        for submission in submissions:
            notice = submission.notice
            try:
                routes = self._config.routes_for(notice)
            except Exception:  # a poison notice is logged and skipped
                log.exception("cannot route alert %d", notice.alert_id)
                continue
            if not routes:
                log.log(
                    logging.WARNING if notice.severity == "critical" else logging.INFO,
                    "no route for alert %d (%s, %s, zone %s): nobody told",
                    notice.alert_id,
                    notice.rule_id,
                    notice.severity,
                    notice.zone,
                    extra={"alert_id": notice.alert_id, "rule_id": notice.rule_id},
                )
            now = self._monotonic()
            for route in routes:
                for url in route.urls:
                    self._sequence += 1
                    submission.jobs_left += 1
                    self._lanes.add(_Job(submission, route, url, self._sequence, now))

    def _attempt(self, job: _Job) -> None:
        job.attempts += 1
        notice = job.submission.notice
        at = self._clock()
        try:
            title, body = render(notice, job.route.language)
            if not job.submission.handed_off:
                job.submission.handed_off = True
                self._hand_off(notice)
            at = self._clock()
            error = self._send(job.url, title, body, _notify_type(notice))
        except Exception as unexpected:  # one bad notice or plugin never stops the worker
            log.exception(
                "sending alert %d to route %s failed unexpectedly", notice.alert_id, job.route.name
            )
            error = f"unexpected {type(unexpected).__name__}: {unexpected}"
        self._record(job, at, error)
        if not error or job.attempts >= self._config.retry.attempts:
            self._lanes.finish(job)
        else:
            job.due = self._monotonic() + self._config.retry.delay_s(job.attempts)

    def _hand_off(self, notice: AlertNotice) -> None:
        if self._on_handed_off is None:
            return
        try:
            self._on_handed_off(notice, self._clock())
        except Exception:  # a measuring hook must not stop the sending
            log.exception("on_handed_off failed for alert %d", notice.alert_id)

    def _record(self, job: _Job, at: datetime, error: str) -> None:
        notice = job.submission.notice
        submission = job.submission
        if not error or job.attempts >= self._config.retry.attempts:
            submission.jobs_left -= 1  # this URL is done with: sent, or its retries spent
        submission.sent_somewhere = submission.sent_somewhere or not error
        delivery = Delivery(
            alert_id=notice.alert_id,
            kind=notice.kind,
            route=job.route.name,
            url=self._shown_url(job.url),
            language=job.route.language,
            attempt=job.attempts,
            at=at,
            ok=not error,
            error=error,
            notification_id=notice.notification_id,
            final=submission.jobs_left == 0,
            notice_sent=submission.sent_somewhere,
        )
        log.log(
            logging.INFO if delivery.ok else logging.WARNING,
            "notification of alert %d via route %s, attempt %d: %s",
            delivery.alert_id,
            delivery.route,
            delivery.attempt,
            "sent" if delivery.ok else delivery.error,
            extra={"alert_id": delivery.alert_id, "route": delivery.route, "url": delivery.url},
        )
        try:
            self._log.record(delivery)
        except Exception:  # the record is lost, the sending goes on
            log.exception("could not record a delivery of alert %d", delivery.alert_id)

    def _shown_url(self, url: str) -> str:
        if url not in self._shown_urls:
            try:
                self._shown_urls[url] = hide_secrets(url)
            except Exception:  # never show the raw URL: it may hold a password
                log.exception("apprise could not render a URL privately")
                self._shown_urls[url] = "(hidden)"
        return self._shown_urls[url]

    def _give_up(self) -> None:
        for job in self._lanes.drain():
            job.attempts += 1
            self._abandoned += 1
            self._record(
                job, self._clock(), "not sent: the dispatcher was closed before this attempt"
            )
