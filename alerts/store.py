"""Alerts in the database: every change under a row lock, with its transitions and notices.

The rules engine and people (through the CLI, later the API) change alerts concurrently, so
nobody caches them: each change locks the alert's row, applies a pure function of
:mod:`alerts.lifecycle`, and writes the alert, its transitions and the notifications to send in
one transaction. A unique index keeps one open alert per (rule, subject).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerts.catalogue import CITIZEN_REPORT, NoticeKind
from alerts.delivery import Delivery
from alerts.lifecycle import Alert, Outcome, Silence, Status, Transition, merge
from protocol.payloads import Severity

_COLUMNS: Final = tuple(f.name for f in fields(Alert) if f.name != "alert_id")


def _row_to_alert(row: dict[str, Any]) -> Alert:
    values = {name: row[name] for name in _COLUMNS}
    values["severity"] = Severity(values["severity"])
    values["status"] = Status(values["status"])
    return Alert(alert_id=row["alert_id"], **values)


@dataclass(frozen=True, slots=True)
class QueuedNotice:
    notification_id: int
    alert_id: int
    kind: NoticeKind
    queued_at: datetime
    escalation_step: int = 0
    """For an escalation: the step it is (from 1); 0 for other kinds."""


def insert_alert(
    connection: psycopg.Connection, outcome: Outcome, title: str
) -> tuple[Alert, list[QueuedNotice]]:
    """Store a newly fired alert (``outcome`` of :func:`alerts.lifecycle.fire`)."""
    alert, transitions, notices = outcome
    names = ", ".join(_COLUMNS)
    marks = ", ".join(["%s"] * len(_COLUMNS))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO alerts ({names}, title) VALUES ({marks}, %s) RETURNING alert_id",  # noqa: S608
            [*_values(alert), title],
        )
        row = cursor.fetchone()
    if row is None:
        raise psycopg.DataError("INSERT ... RETURNING gave no row")
    stored = Alert(**{**_as_dict(alert), "alert_id": row[0]})
    return stored, _record(
        connection, row[0], transitions, notices, alert.fired_at, escalation_step=0
    )


def change_alert(
    connection: psycopg.Connection, alert_id: int, change: Callable[[Alert], Outcome]
) -> tuple[Alert, list[Transition], list[QueuedNotice]]:
    """Lock the alert, apply ``change``, store the result; call within a transaction.

    A transaction that changes several alerts locks them in ``alert_id`` order, as the
    engine's periodic check does (:func:`live_alerts`); people change one alert per
    transaction. Two writers that locked in different orders would deadlock, and the
    database would abort one of them."""
    alert = load_alert(connection, alert_id, lock=True)
    changed, transitions, notices = change(alert)
    if changed != alert:
        assignments = ", ".join(f"{name} = %s" for name in _COLUMNS)
        connection.execute(
            f"UPDATE alerts SET {assignments}, updated_at = now() WHERE alert_id = %s",  # noqa: S608
            [*_values(changed), alert_id],
        )
    at = transitions[-1].at if transitions else datetime.now(tz=changed.fired_at.tzinfo)
    return (
        changed,
        transitions,
        _record(
            connection, alert_id, transitions, notices, at, escalation_step=changed.escalation_step
        ),
    )


def load_alert(connection: psycopg.Connection, alert_id: int, *, lock: bool = False) -> Alert:
    with connection.cursor(row_factory=dict_row) as cursor:
        if lock:
            cursor.execute("SELECT * FROM alerts WHERE alert_id = %s FOR UPDATE", (alert_id,))
        else:
            cursor.execute("SELECT * FROM alerts WHERE alert_id = %s", (alert_id,))
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"there is no alert {alert_id}")
    return _row_to_alert(row)


def live_alerts(connection: psycopg.Connection) -> list[Alert]:
    """Every alert the engine still looks after: open, or resolved and not yet closed."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute("SELECT * FROM alerts WHERE status <> 'closed' ORDER BY alert_id")
        return [_row_to_alert(row) for row in cursor.fetchall()]


