"""Citizens' reports in the database: filed, matched, answered by an alert, read back.

A report is matched to devices (:func:`field_ops.services.match_devices`). Its answer is,
in order: the earlier open report it repeats (it shares that one's alert); an open alert on
one of its devices that says the same thing (the kind's rules, or a citizen's alert already
raised); else a ``citizen-report`` alert raised on its nearest device for the crews, held for
the rules engine to notify (as the control services' alerts are). A report matching no
device is kept for the technical service, with no alert.

A report's status follows its alert: closed once the alert is closed (the crew's repair
verified by telemetry, or closed by a person), with that closing note; open until then. When
telemetry confirms a citizen's alert (the rules engine raises its own on the device), the
citizen's alert is merged into the engine's (``alerts.merged_into``) and the report follows
that one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from alerts import lifecycle, store
from alerts.catalogue import BUILT_IN_KINDS, CITIZEN_REPORT
from field_ops.services import BY_CODE, Earlier, Locale, duplicate_of, match_devices
from storage.registry import registered_devices

ANSWER: Final = (
    "LEFT JOIN alerts linked ON linked.alert_id = r.alert_id"
    " LEFT JOIN alerts a ON a.alert_id = coalesce(linked.merged_into, linked.alert_id)"
)
"""The alert that answers a report ``r``, as ``a``: its own, or the one it was merged into."""


_REPORTS: Final = f"""
        SELECT r.request_id, r.service_code, r.latitude, r.longitude, r.address_string,
               r.description, r.media_url, r.locale, r.requested_at, r.devices, a.alert_id,
               r.duplicate_of, a.rule_id, a.status, a.updated_at,
               (SELECT t.note FROM alert_transitions t
                 WHERE t.alert_id = a.alert_id AND t.to_status = 'closed'
                 ORDER BY t.at DESC LIMIT 1)
        FROM citizen_reports r {ANSWER}
        WHERE (%(ids)s::bigint[] IS NULL OR r.request_id = ANY(%(ids)s))
          AND (%(codes)s::text[] IS NULL OR r.service_code = ANY(%(codes)s))
          AND (%(start)s::timestamptz IS NULL OR r.requested_at >= %(start)s)
          AND (%(end)s::timestamptz IS NULL OR r.requested_at <= %(end)s)
        ORDER BY r.requested_at DESC, r.request_id DESC
        LIMIT %(limit)s
