"""History generation: a day of a small site straight into the database, with its truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from protocol.faults import FaultType
from protocol.topics import DeviceClass
from simulators.faults import FaultEvent
from simulators.history import HistoryOptions, generate_history
from storage.registry import upsert_site
from tests.integration.helpers import scalar
from tests.simulation_helpers import small_site

pytestmark = pytest.mark.integration

START = datetime(2026, 7, 1, tzinfo=UTC)
END = START + timedelta(days=1)
POWER_CUT = FaultEvent(
    START + timedelta(hours=6), "sl-main-002", FaultType.POWER_LOSS, START + timedelta(hours=9)
)
LINK_CUT = FaultEvent(
    START + timedelta(hours=6),
    "sl-main-003",
    FaultType.COMMUNICATION_LOSS,
    START + timedelta(hours=9),
)
DOOR = FaultEvent(
    START + timedelta(hours=10), "sign-a", FaultType.DOOR_OPEN, START + timedelta(hours=11)
)


def test_a_day_of_history_has_every_sample_the_faults_allow(database_url: str) -> None:
    inventory = small_site()
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, inventory)
    report = generate_history(
        HistoryOptions(
            inventory, START, END, seed=5, faults=(POWER_CUT, LINK_CUT, DOOR), run_name="t"
        ),
        database_url,
        progress=lambda _: None,
    )
    lights, signs, zones = (len(inventory.by_class(c)) for c in DeviceClass)
    light_rows = lights * 288 - 3 * 12  # three hours of the powerless light are missing
    assert report.rows[DeviceClass.STREETLIGHT] == light_rows
    assert scalar(database_url, "SELECT count(*) FROM telemetry_streetlight") == light_rows
    assert scalar(database_url, "SELECT count(*) FROM telemetry_signage") == signs * 1_440
    assert scalar(database_url, "SELECT count(*) FROM telemetry_building") == zones * 1_440
    hole = (
        "SELECT count(*) FROM telemetry_streetlight WHERE device_id = %s AND ts >= %s AND ts < %s"
    )
    assert scalar(database_url, hole, ("sl-main-002", POWER_CUT.start, POWER_CUT.end)) == 0
    assert scalar(database_url, hole, ("sl-main-003", LINK_CUT.start, LINK_CUT.end)) == 36, (
        "a link loss loses nothing: the spool replays it"
    )
    door = "SELECT count(*) FROM telemetry_signage WHERE device_id = 'sign-a' AND door_open = 1"
    assert scalar(database_url, door) == 60
    assert scalar(database_url, "SELECT count(*) FROM fault_ground_truth WHERE run = 't'") == 3
    day = "SELECT count(*) FROM telemetry_streetlight WHERE lamp_on = 1 AND ts = %s"
    assert scalar(database_url, day, (START + timedelta(hours=12),)) == 0, "lamps off at noon"
    assert scalar(database_url, day, (START + timedelta(hours=1),)) == lights, "and on at 2 a.m."


def _generate_and_read(database_url: str, seed: int) -> list[tuple[object, ...]]:
    inventory = small_site()
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, inventory)
        for device_class in DeviceClass:
            connection.execute(f"DELETE FROM telemetry_{device_class}")  # noqa: S608 - ours
    generate_history(
        HistoryOptions(inventory, START, START + timedelta(hours=6), seed=seed),
        database_url,
        progress=lambda _: None,
    )
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT * FROM telemetry_streetlight NATURAL FULL JOIN telemetry_building"
            " ORDER BY device_id, ts"
        ).fetchall()


def test_the_same_seed_writes_the_same_history(database_url: str) -> None:
    first = _generate_and_read(database_url, seed=9)
    assert len(first) > 1_000
    assert _generate_and_read(database_url, seed=9) == first
    assert _generate_and_read(database_url, seed=10) != first
