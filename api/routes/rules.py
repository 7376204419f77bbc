"""Routes: the rules in force, rule sets (versions, validation, activation) and backtests.

A rule set is a rule file (format in docs/rules.md) kept in the database under a name, every
version of it (:mod:`rules.rule_set_store`). The rules engine takes up the active one within
its check interval; with none active it runs the rule file it was started with, which is also
what ``GET /rules`` shows then. Reading needs the READ permission (technicians, energy
managers, admins); changing and backtesting needs MANAGE_RULES (energy managers, admins).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Self

from fastapi import Depends, Request, Response, status
from pydantic import BaseModel, Field, StringConstraints, model_validator

from api.audit import record_action
from api.deps import Caller, Db, Now, Reader, State, require
from api.jobs import Progress
from api.problems import (
    ConflictError,
    NotFoundError,
    UnavailableError,
    UnprocessableError,
    guarded_router,
    problem_responses,
)
from api.roles import Permission
from api.routes.jobs import ACCEPTED, JobOut, Period, submit
from api.routes.versioned import (
    Body,
    Document,
    Documents,
    Validation,
    VersionRef,
    add_routes,
    refused,
    validation,
)
from protocol.payloads import Severity
from protocol.topics import IDENTIFIER_PATTERN, DeviceClass
from rules import PACKAGED_RULES
from rules.errors import RuleError
from rules.model import RuleFileError, RuleSet, load_rules
from rules.names import DEFAULT_WARMUP
from rules.rule_set_store import active_rule_set, read_rule_set, rule_set_kind, source_of
from storage import versions as store

if TYPE_CHECKING:
    from rules.backtest import BacktestResult

router = guarded_router("rules")

MAX_ALERTS_SHOWN: Final = 1000
"""A backtest's result lists at most this many alerts (their count is always given)."""
BODY_SOURCE: Final = "body"
"""How checker messages name a body sent to validate."""

Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN.pattern)]


@cache
def known_faults() -> tuple[str, ...]:
    """The fault types a rule's ``detects`` may name, as ``smartcity rules check`` knows them
    (the simulator's: the ground truth backtests score against)."""
    from protocol.faults import FaultType

    return tuple(fault.value for fault in FaultType)


@cache
def rule_sets() -> store.Kind:
    """Rule sets, checked as ``smartcity rules check`` checks a file."""
    return rule_set_kind(known_faults())


def check_rules(body: str, source: str) -> RuleSet:
    return read_rule_set(body, source, known_faults())


add_routes(
    router,
    Documents(
        kind=rule_sets,
        collection="/rule-sets",
        noun="rule set",
        audit="rule_set",
        permission=Permission.MANAGE_RULES,
    ),
)


class RuleOut(BaseModel):
    id: str
    device_class: DeviceClass
    title: str = Field(description="In English.")
    titles: dict[str, str] = Field(description="By language: en, and fr, ar where written.")
    severity: Severity
    description: str
    detects: list[str] = Field(description="The fault types it is meant to catch.")
    missing_data: bool = Field(description="True: it fires on silence, not on a condition.")


class RulesInForce(BaseModel):
    source: str = Field(description="Where the rules come from: a rule set version or a file.")
    rule_set: VersionRef | None = Field(description="The active rule set; none: the rule file.")
    rules: list[RuleOut]


def rules_in_force(connection: Db, state: State) -> tuple[RuleSet, VersionRef | None]:
    """The active rule set, else the API's rule file (the engine's when none is active)."""
    found = active_rule_set(connection)
    if found is not None:
        active, body = found
        try:
            rules = read_rule_set(body, source_of(active.name, active.version))
        except RuleFileError as error:
            raise ConflictError(
                f"the active rule set no longer checks ({error}): activate another version"
            ) from error
        return rules, VersionRef(name=active.name, version=active.version)
    path = state.config.rules_file or PACKAGED_RULES
    try:
        return load_rules(path), None
    except RuleFileError as error:
        raise UnavailableError(f"the API's rule file does not load: {error}") from error


@router.get(
    "/rules",
    responses=problem_responses(409, 503),
    summary="The rules in force: the active rule set's, else the rule file's",
)
def get_rules(_: Reader, connection: Db, state: State) -> RulesInForce:
    rules, active = rules_in_force(connection, state)
    return RulesInForce(
        source=rules.source if active is not None else Path(rules.source).name,
        rule_set=active,
        rules=[
            RuleOut(
                id=rule.id,
                device_class=rule.device_class,
                title=rule.title,
                titles=dict(rule.titles),
                severity=rule.severity,
                description=rule.description.strip(),
                detects=list(rule.detects),
                missing_data=rule.missing is not None,
            )
            for rule in rules.rules
        ],
    )


def _summary(rules: RuleSet) -> str:
    classes = Counter(str(rule.device_class) for rule in rules.rules)
    listing = ", ".join(f"{name} {count}" for name, count in sorted(classes.items()))
    return f"{len(rules.rules)} rules OK ({listing})"


@router.post(
    "/rules/validate",
    summary="Check a rule file without saving it",
)
def validate(document: Document, _: Reader) -> Validation:
    """Always 200 for a body that arrives: ``valid`` says whether it checks, and ``errors``
    lists each mistake at its line, as ``smartcity rules check`` would."""
    return validation(lambda: _summary(check_rules(document.body, BODY_SOURCE)), BODY_SOURCE)


