"""The alert kinds the platform raises itself, beside the rules of a rule file.

A rule file names its own rules (``rules/default_rules.yaml``); the kinds here are raised by
code: the rules engine's root cause for a group gone silent, the control services' command
findings, and citizens' reports that no alert knew of. Severities are the device contract's
(:class:`protocol.payloads.Severity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from protocol.payloads import Severity


@dataclass(frozen=True, slots=True)
class AlertKind:
    severity: Severity
    titles: MappingProxyType[str, str]
    """By language (en, fr, ar), as rule titles are."""


GROUP_OFFLINE: Final = "group-offline"
"""The rules engine's root cause: a cabinet, street or building whose devices went silent."""
COMMAND_UNANSWERED: Final = "command-unanswered"
COMMAND_REFUSED: Final = "command-refused"
HVAC_NOT_FOLLOWING: Final = "hvac-not-following"


def _kind(severity: Severity, en: str, fr: str, ar: str) -> AlertKind:
    return AlertKind(severity, MappingProxyType({"en": en, "fr": fr, "ar": ar}))


ROOT_CAUSE_KINDS: Final = MappingProxyType(
    {
        GROUP_OFFLINE: _kind(
            Severity.CRITICAL,
            "Several devices not reporting",
            "Plusieurs équipements muets",
            "عدة أجهزة لا ترسل بياناتها",
        ),
    }
)
CONTROL_KINDS: Final = MappingProxyType(
    {
        COMMAND_UNANSWERED: _kind(
            Severity.WARNING,
            "Device not answering its commands",
            "Équipement qui ne répond pas aux commandes",
            "جهاز لا يرد على الأوامر",
        ),
        COMMAND_REFUSED: _kind(
            Severity.WARNING,
            "Device refused or could not apply its command",
            "Équipement qui refuse ou n'applique pas sa commande",
            "جهاز رفض الأمر أو لم يستطع تطبيقه",
        ),
        HVAC_NOT_FOLLOWING: _kind(
            Severity.WARNING,
            "Heating or cooling not following its command",
            "Chauffage ou climatisation ne suit pas sa consigne",
            "التدفئة أو التبريد لا يتبع الأمر",
        ),
    }
)
"""The alerts the control services raise, by kind (they are not in the rule file)."""
CITIZEN_REPORT: Final = "citizen-report"
"""A citizen reported a fault no alert knew of (``field_ops``)."""
CITIZEN_KINDS: Final = MappingProxyType(
    {
        CITIZEN_REPORT: _kind(
            Severity.WARNING,
            "Fault reported by a citizen",
            "Panne signalée par un citoyen",
            "عطل أبلغ عنه مواطن",
        ),
    }
)
BUILT_IN_KINDS: Final = MappingProxyType({**ROOT_CAUSE_KINDS, **CONTROL_KINDS, **CITIZEN_KINDS})
"""Every kind raised by code rather than by a rule file."""


class NoticeKind(StrEnum):
    """Why a notice is sent: the wording of the text depends on it."""

    FIRING = "firing"
    REMINDER = "reminder"
    ESCALATION = "escalation"
    RESOLVED = "resolved"
    REOPENED = "reopened"