def alerts(
    connection: psycopg.Connection,
    statuses: Sequence[str] = (),
    subject: str | None = None,
    limit: int = 100,
) -> list[tuple[Alert, str]]:
    """Alerts (with their titles), newest first, filtered by status and subject."""
    query = "SELECT * FROM alerts WHERE true"
    parameters: list[object] = []
    if statuses:
        query += " AND status = ANY(%s)"
        parameters.append(list(statuses))
    if subject:
        query += " AND subject = %s"
        parameters.append(subject)
    query += " ORDER BY fired_at DESC, alert_id DESC LIMIT %s"
    parameters.append(limit)
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, parameters)
        return [(_row_to_alert(row), row["title"]) for row in cursor.fetchall()]


def transitions_of(connection: psycopg.Connection, alert_id: int) -> list[Transition]:
    rows = connection.execute(
        "SELECT at, from_status, to_status, actor, note FROM alert_transitions"
        " WHERE alert_id = %s ORDER BY at, transition_id",
        (alert_id,),
    ).fetchall()
    return [
        Transition(at, Status(before) if before else None, Status(after), actor, note)
        for at, before, after, actor, note in rows
    ]


def _record(
    connection: psycopg.Connection,
    alert_id: int,
    transitions: Iterable[Transition],
    notices: Iterable[NoticeKind],
    at: datetime,
    *,
    escalation_step: int,
) -> list[QueuedNotice]:
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO alert_transitions (alert_id, at, from_status, to_status, actor, note)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(alert_id, t.at, t.from_status, t.to_status, t.actor, t.note) for t in transitions],
        )
    queued = []
    for kind in notices:
        step = escalation_step if kind is NoticeKind.ESCALATION else 0
        row = connection.execute(
            "INSERT INTO notifications (alert_id, kind, queued_at, escalation_step)"
            " VALUES (%s, %s, %s, %s) RETURNING notification_id",
            (alert_id, kind.value, at, step),
        ).fetchone()
        if row is not None:
            queued.append(QueuedNotice(row[0], alert_id, kind, at, step))
    return queued


def unsent_notifications(connection: psycopg.Connection) -> list[QueuedNotice]:
    """Notifications queued but neither sent nor given up: to send after a restart."""
    rows = connection.execute(
        "SELECT notification_id, alert_id, kind, queued_at, escalation_step FROM notifications"
        " WHERE sent_at IS NULL AND gave_up_at IS NULL ORDER BY notification_id"
    ).fetchall()
    return [QueuedNotice(n, a, NoticeKind(k), q, step) for n, a, k, q, step in rows]


def finish_notification(
    connection: psycopg.Connection, notification_id: int, at: datetime, *, sent: bool
) -> None:
    column = "sent_at" if sent else "gave_up_at"
    connection.execute(
        f"UPDATE notifications SET {column} = %s WHERE notification_id = %s",  # noqa: S608
        (at, notification_id),
    )


def record_attempt(
    connection: psycopg.Connection, notification_id: int | None, delivery: Delivery
) -> None:
    """Record one attempt to send a notification (its URL has its secrets hidden)."""
    connection.execute(
        "INSERT INTO notification_attempts (notification_id, alert_id, route, url, language,"
        " attempt, at, ok, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            notification_id,
            delivery.alert_id,
            delivery.route,
            delivery.url,
            delivery.language,
            delivery.attempt,
            delivery.at,
            delivery.ok,
            delivery.error,
        ),
    )


# ----------------------------------------------------------------------------- silences


def add_silence(connection: psycopg.Connection, silence: Silence, created_by: str) -> int:
    row = connection.execute(
        "INSERT INTO silences (starts_at, ends_at, maintenance, rule_ids, device_ids,"
        " street_groups, buildings, reason, created_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING silence_id",
        (
            silence.starts_at,
            silence.ends_at,
            silence.maintenance,
            list(silence.rule_ids),
            list(silence.device_ids),
            list(silence.street_groups),
            list(silence.buildings),
            silence.reason,
            created_by,
        ),
    ).fetchone()
    if row is None:
        raise psycopg.DataError("INSERT ... RETURNING gave no row")
    return int(row[0])


