"""Routes: background jobs (backtests, what-ifs): their status, progress and result.

A job belongs to who submitted it; an admin sees everyone's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Final, Self

from fastapi import Path, Query, Request, Response
from pydantic import BaseModel, Field, field_validator, model_validator

from api.deps import AwareMoment, Db, Reader, State
from api.jobs import Job, JobRunner, JobStatus, Progress, find_job, list_jobs
from api.problems import NotFoundError, UnavailableError, guarded_router, problem_responses
from api.roles import Permission, Principal

router = guarded_router("jobs")

JOB_ID_PATTERN: Final = r"^[0-9a-f]{32}$"
JobIdPath = Annotated[
    str, Path(pattern=JOB_ID_PATTERN, examples=["4f1c0e9b2d7a4c55a0e1b2c3d4e5f607"])
]


class JobOut(BaseModel):
    job_id: str
    kind: str = Field(examples=["rules.backtest", "strategies.whatif"])
    status: JobStatus
    progress: str = Field(description="The latest line of progress while it runs.")
    params: dict[str, Any] = Field(description="What was asked (a YAML body by its digest).")
    result: dict[str, Any] | None = Field(description="Once succeeded: the result.")
    error: str | None = Field(description="Once failed: what went wrong, what to do.")
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            job_id=job.job_id,
            kind=job.kind,
            status=job.status,
            progress=job.progress,
            params=job.params,
            result=job.result,
            error=job.error,
            created_by=job.created_by,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


ACCEPTED: Final[dict[int | str, dict[str, Any]]] = {
    202: {
        "description": "Queued: follow it at the `Location` given (`GET /jobs/{job_id}`).",
        "headers": {
            "Location": {
                "description": "The job's own path.",
                "schema": {"type": "string", "example": "/api/v1/jobs/4f1c0e9b2d7a4c55a0e1b2c3"},
            }
        },
    },
    **problem_responses(503),
}
"""The OpenAPI ``responses`` of a route that submits a job (``status_code=202``)."""


EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)


class Period(BaseModel):
    """A period of a job's request: ``[start, end)``, with a time zone, of a bounded length."""

    longest: ClassVar[timedelta] = timedelta(days=400)

    start: AwareMoment = Field(examples=["2026-01-05T00:00:00Z"])
    end: AwareMoment = Field(description="Excluded.", examples=["2026-01-06T00:00:00Z"])

    @field_validator("start", "end")
    @classmethod
    def _in_utc(cls, moment: datetime) -> datetime:
        """In UTC, as the simulators and the backtest take it (the zone given is kept in
        the instant, not in the value)."""
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # a zone shifting 0001-01-01 or 9999-12-31 out of range
            raise ValueError(
                "the time is out of range: give one in the years 2000 to 2099"
            ) from None

    @model_validator(mode="after")
    def _sensible(self) -> Self:
        if not EARLIEST <= self.start < self.end <= LATEST:
            raise ValueError("the period must end after it starts, within the years 2000 to 2099")
        if self.end - self.start > self.longest:
            raise ValueError(f"the period is longer than {self.longest.days} days: split it")
        return self


def runner(state: State) -> JobRunner:
    if state.jobs is None:
        raise UnavailableError("the job runner is not running: try again in a moment")
    return state.jobs


def submit(  # noqa: PLR0917 - what the job is, who asks, and where to answer
    state: State,
    kind: str,
    params: Mapping[str, Any],
    caller: Principal,
    work: Callable[[Progress], Mapping[str, Any]],
    request: Request,
    response: Response,
) -> JobOut:
    """Queue ``work`` as a job of ``caller``'s; the 202 answer, with a ``Location`` header."""
    job = runner(state).submit(kind, params, caller.username, work)
    response.headers["Location"] = request.app.url_path_for("get_job", job_id=job.job_id)
    return JobOut.of(job)


def _visible_to(caller: Principal) -> str | None:
    """Whose jobs ``caller`` sees: its own, or (admin) everyone's (None)."""
    return None if caller.may(Permission.MANAGE_USERS) else caller.username


@router.get("/jobs", summary="My jobs, newest first (an admin's: everyone's)")
def get_jobs(
    caller: Reader,
    connection: Db,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[JobOut]:
    return [JobOut.of(job) for job in list_jobs(connection, _visible_to(caller), status_, limit)]


@router.get(
    "/jobs/{job_id}",
    responses=problem_responses(404),
    summary="One job: status, progress, result or error",
    name="get_job",
)
def get_job(job_id: JobIdPath, caller: Reader, connection: Db) -> JobOut:
    job = find_job(connection, job_id)
    owner = _visible_to(caller)
    if job is None or (owner is not None and job.created_by != owner):
        raise NotFoundError(f"no job {job_id} of yours (GET /jobs lists them)")
    return JobOut.of(job)
