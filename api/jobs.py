"""Long requests (backtests, what-ifs) run in the background, one at a time.

A route checks what it can at once (a version that exists, a body that checks, a period that
makes sense), then hands the work to :meth:`JobRunner.submit` and answers 202 with the job's
id. The job is a row of ``api_jobs`` from then on: ``queued``, ``running`` (with a line of
progress text), then ``succeeded`` with its result (JSON) or ``failed`` with an error that says
what went wrong. One worker thread runs the jobs in order: a backtest or a what-if takes a core
for its whole run, and the machine has few.

The work itself lives only in this process, named in the job's ``runner``. A job still queued
or running when its process stopped cannot be resumed: it is marked failed, saying so, when
the process stops, or, if it died, when an API process next starts. A process lives while it
holds the advisory lock named after it, so several API processes on one database never fail
each other's jobs.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

log = logging.getLogger("smartcity.api.jobs")

Progress = Callable[[str], None]
"""Called by a job with a line saying how far it is."""
Work = Callable[[Progress], Mapping[str, Any]]
"""A job's work: given a progress callback, it returns its result (JSON-able)."""

INTERRUPTED: Final = (
    "the API stopped while this job was {status}; its work is lost: submit it again"
)
PROGRESS_EVERY_S: Final = 0.5
_LEASES: Final = 7_301
"""The advisory lock class of job runners' leases (the key is the runner's name)."""
"""Progress lines are written at most this often (the last one always)."""
STOP_WAIT_S: Final = 10.0
"""How long stopping waits for the running job to notice and give up."""


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobStopped(Exception):  # noqa: N818 - not an error: the API is stopping
    """Raised into a job's progress callback when the API stops, so that it gives up."""


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    kind: str
    params: dict[str, Any]
    status: JobStatus
    progress: str
    result: dict[str, Any] | None
    error: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


_COLUMNS: Final = (
    "job_id, kind, params, status, progress, result, error, created_by, created_at,"
    " started_at, finished_at"
)


def _job(row: dict[str, Any]) -> Job:
    return Job(**{**row, "status": JobStatus(row["status"])})


def find_job(connection: psycopg.Connection, job_id: str) -> Job | None:
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(f"SELECT {_COLUMNS} FROM api_jobs WHERE job_id = %s", (job_id,))  # noqa: S608 - constant columns
        row = cursor.fetchone()
    return None if row is None else _job(row)