def silences_in_force(connection: psycopg.Connection, at: datetime) -> list[Silence]:
    rows = connection.execute(
        "SELECT silence_id, starts_at, ends_at, maintenance, rule_ids, device_ids,"
        " street_groups, buildings, reason FROM silences WHERE ends_at > %s ORDER BY silence_id",
        (at,),
    ).fetchall()
    return [
        Silence(i, s, e, m, tuple(r), tuple(d), tuple(g), tuple(b), reason)
        for i, s, e, m, r, d, g, b, reason in rows
    ]


# ----------------------------------------------------------------------------- engine state


def save_rule_states(
    connection: psycopg.Connection, states: Iterable[tuple[str, str, dict[str, object]]]
) -> None:
    """Upsert (rule id, device id, state) rows."""
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO rule_states (rule_id, device_id, state) VALUES (%s, %s, %s)"
            " ON CONFLICT (rule_id, device_id) DO UPDATE SET state = excluded.state,"
            " updated_at = now()",
            [(rule_id, device_id, Jsonb(state)) for rule_id, device_id, state in states],
        )


def load_rule_states(connection: psycopg.Connection) -> dict[tuple[str, str], dict[str, Any]]:
    rows = connection.execute("SELECT rule_id, device_id, state FROM rule_states").fetchall()
    return {(rule_id, device_id): state for rule_id, device_id, state in rows}


def devices_found_missing(connection: psycopg.Connection, rule_ids: Sequence[str]) -> set[str]:
    """The devices whose saved state of one of ``rule_ids`` (missing-device rules) says gone,
    whichever worker saved it."""
    rows = connection.execute(
        "SELECT DISTINCT device_id FROM rule_states WHERE rule_id = ANY(%s)"
        " AND jsonb_typeof(state -> 'gone') = 'object'",
        (list(rule_ids),),
    ).fetchall()
    return {str(device_id) for (device_id,) in rows}


# ----------------------------------------------------------------------------- engine reads


def merge_citizen_reports(connection: psycopg.Connection, into: Alert, at: datetime) -> list[int]:
    """Close the ``citizen-report`` alert still in play on ``into``'s device into it
    (telemetry now confirms what citizens reported); the ids merged."""
    alert_id = current_alert_id(connection, CITIZEN_REPORT, into.subject)
    if alert_id is None or alert_id == into.alert_id:
        return []
    change_alert(connection, alert_id, lambda a: merge(a, into, at))
    return [alert_id]


def current_alert_id(connection: psycopg.Connection, rule_id: str, subject: str) -> int | None:
    """The alert of (rule, subject) still in play: open, or resolved by a repair not yet
    verified (it fires again rather than opening a second one)."""
    row = connection.execute(
        "SELECT alert_id FROM alerts WHERE rule_id = %s AND subject = %s"
        " AND (status IN ('firing', 'acknowledged')"
        " OR (status = 'resolved' AND repaired_at IS NOT NULL))",
        (rule_id, subject),
    ).fetchone()
    return None if row is None else int(row[0])


def open_alert_ids(connection: psycopg.Connection, rule_id: str) -> dict[str, int]:
    """The open (firing or acknowledged) alerts of ``rule_id``: subject -> id."""
    rows = connection.execute(
        "SELECT subject, alert_id FROM alerts WHERE rule_id = %s"
        " AND status IN ('firing', 'acknowledged')",
        (rule_id,),
    ).fetchall()
    return {str(subject): int(alert_id) for subject, alert_id in rows}


def unclosed_alerts_except(
    connection: psycopg.Connection, rule_ids: Sequence[str]
) -> list[tuple[int, str]]:
    """(id, subject) of the alerts not closed whose rule is not one of ``rule_ids``."""
    rows = connection.execute(
        "SELECT alert_id, subject FROM alerts WHERE status <> 'closed' AND NOT rule_id = ANY(%s)",
        (list(rule_ids),),
    ).fetchall()
    return [(int(alert_id), str(subject)) for alert_id, subject in rows]


