"""The database's housekeeping, run beside the writer and never in its way.

Ingest runs :func:`storage.rollups.maintain` every ``maintenance_interval_s``. It used to run
between two batches on the writer's own connection, and the writes waited for it: at 800
messages/s, stored rows froze for 4.1 s while it ran. Here it runs on a thread with its own
connection; the database work does not hold the interpreter lock, and the refresh itself
does not make writers wait (storage migration 0012).
"""

from __future__ import annotations

import logging
import threading

import psycopg

from storage import rollups

log = logging.getLogger("smartcity.ingest.maintenance")


class Maintainer:
    """Runs the housekeeping every ``interval_s`` until :meth:`stop`; reconnects as needed."""

    def __init__(self, database_url: str, interval_s: float, statement_timeout_s: float) -> None:
        self._database_url = database_url
        self._interval_s = interval_s
        self._statement_timeout_s = statement_timeout_s
        self._stop = threading.Event()
        self._connection: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)
        self.rounds_done = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to stop; a round under way is cancelled by closing its connection."""
        self._stop.set()
        connection = self._connection
        if connection is not None:
            connection.cancel_safe(timeout=timeout_s)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.run_once()
        if self._connection is not None:
            self._connection.close()

    def run_once(self) -> None:
        try:
            report = rollups.maintain(self._connected())
        except psycopg.Error as error:
            if self._stop.is_set():
                return
            log.warning("maintenance failed", extra={"error": str(error).strip()})
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            return
        self.rounds_done += 1
        log.info("maintenance done", extra={"report": report})

    def _connected(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            timeout_ms = int(self._statement_timeout_s * 1000)
            self._connection = psycopg.connect(
                self._database_url,
                autocommit=True,
                connect_timeout=5,
                application_name="smartcity-ingest-maintenance",
                options=f"-c statement_timeout={timeout_ms}",
            )
        return self._connection
