"""Root causes over a whole history: what :class:`rules.root_causes.RootCauses` does live.

Live, when enough devices of a cabinet, street or site are missing at once
(:func:`alerts.lifecycle.failing_groups`), the engine raises one ``group-offline`` alert for
the group and mutes the alerts of the devices behind it: those it raises while the group is
down (muted at birth), and the missing devices' alerts, which wait ``group_wait_s`` before
they are told in case their group turns out to be the cause. When the devices come back the
group's alert is resolved and what still fires behind it is told then; when a wider group
(the site behind a street) now covers it, its alert is closed and the wider one mutes on.

:func:`group_outages` replays this over the alerts a backtest found, in time order, so that
the backtest counts what the crews would have been told: one alert per outage, not one per
device. Pure: no database, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import groupby

from alerts.catalogue import GROUP_OFFLINE
from alerts.lifecycle import DEFAULT_GROUP_WAIT, Scope, failing_groups, group_sizes
from rules.scoring import FAR_FUTURE, AlertInterval

__all__ = ["DEFAULT_GROUP_WAIT", "group_outages"]


@dataclass(frozen=True, slots=True)
class _Open:
    start: datetime
    members: frozenset[str]
    """Every device found missing in the group while its alert was open."""


def group_outages(
    alerts: Sequence[AlertInterval],
    scopes: Mapping[str, Scope],
    missing_rules: Collection[str],
    group_wait: timedelta,
) -> list[AlertInterval]:
    """``alerts`` as the crews would have had them, then the ``group-offline`` alerts.

    alerts: every device alert of the history; scopes: every device of the fleet (group sizes
    count them all); missing_rules: the rules whose alerts mean a device is missing. A device
    alert comes back ``muted`` when it was never told: it began while a group over its device
    was down (a missing device's alert: or that group went down within ``group_wait`` of it),
    and ended before the group came back. Each group alert carries its ``members``.
    """
    gone = [alert for alert in alerts if alert.rule_id in missing_rules]
    changes = sorted(
        [(alert.start, 1, alert.device_id) for alert in gone]
        + [(alert.end, -1, alert.device_id) for alert in gone if alert.end is not None]
    )
    sizes = group_sizes(list(scopes.values()))
    opened: dict[str, _Open] = {}
    groups: list[AlertInterval] = []
    down: dict[str, list[tuple[datetime, datetime]]] = {}
    """Group key -> the spans its alert was open (until resolved or handed over)."""

    def close(key: str, at: datetime | None) -> None:
        done = opened.pop(key)
        members = tuple(sorted(done.members))
        groups.append(AlertInterval(GROUP_OFFLINE, key, done.start, at, members=members))
        down.setdefault(key, []).append((done.start, _reach(at)))

    open_alerts: Counter[str] = Counter()
    """Device -> its missing-device alerts open now."""
    for moment, together in groupby(changes, key=lambda change: change[0]):
        for _, step, device_id in together:
            open_alerts[device_id] += step
        missing = {device_id for device_id, count in open_alerts.items() if count > 0}
        failing = failing_groups(missing, scopes, sizes)
        for key, members in failing.items():
            now = opened.get(key)
            opened[key] = (
                _Open(moment, frozenset(members))
                if now is None
                else replace(now, members=now.members | frozenset(members))
            )
        for key in [key for key in opened if key not in failing]:
            close(key, moment)  # resolved, or handed over to a wider group failing now
    for key in list(opened):
        close(key, None)
    told = [_told(alert, scopes, missing_rules, group_wait, down) for alert in alerts]
    return told + sorted(groups, key=lambda alert: (alert.start, alert.device_id))


def _told(
    alert: AlertInterval,
    scopes: Mapping[str, Scope],
    missing_rules: Collection[str],
    group_wait: timedelta,
    down: Mapping[str, Sequence[tuple[datetime, datetime]]],
) -> AlertInterval:
    scope = scopes.get(alert.device_id)
    if scope is None:
        return alert
    wait = group_wait if alert.rule_id in missing_rules else timedelta(0)
    spans = [span for key in scope.root_keys() for span in down.get(key, ())]
    for began, until in _joined(spans):
        if began <= alert.start + wait and alert.start < until and _reach(alert.end) <= until:
            return replace(alert, muted=True)
    return alert


def _joined(spans: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Spans that meet (a street handed over to the site behind it) as one."""
    joined: list[tuple[datetime, datetime]] = []
    for began, until in sorted(spans):
        if joined and began <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], until))
        else:
            joined.append((began, until))
    return joined


def _reach(end: datetime | None) -> datetime:
    return FAR_FUTURE if end is None else end
