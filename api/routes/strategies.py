"""Routes: energy strategies (versions, validation, activation, rollback) and what-ifs.

A strategy (format in docs/energy.md) is kept in the database under the name its text gives,
every version of it (:mod:`control.strategy_store`, shared with ``smartcity energy strategy``);
the control services take up the active one at their next decision. Reading needs the READ
permission; changing and what-ifs need MANAGE_STRATEGIES (energy managers, admins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Self

from fastapi import Depends, Request, Response, status
from pydantic import BaseModel, Field, StringConstraints, model_validator

from api.audit import record_action
from api.deps import Caller, Db, Now, Reader, State, require
from api.jobs import Progress
from api.problems import NotFoundError, UnprocessableError, guarded_router, problem_responses
from api.roles import Permission
from api.routes.jobs import ACCEPTED, JobOut, Period, submit
from api.routes.versioned import (
    DOCUMENT_ERRORS,
    Body,
    Document,
    Documents,
    Validation,
    VersionRef,
    add_routes,
    refused,
    validation,
)
from control import strategy_store as store
from control.strategy import Strategy
from protocol.sites import SiteFileError, SiteInventory, load_site
from storage.versions import digest_of

router = guarded_router("strategies")

SITES_DIR: Final = Path(__file__).resolve().parents[2] / "sites"
"""Site files (``sefrou.yaml``): the buildings a what-if replays."""
BODY_SOURCE: Final = "body"
CONTROL_PERIOD_S: Final = 300
"""The control services decide every 5 minutes; a what-if's step must divide it."""
MAX_STEPS: Final = 400 * 86_400 // 150
"""Simulation steps of a what-if, at most: 400 days at the default step (the memory of a
replay grows with them)."""

add_routes(
    router,
    Documents(
        kind=lambda: store.STRATEGIES,
        collection="/strategies",
        noun="strategy",
        audit="strategy",
        permission=Permission.MANAGE_STRATEGIES,
    ),
)


@router.post("/strategies/validate", summary="Check a strategy without saving it")
def validate(document: Document, _: Reader) -> Validation:
    """Always 200 for a body that arrives: ``valid`` says whether it checks, and ``errors``
    lists each mistake at its line, as ``smartcity energy strategy check`` would."""

    def check() -> str:
        strategy = store.read_strategy(document.body, BODY_SOURCE)
        return f"strategy {strategy.name} OK"

    return validation(check, BODY_SOURCE)


class WhatIfRequest(Period):
    """A candidate strategy (a stored version or a YAML body) against the current one and a
    fixed-setpoint thermostat, over a period of simulated weather and occupancy."""

    strategy: VersionRef | None = Field(None, description="The candidate: a stored version...")
    body: Body | None = Field(None, description="...or a strategy's YAML.")
    current: VersionRef | None = Field(
        None, description="What it is compared with; none: the strategy in force."
    )
    site: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")] = Field(
        "sefrou", description="A site file of sites/: its buildings are replayed."
    )
    seed: int = Field(1, ge=0, le=2**32 - 1, description="Weather and occupancy seed.")
    step_s: int = Field(
        150, ge=10, le=CONTROL_PERIOD_S, description="Simulation step [s]; divides 300."
    )

    @model_validator(mode="after")
    def _one_candidate(self) -> Self:
        if (self.strategy is None) == (self.body is None):
            raise ValueError("give the candidate as a strategy (name, version) or a body")
        if CONTROL_PERIOD_S % self.step_s:
            raise ValueError(f"step_s {self.step_s} must divide 300 (e.g. 60, 100, 150)")
        if (self.end - self.start).total_seconds() / self.step_s > MAX_STEPS:
            raise ValueError(
                f"the period holds more than {MAX_STEPS:,} steps of {self.step_s} s: "
                "use a longer step_s (150 or 300) or a shorter period"
            )
        return self


class WhatIfContenders(BaseModel):
    candidate: str
    current: str


def _stored(connection: Db, ref: VersionRef) -> Strategy:
    try:
        strategy, _ = store.strategy_version(connection, ref.name, ref.version)
    except DOCUMENT_ERRORS as error:
        raise refused(error) from error
    return strategy


def _contenders(order: WhatIfRequest, connection: Db) -> tuple[Strategy, Strategy, str]:
    """The candidate, the current strategy and the words saying which the current one is."""
    if order.body is not None:
        try:
            candidate = store.read_strategy(order.body, BODY_SOURCE)
        except DOCUMENT_ERRORS as error:
            raise UnprocessableError(str(error)) from error
    else:
        assert order.strategy is not None  # noqa: S101 - the model requires one of the two
        candidate = _stored(connection, order.strategy)
    if order.current is not None:
        current = _stored(connection, order.current)
        return candidate, current, f"{order.current.name} version {order.current.version}"
    current, label = store.strategy_in_force(connection)
    return candidate, current, label


def _site(name: str) -> SiteInventory:
    path = SITES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SITES_DIR.glob("*.yaml"))) or "none"
        raise NotFoundError(f"no site file {name!r} (known: {known})")
    try:
        return load_site(path)
    except SiteFileError as error:
        raise UnprocessableError(str(error)) from error


@router.post(
    "/strategies/whatif",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(require(Permission.MANAGE_STRATEGIES))],
    responses={**ACCEPTED, **problem_responses(404)},
    summary="Compare a strategy with the current one over a period (a background job)",
)
def post_whatif(  # noqa: PLR0917 - FastAPI parameters
    order: WhatIfRequest,
    caller: Caller,
    connection: Db,
    state: State,
    at: Now,
    request: Request,
    response: Response,
) -> JobOut:
    """Replays the period's simulated weather and occupancy through the building simulator
    for the candidate, the current strategy and three references with the candidate's hours
    and setpoints: the building run as EN 15232 class C (a fixed time programme, the yardstick
    of savings), the same with its external blinds lowered all summer by a timer (``class
    C+blinds``) and a 24/7 fixed-setpoint thermostat. The result is what ``smartcity energy
    whatif --json`` prints (energy, peak demand and discomfort per building and in total,
    savings against each reference), without the plot, plus ``contenders`` naming the
    candidate and current strategies."""
    from whatif.hvac import Contender, run_whatif

    inventory = _site(order.site)
    candidate, current, current_label = _contenders(order, connection)
    start, end, seed, step_s = order.start, order.end, order.seed, order.step_s
    names = WhatIfContenders(candidate=candidate.name, current=current_label)

    def work(progress: Progress) -> dict[str, Any]:
        report = run_whatif(
            inventory,
            [
                Contender("candidate", candidate),
                Contender("current", current),
                *Contender.references(candidate),
            ],
            start,
            end,
            seed=seed,
            step_s=step_s,
            progress=progress,
        )
        return {**report.as_json(), "contenders": names.model_dump()}

    params = order.model_dump(mode="json", exclude={"body"}) | {
        "body_digest": None if order.body is None else digest_of(order.body),
        "contenders": names.model_dump(),
    }
    job = submit(state, "strategies.whatif", params, caller, work, request, response)
    record_action(connection, caller, "strategies.whatif", job.job_id, at, candidate=candidate.name)
    return job
