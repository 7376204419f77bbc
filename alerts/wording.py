"""What people are told about an alert: :class:`AlertNotice` and :func:`render`, its text in
French, Arabic or English (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.catalogue import NoticeKind
from alerts.errors import AlertError
from protocol.payloads import Severity

Language = Literal["fr", "ar", "en"]
SEVERITIES: Final[tuple[str, ...]] = tuple(severity.value for severity in Severity)
LANGUAGES: Final[tuple[str, ...]] = get_args(Language)


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
    escalation_step: int = 0
    """For an escalation: which step of the routing file's ``escalation`` it is (from 1)."""
    queued_at: datetime | None = None
    """When the notice was queued: the on-call rota is read at that time."""

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
