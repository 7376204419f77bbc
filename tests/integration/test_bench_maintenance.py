"""``smartcity bench maintenance`` end to end, short: both runs store every message sent, and
the measured run's maintenance does recompute the stored day's rollups."""

from __future__ import annotations

import pytest

from bench.maintenance import report, run
from tests.conftest import PostgresServer

pytestmark = pytest.mark.integration


def test_both_runs_store_every_message_and_maintenance_rolls_the_day_up(
    postgres_server: PostgresServer,
) -> None:
    result = run(
        devices=5,
        rate=50,
        seconds=2,
        interval_s=0.5,
        database_url=postgres_server.server_url,
        progress=lambda _line: None,
    )
    assert result.history_rows == 5 * (288 - 2)
    assert result.reference.messages == result.with_maintenance.messages == 100
    for pauses in (result.reference, result.with_maintenance):
        assert 0 <= pauses.wait_p50_s <= pauses.wait_p99_s <= pauses.wait_max_s
        assert pauses.longest_pause_s <= pauses.wait_max_s
    assert result.rollup_hours_recomputed
    assert "no maintenance (reference)" in report(result)
