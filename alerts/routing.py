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
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final

import apprise
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from alerts.errors import AlertError
from alerts.wording import AlertNotice, Language
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
