"""Backtests: a rule set run over stored history, the alerts it would have raised, scored.

The middle is pure: :func:`evaluate_device` turns one device's readings (numpy arrays), its
state messages and the rules that watch it into alert intervals, with the definitions the
streaming engine uses (:func:`rules.context.derive`, :func:`rules.core.intervals`,
:func:`rules.offline.missing_intervals`). The edges read the registry, the telemetry (one row
per device holding its whole series as a binary float8 array, read straight into numpy, a
chunk of devices per query, on a reader thread so that the database and the evaluation
overlap) and the ground truth, and hand the alerts to :func:`rules.scoring.score`.

Only the metrics the rules read are fetched (:func:`metrics_read`). Readings from ``warmup``
before the period are evaluated too, so that what a rule reads at the period's start (the
best harvest of the last days, the previous reading, an alert already firing) is what the
live engine would have had; only alerts that fire in the period are counted (see
:mod:`rules.scoring`).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from alerts.catalogue import GROUP_OFFLINE
from alerts.lifecycle import Scope as AlertScope
from protocol.catalogue import CATALOGUE
from protocol.faults import FaultType
from protocol.localtime import local_days
from protocol.solar import solar_elevation
from protocol.topics import DeviceClass
from rules.context import DayRatios, DevicePlace, day_ratios, derive, peer_harvest, peer_median
from rules.core import intervals
from rules.darkness import (
    GO_DARK_RULE,
    DarkNight,
    GoDarkScore,
    dark_moments,
    format_go_dark,
    right_predictions,
    score_go_dark,
)
from rules.darkness import NAMES_READ as DARKNESS_NAMES
from rules.errors import RuleError
from rules.model import Rule, RuleSet, Scope
from rules.names import (
    BIT_NAMES,
    DEFAULT_WARMUP,
    FORECAST_NAMES,
    HARVEST_NAMES,
    PEER_CLASSES,
    PEER_MAX_AGE_INTERVALS,
    PEER_METRICS,
    RADIATOR_NAMES,
    ZONE_MODEL_NAMES,
    peer_group,
)
from rules.observability import (
    NO_MINIMUM,
    Minimum,
    hidden_by,
    names_read_by_class,
    observable_from,
)
from rules.offline import Cause, Gone, cause_from_last_values, missing_intervals
from rules.outages import DEFAULT_GROUP_WAIT, group_outages
from rules.radiator import READ as RADIATOR_READ
from rules.scoring import (
    DEFAULT_FLAP_WINDOW,
    DEFAULT_GRACE,
    NEVER,
    AlertInterval,
    FaultInterval,
    Score,
    score,
)
from rules.zone_model import READ as ZONE_MODEL_READ
from rules.zone_model import ZoneHistory, expected_temperatures

Floats = npt.NDArray[np.float64]
StateRow = tuple[float, bool, str | None, str | None]
"""A device_states row as :func:`rules.offline.missing_intervals` takes it: (time it arrived [s],
online, reason, boot_id)."""
Progress = Callable[[str], None]

"""Readings evaluated before the period: enough for every harvest ratio to be known."""
MAX_CHUNK_DEVICES: Final = 200
"""Devices read per telemetry query, at most (a building's zones are never split)."""
CHUNK_READINGS: Final = 600_000
"""Readings per telemetry query, about: bounds the memory a chunk takes."""
CAUSE_METRICS: Final[dict[DeviceClass, tuple[str, ...]]] = {
    DeviceClass.STREETLIGHT: ("battery_soc", "controller_status"),
    DeviceClass.SIGNAGE: ("supply_voltage",),
    DeviceClass.BUILDING: (),
}
"""The metrics :func:`rules.offline.cause_from_last_values` reads to tell why a device went."""
_DERIVED_FROM: Final[dict[str, tuple[str, ...]]] = {
    **dict.fromkeys(HARVEST_NAMES, ("pv_power", "controller_status")),
    "usable_energy_wh": ("battery_soc",),
    "night_energy_needed_wh": ("lamp_power",),
    **{f"peer_{name}": ("pv_power", "controller_status") for name in HARVEST_NAMES},
    **dict.fromkeys(FORECAST_NAMES, ("pv_power", "battery_soc", "lamp_power", "controller_status")),
    "coming_night_hours": (),
    "last_night_mean_level": ("lamp_on", "dimming_level"),
    **dict.fromkeys(ZONE_MODEL_NAMES, ZONE_MODEL_READ),
    **dict.fromkeys(RADIATOR_NAMES, RADIATOR_READ),
    "clear_sky_pv_power": (),
    "scheduled_lamp_level": (),
    "night_hours_left": (),
    "sun_elevation": (),
    "local_hour": (),
    "weekday": (),
}
"""Derived names (rules/context.py) and the metrics each is computed from."""
_RATINGS: Final = frozenset({"lamp_w", "panel_wp", "battery_wh", "pixels", "max_power_w"})
_CHANGE_PREFIXES: Final = ("prev_", "delta_", "rate_", "peer_")


class BacktestError(RuleError):
    """A backtest that cannot run: the message says what to change."""


# ------------------------------------------------------------------------------- pure part


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device as a backtest sees it: where it is (for the context) and its groups (scope)."""

    place: DevicePlace
    street_group: str | None = None
    cabinet: str | None = None
    building: str | None = None
    peer_group: str | None = None
    """Devices of one peer group are compared with each other (``peer_`` names)."""
    site_id: str | None = None

    @property
    def device_id(self) -> str:
        return self.place.device_id

    @property
    def scope(self) -> AlertScope:
        """Where it stands for root causes, as the engine's fleet has it."""
        return AlertScope(
            self.device_id, self.street_group, self.cabinet, self.building, self.site_id
        )

    @property
    def device_class(self) -> DeviceClass:
        return self.place.device_class


def in_scope(scope: Scope, device: DeviceInfo) -> bool:
    """Whether a rule with ``scope`` watches ``device``: every device of its class when the
    scope is empty, else those named or in a street group, building or cabinet named."""
    if scope.everything:
        return True
    return (
        device.device_id in scope.devices
        or (device.street_group is not None and device.street_group in scope.street_groups)
        or (device.building is not None and device.building in scope.buildings)
        or (device.cabinet is not None and device.cabinet in scope.cabinets)
    )


def rules_for(rules: Iterable[Rule], device: DeviceInfo) -> tuple[Rule, ...]:
    """The rules that watch ``device``: its class's, in scope."""
    return tuple(
        rule
        for rule in rules
        if rule.device_class is device.device_class and in_scope(rule.scope, device)
    )


def metrics_read(
    rules: Iterable[Rule], device_class: DeviceClass, also: Collection[str] = ()
) -> tuple[str, ...]:
    """The metrics of ``device_class`` the rules need, in catalogue order: those their
    conditions (and the names ``also``) read, directly or through a derived name, and for a
    missing-data rule those that tell why a device went. A name this does not know makes it
    ask for every metric."""
    catalogue = tuple(CATALOGUE[device_class].metrics)
    words = {prefix: word for word, prefix, _bits in BIT_NAMES.values()}
    needed: set[str] = set()
    names = set(also)
    for rule in rules:
        if rule.device_class is not device_class:
            continue
        if rule.missing is not None:
            needed.update(CAUSE_METRICS[device_class])
        names.update(rule.names)
    for name in sorted(names):
        stem = next((name[len(p) :] for p in _CHANGE_PREFIXES if name.startswith(p)), name)
        prefix = name.split("_", 1)[0]
        if stem in catalogue:
            needed.add(stem)
        elif prefix in words and words[prefix] in catalogue:
            needed.add(words[prefix])
        elif name in _DERIVED_FROM:
            needed.update(_DERIVED_FROM[name])
        elif name not in _RATINGS:
            return catalogue
    return tuple(metric for metric in catalogue if metric in needed)


@dataclass(frozen=True, slots=True)
class DeviceHistory:
    """One device's stored history: readings in time order and state messages."""

    device: DeviceInfo
    unix_s: Floats
    """Reading times [s], strictly increasing."""
    metrics: Mapping[str, Floats]
    """Metric name -> values at those times, NaN where a reading lacks the metric."""
    states: Sequence[StateRow] = ()


@dataclass(frozen=True, slots=True)
class RawAlert:
    """An alert of one rule on one device, in Unix seconds."""

    rule_id: str
    device_id: str
    fired_s: float
    resolved_s: float | None
    """None: still open at the end of the history."""

    def interval(self) -> AlertInterval:
        return AlertInterval(
            self.rule_id,
            self.device_id,
            _moment(self.fired_s),
            None if self.resolved_s is None else _moment(self.resolved_s),
        )


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    alerts: tuple[RawAlert, ...]
    rows_evaluated: int
    """Readings x rules applied to them (a missing-data rule counts like the others)."""


def evaluate_device(
    rules: Sequence[Rule],
    history: DeviceHistory,
    until_s: float,
    peers: Sequence[DeviceHistory] = (),
    environment: dict[str, Floats] | None = None,
) -> DeviceOutcome:
    """Every alert ``rules`` raise over one device's history, up to ``until_s`` [s].

    rules: those that watch the device (:func:`rules_for`); peers: the other devices of its
    peer group, for the ``peer_`` names (and a zone's balance: its neighbours); environment:
    the context already derived from the history (:func:`rules.context.derive`), else derived
    here once for all condition rules.
    """
    device = history.device
    unix_s = history.unix_s
    conditions = [rule for rule in rules if rule.when is not None]
    silences = [rule for rule in rules if rule.missing is not None]
    found: list[RawAlert] = []
    if conditions and len(unix_s):
        env = (
            environment
            if environment is not None
            else _environment(history, peers, _ChunkContext.of([history, *peers]))
        )
        _add_peers(env, history, peers, frozenset().union(*(rule.names for rule in conditions)))
        for rule in conditions:
            for alert in intervals(rule, unix_s, env):
                fired_s = float(unix_s[alert.fired])
                resolved_s = None if alert.resolved is None else float(unix_s[alert.resolved])
                found.append(RawAlert(rule.id, device.device_id, fired_s, resolved_s))
    for rule in silences:
        for gone in missing(history, rule.silence_s, until_s, rule.grace_s):
            fired_s = gone.known_s if gone.known_s is not None else gone.since_s
            found.append(RawAlert(rule.id, device.device_id, fired_s, gone.back_s))
    return DeviceOutcome(tuple(found), len(unix_s) * (len(conditions) + len(silences)))


def _day_ratios(histories: Iterable[DeviceHistory]) -> dict[str, DayRatios]:
    """Each streetlight's harvest ratios by day, for its street's lights to compare with."""
    return {
        history.device.device_id: day_ratios(history.device.place, history.unix_s, history.metrics)
        for history in histories
        if history.device.device_class is DeviceClass.STREETLIGHT
    }


def _zone_expectations(histories: Iterable[DeviceHistory]) -> dict[str, Floats]:
    """Each zone's ``expected_air_temperature``, its building's zones run together."""
    buildings: dict[str | None, list[DeviceHistory]] = {}
    for history in histories:
        if history.device.device_class is DeviceClass.BUILDING:
            buildings.setdefault(history.device.building, []).append(history)
    expected: dict[str, Floats] = {}
    for building, zones in buildings.items():
        groups = [[zone] for zone in zones] if building is None else [zones]
        for group in groups:
            series = [
                ZoneHistory(
                    zone.unix_s,
                    {
                        **zone.metrics,
                        "sun_elevation": solar_elevation(
                            zone.unix_s, zone.device.place.latitude, zone.device.place.longitude
                        ),
                    },
                )
                for zone in group
            ]
            values = expected_temperatures(series, alone=len(group) == 1)
            expected.update(
                (zone.device.device_id, value) for zone, value in zip(group, values, strict=True)
            )
    return expected


@dataclass(frozen=True, slots=True)
class _ChunkContext:
    """What the devices of one chunk read of each other: peers, harvests, zone balances."""

    by_group: Mapping[str, Sequence[DeviceHistory]]
    harvests: Mapping[str, DayRatios]
    zones: Mapping[str, Floats]
    """Each zone's ``expected_air_temperature``."""

    @classmethod
    def of(cls, histories: Sequence[DeviceHistory]) -> _ChunkContext:
        by_group: dict[str, list[DeviceHistory]] = {}
        for history in histories:
            if history.device.peer_group is not None:
                by_group.setdefault(history.device.peer_group, []).append(history)
        return cls(by_group, _day_ratios(histories), _zone_expectations(histories))

    def peers(self, history: DeviceHistory) -> list[DeviceHistory]:
        group = self.by_group.get(history.device.peer_group or "", ())
        return [other for other in group if other is not history]


def _environment(
    history: DeviceHistory, peers: Sequence[DeviceHistory], context: _ChunkContext
) -> dict[str, Floats]:
    """What the rules read of one device's history: the context, a streetlight's harvest
    against its street's, a zone's learnt balance."""
    device = history.device
    environment = derive(device.place, history.unix_s, history.metrics)
    if device.device_id in context.zones:
        environment["expected_air_temperature"] = context.zones[device.device_id]
    if device.device_class is DeviceClass.STREETLIGHT:
        environment.update(
            peer_harvest(
                local_days(history.unix_s, device.place.timezone),
                context.harvests[device.device_id],
                [context.harvests[peer.device.device_id] for peer in peers],
            )
        )
    return environment


def _add_peers(
    env: dict[str, Floats],
    history: DeviceHistory,
    peers: Sequence[DeviceHistory],
    names: Collection[str],
) -> None:
    device_class = history.device.device_class
    max_age_s = PEER_MAX_AGE_INTERVALS * CATALOGUE[device_class].expected_interval_s
    for metric in PEER_METRICS.get(device_class, ()):
        if f"peer_{metric}" in names:
            series = [
                (peer.unix_s, peer.metrics.get(metric, np.full(len(peer.unix_s), np.nan)))
                for peer in peers
            ]
            env[f"peer_{metric}"] = peer_median(history.unix_s, series, max_age_s)


def missing(
    history: DeviceHistory, silence_s: float, until_s: float, grace_s: float = 0.0
) -> list[Gone]:
    """The missing intervals of one device: :func:`rules.offline.missing_intervals`, or for a
    device without state messages (a simulated history) the same computed with numpy."""
    device_class = history.device.device_class
    causes = {
        name: history.metrics[name]
        for name in CAUSE_METRICS[device_class]
        if name in history.metrics
    }
    if history.states:
        return missing_intervals(
            device_class,
            history.unix_s,
            causes,
            silence_s=silence_s,
            grace_s=grace_s,
            states=history.states,
            until_s=until_s,
        )
    return silent_gaps(device_class, history.unix_s, causes, silence_s=silence_s, until_s=until_s)


def silent_gaps(
    device_class: DeviceClass,
    sample_s: Floats,
    values: Mapping[str, Floats],
    *,
    silence_s: float,
    until_s: float | None = None,
) -> list[Gone]:
    """:func:`rules.offline.missing_intervals` without state messages, with numpy: each gap
    between readings of at least ``silence_s`` starts at the last reading plus the silence
    and ends at the next reading; after the last reading, one still open at ``until_s``.

    Why it went: what the last reading before the gap says; a gap that readings end without
    a state message otherwise means the device took none (it had no power).
    """
    found: list[Gone] = []
    if not len(sample_s):
        return found
    gaps = np.flatnonzero(np.diff(sample_s) >= silence_s)
    for index in gaps:
        last = int(index)
        cause = _cause_at(device_class, values, last)
        found.append(
            Gone(
                float(sample_s[last]) + silence_s,
                Cause.POWER if cause is Cause.UNKNOWN else cause,
                float(sample_s[last + 1]),
            )
        )
    final = len(sample_s) - 1
    if until_s is not None and until_s - float(sample_s[final]) >= silence_s:
        found.append(
            Gone(float(sample_s[final]) + silence_s, _cause_at(device_class, values, final))
        )
    return found


def _cause_at(device_class: DeviceClass, values: Mapping[str, Floats], index: int) -> Cause:
    return cause_from_last_values(
        device_class, {name: float(column[index]) for name, column in values.items()}
    )


def _moment(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


# ------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class BacktestResult:
    """What a rule set would have raised over a period, and how well it did."""

    rule_set: RuleSet
    start: datetime
    end: datetime
    device_count: int
    alerts: tuple[AlertInterval, ...]
    """Every alert, including those fired in the warm-up (``score`` sorts them out)."""
    faults: tuple[FaultInterval, ...]
    score: Score
    readings: int
    """Readings evaluated, warm-up included."""
    rows_evaluated: int
    """Readings x the rules applied to them."""
    seconds: float
    """Wall time of the whole backtest (reading, evaluating, scoring)."""
    rows_evaluated_by_rule: Mapping[str, int] = field(default_factory=dict)
    device_ids: tuple[str, ...] = ()
    """The devices backtested (``device_count`` of them)."""
    go_dark: GoDarkScore | None = None
    """The lights that went dark in the period, and how well they were foretold."""
    dark_nights: tuple[DarkNight, ...] = ()
    """Every night a light went dark (warm-up included)."""
    timezones: Mapping[str, str] = field(default_factory=dict)
    """Each device's time zone."""

    def foretold_darkness(self) -> list[AlertInterval]:
        """The "will go dark" alerts that came true."""
        predictions = [alert for alert in self.alerts if alert.rule_id == GO_DARK_RULE]
        return right_predictions(predictions, self.dark_nights, self.timezones)

    @property
    def rows_per_second(self) -> float:
        return self.rows_evaluated / self.seconds if self.seconds > 0 else 0.0

    @property
    def alerts_by_rule(self) -> dict[str, int]:
        """Alerts fired in the period, per rule (every rule of the set, zeros included)."""
        return {rule_id: rule.alerts for rule_id, rule in self.score.by_rule.items()}

    def summary(self) -> str:
        """The lights gone dark and their forecasts, then the work done and its speed."""
        dark = "" if self.go_dark is None else format_go_dark(self.go_dark) + "\n"
        return dark + (
            f"{self.rows_evaluated:,} rows evaluated ({self.readings:,} readings x rules) "
            f"in {self.seconds:.1f} s: {self.rows_per_second:,.0f} rows/s"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "rules": self.rule_set.source,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "devices": self.device_count,
            "readings": self.readings,
            "rows_evaluated": self.rows_evaluated,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second),
            "alerts_by_rule": self.alerts_by_rule,
            "score": self.score.to_json(),
            "go_dark": None if self.go_dark is None else self.go_dark.to_json(),
        }


# ------------------------------------------------------------------------------- reading


def list_devices(connection: psycopg.Connection, start: datetime) -> list[DeviceInfo]:
    """Every device in service at ``start``, by class and id."""
    rows = connection.execute(
        """
        SELECT d.device_id, d.device_class, coalesce(d.latitude, s.latitude),
               coalesce(d.longitude, s.longitude), s.timezone, d.street_group, d.cabinet,
               d.building, d.metadata, d.site_id
        FROM devices d JOIN sites s USING (site_id)
        WHERE d.decommissioned_at IS NULL OR d.decommissioned_at > %(start)s
        ORDER BY d.device_class, d.device_id""",
        {"start": start},
    ).fetchall()
    return [
        DeviceInfo(
            DevicePlace(
                device_id,
                DeviceClass(device_class),
                float(latitude),
                float(longitude),
                timezone,
                {str(name): float(value) for name, value in metadata.get("ratings", {}).items()},
            ),
            street_group,
            cabinet,
            building,
            peer_group(DeviceClass(device_class), building, street_group, metadata),
            site_id,
        )
        for (
            device_id,
            device_class,
            latitude,
            longitude,
            timezone,
            street_group,
            cabinet,
            building,
            metadata,
            site_id,
        ) in rows
    ]


def read_faults(
    connection: psycopg.Connection,
    start: datetime,
    end: datetime,
    devices: Sequence[str],
    run: str | None = None,
) -> list[FaultInterval]:
    """Ground truth overlapping ``[start, end)`` of these devices (of one run, or all)."""
    rows = connection.execute(
        """
        SELECT device_id, fault, started_at, ended_at FROM fault_ground_truth
        WHERE started_at < %(end)s AND (ended_at IS NULL OR ended_at > %(start)s)
          AND device_id = ANY(%(ids)s::text[])
          AND (%(run)s::text IS NULL OR run = %(run)s::text)
        ORDER BY device_id, started_at""",
        {"start": start, "end": end, "ids": list(devices), "run": run},
    ).fetchall()
    return [
        FaultInterval(device_id, fault, began, ended) for device_id, fault, began, ended in rows
    ]


def known_runs(connection: psycopg.Connection) -> list[str]:
    rows = connection.execute("SELECT DISTINCT run FROM fault_ground_truth ORDER BY run")
    return [str(row[0]) for row in rows.fetchall()]


def parse_float8_matrix(data: bytes) -> Floats:
    """A two-dimensional float8 array without NULLs, as PostgreSQL sends it
    (``array_send``), as a numpy matrix."""
    header = np.frombuffer(data, ">i4", count=3)
    dimensions, has_nulls, _element_type = (int(value) for value in header)
    if dimensions != 2 or has_nulls:
        raise BacktestError("the telemetry came back in an unexpected shape (NULLs or not 2-D)")
    rows, _lower, columns, _lower_too = (int(v) for v in np.frombuffer(data, ">i4", 4, 12))
    elements = np.frombuffer(
        data, np.dtype([("size", ">i4"), ("value", ">f8")]), rows * columns, 12 + 8 * dimensions
    )
    if np.any(elements["size"] != 8):
        raise BacktestError("the telemetry came back with elements that are not float8")
    return elements["value"].astype(np.float64).reshape(rows, columns)


def _telemetry_statement(device_class: DeviceClass, metrics: Sequence[str]) -> sql.Composed:
    """One row per device: its position in the list and a matrix [reading, (time, metric...)]
    of float8, the time in Unix seconds, NaN for NULL."""
    columns = [sql.SQL("extract(epoch FROM t.ts)::float8")] + [
        sql.SQL("coalesce(t.{}, 'NaN'::float8)").format(sql.Identifier(name)) for name in metrics
    ]
    return sql.SQL(
        "SELECT d.position::int4, array_send(array_agg(ARRAY[{columns}] ORDER BY t.ts))"
        " FROM {table} t"
        " JOIN unnest({ids}::text[]) WITH ORDINALITY AS d(device_id, position)"
        " ON t.device_id = d.device_id"
        " WHERE t.ts >= {start} AND t.ts < {end} GROUP BY d.position"
    ).format(
        columns=sql.SQL(", ").join(columns),
        table=sql.Identifier(f"telemetry_{device_class}"),
        ids=sql.Placeholder("ids"),
        start=sql.Placeholder("start"),
        end=sql.Placeholder("end"),
    )


def read_histories(
    connection: psycopg.Connection,
    devices: Sequence[DeviceInfo],
    start: datetime,
    end: datetime,
    metrics: Sequence[str] | None = None,
) -> list[DeviceHistory]:
    """The telemetry and state messages of ``devices`` (all of one class) in ``[start, end)``.

    metrics: those to read (default: all of the class); the others are left out.
    """
    if not devices:
        return []
    device_class = devices[0].device_class
    wanted = tuple(CATALOGUE[device_class].metrics) if metrics is None else tuple(metrics)
    params = {"ids": [device.device_id for device in devices], "start": start, "end": end}
    with connection.cursor(binary=True) as cursor:
        series = cursor.execute(_telemetry_statement(device_class, wanted), params).fetchall()
        states = cursor.execute(
            """
            SELECT device_id, received_at, status, reason, boot_id FROM device_states
            WHERE device_id = ANY(%(ids)s::text[])
              AND received_at >= %(start)s AND received_at < %(end)s
            ORDER BY device_id, received_at, status DESC""",
            params,
        ).fetchall()
    matrices = {int(position) - 1: parse_float8_matrix(bytes(data)) for position, data in series}
    by_device: dict[str, list[StateRow]] = {}
    for device_id, ts, status, reason, boot_id in states:
        by_device.setdefault(device_id, []).append(
            (ts.timestamp(), status == "online", reason, boot_id)
        )
    empty = np.zeros((0, 1 + len(wanted)))
    histories = []
    for index, device in enumerate(devices):
        matrix = matrices.get(index, empty)
        histories.append(
            DeviceHistory(
                device,
                np.ascontiguousarray(matrix[:, 0]),
                {
                    name: np.ascontiguousarray(matrix[:, column])
                    for column, name in enumerate(wanted, start=1)
                },
                by_device.get(device.device_id, ()),
            )
        )
    return histories


@dataclass(frozen=True, slots=True)
class _Chunk:
    devices: tuple[DeviceInfo, ...]
    """Read together; those of ``evaluate`` are evaluated, the others are peers only."""
    evaluate: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Read:
    chunk: _Chunk
    histories: tuple[DeviceHistory, ...]


def plan_chunks(
    fleet: Sequence[DeviceInfo], selected: Collection[str], span: timedelta
) -> list[_Chunk]:
    """The selected devices in groups of one class, each small enough for one query; for a
    class whose rules compare with peers, whole peer groups, peers of the selected included."""
    chunks: list[_Chunk] = []
    for device_class in DeviceClass:
        members = [device for device in fleet if device.device_class is device_class]
        per_device = span.total_seconds() / CATALOGUE[device_class].expected_interval_s
        size = int(max(1, min(MAX_CHUNK_DEVICES, CHUNK_READINGS // max(per_device, 1.0))))
        if device_class in PEER_CLASSES:
            groups = _by_peer_group(members, selected)
        else:
            groups = [[device] for device in members if device.device_id in selected]
        batch: list[DeviceInfo] = []
        for group in groups:
            if batch and len(batch) + len(group) > size:
                chunks.append(_chunk(batch, selected))
                batch = []
            batch.extend(group)
        if batch:
            chunks.append(_chunk(batch, selected))
    return chunks


def _by_peer_group(
    members: Sequence[DeviceInfo], selected: Collection[str]
) -> list[list[DeviceInfo]]:
    groups: dict[str, list[DeviceInfo]] = {}
    alone: list[list[DeviceInfo]] = []
    for device in members:
        # A zone's balance reads every other zone of its building: they are read together.
        key = device.building if device.device_class is DeviceClass.BUILDING else None
        key = key or device.peer_group
        if key is None:
            if device.device_id in selected:
                alone.append([device])
        else:
            groups.setdefault(key, []).append(device)
    wanted = [group for group in groups.values() if any(d.device_id in selected for d in group)]
    return wanted + alone


def _chunk(devices: Sequence[DeviceInfo], selected: Collection[str]) -> _Chunk:
    return _Chunk(
        tuple(devices),
        frozenset(device.device_id for device in devices if device.device_id in selected),
    )


class _Reader:
    """Reads chunks on a thread of its own, a couple ahead of the evaluation."""

    def __init__(
        self,
        connection: psycopg.Connection,
        chunks: Sequence[_Chunk],
        period: tuple[datetime, datetime],
        metrics: Mapping[DeviceClass, tuple[str, ...]],
    ) -> None:
        self._queue: queue.Queue[_Read | BaseException | None] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(connection, chunks, period, metrics),
            daemon=True,
            name="backtest-reader",
        )
        self._thread.start()

    def _run(
        self,
        connection: psycopg.Connection,
        chunks: Sequence[_Chunk],
        period: tuple[datetime, datetime],
        metrics: Mapping[DeviceClass, tuple[str, ...]],
    ) -> None:
        try:
            for chunk in chunks:
                if self._stop.is_set():
                    return
                wanted = metrics[chunk.devices[0].device_class]
                histories = read_histories(connection, chunk.devices, *period, wanted)
                self._put(_Read(chunk, tuple(histories)))
            self._put(None)
        except BaseException as error:  # noqa: BLE001 - handed over to the evaluating thread
            self._put(error)

    def _put(self, item: _Read | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
            except queue.Full:
                continue
            return

    def __iter__(self) -> Iterator[_Read]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------- backtest


def backtest(  # noqa: PLR0917 - the documented call: backtest(url, rules, start, end, ...)
    connection_or_url: psycopg.Connection | str,
    rule_set: RuleSet,
    start: datetime,
    end: datetime,
    devices: Sequence[str] | None = None,
    run: str | None = None,
    progress: Progress | None = None,
    *,
    warmup: timedelta = DEFAULT_WARMUP,
    grace: timedelta = DEFAULT_GRACE,
    flap_window: timedelta = DEFAULT_FLAP_WINDOW,
) -> BacktestResult:
    """Run ``rule_set`` over the stored history of ``[start, end)`` and score it.

    devices: device ids (default: every device in service at ``start``); run: the
    fault_ground_truth run to score against (default: every run's faults); progress: called
    with a line of text after each chunk of devices.
    """
    (result,) = backtest_many(
        connection_or_url,
        [rule_set],
        start,
        end,
        devices,
        run,
        progress,
        warmup=warmup,
        grace=grace,
        flap_window=flap_window,
    )
    return result


def backtest_many(  # noqa: PLR0917 - as backtest()
    connection_or_url: psycopg.Connection | str,
    rule_sets: Sequence[RuleSet],
    start: datetime,
    end: datetime,
    devices: Sequence[str] | None = None,
    run: str | None = None,
    progress: Progress | None = None,
    *,
    warmup: timedelta = DEFAULT_WARMUP,
    grace: timedelta = DEFAULT_GRACE,
    flap_window: timedelta = DEFAULT_FLAP_WINDOW,
) -> list[BacktestResult]:
    """Several rule sets over the same history, read once (``--compare``): one result each,
    each with the wall time of the whole run."""
    for name, moment in (("start", start), ("end", end)):
        if moment.utcoffset() is None:
            raise BacktestError(f"the {name} {moment.isoformat()} has no time zone: add one")
    if end <= start:
        raise BacktestError(f"the period ends ({end}) no later than it starts ({start})")
    if warmup < timedelta(0):
        raise BacktestError(f"the warm-up ({warmup}) must not be negative")
    options = _Options(start, end, devices, run, progress, warmup, grace, flap_window)
    if isinstance(connection_or_url, str):
        with psycopg.connect(connection_or_url) as connection:
            return _backtest(connection, rule_sets, options)
    return _backtest(connection_or_url, rule_sets, options)


@dataclass(frozen=True, slots=True)
class _Options:
    start: datetime
    end: datetime
    devices: Sequence[str] | None
    run: str | None
    progress: Progress | None
    warmup: timedelta
    grace: timedelta
    flap_window: timedelta
    group_wait: timedelta = DEFAULT_GROUP_WAIT


DAY_HARVEST_GRACE: Final = timedelta(days=1)
"""How long after a fault ended an alert of a rule judging yesterday's harvest still tells of
it: the fault darkened that day, and the rule tells at the next day's first reading."""


@dataclass(frozen=True, slots=True)
class _Minimums:
    """What the rules detecting each fault type need to see to tell it."""

    each: Mapping[str, frozenset[Minimum]]
    """Per type, what each detecting rule needs to see: the fault shows once any is seen."""
    whole_day: frozenset[str]
    """The types every detecting rule of which judges whole days (a day's harvest)."""

    @classmethod
    def of(cls, rule_set: RuleSet) -> _Minimums:
        each: dict[str, set[Minimum]] = {}
        by_type: dict[str, list[Rule]] = {}
        for rule in rule_set.rules:
            seen = rule.occurrences
            minimum = Minimum(
                rule.for_.total_seconds(),
                *((1, math.inf) if seen is None else (seen.count, seen.within.total_seconds())),
            )
            for fault in rule.detects:
                each.setdefault(fault, set()).add(minimum)
                by_type.setdefault(fault, []).append(rule)
        whole_day = frozenset(
            fault
            for fault, rules in by_type.items()
            if all(rule.judges_whole_days for rule in rules)
        )
        return cls({fault: frozenset(needs) for fault, needs in each.items()}, whole_day)


def _mark_when_shown(
    faults: list[FaultInterval],
    positions: Sequence[int],
    history: DeviceHistory,
    minimums: _Minimums,
    environment: Mapping[str, Floats],
) -> None:
    """Set ``shows_from`` of the device's faults from its own readings (in place).

    environment: the rules' values at the readings."""
    if not positions or not len(history.unix_s):
        return
    mine = [faults[position] for position in positions]
    days = None
    for position in positions:
        fault = faults[position]
        try:
            kind = FaultType(fault.fault)
        except ValueError:
            continue  # a fault type of another version of the simulator: from its start
        hiders = hidden_by(kind)
        if fault.fault in minimums.whole_day and days is None:
            days = local_days(history.unix_s, history.device.place.timezone)
        hidden = [(other.start, other.end) for other in mine if other.fault in hiders]
        whole_day = days if fault.fault in minimums.whole_day else None
        moments = [
            observable_from(
                kind,
                fault.start,
                fault.end,
                history.unix_s,
                environment,
                minimum=minimum,
                hidden=hidden,
                whole_day=whole_day,
            )
            for minimum in minimums.each.get(fault.fault, {NO_MINIMUM})
        ]
        shows = min((moment for moment in moments if moment is not None), default=None)
        faults[position] = replace(fault, shows_from=NEVER if shows is None else shows)


def _detected_by(rules: Sequence[Rule]) -> frozenset[str]:
    """What a root cause detects: what the missing-device rules behind it do."""
    return frozenset().union(*(frozenset(rule.detects) for rule in rules))


def _select(fleet: Sequence[DeviceInfo], devices: Sequence[str] | None) -> set[str]:
    known = {device.device_id for device in fleet}
    if devices is None:
        return known
    unknown = sorted(set(devices) - known)
    if unknown:
        raise BacktestError(
            f"unknown or decommissioned devices: {', '.join(unknown)}; check the ids "
            "(`smartcity provision` loads a site's devices)"
        )
    return set(devices)


def _backtest(
    connection: psycopg.Connection, rule_sets: Sequence[RuleSet], options: _Options
) -> list[BacktestResult]:
    started = time.monotonic()
    start, end = options.start, options.end
    say = options.progress or (lambda _text: None)
    fleet = list_devices(connection, start)
    selected = _select(fleet, options.devices)
    faults = read_faults(connection, start, end, sorted(selected), options.run)
    if options.run is not None and not faults and options.run not in known_runs(connection):
        runs = ", ".join(known_runs(connection)) or "none"
        raise BacktestError(f"no ground truth run {options.run!r}; known runs: {runs}")
    every_rule = [rule for rule_set in rule_sets for rule in rule_set.rules]
    classes = {rule.device_class for rule in every_rule}
    watched = {d.device_id for d in fleet if d.device_id in selected and d.device_class in classes}
    chunks = plan_chunks(fleet, watched, end - start + options.warmup)
    metrics = {
        device_class: metrics_read(
            every_rule,
            device_class,
            names_read_by_class(device_class)
            | (DARKNESS_NAMES if device_class is DeviceClass.STREETLIGHT else frozenset()),
        )
        for device_class in classes
    }
    minimums = _Minimums.of(rule_sets[0])
    faults_of: dict[str, list[int]] = {}
    for position, fault in enumerate(faults):
        faults_of.setdefault(fault.device_id, []).append(position)
    alerts: list[list[RawAlert]] = [[] for _ in rule_sets]
    rows = [Counter[str]() for _ in rule_sets]
    readings = done = 0
    dark: list[DarkNight] = []
    until_s = end.timestamp()
    reader = _Reader(connection, chunks, (start - options.warmup, end), metrics)
    try:
        for read in reader:
            context = _ChunkContext.of(read.histories)
            for history in read.histories:
                if history.device.device_id not in read.chunk.evaluate:
                    continue
                peers = context.peers(history)
                readings += len(history.unix_s)
                device = history.device
                environment = _environment(history, peers, context)
                _mark_when_shown(
                    faults, faults_of.get(device.device_id, ()), history, minimums, environment
                )
                if device.device_class is DeviceClass.STREETLIGHT:
                    dark += dark_moments(
                        device.device_id, history.unix_s, environment, device.place.timezone
                    )
                for index, rule_set in enumerate(rule_sets):
                    applied = rules_for(rule_set.rules, device)
                    outcome = evaluate_device(applied, history, until_s, peers, environment)
                    alerts[index].extend(outcome.alerts)
                    for rule in applied:
                        rows[index][rule.id] += len(history.unix_s)
            done += len(read.chunk.evaluate)
            elapsed = max(time.monotonic() - started, 1e-9)
            say(
                f"{read.chunk.devices[0].device_class}: {done:,}/{len(watched):,} devices, "
                f"{readings:,} readings, {rows[0].total() / elapsed:,.0f} rows/s"
            )
    finally:
        reader.close()
    found = _Found(fleet, tuple(sorted(selected)), tuple(faults), dark, readings)
    results = [
        _result(rule_set, alerts[index], rows[index], found, options)
        for index, rule_set in enumerate(rule_sets)
    ]
    seconds = time.monotonic() - started
    return [replace(result, seconds=seconds) for result in results]


@dataclass(frozen=True, slots=True)
class _Found:
    """What the reading pass found, for every rule set alike."""

    fleet: Sequence[DeviceInfo]
    selected: tuple[str, ...]
    faults: tuple[FaultInterval, ...]
    dark: Sequence[DarkNight]
    readings: int


def _result(
    rule_set: RuleSet,
    raw: Sequence[RawAlert],
    rows: Counter[str],
    found: _Found,
    options: _Options,
) -> BacktestResult:
    """One rule set's alerts as the crews would have had them (root causes judged), scored."""
    missing_rules = [rule for rule in rule_set.rules if rule.missing is not None]
    alerts = tuple(
        group_outages(
            [alert.interval() for alert in raw],
            {device.device_id: device.scope for device in found.fleet},
            {rule.id for rule in missing_rules},
            options.group_wait,
        )
    )
    detects = {**rule_set.detects, GROUP_OFFLINE: _detected_by(missing_rules)}
    bounds: dict[str, timedelta | None] = {rule.id: rule.fires_within for rule in rule_set.rules}
    bounds[GROUP_OFFLINE] = max(
        (rule.fires_within for rule in missing_rules if rule.fires_within is not None),
        default=None,
    )
    start, end = options.start, options.end
    timezones = {device.device_id: device.place.timezone for device in found.fleet}
    return BacktestResult(
        rule_set=rule_set,
        start=start,
        end=end,
        device_count=len(found.selected),
        alerts=alerts,
        faults=found.faults,
        score=score(
            alerts,
            found.faults,
            detects,
            period_start=start,
            period_end=end,
            device_count=len(found.selected),
            grace=options.grace,
            flap_window=options.flap_window,
            bounds=bounds,
            grace_of={
                rule.id: max(options.grace, DAY_HARVEST_GRACE)
                for rule in rule_set.rules
                if rule.judges_whole_days
            },
        ),
        readings=found.readings,
        rows_evaluated=rows.total(),
        seconds=0.0,
        rows_evaluated_by_rule=dict(rows),
        device_ids=found.selected,
        go_dark=score_go_dark(
            [alert for alert in alerts if alert.rule_id == GO_DARK_RULE],
            found.dark,
            timezones,
            (start, end),
        ),
        dark_nights=tuple(found.dark),
        timezones=timezones,
    )
