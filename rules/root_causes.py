"""Root causes: one alert for a cabinet, street or site gone quiet, muting the devices behind it.

When enough devices of one group are missing at once (:func:`alerts.lifecycle.failing_groups`),
the cause is the group, not each device: the engine raises one ``group-offline`` alert for it
and mutes the missing-device alerts of its members, so a crew is told once. When the devices
come back, the cause is resolved and what still fires is unmuted; when a wider group (the site
behind a street) now covers it, its mutes are handed to the wider alert and it is closed. Every
write goes through :mod:`alerts.store`, inside the engine's transaction.

Partitioned (:mod:`rules.partition`), a worker judges every group from every worker's missing
devices but raises and resolves only the causes whose subject it owns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import psycopg

from alerts import lifecycle, store
from alerts.catalogue import GROUP_OFFLINE, ROOT_CAUSE_KINDS
from alerts.lifecycle import Alert, Outcome, Scope, Status
from protocol.payloads import Severity

log = logging.getLogger("smartcity.rules")


class RootCauses:
    """The root-cause alerts this worker raised and keeps, subject (``street:...``) -> id."""

    def __init__(
        self,
        *,
        whole_fleet: bool,
        owns: Callable[[str], bool],
        changed: Callable[[int], None],
        raised: Callable[[Alert], None],
    ) -> None:
        self._whole_fleet = whole_fleet
        self._owns = owns
        self._changed = changed
        """Called with each alert changed here (the engine publishes it after the commit)."""
        self._raised = raised
        self._open: dict[str, int] = {}

    def is_open(self, key: str) -> bool:
        return key in self._open

    def forget(self) -> None:
        """After a rollback: rebuilt from the open alerts at the next update."""
        self._open.clear()

    def in_force(self, db: psycopg.Connection) -> Mapping[str, int]:
        """Open root-cause alerts, subject -> id: this worker's, and (partitioned) the other
        workers' too, so that an alert is muted at birth whoever raised its cause."""
        if self._whole_fleet:
            return self._open
        return {**store.open_alert_ids(db, GROUP_OFFLINE), **self._open}

    def update(
        self,
        db: psycopg.Connection,
        scopes: Mapping[str, Scope],
        missing: set[str],
        missing_rules: Sequence[str],
        now: datetime,
    ) -> list[store.QueuedNotice]:
        """Raise one alert per failing cabinet, street or site and mute the missing-device
        alerts (``missing_rules``) behind it; resolve it when its devices are back (unmuting
        those still firing), or hand its mutes to a wider failure that now covers it (nobody
        is told twice)."""
        failing = lifecycle.failing_groups(
            missing, scopes, lifecycle.group_sizes(list(scopes.values()))
        )
        queued: list[store.QueuedNotice] = []
        for key, members in failing.items():
            if not self._owns(key):
                continue
            if key not in self._open:
                alert_id, notices = self._raise(db, key, now)
                queued += notices
                self._open[key] = alert_id
            store.mute_open_alerts(db, members, missing_rules, f"suppressed:{self._open[key]}")
        for key in [key for key in self._open if key not in failing]:
            wider = _covering(key, failing, scopes, missing)
            if wider is not None:
                wider_alert = self._open.get(wider)
                if wider_alert is None:  # raised by another partition's worker, or not yet
                    wider_alert = store.current_alert_id(db, GROUP_OFFLINE, wider)
                if wider_alert is None:
                    continue  # hand over once it is raised; stay muted meanwhile
                self._hand_over(db, self._open.pop(key), wider_alert, wider, now)
                continue
            queued += self._resolve(db, self._open.pop(key), now, missing, missing_rules)
        return queued

    def _raise(
        self, db: psycopg.Connection, key: str, now: datetime
    ) -> tuple[int, list[store.QueuedNotice]]:
        current = store.current_alert_id(db, GROUP_OFFLINE, key)
        if current is not None:
            return current, []  # open before a restart: carry on with it
        kind, _, name = key.partition(":")
        scope = Scope(
            key,
            street_group=name if kind == "street" else None,
            cabinet=name if kind == "cabinet" else None,
            site_id=name if kind == "site" else None,
        )
        muted = lifecycle.mute_reason(
            GROUP_OFFLINE, scope, now, store.silences_in_force(db, now), {}
        )
        outcome = lifecycle.fire(
            GROUP_OFFLINE, key, Severity.CRITICAL, now, now, muted_by=muted, cause="communication"
        )
        alert, notices = store.insert_alert(
            db, outcome, ROOT_CAUSE_KINDS[GROUP_OFFLINE].titles["en"]
        )
        if alert.alert_id is None:
            raise psycopg.DataError("a stored alert has no id")
        self._raised(alert)
        self._changed(alert.alert_id)
        return alert.alert_id, notices

    def _resolve(
        self,
        db: psycopg.Connection,
        alert_id: int,
        now: datetime,
        missing: set[str],
        missing_rules: Sequence[str],
    ) -> list[store.QueuedNotice]:
        """Resolve the cause and tell what still fires behind it; a missing-device alert of a
        device that is back is not (its resolution is recorded in the same commit)."""
        _, _, queued = store.change_alert(
            db, alert_id, lambda a: lifecycle.resolve(a, now, "devices back")
        )
        self._changed(alert_id)
        for muted_id, rule_id, subject in store.muted_firing_alerts(db, f"suppressed:{alert_id}"):
            if rule_id in missing_rules and subject not in missing:
                continue
            _, _, notices = store.change_alert(db, muted_id, lambda a: lifecycle.unmute(a, now))
            queued += notices
        return queued

    def _hand_over(
        self, db: psycopg.Connection, old: int, new: int, wider: str, now: datetime
    ) -> None:
        store.move_mutes(db, f"suppressed:{old}", f"suppressed:{new}")

        def supersede(alert: Alert) -> Outcome:
            if alert.status is Status.CLOSED:
                return alert, [], []
            return lifecycle.close(alert, now, lifecycle.ENGINE, f"superseded by {wider}")

        store.change_alert(db, old, supersede)
        self._changed(old)


def _covering(
    key: str, failing: Mapping[str, Sequence[str]], scopes: Mapping[str, Scope], missing: set[str]
) -> str | None:
    """A failing wider group holding every device of ``key`` still missing, if any."""
    members = {
        device_id
        for device_id, scope in scopes.items()
        if key in scope.root_keys() and device_id in missing
    }
    for wider, devices in failing.items():
        if wider != key and members and members <= set(devices):
            return wider
    return None
