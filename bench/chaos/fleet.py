"""The simulated fleet of a chaos run, recording every sample its agents take."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from bench.chaos.config import T
from edge_agents.drivers import Reading
from protocol.sites import Device, SiteInventory
from protocol.topics import DeviceClass
from simulators.city import SimulatedCity, SimulatedDriver
from simulators.runner import FleetRunner, RunnerSettings, SimulationClock


class SampleBook:
    """Every sample the agents took, as their drivers were read: the ground truth."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.samples: list[tuple[str, datetime, Reading]] = []
        self._times: list[float] = []

    def sampled(self, device_id: str, at: datetime, reading: Reading) -> None:
        with self._lock:
            self.samples.append((device_id, at, dict(reading)))
            self._times.append(at.timestamp())

    def count_before(self, moment: datetime) -> int:
        """Samples taken before ``moment`` (the fleet samples in time order)."""
        with self._lock:
            return bisect.bisect_left(self._times, moment.timestamp())


class _RecordingDriver(SimulatedDriver):
    def __init__(self, city: RecordingCity, device_id: str) -> None:
        super().__init__(city, device_id)
        self._book = city.book

    def read(self, now: datetime) -> Reading:
        reading = super().read(now)  # raises (and nothing is sampled) when it cannot read
        self._book.sampled(self.device_id, now, reading)
        return reading


class RecordingCity(SimulatedCity):
    """The simulated city, its drivers noting every reading their agent samples."""

    def __init__(self, *args: Any, book: SampleBook, **kwargs: Any) -> None:
        self.book = book
        super().__init__(*args, **kwargs)

    def driver(self, device_id: str) -> SimulatedDriver:
        super().driver(device_id)  # an unknown device raises KeyError
        return _RecordingDriver(self, device_id)


class ChaosFleet:
    """The fleet runner on a thread of its own (an agent's spool is bound to the thread that
    opened it); :meth:`call` runs work on that thread."""

    def __init__(
        self, city: SimulatedCity, settings: RunnerSettings, start: datetime, speed: float
    ) -> None:
        self.city = city
        self.settings = settings
        self.start_at = start
        self.speed = speed
        self._calls: deque[tuple[Callable[[FleetRunner], Any], Future[Any]]] = deque()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.frozen = False
        """Device time stops (the agents keep their network going): for the final drain."""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="chaos-fleet", daemon=True)

    @property
    def now(self) -> datetime:
        return self.city.now

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)
        if self.error is not None:
            raise RuntimeError("the simulated fleet did not start") from self.error

    def call(self, work: Callable[[FleetRunner], T], timeout_s: float = 30) -> T:
        if self.error is not None or not self._thread.is_alive():
            raise RuntimeError("the simulated fleet failed") from self.error
        future: Future[T] = Future()
        self._calls.append((work, future))
        return future.result(timeout_s)

    def _loop(self) -> None:
        try:
            runner = FleetRunner(self.city, self.settings)
            clock = SimulationClock(self.start_at, self.speed)
        except BaseException as error:
            self.error = error
            self._ready.set()
            raise
        self._ready.set()
        try:
            while not self._stop.is_set():
                while self._calls:
                    work, future = self._calls.popleft()
                    try:
                        future.set_result(work(runner))
                    except Exception as error:  # noqa: BLE001 - handed to the caller
                        future.set_exception(error)
                if not self.frozen:
                    runner.step_to(clock.now())
                runner.connect_some()
                runner.network.poll(0.02)
        except BaseException as error:
            self.error = error
            raise
        finally:
            while self._calls:
                self._calls.popleft()[1].set_exception(RuntimeError("the fleet stopped"))
            runner.stop(drain_s=2.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def pick_devices(inventory: SiteInventory, lights: int, signs: int, zones: int) -> SiteInventory:
    """A small city from a site: lights three by three from its streets (so a street has
    several members), and its first signs and building zones."""
    by_street: dict[str, list[Device]] = defaultdict(list)
    for device in inventory.by_class(DeviceClass.STREETLIGHT):
        by_street[device.street_group or ""].append(device)
    chosen: list[str] = []
    for members in by_street.values():
        if len(chosen) >= lights:
            break
        chosen += [d.id for d in members[: min(3, lights - len(chosen))]]
    if len(chosen) < lights:
        raise ValueError(f"the site has fewer than {lights} streetlights")
    chosen += [d.id for d in inventory.by_class(DeviceClass.SIGNAGE)[:signs]]
    chosen += [d.id for d in inventory.by_class(DeviceClass.BUILDING)[:zones]]
    return inventory.only(*chosen)
