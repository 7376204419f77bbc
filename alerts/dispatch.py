"""Sending notifications through apprise: :class:`Dispatcher` sends in a worker thread of its
own, so the rules engine never waits for a slow mail server, retries by the routing file's
policy, and gives every attempt, good or bad, to a :class:`DeliveryLog`."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import apprise

from alerts.catalogue import NoticeKind
from alerts.delivery import Delivery, DeliveryLog
from alerts.routing import NotificationConfig, Route, hide_secrets
from alerts.wording import AlertNotice, render

log = logging.getLogger("smartcity.alerts.dispatch")


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