def alerts_changed_since(
    connection: psycopg.Connection, since: datetime
) -> list[tuple[int, datetime, str]]:
    """(id, updated_at, subject) of the alerts changed after ``since`` (database time), oldest
    change first."""
    rows = connection.execute(
        "SELECT alert_id, updated_at, subject FROM alerts WHERE updated_at > %s"
        " ORDER BY updated_at",
        (since,),
    ).fetchall()
    return [(int(alert_id), updated_at, str(subject)) for alert_id, updated_at, subject in rows]


def _as_dict(alert: Alert) -> dict[str, Any]:
    return {f.name: getattr(alert, f.name) for f in fields(alert)}


def _values(alert: Alert) -> list[object]:
    values: list[object] = []
    for name in _COLUMNS:
        value = getattr(alert, name)
        values.append(value.value if isinstance(value, Severity | Status) else value)
    return values


# ----------------------------------------------------------------- people's changes (the API)


@dataclass(frozen=True, slots=True)
class Comment:
    comment_id: int
    at: datetime
    author: str
    body: str


def add_comment(
    connection: psycopg.Connection, alert_id: int, author: str, body: str, at: datetime
) -> Comment:
    row = connection.execute(
        "INSERT INTO alert_comments (alert_id, at, author, body) VALUES (%s, %s, %s, %s)"
        " RETURNING comment_id",
        (alert_id, at, author, body),
    ).fetchone()
    if row is None:
        raise psycopg.DataError("INSERT ... RETURNING gave no row")
    return Comment(int(row[0]), at, author, body)


def assign(
    connection: psycopg.Connection, alert_id: int, username: str | None, at: datetime
) -> bool:
    """Give the alert to ``username`` (None: to nobody), under its row lock; False when it is
    closed (or gone)."""
    row = connection.execute(
        "SELECT status FROM alerts WHERE alert_id = %s FOR UPDATE", (alert_id,)
    ).fetchone()
    if row is None or row[0] == Status.CLOSED:
        return False
    connection.execute(
        "UPDATE alerts SET assigned_to = %s, assigned_at = %s, updated_at = now()"
        " WHERE alert_id = %s",
        (username, at if username else None, alert_id),
    )
    return True


# ----------------------------------------------------------------- root causes (the engine)


def move_mutes(connection: psycopg.Connection, from_reason: str, to_reason: str) -> None:
    """The alerts muted by ``from_reason`` are muted by ``to_reason`` instead (a wider cause
    took over), under their row locks."""
    connection.execute(
        "UPDATE alerts SET muted_by = %s, updated_at = now() WHERE alert_id IN"
        " (SELECT alert_id FROM alerts WHERE muted_by = %s ORDER BY alert_id FOR UPDATE)",
        (to_reason, from_reason),
    )


def mute_open_alerts(
    connection: psycopg.Connection, subjects: Sequence[str], rule_ids: Sequence[str], reason: str
) -> None:
    """Mute the open, unmuted alerts of ``rule_ids`` on ``subjects`` by ``reason``, under
    their row locks."""
    connection.execute(
        "UPDATE alerts SET muted_by = %s, updated_at = now() WHERE alert_id IN"
        " (SELECT alert_id FROM alerts WHERE subject = ANY(%s) AND rule_id = ANY(%s)"
        " AND status IN ('firing', 'acknowledged') AND muted_by IS NULL"
        " ORDER BY alert_id FOR UPDATE)",
        (reason, list(subjects), list(rule_ids)),
    )


def muted_firing_alerts(connection: psycopg.Connection, reason: str) -> list[tuple[int, str, str]]:
    """The firing alerts muted by ``reason``: id, rule and subject of each."""
    rows = connection.execute(
        "SELECT alert_id, rule_id, subject FROM alerts WHERE muted_by = %s AND status = 'firing'"
        " ORDER BY alert_id",
        (reason,),
    ).fetchall()
    return [(int(alert_id), str(rule_id), str(subject)) for alert_id, rule_id, subject in rows]