"""  # noqa: S608 - a constant join; the values are parameters
DUPLICATE_WINDOW: Final = timedelta(days=30)
"""An open report older than this is not repeated by a new one."""
CAUSE_CHARACTERS: Final = 500


@dataclass(frozen=True, slots=True)
class NewReport:
    client_id: str
    source_address: str
    service_code: str
    latitude: float
    longitude: float
    locale: Locale
    description: str = ""
    address_string: str = ""
    media_url: str | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None


@dataclass(frozen=True, slots=True)
class Filed:
    request_id: int
    devices: tuple[str, ...]
    alert_id: int | None
    duplicate_of: int | None
    known: bool
    """An alert already open said the same thing."""


@dataclass(frozen=True, slots=True)
class Report:
    """A stored report with what answers it."""

    request_id: int
    service_code: str
    latitude: float
    longitude: float
    address_string: str
    description: str
    media_url: str | None
    locale: str
    requested_at: datetime
    devices: tuple[str, ...]
    alert_id: int | None
    duplicate_of: int | None
    alert_rule: str | None
    alert_status: str | None
    alert_changed_at: datetime | None
    closing_note: str | None

    @property
    def status(self) -> str:
        """``closed`` once its alert is closed, else ``open`` (Open311's two statuses)."""
        return "closed" if self.alert_status == "closed" else "open"

    @property
    def updated_at(self) -> datetime:
        return max(self.requested_at, self.alert_changed_at or self.requested_at)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def add_client(connection: psycopg.Connection[Any], client_id: str, name: str) -> str:
    """Register a reporting application; its API key is returned once, only its hash kept."""
    key = secrets.token_urlsafe(24)
    connection.execute(
        "INSERT INTO open311_clients (client_id, name, key_sha256) VALUES (%s, %s, %s)",
        (client_id, name, key_digest(key)),
    )
    return key


def revoke_client(connection: psycopg.Connection[Any], client_id: str, at: datetime) -> bool:
    """Refuse the application's key from now on; False when there is no such client."""
    row = connection.execute(
        "UPDATE open311_clients SET revoked_at = %s WHERE client_id = %s AND revoked_at IS NULL"
        " RETURNING client_id",
        (at, client_id),
    ).fetchone()
    return row is not None


def client_of_key(connection: psycopg.Connection[Any], key: str) -> str | None:
    """The application an API key belongs to; None for an unknown or revoked key."""
    row = connection.execute(
        "SELECT client_id FROM open311_clients WHERE key_sha256 = %s AND revoked_at IS NULL",
        (key_digest(key),),
    ).fetchone()
    return None if row is None else str(row[0])


def file_report(
    connection: psycopg.Connection[Any], report: NewReport, site_id: str, at: datetime
) -> Filed:
    """Store ``report`` with its devices and its answer; call within a transaction."""
    kind = BY_CODE[report.service_code]
    devices = match_devices(
        kind,
        report.latitude,
        report.longitude,
        registered_devices(connection, site_id, kind.device_class),
    )
    earlier = _open_reports(connection, report.service_code, at - DUPLICATE_WINDOW)
    repeats = duplicate_of(
        report.service_code,
        devices,
        report.latitude,
        report.longitude,
        [item for item, _ in earlier],
    )
    request_id = _insert(connection, report, at, devices, repeats)
    alert_id: int | None = None
    known = False
    if repeats is not None:
        alert_id = {item.request_id: alert for item, alert in earlier}[repeats]
        known = alert_id is not None
    elif devices:
        alert_id = _open_alert(connection, devices, (*kind.rules, CITIZEN_REPORT))
        known = alert_id is not None
        if alert_id is None:
            try:
                with connection.transaction():  # a savepoint: a twin report may win the race
                    alert_id = _raise_alert(connection, request_id, report, devices[0], at)
            except psycopg.errors.UniqueViolation:
                alert_id = _open_alert(connection, devices[:1], (CITIZEN_REPORT,))
    if alert_id is not None:
        connection.execute(
            "UPDATE citizen_reports SET alert_id = %s WHERE request_id = %s",
            (alert_id, request_id),
        )
    return Filed(request_id, devices, alert_id, repeats, known)


def reports(
    connection: psycopg.Connection[Any],
    *,
    request_ids: Sequence[int] | None = None,
    service_codes: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 1_000,
) -> list[Report]:
    """Stored reports with their alert's state, newest first."""
    rows = connection.execute(
        _REPORTS,
        {
            "ids": list(request_ids) if request_ids is not None else None,
            "codes": list(service_codes) if service_codes is not None else None,
            "start": start,
            "end": end,
            "limit": limit,
        },
    ).fetchall()
    return [
        Report(
            request_id=row[0],
            service_code=row[1],
            latitude=row[2],
            longitude=row[3],
            address_string=row[4],
            description=row[5],
            media_url=row[6],
            locale=row[7],
            requested_at=row[8],
            devices=tuple(row[9]),
            alert_id=row[10],
            duplicate_of=row[11],
            alert_rule=row[12],
            alert_status=row[13],
            alert_changed_at=row[14],
            closing_note=row[15],
        )
        for row in rows
    ]


def _insert(
    connection: psycopg.Connection[Any],
    report: NewReport,
    at: datetime,
    devices: tuple[str, ...],
    repeats: int | None,
) -> int:
    row = connection.execute(
        """
        INSERT INTO citizen_reports (client_id, source_address, service_code, latitude,
            longitude, address_string, description, media_url, email, phone, first_name,
            last_name, locale, requested_at, devices, duplicate_of)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        RETURNING request_id
        """,
        (
            report.client_id,
            report.source_address,
            report.service_code,
            report.latitude,
            report.longitude,
            report.address_string,
            report.description,
            report.media_url,
            report.email,
            report.phone,
            report.first_name,
            report.last_name,
            report.locale,
            at,
            list(devices),
            repeats,
        ),
    ).fetchone()
    if row is None:
        raise psycopg.DataError("INSERT ... RETURNING gave no row")
    return int(row[0])


def _open_reports(
    connection: psycopg.Connection[Any], service_code: str, since: datetime
) -> list[tuple[Earlier, int | None]]:
    """Reports of ``service_code`` since ``since`` whose alert is not closed, with it."""
    rows = connection.execute(
        "SELECT r.request_id, r.devices, r.latitude, r.longitude, a.alert_id"  # noqa: S608
        f" FROM citizen_reports r {ANSWER}"
        " WHERE r.service_code = %s AND r.requested_at >= %s"
        " AND r.duplicate_of IS NULL AND (a.status IS NULL OR a.status <> 'closed')",
        (service_code, since),
    ).fetchall()
    return [
        (Earlier(request_id, service_code, tuple(devices), latitude, longitude), alert_id)
        for request_id, devices, latitude, longitude, alert_id in rows
    ]


def _open_alert(
    connection: psycopg.Connection[Any], devices: Sequence[str], rule_ids: Sequence[str]
) -> int | None:
    """The open alert (firing, acknowledged, or a repair awaiting its verification) that
    answers a report on ``devices``: on the nearest device first, the oldest first. A fault
    that cleared by itself does not answer a report of it coming back."""
    rows = connection.execute(
        "SELECT alert_id, subject FROM alerts WHERE subject = ANY(%s) AND rule_id = ANY(%s)"
        " AND (status IN ('firing', 'acknowledged')"
        " OR (status = 'resolved' AND repaired_at IS NOT NULL)) ORDER BY fired_at",
        (list(devices), list(rule_ids)),
    ).fetchall()
    for device in devices:
        for alert_id, subject in rows:
            if subject == device:
                return int(alert_id)
    return None


def _raise_alert(
    connection: psycopg.Connection[Any],
    request_id: int,
    report: NewReport,
    device_id: str,
    at: datetime,
) -> int:
    """A ``citizen-report`` alert on ``device_id``, held for the rules engine to notify."""
    spec = BUILT_IN_KINDS[CITIZEN_REPORT]
    said = f": {report.description}" if report.description else ""
    outcome = lifecycle.fire(
        CITIZEN_REPORT,
        device_id,
        spec.severity,
        at,
        at,
        cause=f"citizen report {request_id} ({report.service_code}){said}"[:CAUSE_CHARACTERS],
        hold=True,
    )
    alert, _ = store.insert_alert(connection, outcome, spec.titles["en"])
    if alert.alert_id is None:
        raise psycopg.DataError("the alert was stored without an id")
    return alert.alert_id
