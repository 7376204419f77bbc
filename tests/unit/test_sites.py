import itertools
import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.sites import (
    BuildingKind,
    Device,
    PlaceKind,
    SignageModel,
    SiteFileError,
    SiteInventory,
    StreetlightModel,
    load_site,
    parse_site,
)
from protocol.topics import DeviceClass
from simulators.streetlight import MODEL_30W, MODEL_40W, MODEL_60W

ROOT = Path(__file__).parents[2]
HEADER = """
site: {id: testville, name: Testville, timezone: Africa/Casablanca, latitude: 33.8, longitude: -4.8}
"""
MODELS = """models:
  sl-60w: {class: streetlight, panel_wp: 200, battery_ah: 100, lamp_w: 60}
  vms-3-line-amber: {class: signage, pixels: 7680, max_power_w: 450}
"""
RUN = "streetlight_runs:\n  - {id_prefix: sl-a, street_group: a, name: A, count: 3,"
ENDS = "start: [33.8, -4.8], end: [33.81, -4.8]"
BUILDING = "buildings:\n  - {id: hall, name: Hall, latitude: 33.8, longitude: -4.8,"


@pytest.fixture(scope="module")
def sefrou() -> SiteInventory:
    return load_site(ROOT / "sites" / "sefrou.yaml")


def position(device: Device) -> tuple[float, float]:
    assert device.latitude is not None, device.id
    assert device.longitude is not None, device.id
    return device.latitude, device.longitude


def metres(a: Device, b: Device) -> float:
    (lat_a, lon_a), (lat_b, lon_b) = position(a), position(b)
    north = math.radians(lat_b - lat_a)
    east = math.radians(lon_b - lon_a) * math.cos(math.radians(lat_a))
    return 6_371_000 * math.hypot(north, east)


def lights_by_group(inventory: SiteInventory) -> dict[str, list[Device]]:
    groups: dict[str, list[Device]] = defaultdict(list)
    for device in inventory.by_class(DeviceClass.STREETLIGHT):
        groups[device.street_group or ""].append(device)
    return groups


def run_length(lights: list[Device]) -> float:
    return sum(metres(a, b) for a, b in itertools.pairwise(lights))


def test_the_sefrou_site_file_describes_the_city_at_full_scale(sefrou: SiteInventory) -> None:
    assert sefrou.site.timezone == "Africa/Casablanca"
    lights = sefrou.by_class(DeviceClass.STREETLIGHT)
    signs = sefrou.by_class(DeviceClass.SIGNAGE)
    zones = sefrou.by_class(DeviceClass.BUILDING)
    assert len(lights) >= 2_000
    assert 25 <= len(signs) <= 35
    assert len({zone.building for zone in zones}) >= 10
    assert len(lights) + len(signs) + len(zones) == len(sefrou.devices)
    assert len({device.id for device in sefrou.devices}) == len(sefrou.devices)
    centre = Device("centre", DeviceClass.SIGNAGE, "", "", 33.83, -4.84)
    assert max(metres(centre, device) for device in sefrou.devices) < 5_000


def test_every_light_and_sign_of_sefrou_has_a_rating_of_its_class(sefrou: SiteInventory) -> None:
    for light in sefrou.by_class(DeviceClass.STREETLIGHT):
        assert isinstance(light.rating, StreetlightModel), light.id
        assert light.metadata["place_kind"] in get_args(PlaceKind)
        assert light.cabinet, light.id
    for sign in sefrou.by_class(DeviceClass.SIGNAGE):
        assert isinstance(sign.rating, SignageModel), sign.id
    assert all(zone.rating is None for zone in sefrou.by_class(DeviceClass.BUILDING))
    cabinets = Counter(light.cabinet for light in sefrou.by_class(DeviceClass.STREETLIGHT))
    assert max(cabinets.values()) <= 60


def test_the_sefrou_streetlight_models_match_the_simulator_ratings(sefrou: SiteInventory) -> None:
    for model_id, simulated in [
        ("sl-60w", MODEL_60W),
        ("sl-40w", MODEL_40W),
        ("sl-30w", MODEL_30W),
    ]:
        rating = sefrou.models[model_id]
        assert isinstance(rating, StreetlightModel)
        assert (rating.panel_wp, rating.lamp_w) == (simulated.panel_wp, simulated.lamp_w)
        assert rating.battery_wh == pytest.approx(simulated.battery_wh)


