"""Who is told what: the routing file of notifications (YAML), checked with the line of each
mistake. :meth:`NotificationConfig.routes_for` is pure.

A routing file looks like::

    link_base: https://smartcity.sefrou.ma/console
    retry: {attempts: 4, first_delay_s: 2, factor: 3, max_delay_s: 120}
    routes:
      - name: night-crew-lights
        severities: [critical, warning]     # all when absent
        zones: [menzel, oued-aggai]         # street groups or building ids; all when absent
        rules: [lamp-out]                   # rule ids; all when absent
        language: fr                        # fr | ar | en
        urls: ["mailto://user:pass@smtp.example.ma?to=crew@example.ma"]
      - name: supervisors                   # named by an escalation step: told nothing else
        urls: ["mailto://user:pass@smtp.example.ma?to=chef@example.ma"]
    escalation:                             # an alert left unacknowledged goes further
      - {after: {critical: 30m, warning: 8h}, routes: [supervisors]}
      - {after: {critical: 1h, warning: 1d}, on_call: true}
    on_call:                                # the technician on call, a week each in turn
      timezone: Africa/Casablanca
      handover: mon 08:00
      first_week: 2026-12-07                # a handover day on which rota[0] took over
      rota:
        - {name: youssef, language: fr, urls: ["mailto://...?to=youssef@example.ma"]}
        - {name: amina, language: ar, urls: ["mailto://...?to=amina@example.ma"]}

Without ``escalation``, an alert escalates once (:class:`alerts.lifecycle.Policy`) to every
route that matches it. With it, step N's notice goes to the routes it names (their filters
still apply) and, with ``on_call``, to whoever is on call that week
(:meth:`OnCall.on_call_at`); a route named by a step is told nothing but that step.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import apprise
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from alerts.catalogue import NoticeKind
from alerts.errors import AlertError
from alerts.wording import AlertNotice, Language
from protocol.durations import parse_duration
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


class NotificationConfigError(AlertError):
    """A routing file that cannot be read or is not valid; says where (key path, line)."""


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


def _duration(value: object) -> timedelta:
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"expected a duration such as 30m, 2h or 1d, not {value!r}")


Duration = Annotated[timedelta, BeforeValidator(_duration)]
_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class EscalationStep(_Strict):
    """Who is told next about an alert still firing unacknowledged, and when."""

    after: Annotated[dict[Severity, Duration], Field(min_length=1)]
    """By severity, how long after the previous notice of the chain (the first tier: after
    the alert's first notice); a severity left out does not escalate this far."""
    routes: tuple[_Name, ...] = ()
    on_call: bool = False

    @model_validator(mode="after")
    def _someone(self) -> EscalationStep:
        if not self.routes and not self.on_call:
            raise ValueError("tell someone: give routes, on_call: true, or both")
        if any(span <= timedelta(0) for span in self.after.values()):
            raise ValueError("after: give positive durations")
        return self


class OnCallPerson(_Strict):
    name: Annotated[str, Field(pattern=IDENTIFIER_PATTERN.pattern)]
    language: Language = "fr"
    urls: Annotated[tuple[_AppriseUrl, ...], Field(min_length=1)]


class OnCall(_Strict):
    """The on-call rota: a week each, in turn, handing over at ``handover`` local time."""

    timezone: str
    handover: str
    """``mon 08:00``: the weekday and local time the week changes hands."""
    first_week: date
    """A handover day on which ``rota[0]`` took over."""
    rota: Annotated[tuple[OnCallPerson, ...], Field(min_length=1)]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: give one like Africa/Casablanca"
            ) from None
        return value

    @field_validator("handover")
    @classmethod
    def _weekday_and_time(cls, value: str) -> str:
        _handover(value)
        return value

    @model_validator(mode="after")
    def _first_week_on_the_handover_day(self) -> OnCall:
        weekday, _ = _handover(self.handover)
        if self.first_week.weekday() != weekday:
            raise ValueError(
                f"first_week {self.first_week} is a {_WEEKDAYS[self.first_week.weekday()]}:"
                f" give a {_WEEKDAYS[weekday]}, the handover day"
            )
        return self

    def on_call_at(self, at: datetime) -> OnCallPerson:
        """Who is on call at ``at`` (aware): weeks counted in local time from ``first_week``,
        so the handover stays at its local hour across changes of the clocks."""
        weekday, clock = _handover(self.handover)
        local = at.astimezone(ZoneInfo(self.timezone))
        days_back = (local.weekday() - weekday) % 7
        handed_over = local.date() - timedelta(days=days_back)
        if days_back == 0 and local.time() < clock:
            handed_over -= timedelta(days=7)
        weeks = (handed_over - self.first_week).days // 7
        return self.rota[weeks % len(self.rota)]

    def route_at(self, at: datetime) -> Route:
        """The on-call person at ``at`` as a route of their own (``on-call-NAME``)."""
        person = self.on_call_at(at)
        return Route(name=f"on-call-{person.name}", language=person.language, urls=person.urls)


