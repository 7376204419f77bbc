"""History generation: a day of a small site straight into the database, with its truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from protocol.faults import FaultType
from protocol.topics import DeviceClass
from simulators.environment import CloudyRun
from simulators.faults import FaultEvent
from simulators.history import HistoryOptions, generate_history
from storage.registry import upsert_site
from tests.integration.helpers import scalar
from tests.simulation_helpers import small_site
from whatif.lighting import PlatformLighting

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


WINTER = datetime(2026, 12, 10, 12, tzinfo=UTC)


def _levels_at_night(database_url: str, options: HistoryOptions) -> dict[str, float]:
    """Each light's dimming level at 22:30 local time on the history's second night."""
    with psycopg.connect(database_url) as connection:
        for device_class in DeviceClass:
            connection.execute(f"DELETE FROM telemetry_{device_class}")  # noqa: S608 - ours
    generate_history(options, database_url, progress=lambda _: None)
    zone = ZoneInfo(options.inventory.site.timezone)
    late_evening = datetime(2026, 12, 11, 22, 30, tzinfo=zone)
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT device_id, dimming_level FROM telemetry_streetlight WHERE ts = %s",
            (late_evening,),
        ).fetchall()
    return {device: float(level) for device, level in rows}


def test_the_lights_run_the_lighting_services_plans_and_an_overcast_run_dims_them(
    database_url: str,
) -> None:
    """With the platform's lighting, each light runs the night planned for it: at 22:30 a
    road light is at most at its profile's 70 % and a garden light at 40 %, where the agents'
    own program still gives 100 %; after three overcast days the plans are dimmer still, and
    never below the minimum level unless the battery cannot carry it."""
    inventory = small_site()
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, inventory)
    end = WINTER + timedelta(days=2)
    own = _levels_at_night(database_url, HistoryOptions(inventory, WINTER, end, seed=4))
    planned = _levels_at_night(
        database_url,
        HistoryOptions(inventory, WINTER, end, seed=4, lighting=PlatformLighting(inventory)),
    )
    overcast = _levels_at_night(
        database_url,
        HistoryOptions(
            inventory,
            WINTER,
            end,
            seed=4,
            lighting=PlatformLighting(inventory),
            overcast=CloudyRun(WINTER.date(), 2, clearness=0.05),
        ),
    )
    lights = [device.id for device in inventory.by_class(DeviceClass.STREETLIGHT)]
    assert sorted(own) == sorted(planned) == sorted(overcast) == sorted(lights)
    assert all(level == 100.0 for level in own.values()), "the agents' own evening level"
    for light in lights:
        profile = 70.0 if light.startswith("sl-main") else 40.0
        assert 20.0 <= planned[light] <= profile, (light, planned[light])
        assert overcast[light] <= planned[light], (light, overcast[light], planned[light])
    assert sum(overcast.values()) < sum(planned.values()) - 10, "an overcast run dims the plans"
