"""A restarted HVAC control service learns its zones' rates from their stored readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from control.hvac import INITIAL_HEAT_RATE
from control.hvac_service import ControlConfig, HvacControlService
from control.strategy import PACKAGED_STRATEGY, load_strategy, parse_strategy
from control.strategy_store import activate, rollback, save_strategy
from protocol.sites import parse_site
from storage.registry import upsert_site

pytestmark = pytest.mark.integration

SITE = """
site: {id: simtown, name: Simtown, timezone: Africa/Casablanca,
       latitude: 33.83, longitude: -4.84, altitude: 850}
buildings:
  - {id: hall, name: Town hall, kind: town_hall, latitude: 33.83, longitude: -4.84,
     zones: [offices, archives]}
"""


def test_warm_up_rates_come_from_the_last_days_of_readings(database_url: str) -> None:
    inventory = parse_site(SITE)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    began = now - timedelta(hours=3)
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, inventory)
        connection.execute(
            "SELECT ensure_telemetry_partitions('building', %s, %s)",
            (began - timedelta(days=1), now + timedelta(days=1)),
        )
        rows = [  # the offices heat flat out from 12 C, 6 K an hour, on a 5 C morning
            (began + timedelta(minutes=minute), "hall-offices", 12.0 + minute / 10, 1.0, 5.0)
            for minute in range(0, 120)
        ]
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO telemetry_building (ts, device_id, air_temperature,"
                " heating_active, outdoor_temperature, cooling_active, window_open, occupancy,"
                " power) VALUES (%s, %s, %s, %s, %s, 0, 0, 0, 20)",
                rows,
            )
    service = HvacControlService(
        ControlConfig(database_url, inventory.site.id, load_strategy(PACKAGED_STRATEGY))
    )
    try:
        offices, archives = (
            service.zones.ids.index("hall-offices"),
            service.zones.ids.index("hall-archives"),
        )
        assert service.memory.heat_rate[offices] > INITIAL_HEAT_RATE + 2.0
        assert service.memory.heat_rate[archives] == INITIAL_HEAT_RATE  # nothing stored
    finally:
        service.close()


def test_a_version_activated_later_is_taken_up(database_url: str) -> None:
    inventory = parse_site(SITE)
    packaged = load_strategy(PACKAGED_STRATEGY)
    warmer = parse_strategy(
        packaged.text.replace(
            "comfort: {heating: 20.5, cooling: 24.5}", "comfort: {heating: 21.5, cooling: 24.5}"
        )
    )
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, inventory)
    service = HvacControlService(
        ControlConfig(database_url, inventory.site.id, packaged, follow_active_strategy=True)
    )
    try:
        assert not service.take_up_active_strategy()  # nothing activated: the packaged one
        with psycopg.connect(database_url) as connection:
            version = save_strategy(connection, warmer, "energy-manager", "warmer offices")
            activate(connection, warmer.name, version, "energy-manager", "from Monday")
        assert service.take_up_active_strategy()
        assert service.config.strategy.hvac.comfort.heating == 21.5
        assert not service.take_up_active_strategy()  # once
        with psycopg.connect(database_url) as connection:  # the activation rolled back
            assert rollback(connection, "energy-manager", "too warm") == (None, (warmer.name, 1))
        assert service.take_up_active_strategy()
        assert service.config.strategy.hvac.comfort.heating == 20.5, "the packaged one again"
        assert not service.take_up_active_strategy()
    finally:
        service.close()
