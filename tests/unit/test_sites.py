from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.sites import SiteFileError, load_site, parse_site
from protocol.topics import DeviceClass

HEADER = """
site: {id: testville, name: Testville, timezone: Africa/Casablanca, latitude: 33.8, longitude: -4.8}
"""


def test_the_sefrou_site_file_describes_the_programme() -> None:
    inventory = load_site(Path(__file__).parents[2] / "sites" / "sefrou.yaml")
    assert inventory.site.timezone == "Africa/Casablanca"
    menzel = [d for d in inventory.devices if (d.street_group or "").startswith("route-el-menzel")]
    assert len(menzel) >= 60
    assert {d.building for d in inventory.by_class(DeviceClass.BUILDING)} >= {
        "town-hall",
        "cultural-centre",
        "slaughterhouse",
    }
    assert inventory.by_class(DeviceClass.SIGNAGE)


def test_a_streetlight_run_is_spread_evenly_between_its_ends() -> None:
    inventory = parse_site(
        HEADER
        + """
streetlight_runs:
  - {id_prefix: sl-a, street_group: a, name: A, count: 3, start: [33.0, -4.0], end: [33.2, -4.4]}
"""
    )
    assert [(d.id, d.latitude, d.longitude) for d in inventory.devices] == [
        ("sl-a-001", 33.0, -4.0),
        ("sl-a-002", 33.1, -4.2),
        ("sl-a-003", 33.2, -4.4),
    ]


def test_a_building_has_one_sensor_device_per_zone() -> None:
    inventory = parse_site(
        HEADER
        + """
buildings:
  - {id: hall, name: Hall, kind: town_hall, latitude: 33.8, longitude: -4.8, zones: [a, b]}
"""
    )
    assert [(d.id, d.building, d.zone) for d in inventory.devices] == [
        ("hall-a", "hall", "a"),
        ("hall-b", "hall", "b"),
    ]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("site: [", "<site>:1:8: not valid YAML"),
        ("- 1", "(top): Input should be a valid dictionary"),
        (HEADER.replace("Africa/Casablanca", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (HEADER.replace("33.8", "95"), "site.latitude: Input should be less than or equal to 90"),
        (HEADER + "devices: [{id: Bad_Id, class: streetlight}]", "devices.0.id"),
        (HEADER + "devices: [{id: x1, class: lamp}]", "devices.0.class"),
        (
            HEADER + "devices: [{id: x1, class: signage}, {id: x1, class: signage}]",
            "device id 'x1' appears twice",
        ),
        (HEADER + "devices: [{id: x1, class: signage, colour: red}]", "Extra inputs"),
    ],
)
def test_bad_site_files_are_refused_with_the_place_and_the_problem(
    text: str, complaint: str
) -> None:
    with pytest.raises(SiteFileError) as raised:
        parse_site(text)
    assert complaint in str(raised.value)


def test_a_missing_site_file_is_reported_by_path(tmp_path: Path) -> None:
    with pytest.raises(SiteFileError, match="cannot read the site file"):
        load_site(tmp_path / "nowhere.yaml")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_is_a_site_or_a_site_file_error(text: str) -> None:
    try:
        inventory = parse_site(HEADER + text)
    except SiteFileError as error:
        message = str(error)
        assert message.startswith("<site>")
    else:
        assert inventory.site.id == "testville"