def test_the_sefrou_site_has_the_places_of_the_programme(sefrou: SiteInventory) -> None:
    groups = lights_by_group(sefrou)
    for carriageway in ("route-el-menzel-north", "route-el-menzel-south"):
        lights = groups[carriageway]
        assert run_length(lights) == pytest.approx(1_946, rel=0.01)
        assert 25 <= run_length(lights) / (len(lights) - 1) <= 35
        assert {light.model for light in lights} == {"sl-60w"}
    for square in ("bab-al-maqam", "msalla", "rachad-1", "rachad-2", "bir-anzarane"):
        assert {light.metadata["place_kind"] for light in groups[square]} == {"square"}
    assert groups["qanater-khayriya"]
    assert groups["oued-aggai-left-bank"]
    assert groups["oued-aggai-right-bank"]
    subdivisions = [
        lights for lights in groups.values() if lights[0].name.startswith("Lotissement")
    ]
    assert sum(run_length(lights) for lights in subdivisions) == pytest.approx(7_240, rel=0.02)
    zones = sefrou.by_class(DeviceClass.BUILDING)
    kinds = Counter({zone.building: zone.metadata["building_kind"] for zone in zones}.values())
    assert kinds["road_station"] == 3
    for kind in ("town_hall", "cultural_centre", "library", "multipurpose_hall", "slaughterhouse"):
        assert kinds[kind] >= 1
    cold_room = next(zone for zone in zones if zone.id == "slaughterhouse-cold-room")
    assert (cold_room.metadata["heating"], cold_room.metadata["cooling"]) == (False, True)


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


def test_a_streetlight_run_along_a_path_is_spread_evenly_along_its_length() -> None:
    # two legs of equal length on the equator: east, then north
    inventory = parse_site(
        HEADER
        + """
streetlight_runs:
  - {id_prefix: sl-a, street_group: a, name: A, count: 5, cabinets: [c1, c2],
     path: [[0.0, 0.0], [0.0, 0.02], [0.02, 0.02]]}
"""
    )
    assert [(d.latitude, d.longitude, d.cabinet) for d in inventory.devices] == [
        (0.0, 0.0, "c1"),
        (0.0, 0.01, "c1"),
        (0.0, 0.02, "c1"),
        (0.01, 0.02, "c2"),
        (0.02, 0.02, "c2"),
    ]


def test_a_light_gets_the_rating_of_its_model() -> None:
    inventory = parse_site(HEADER + MODELS + f"{RUN} model: sl-60w, {ENDS}}}")
    rating = inventory.devices[0].rating
    assert isinstance(rating, StreetlightModel)
    assert (rating.panel_wp, rating.battery_ah, rating.battery_voltage, rating.lamp_w) == (
        200,
        100,
        12.8,
        60,
    )
    assert rating.battery_wh == pytest.approx(1_280)
    assert (rating.id, rating.device_class) == ("sl-60w", "streetlight")
    assert inventory.models["vms-3-line-amber"].id == "vms-3-line-amber"
    assert inventory.devices[0].model == "sl-60w"
    assert inventory.devices[0].metadata == {"place_kind": "road"}
    assert set(inventory.models) == {"sl-60w", "vms-3-line-amber"}


def test_a_file_without_models_may_leave_them_out() -> None:
    inventory = parse_site(HEADER + f"{RUN} {ENDS}}}\ndevices: [{{id: s1, class: signage}}]")
    assert [d.rating for d in inventory.devices] == [None] * 4


def test_a_building_has_one_sensor_device_per_zone() -> None:
    inventory = parse_site(
        HEADER
        + """
buildings:
  - {id: hall, name: Hall, kind: town_hall, latitude: 33.8, longitude: -4.8,
     zones: [a, {id: b, area_m2: 60, heating: false}]}
"""
    )
    assert [(d.id, d.building, d.zone, d.rating) for d in inventory.devices] == [
        ("hall-a", "hall", "a", None),
        ("hall-b", "hall", "b", None),
    ]
    assert [d.metadata for d in inventory.devices] == [
        {
            "building_kind": "town_hall",
            "building_name": "Hall",
            "area_m2": 100.0,
            "heating": True,
            "cooling": True,
            "motorised_windows": False,
            "external_blinds": False,
        },
        {
            "building_kind": "town_hall",
            "building_name": "Hall",
            "area_m2": 60.0,
            "heating": False,
            "cooling": True,
            "motorised_windows": False,
            "external_blinds": False,
        },
    ]


