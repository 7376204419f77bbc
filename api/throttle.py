"""Log-in throttling (pure): after too many failed log-ins, a user name or an address waits.

Failures are counted per user name (guessing one person's password) and per client address
(trying many names from one place) over a sliding window; once a count reaches its limit,
log-ins for that key are refused until the oldest failure in the window expires, even with
the right password. A success clears its user name's count. Counts live in the API process:
several API processes each allow their own limit.

Log-ins run on a thread pool, so an attempt is counted as a failure when it starts
(:meth:`LoginThrottle.attempt`, under a lock) and taken back if it succeeds: forty concurrent
guesses cannot all pass a check made before any of them failed.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

USER_LIMIT: Final = 5
ADDRESS_LIMIT: Final = 20
WINDOW: Final = timedelta(minutes=15)


@dataclass(slots=True)
class LoginThrottle:
    user_limit: int = USER_LIMIT
    address_limit: int = ADDRESS_LIMIT
    window: timedelta = WINDOW
    _failures: dict[str, deque[datetime]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]  # bounded memory: only keys with recent failures stay
            return deque()
        return failures

    def _keys(self, username: str, address: str) -> tuple[tuple[str, int], tuple[str, int]]:
        return (f"user:{username.lower()}", self.user_limit), (f"ip:{address}", self.address_limit)

    def retry_after(self, username: str, address: str, now: datetime) -> timedelta | None:
        """How long this log-in must wait, or None when it may be tried now."""
        with self._lock:
            return self._wait(username, address, now)

    def attempt(self, username: str, address: str, now: datetime) -> timedelta | None:
        """How long this log-in must wait; or None, and the attempt is counted as a failure
        until :meth:`succeeded` takes it back."""
        with self._lock:
            wait = self._wait(username, address, now)
            if wait is None:
                self._count(username, address, now)
            return wait

    def failed(self, username: str, address: str, now: datetime) -> None:
        """A failure not counted by :meth:`attempt`."""
        with self._lock:
            self._count(username, address, now)

    def succeeded(
        self, username: str, address: str | None = None, at: datetime | None = None
    ) -> None:
        """Clear the user name's failures; with the attempt's address and time, take back
        the failure :meth:`attempt` counted for that address."""
        with self._lock:
            self._failures.pop(f"user:{username.lower()}", None)
            failures = self._failures.get(f"ip:{address}") if address is not None else None
            if failures is not None and at is not None and at in failures:
                failures.remove(at)
                if not failures:
                    del self._failures[f"ip:{address}"]

    def _wait(self, username: str, address: str, now: datetime) -> timedelta | None:
        waits = []
        for key, limit in self._keys(username, address):
            failures = self._recent(key, now)
            if len(failures) >= limit:
                waits.append(failures[0] + self.window - now)
        return max(waits) if waits else None

    def _count(self, username: str, address: str, now: datetime) -> None:
        for key, _ in self._keys(username, address):
            self._recent(key, now)
            self._failures.setdefault(key, deque()).append(now)


REPORTS_PER_ADDRESS: Final = 10
REPORT_WINDOW: Final = timedelta(hours=1)


@dataclass(slots=True)
class RateLimit:
    """At most ``limit`` requests per key (a client address) in any ``window``; counts live in
    the API process, as the log-in throttle's do."""

    limit: int = REPORTS_PER_ADDRESS
    window: timedelta = REPORT_WINDOW
    _seen: dict[str, deque[datetime]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str, now: datetime) -> timedelta | None:
        """Count a request of ``key`` at ``now``; or, over the limit, how long to wait (the
        refused request is not counted)."""
        with self._lock:
            seen = self._seen.setdefault(key, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                return seen[0] + self.window - now
            seen.append(now)
            if len(self._seen) > 10_000:  # bounded memory: forget the quiet addresses
                for quiet in [
                    k for k, v in self._seen.items() if not v or v[-1] <= now - self.window
                ]:
                    del self._seen[quiet]
            return None
