"""History generation: months of the whole fleet's telemetry, straight into the database.

The same :class:`simulators.city.SimulatedCity` as the live simulation, stepped as fast as
it goes; every device runs the local program its agent would (:mod:`edge_agents.control`),
the streetlights the platform's nightly schedules when given a :class:`LightingProgram` (as
the live lighting service sends them), and samples are taken at each class's reporting
interval. Rows go in by binary COPY (:mod:`storage.bulk`), a day at a time, on a second
connection fed by a writer thread, so the simulation (this process) and the inserts (the
server) use both cores. Ground truth goes to CSV and to ``fault_ground_truth``.

Faults act as in the live simulation, with one difference that matters for history: a
communication loss leaves the data complete (the agent's spool replays it), a power loss
leaves a hole. Both leave in ``device_states`` what the broker and the device would have
said: the last will when the broker gave up on the device (1.5 keepalives after the loss)
and the birth when it came back, with the same boot id after a link loss and a new one after
a power loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from edge_agents import control
from protocol.catalogue import CATALOGUE
from protocol.faults import FaultType
from protocol.sites import SiteInventory
from protocol.topics import DeviceClass
from simulators.city import SimulatedCity, grid_time
from simulators.environment import CloudyRun
from simulators.faults import FAR_FUTURE, FaultEvent, write_ground_truth
from storage.bulk import ParallelCopy, encode_rows
from storage.faults import record_faults

DAY: Final = timedelta(days=1)
WILL_AFTER: Final = timedelta(seconds=90)
"""When the broker publishes a lost device's will: 1.5 keepalives of 60 s."""
BACK_AFTER: Final = timedelta(seconds=5)
"""When a device's birth arrives after its link or power came back."""


class LightingProgram(Protocol):
    """What a platform's schedules ask of the streetlights, step by step (the agents keep the
    last schedule sent): the levels of every light [%], in the fleet's order, from the lights'
    readings after the previous step; None while no schedule was sent (the agents' own
    program runs)."""

    def levels(self, now: datetime, readings: Mapping[str, np.ndarray]) -> np.ndarray | None: ...


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    inventory: SiteInventory
    start: datetime
    end: datetime
    seed: int = 1
    faults: tuple[FaultEvent, ...] = ()
    run_name: str = "history"
    ground_truth_path: Path | None = None
    connections: int = 2
    """Connections COPYing in parallel."""
    lighting: LightingProgram | None = None
    """The platform's lighting schedules; None: every light runs its agent's own program."""
    overcast: CloudyRun | None = None
    """Days forced overcast (the batteries' test)."""


@dataclass(slots=True)
class HistoryReport:
    rows: dict[DeviceClass, int] = field(default_factory=lambda: dict.fromkeys(DeviceClass, 0))
    simulated_days: float = 0.0
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


class _Sampler:
    """Collects one class's samples over a day: values[device, instant, metric]."""

    def __init__(self, city: SimulatedCity, device_class: DeviceClass, ids: list[str]) -> None:
        self.device_class = device_class
        self.ids = ids
        self.metrics = tuple(CATALOGUE[device_class].metrics)
        self.interval_s = CATALOGUE[device_class].expected_interval_s
        self.city = city
        self._values: list[np.ndarray] = []
        self._stamps: list[int] = []
        self._present: list[np.ndarray] = []
        position = {device_id: index for index, device_id in enumerate(ids)}
        self._power_cuts = [
            (position[event.device_id], event)
            for event in city.faults
            if event.fault is FaultType.POWER_LOSS and event.device_id in position
        ]

    def powered(self, now: datetime) -> np.ndarray:
        """Which devices have power (a device without power reports nothing)."""
        powered = np.ones(len(self.ids), dtype=bool)
        for index, event in self._power_cuts:
            if event.active(now):
                powered[index] = False
        return powered

    def due(self, now: datetime) -> bool:
        return int(now.timestamp()) % self.interval_s == 0

    def take(self, now: datetime, powered: np.ndarray) -> None:
        columns = self.city.class_values(self.device_class)
        block = np.column_stack([columns[m] for m in self.metrics])
        self._values.append(np.round(block, 3))  # as the agents put them on the wire
        self._stamps.append(int(now.timestamp()))
        self._present.append(powered.copy())

    def encoded(self, parts: int) -> tuple[list[bytes], int]:
        """The samples taken since the last call, COPY-encoded in ``parts`` blocks of devices."""
        if not self._stamps or not self.ids:
            return [], 0
        values = np.stack(self._values, axis=1)  # devices, instants, metrics
        present = np.stack(self._present, axis=1)
        stamps = np.array(self._stamps, dtype=np.int64)
        bodies = [
            encode_rows([self.ids[i] for i in part], stamps, values[part], present[part])
            for part in np.array_split(np.arange(len(self.ids)), parts)
            if len(part)
        ]
        rows = int(present.sum())
        self._values, self._stamps, self._present = [], [], []
        return bodies, rows


