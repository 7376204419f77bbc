"""Chaos, the short version: the platform on a small simulated fleet, every fault in turn.

A real Mosquitto, a private PostgreSQL this test may crash, ingest and the rules engine as
processes of their own, ten real edge agents at 600x; then the broker SIGKILLed, the database
crashed, ingest SIGKILLed, the broker crashing while ingest is down, the rules engine
SIGKILLed, an agent cut off for an hour of device time
and ingest's links blackholed, one after the other (bench/chaos/, docs/chaos.md). Whatever
happens, every sample an agent took is stored exactly once, every alert is raised once and no
command is applied twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from bench.chaos import COOL_DOWN, DEFAULT_SITE, FAULTS, WARM_UP, ChaosConfig, report, run
from protocol.sites import load_site
from runtime.local_services import LocalMosquitto, LocalPostgres
from tests.conftest import _private_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def crashable_postgres(pytestconfig: pytest.Config) -> Iterator[LocalPostgres]:
    """A server of this test's own, which it may crash and start again. fsync is off (a
    throwaway cluster), but every commit is written before it is acknowledged: a crash of the
    server alone, the machine still up, must then lose nothing."""
    server = _private_cluster(pytestconfig, "smartcity-test-chaos-", {"synchronous_commit": "on"})
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def test_every_fault_in_turn_loses_nothing_doubles_nothing_and_applies_nothing_twice(
    crashable_postgres: LocalPostgres, broker: LocalMosquitto
) -> None:
    config = ChaosConfig(
        load_site(DEFAULT_SITE),
        streetlights=8,
        signs=1,
        zones=1,
        speed=600,
        lead_s=1.0,
        outage_s=1.0,
        blackhole_s=1.5,
        commands_per_fault=2,
        recover_timeout_s=40,
        drain_timeout_s=30,
        durable=False,
    )
    result = run(config, broker=broker, postgres=crashable_postgres)
    books = report(result)

    assert [p.name for p in result.phases] == [WARM_UP, *FAULTS, COOL_DOWN], books
    for phase in result.phases:
        assert phase.samples_sent > 0, f"{phase.name}: the agents kept sampling\n{books}"
        assert phase.lost == 0, f"{phase.name}: nothing lost\n{books}"
        assert phase.duplicated == 0, f"{phase.name}: nothing doubled\n{books}"
        assert phase.stored == phase.samples_sent, books
        if phase.name in FAULTS:
            assert phase.recovery_s is not None, f"{phase.name}: the platform recovered\n{books}"
    assert result.unexpected_rows == 0, books
    assert result.dead_letters == {}, books
    assert result.spool_drops == 0, books
    assert (result.total.absorbed or 0) > 0, f"the faults caused redeliveries\n{books}"

    alerts = result.alerts
    assert [(i.rule_id, i.alerts) for i in alerts.incidents] == [
        ("pole-down", 1),
        ("light-offline", 1),
    ], books
    assert alerts.incidents[1].history.startswith("firing -> resolved"), books
    assert alerts.duplicate_transitions == 0, books
    assert alerts.broken_histories == [], books
    assert alerts.overlapping == [], books

    commands = result.commands
    assert commands.sent == 2 * len(FAULTS), books
    assert commands.publishes >= 2 * commands.sent, "each command went out twice at least"
    assert commands.applied_twice == 0, books
    assert commands.agent_applications == commands.applied == commands.sent, books
    assert commands.unanswered == [], books
    assert result.ok, books