def test_a_building_s_motorised_windows_and_blinds_reach_every_zone() -> None:
    inventory = parse_site(
        HEADER
        + """
buildings:
  - {id: hall, name: Hall, kind: town_hall, latitude: 33.8, longitude: -4.8,
     motorised_windows: true, external_blinds: true, zones: [a, b]}
  - {id: annex, name: Annex, kind: district_annex, latitude: 33.8, longitude: -4.8,
     external_blinds: true, zones: [c]}
"""
    )
    assert [
        (d.id, d.metadata["motorised_windows"], d.metadata["external_blinds"])
        for d in inventory.devices
    ] == [("hall-a", True, True), ("hall-b", True, True), ("annex-c", False, True)]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("site: [\n", "<site>:2:1: not valid YAML"),
        ("- 1", "(top): Input should be a valid dictionary"),
        ("a: 2001-13-45", "<site>: not valid YAML: month must be in 1..12"),
        (HEADER.replace("Africa/Casablanca", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (HEADER.replace("Africa/Casablanca", "Africa"), "unknown time zone 'Africa'"),  # a folder
        (HEADER.replace("33.8", "95"), "site.latitude: Input should be less than or equal to 90"),
        (HEADER + "devices: [{id: Bad_Id, class: streetlight}]", "devices[0].id: 'Bad_Id' is not"),
        (HEADER + "devices: [{id: x1, class: lamp}]", "devices[0].class: Input should be"),
        (
            HEADER + "devices: [{id: x1, class: signage}, {id: x1, class: signage}]",
            "devices[1]: device id 'x1' appears twice (first in devices[0])",
        ),
        (HEADER + "devices: [{id: x1, class: signage, colour: red}]", "colour: unknown field"),
        (
            HEADER + MODELS + f"{RUN} model: sl-61w, {ENDS}}}",
            "streetlight_runs[0].model: run 'sl-a': unknown model 'sl-61w'; "
            "known streetlight models: sl-60w (line 7)",
        ),
        (
            HEADER + MODELS + "devices:\n  - {id: s1, class: signage, model: sl-60w}",
            "devices[0].model: device 's1': model 'sl-60w' is a streetlight model, not a signage "
            "one; known signage models: vms-3-line-amber (line 7)",
        ),
        (
            HEADER + MODELS + f"{RUN} {ENDS}}}",
            "streetlight_runs[0]: run 'sl-a' has no model; give one (known streetlight models: "
            "sl-60w) (line 7)",
        ),
        (
            HEADER + MODELS + "devices: [{id: s1, class: signage}]",
            "devices[0]: device 's1' has no model",
        ),
        (
            HEADER + f"{BUILDING} kind: castle, zones: [a]}}",
            "buildings[0].kind: Input should be 'town_hall', 'cultural_centre', 'library', "
            "'multipurpose_hall', 'slaughterhouse', 'road_station', 'sports_hall' or "
            "'district_annex', not 'castle' (line 4)",
        ),
        (
            HEADER + MODELS + f"{RUN} model: sl-60w, place_kind: park, {ENDS}}}",
            "place_kind: Input should be 'road', 'square', 'garden' or 'entrance', not 'park'",
        ),
        (
            HEADER
            + MODELS
            + f"{RUN} model: sl-60w, {ENDS},\n     path: [[33.8, -4.8], [33.9, -4.8]]}}",
            "streetlight_runs[0]: give either start and end, or path, not both (line 7)",
        ),
        (
            HEADER + f"{RUN} start: [33.8, -4.8]}}",
            "streetlight_runs[0]: give both start and end, or a path",
        ),
        (HEADER + f"{RUN} path: [[33.8, -4.8]]}}", "streetlight_runs[0].path: List should have"),
        (HEADER + f"{RUN} start: [33.8, -4.8], end: [33.8, -4.8]}}", "street of zero length"),
        (
            HEADER + f"{RUN} cabinet: c1, cabinets: [c2], {ENDS}}}",
            "give either cabinet or cabinets, not both",
        ),
        (
            HEADER + f"{BUILDING} kind: library,\n     zones: [a, {{id: b, area_m2: 0}}]}}",
            "buildings[0].zones[1].area_m2: Input should be greater than 0 (line 5)",
        ),
        (
            HEADER + f"{BUILDING} kind: library, zones: [{{id: b, heated: true}}]}}",
            "buildings[0].zones[0].heated: unknown field",
        ),
        (HEADER + f"{BUILDING} kind: library, zones: []}}", "buildings[0].zones: List should have"),
        (
            HEADER + MODELS.replace("lamp_w: 60", "lamp_w: -60"),
            "models.sl-60w.lamp_w: Input should be greater than 0 (line 4)",
        ),
        (HEADER + MODELS.replace(", lamp_w: 60", ""), "models.sl-60w.lamp_w: Field required"),
        (HEADER + MODELS.replace("class: signage", "class: lamp"), "unknown class 'lamp'"),
        (HEADER + MODELS.replace("class: signage, ", ""), "models.vms-3-line-amber: no class"),
        (HEADER + MODELS.replace("max_power_w: 450", "max_power_w: .nan"), "a finite number"),
        (HEADER + "devices: [" + ", ".join(f"{{id: X{i}}}" for i in range(9)) + "]", "and 13 more"),
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


def test_the_documented_example_is_a_valid_site_and_the_kinds_are_documented() -> None:
    doc = (ROOT / "docs" / "sites.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", doc, re.DOTALL)
    assert example is not None
    inventory = parse_site(example.group(1))
    assert len(inventory.devices) == 42
    assert f"expands to {len(inventory.devices)} devices" in doc
    for kind in (*get_args(BuildingKind), *get_args(PlaceKind)):
        assert f"`{kind}`" in doc


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