class _LocalPrograms:
    """What every device's agent does on its own, for the whole fleet at once."""

    def __init__(self, city: SimulatedCity, lighting: LightingProgram | None) -> None:
        self.city = city
        self.lighting = lighting
        self.zone = ZoneInfo(city.inventory.site.timezone)
        self.zone_states = [control.LocalState() for _ in city.zones.ids]
        self.signs = len(city.signs.ids)

    def apply(self, now: datetime) -> None:
        city = self.city
        level = control.lamp_level(
            control.LocalState(), now, city.current.sun_elevation, self.zone, autonomous=True
        )
        planned = (
            None
            if self.lighting is None
            else self.lighting.levels(now, city.class_values(DeviceClass.STREETLIGHT))
        )
        city.lights.lamp_level[:] = level if planned is None else planned
        ambient = float(city.signs.values()["ambient_light"][0]) if self.signs else 0.0
        city.signs.brightness_command[:] = control.sign_brightness_for_ambient(ambient)
        city.signs.message_id[:] = control.STANDING_MESSAGE.message_id
        city.signs.lit_fraction[:] = control.STANDING_MESSAGE.lit_fraction
        temperatures = city.class_values(DeviceClass.BUILDING).get("air_temperature")
        if temperatures is None:
            return
        for index, state in enumerate(self.zone_states):
            self.zone_states[index], outputs = control.zone_outputs(
                state, now, float(temperatures[index]), autonomous=True
            )
            city.zones.actuate(
                index,
                {
                    "heating": float(outputs.heating),
                    "cooling": float(outputs.cooling),
                    "valve_position": outputs.valve_position,
                },
            )


StateRow = tuple[datetime, str, str, str | None, str, datetime]
"""A device_states row: ts, device id, status, reason, boot id, received at."""


def state_rows(faults: Sequence[FaultEvent], start: datetime, end: datetime) -> list[StateRow]:
    """The last wills and births that the link and power losses within [start, end) cause.

    A will's ``ts`` is when the session it closes began (as the agents send it); boot ids
    are ``{device}-boot-{n}``, counting the power losses before."""
    rows: list[StateRow] = []
    boots: dict[str, int] = {}
    session_began: dict[str, datetime] = {}
    losses = (FaultType.COMMUNICATION_LOSS, FaultType.POWER_LOSS)
    for event in sorted((e for e in faults if e.fault in losses), key=lambda e: e.start):
        device = event.device_id
        boot = boots.setdefault(device, 0)
        lost_at = event.start + WILL_AFTER
        if start <= lost_at < end:
            began = session_began.get(device, start)
            rows.append(
                (began, device, "offline", "connection_lost", f"{device}-boot-{boot}", lost_at)
            )
        if event.fault is FaultType.POWER_LOSS:
            boots[device] = boot = boot + 1
        back_at = event.end + BACK_AFTER
        if event.end != FAR_FUTURE and start <= back_at < end:
            rows.append((back_at, device, "online", None, f"{device}-boot-{boot}", back_at))
            session_began[device] = back_at
    return rows


def generate_history(
    options: HistoryOptions,
    database_url: str,
    progress: Callable[[str], None] = print,
) -> HistoryReport:
    """Simulate from ``options.start`` to ``options.end`` and COPY every sample in."""
    started = time.monotonic()
    report = HistoryReport()
    if options.ground_truth_path is not None:
        write_ground_truth(options.ground_truth_path, options.faults)
    with psycopg.connect(database_url) as connection:
        record_faults(
            connection,
            options.run_name,
            [
                (e.device_id, str(e.fault), e.start, None if e.end == FAR_FUTURE else e.end)
                for e in options.faults
            ],
        )
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO device_states (ts, device_id, status, reason, boot_id, received_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            state_rows(options.faults, options.start, options.end),
        )
    start = grid_time(options.start, 60)
    lights_interval = CATALOGUE[DeviceClass.STREETLIGHT].expected_interval_s
    city = SimulatedCity(
        options.inventory,
        start=start,
        seed=options.seed,
        faults=options.faults,
        light_step_s=lights_interval,
        overcast=options.overcast,
    )
    programs = _LocalPrograms(city, options.lighting)
    samplers = [
        _Sampler(city, device_class, ids)
        for device_class, ids in (
            (DeviceClass.STREETLIGHT, city.lights.ids),
            (DeviceClass.SIGNAGE, city.signs.ids),
            (DeviceClass.BUILDING, city.zones.ids),
        )
        if ids  # a site may lack a class
    ]
    writers = ParallelCopy(database_url, options.connections)
    partitions = psycopg.connect(database_url, autocommit=True)
    step = timedelta(seconds=city.step_s)
    day_start = start
    total_days = (options.end - start) / DAY
    try:
        while city.now < options.end:
            day_end = min(day_start + DAY, options.end)
            while city.now < day_end:
                programs.apply(city.now)
                for sampler in samplers:
                    if sampler.due(city.now):
                        sampler.take(city.now, sampler.powered(city.now))
                city.advance(city.now + step)
            for sampler in samplers:
                bodies, rows = sampler.encoded(options.connections)
                report.rows[sampler.device_class] += rows
                if bodies:
                    partitions.execute(
                        "SELECT ensure_telemetry_partitions(%s, %s, %s)",
                        (sampler.device_class.value, day_start, day_end - timedelta(seconds=1)),
                    )
                for body in bodies:
                    writers.put(sampler.device_class, body)
                days_done = (city.now - start) / DAY
            elapsed = time.monotonic() - started
            remaining = elapsed / days_done * (total_days - days_done) if days_done else 0.0
            progress(
                f"{day_start:%Y-%m-%d}: {report.total_rows:,} rows so far,"
                f" {days_done:.0f}/{total_days:.0f} days, about {remaining:.0f} s left"
            )
            day_start = day_end
    finally:
        partitions.close()
        writers.close()
    report.simulated_days = total_days
    report.seconds = time.monotonic() - started
    return report
