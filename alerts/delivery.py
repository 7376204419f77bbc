"""The record of sending notifications: one :class:`Delivery` per attempt, kept by a
:class:`DeliveryLog` (the database's, or a list in tests)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from alerts.catalogue import NoticeKind
from alerts.wording import Language


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt to send one notice to one URL, as recorded. ``url`` has its secrets hidden."""

    alert_id: int
    kind: NoticeKind
    route: str
    url: str
    language: Language
    attempt: int
    at: datetime
    ok: bool
    error: str = ""
    notification_id: int | None = None
    final: bool = False
    """The notice is done with: every URL of every route it goes to has succeeded or spent
    its retries (a notice dropped at shutdown is never final: it is sent after a restart)."""
    notice_sent: bool = False
    """Whether at least one URL has received the notice so far."""


class DeliveryLog(Protocol):
    """Where every attempt is recorded; called from the dispatcher's worker thread."""

    def record(self, delivery: Delivery) -> None: ...


class DeliveryList:
    """A DeliveryLog in memory, safe across threads (tests, benchmarks, small tools)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []

    def record(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    @property
    def deliveries(self) -> list[Delivery]:
        """A copy of what was recorded, oldest first."""
        with self._lock:
            return list(self._deliveries)
