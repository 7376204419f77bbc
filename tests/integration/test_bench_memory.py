"""``smartcity bench memory`` end to end, short: every service starts alone on the Sefrou
registry and stays up, and ingest stores every message of the burst it is measured under."""

from __future__ import annotations

import pytest

from bench.memory import run, services
from protocol.sites import load_site
from smartcity.cli_support import SITES_DIR
from tests.conftest import PostgresServer

pytestmark = pytest.mark.integration


def test_every_service_is_measured_alone_and_ingest_under_its_burst(
    postgres_server: PostgresServer,
) -> None:
    site = SITES_DIR / "sefrou.yaml"
    result = run(
        load_site(site),
        site,
        postgres_server.server_url,
        runs=1,
        settle_s=3,
        burst=300,
        load_s=0,
        progress=lambda _line: None,
    )
    assert list(result.at_rest) == [service.name for service in services()]
    for name, (memory,) in result.at_rest.items():
        assert memory.rss > result.reference.rss, f"{name} measured as more than a subscriber"
    assert result.burst_stored == 300
    assert result.burst_peak.rss >= result.at_rest[services()[0].name][0].rss * 0.9