class BacktestRequest(Period):
    """A rule set over stored history: a stored version, a YAML body, or (neither) the rules
    in force."""

    longest = timedelta(days=92)

    rule_set: VersionRef | None = None
    body: Body | None = None
    site: Identifier | None = Field(None, description="Only this site's devices.")
    devices: list[Identifier] | None = Field(
        None, min_length=1, max_length=5000, description="Only these devices."
    )
    run: str | None = Field(
        None, min_length=1, max_length=200, description="Score against this ground-truth run."
    )
    warmup_hours: float = Field(
        DEFAULT_WARMUP.total_seconds() / 3600,
        ge=0,
        le=30 * 24,
        description="History read before the period, so rules start as the live engine did.",
    )

    @model_validator(mode="after")
    def _one_rule_set(self) -> Self:
        if self.rule_set is not None and self.body is not None:
            raise ValueError("give a rule_set or a body, not both")
        return self


def _rules_to_test(request: BacktestRequest, connection: Db, state: State) -> RuleSet:
    if request.body is not None:
        try:
            return check_rules(request.body, BODY_SOURCE)
        except RuleError as error:
            raise UnprocessableError(str(error)) from error
    if request.rule_set is not None:
        name, version = request.rule_set.name, request.rule_set.version
        try:
            body, _ = store.stored_version(connection, rule_sets(), name, version)
        except store.VersionStoreError as error:
            raise refused(error) from error
        return read_rule_set(body, source_of(name, version))
    return rules_in_force(connection, state)[0]


def _devices_to_test(request: BacktestRequest, connection: Db) -> list[str] | None:
    """The ids to backtest (None: every device), refusing unknown ones now rather than in
    the job."""
    if request.site is None and request.devices is None:
        return None
    from rules.backtest import list_devices  # numpy: loaded by a backtest, not by the API

    candidates = {device.device_id for device in list_devices(connection, request.start)}
    if request.site is not None:
        site_devices = _site_devices(connection, request.site)
        if site_devices is None:
            raise NotFoundError(f"no site {request.site!r}")
        candidates &= site_devices
    wanted = sorted(set(request.devices) if request.devices is not None else candidates)
    unknown = [device_id for device_id in wanted if device_id not in candidates]
    if unknown:
        where = f"of site {request.site}" if request.site else "in service"
        raise UnprocessableError(
            f"no device {', '.join(unknown[:10])} {where} at the start of the period: "
            "check the ids (GET /devices lists them)"
        )
    if not wanted:
        raise UnprocessableError(f"site {request.site} has no device in service then")
    return wanted


def _site_devices(connection: Db, site: str) -> set[str] | None:
    """The ids of a site's devices; None when there is no such site."""
    if connection.execute("SELECT 1 FROM sites WHERE site_id = %s", (site,)).fetchone() is None:
        return None
    rows = connection.execute("SELECT device_id FROM devices WHERE site_id = %s", (site,))
    return {str(row[0]) for row in rows}


def backtest_result(result: BacktestResult) -> dict[str, Any]:
    """A backtest's result as a job keeps it: the CLI's ``--json`` figures, its summary line
    and the alerts (the first :data:`MAX_ALERTS_SHOWN`)."""
    alerts = sorted(result.alerts, key=lambda alert: (alert.start, alert.rule_id, alert.device_id))
    return {
        **result.to_json(),
        "summary": result.summary(),
        "alerts_total": len(alerts),
        "alerts": [
            {
                "rule_id": alert.rule_id,
                "device_id": alert.device_id,
                "start": alert.start.isoformat(),
                "end": alert.end.isoformat() if alert.end is not None else None,
            }
            for alert in alerts[:MAX_ALERTS_SHOWN]
        ],
    }


@router.post(
    "/rules/backtests",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(require(Permission.MANAGE_RULES))],
    responses={**ACCEPTED, **problem_responses(404)},
    summary="Backtest a rule set over stored telemetry (a background job)",
)
def post_backtest(  # noqa: PLR0917 - FastAPI parameters
    order: BacktestRequest,
    caller: Caller,
    connection: Db,
    state: State,
    at: Now,
    request: Request,
    response: Response,
) -> JobOut:
    """What the rules would have raised over the period, flapping, and (where ground truth
    exists) precision, recall and detection delay per fault type: the figures of
    ``smartcity rules backtest --json``. Follow the job at its ``Location``."""
    rules = _rules_to_test(order, connection, state)
    devices = _devices_to_test(order, connection)
    start, end, run = order.start, order.end, order.run
    warmup = timedelta(hours=order.warmup_hours)
    pool = state.pool

    def work(progress: Progress) -> dict[str, Any]:
        from rules.backtest import backtest  # numpy: loaded by a backtest, not by the API

        with pool.connection() as reading:
            found = backtest(reading, rules, start, end, devices, run, progress, warmup=warmup)
        return backtest_result(found)

    params = order.model_dump(mode="json", exclude={"body"}) | {
        "body_digest": None if order.body is None else store.digest_of(order.body),
        "rules": rules.source,
    }
    job = submit(state, "rules.backtest", params, caller, work, request, response)
    record_action(connection, caller, "rules.backtest", job.job_id, at, rules=rules.source)
    return job
