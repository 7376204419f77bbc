"""What a citizen can report, and how a report finds its devices (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.throttle import RateLimit
from field_ops.services import (
    BY_CODE,
    DUPLICATE_WITHIN_M,
    LOCALES,
    MAX_MATCHED,
    SERVICES,
    Earlier,
    duplicate_of,
    match_devices,
    metres_between,
)
from protocol.sites import Device
from protocol.topics import DeviceClass
from rules import PACKAGED_RULES
from rules.model import load_rules

LAT, LON = 33.83, -4.83
METRE = 1 / 111_195  # [deg of latitude]


def device(
    device_id: str, north_m: float, kind: DeviceClass = DeviceClass.STREETLIGHT, **extra: str
) -> Device:
    return Device(device_id, kind, device_id, "", LAT + north_m * METRE, LON, **extra)  # type: ignore[arg-type]


def test_every_kind_is_named_in_three_languages_and_its_rules_exist() -> None:
    rules = {rule.id for rule in load_rules(PACKAGED_RULES).rules}
    for kind in SERVICES:
        assert all(kind.name(locale) and kind.description(locale) for locale in LOCALES)
        assert set(kind.rules) <= rules, kind.code
    assert len(BY_CODE) == len(SERVICES)


def test_distances_are_great_circle_metres() -> None:
    assert metres_between(LAT, LON, LAT + 1.0, LON) == pytest.approx(111_195, rel=1e-3)
    assert metres_between(LAT, LON, LAT, LON) == 0.0


def test_a_report_names_the_nearest_lights_within_reach_and_no_other_kind() -> None:
    lights = [device(f"sl-{n}", metres) for n, metres in enumerate((30, 5, 39, 12, 60))]
    sign = device("sign-1", 1, DeviceClass.SIGNAGE)
    matched = match_devices(BY_CODE["streetlight-dark"], LAT, LON, [*lights, sign])
    assert matched == ("sl-1", "sl-3", "sl-0")[:MAX_MATCHED]
    assert match_devices(BY_CODE["streetlight-dark"], LAT + 0.01, LON, lights) == ()


def test_a_building_report_names_every_zone_of_the_nearest_building() -> None:
    zones = [
        device("hall-a", 20, DeviceClass.BUILDING, building="hall"),
        device("hall-b", 20, DeviceClass.BUILDING, building="hall"),
        device("annex-a", 90, DeviceClass.BUILDING, building="annex"),
    ]
    assert match_devices(BY_CODE["building-too-cold"], LAT, LON, zones) == ("hall-a", "hall-b")


def test_duplicates_are_the_same_kind_on_the_same_light_or_close_by_without_one() -> None:
    earlier = [
        Earlier(7, "streetlight-dark", ("sl-1", "sl-2"), LAT, LON),
        Earlier(8, "pole-damaged", ("sl-1",), LAT, LON),
        Earlier(9, "streetlight-dark", (), LAT + 0.1, LON),
    ]
    assert duplicate_of("streetlight-dark", ("sl-1",), LAT, LON, earlier) == 7
    assert duplicate_of("pole-damaged", ("sl-1", "sl-3"), LAT, LON, earlier) == 8
    assert duplicate_of("streetlight-dark", ("sl-2",), LAT, LON, earlier) is None
    near = LAT + 0.1 + (DUPLICATE_WITHIN_M - 5) * METRE
    assert duplicate_of("streetlight-dark", (), near, LON, earlier) == 9
    far = LAT + 0.1 + (DUPLICATE_WITHIN_M + 5) * METRE
    assert duplicate_of("streetlight-dark", (), far, LON, earlier) is None


def test_an_address_over_its_limit_waits_for_its_oldest_request_to_age() -> None:
    limit = RateLimit(limit=3, window=timedelta(hours=1))
    start = datetime(2026, 12, 8, 10, tzinfo=UTC)
    assert [limit.take("10.0.0.1", start + timedelta(minutes=m)) for m in (0, 10, 20)] == [None] * 3
    assert limit.take("10.0.0.1", start + timedelta(minutes=30)) == timedelta(minutes=30)
    assert limit.take("10.0.0.2", start + timedelta(minutes=30)) is None, "per address"
    assert limit.take("10.0.0.1", start + timedelta(minutes=61)) is None