def _handover(value: str) -> tuple[int, time]:
    day, _, clock = value.strip().partition(" ")
    if day.lower() not in _WEEKDAYS:
        raise ValueError(f"handover {value!r}: write a weekday and a local time, e.g. mon 08:00")
    try:
        hours, minutes = (int(part) for part in clock.split(":"))
        return _WEEKDAYS.index(day.lower()), time(hours, minutes)
    except ValueError:
        raise ValueError(
            f"handover {value!r}: write a weekday and a local time, e.g. mon 08:00"
        ) from None


class NotificationConfig(_Strict):
    """Where notices go: the routes, the retry policy, the escalation steps and the on-call
    rota, and the base of alert links."""

    link_base: Annotated[str, Field(pattern=r"^https?://\S+$")]
    retry: RetryPolicy = RetryPolicy()
    routes: tuple[Route, ...] = ()
    escalation: tuple[EscalationStep, ...] = ()
    on_call: OnCall | None = None

    @model_validator(mode="after")
    def _steps_name_routes_and_a_rota(self) -> NotificationConfig:
        known = {route.name for route in self.routes}
        for number, step in enumerate(self.escalation, start=1):
            unknown = [name for name in step.routes if name not in known]
            if unknown:
                raise ValueError(
                    f"escalation step {number} names no route {', '.join(unknown)}"
                    f" (routes: {', '.join(sorted(known)) or 'none'})"
                )
            if step.on_call and self.on_call is None:
                raise ValueError(f"escalation step {number} asks for on_call: give an on_call rota")
        for earlier, later in zip(self.escalation, self.escalation[1:], strict=False):
            dropped = set(later.after) - set(earlier.after)
            if dropped:
                raise ValueError(
                    "a severity cannot skip a step: "
                    + ", ".join(sorted(str(severity) for severity in dropped))
                    + " escalates in a later step but not an earlier one"
                )
        return self

    def escalation_delays(self) -> tuple[Mapping[Severity, timedelta], ...]:
        """By step, the delays of :class:`alerts.lifecycle.Policy` (none: its default)."""
        return tuple(step.after for step in self.escalation)

    def routes_for(self, notice: AlertNotice, at: datetime | None = None) -> list[Route]:
        """Every route matching ``notice``, in file order; with escalation steps, an
        escalation notice goes to its step's routes and, if the step says so, to whoever is on
        call at ``at`` (the notice's queueing time when not given)."""
        escalating = {name for step in self.escalation for name in step.routes}
        if not self.escalation or notice.kind is not NoticeKind.ESCALATION:
            return [r for r in self.routes if r.name not in escalating and r.matches(notice)]
        step = self.escalation[min(max(notice.escalation_step, 1), len(self.escalation)) - 1]
        chosen = [r for r in self.routes if r.name in step.routes and r.matches(notice)]
        if step.on_call and self.on_call is not None:
            chosen.append(self.on_call.route_at(at or notice.queued_at or notice.since))
        return chosen

    def link(self, alert_id: int) -> str:
        """The URL of an alert in the crew console."""
        return f"{self.link_base.rstrip('/')}/alerts/{alert_id}"


_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "": tuple(NotificationConfig.model_fields),
    "retry": tuple(RetryPolicy.model_fields),
    "routes": tuple(Route.model_fields),
    "escalation": tuple(EscalationStep.model_fields),
    "on_call": tuple(OnCall.model_fields),
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