def list_jobs(
    connection: psycopg.Connection,
    created_by: str | None = None,
    status: JobStatus | None = None,
    limit: int = 100,
) -> list[Job]:
    """The newest jobs first; of one person (``created_by``) or everyone's (None)."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            f"SELECT {_COLUMNS} FROM api_jobs"  # noqa: S608 - constant columns
            " WHERE (%(by)s::text IS NULL OR created_by = %(by)s::text)"
            " AND (%(status)s::text IS NULL OR status = %(status)s::text)"
            " ORDER BY created_at DESC, job_id LIMIT %(limit)s",
            {"by": created_by, "status": status, "limit": limit},
        )
        return [_job(row) for row in cursor.fetchall()]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float made null: JSON (and jsonb) has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def failure_text(error: BaseException) -> str:
    """What a failed job's caller reads: the message of an error we raise on purpose (it says
    what to change), the kind of error otherwise (the details are in the log)."""
    if isinstance(error, ValueError | LookupError):
        return str(error)
    if isinstance(error, psycopg.Error):
        return f"database error: {str(error).strip()}"
    return f"the job failed unexpectedly ({type(error).__name__}); it is logged"


class JobRunner:
    """Runs queued jobs one at a time in a worker thread, recording them in ``api_jobs``."""

    def __init__(self, pool: ConnectionPool[Any], clock: Callable[[], datetime]) -> None:
        self.pool = pool
        self.clock = clock
        self._queue: queue.Queue[tuple[str, Work]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: str | None = None
        self.runner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """This runner's name on its jobs: another process fails them only once it is gone."""
        self._lease: psycopg.Connection | None = None

    def start(self) -> None:
        """Take this runner's lease (an advisory lock held by its own connection while it
        lives), mark the jobs of runners gone without finishing them as failed, and start the
        worker thread."""
        conninfo = self.pool.conninfo
        self._lease = psycopg.connect(
            conninfo if isinstance(conninfo, str) else conninfo(), autocommit=True
        )
        self._lease.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_LEASES, self.runner))
        self._fail_orphans()
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, name="api-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the running job to give up (at its next progress line), wait a little for it,
        and mark what is left unfinished as failed. Nothing to do if it never started."""
        if self._lease is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)
            if self._thread.is_alive():
                log.warning("a job did not stop in time", extra={"job_id": self._running})
        self._fail_unfinished(self.runner)
        self._lease.close()  # the lease ends with its session
        self._lease = None

    def submit(self, kind: str, params: Mapping[str, Any], created_by: str, work: Work) -> Job:
        """Record a queued job (committed at once, so that it can be followed) and queue
        ``work`` for the worker."""
        job_id = uuid.uuid4().hex
        with self.pool.connection() as connection:
            connection.execute(
                "INSERT INTO api_jobs (job_id, kind, params, status, created_by, runner,"
                " created_at) VALUES (%s, %s, %s, 'queued', %s, %s, %s)",
                (job_id, kind, Jsonb(json_safe(params)), created_by, self.runner, self.clock()),
            )
            job = find_job(connection, job_id)
        if job is None:
            raise psycopg.DataError(f"job {job_id} vanished as it was made")
        self._queue.put((job_id, work))
        return job

    # ------------------------------------------------------------------------- worker

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job_id, work = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._running = job_id
            try:
                self._run(job_id, work)
            except Exception:  # one job's bookkeeping failing never stops the worker
                log.exception("job bookkeeping failed", extra={"job_id": job_id})
            finally:
                self._running = None

    def _run(self, job_id: str, work: Work) -> None:
        self._update(
            job_id, "status = 'running', started_at = %s", (self.clock(),), JobStatus.QUEUED
        )
        try:
            result = work(self._progress_of(job_id))
        except JobStopped:
            return  # stop() marks it failed
        except Exception as error:  # recorded on the job, which is the point
            if not isinstance(error, ValueError | LookupError):
                log.exception("job failed", extra={"job_id": job_id})
            self._finish(job_id, JobStatus.FAILED, None, failure_text(error))
            return
        self._finish(job_id, JobStatus.SUCCEEDED, dict(result), None)

    def _progress_of(self, job_id: str) -> Progress:
        last = 0.0

        def progress(text: str) -> None:
            nonlocal last
            if self._stop.is_set():
                raise JobStopped
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                self._update(job_id, "progress = %s", (text[:1000],), JobStatus.RUNNING)

        return progress

    def _finish(
        self, job_id: str, status: JobStatus, result: dict[str, Any] | None, error: str | None
    ) -> None:
        self._update(
            job_id,
            "status = %s, result = %s, error = %s, finished_at = %s",
            (status, None if result is None else Jsonb(json_safe(result)), error, self.clock()),
            JobStatus.RUNNING,
        )

    def _update(
        self, job_id: str, assignments: str, values: tuple[Any, ...], expected: JobStatus
    ) -> None:
        """Change a job still in the ``expected`` status (stop() may have failed it)."""
        with self.pool.connection() as connection:
            connection.execute(
                f"UPDATE api_jobs SET {assignments} WHERE job_id = %s AND status = %s",  # noqa: S608 - constant assignments
                (*values, job_id, expected),
            )

    def _fail_orphans(self) -> None:
        """Fail the unfinished jobs of runners whose lease is free: their process is gone."""
        with self.pool.connection() as connection:
            runners = connection.execute(
                "SELECT DISTINCT runner FROM api_jobs"
                " WHERE status IN ('queued', 'running') AND runner <> %s",
                (self.runner,),
            ).fetchall()
        assert self._lease is not None  # noqa: S101 - taken in start() first
        for (runner,) in runners:
            gone = self._lease.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LEASES, runner)
            ).fetchone()
            if gone is not None and gone[0]:
                self._fail_unfinished(runner)
                self._lease.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LEASES, runner)
                )

    def _fail_unfinished(self, runner: str) -> None:
        with self.pool.connection() as connection:
            for status in (JobStatus.QUEUED, JobStatus.RUNNING):
                connection.execute(
                    "UPDATE api_jobs SET status = 'failed', error = %s, finished_at = %s"
                    " WHERE status = %s AND runner = %s",
                    (INTERRUPTED.format(status=status.value), self.clock(), status, runner),
                )
