"""rules.partition: which rules worker looks after which device (`rules run --partition I/N`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from protocol.sites import SiteInventory, load_site
from protocol.topics import DeviceClass
from rules.partition import Partition, affinity_key, imbalance, partition_of, split

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def sefrou() -> SiteInventory:
    return load_site(ROOT / "sites" / "sefrou.yaml")


def keys_of(inventory: SiteInventory) -> list[tuple[str, str | None]]:
    return [(device.id, device.building) for device in inventory.devices]


def test_the_hash_is_pinned_so_every_worker_and_every_release_agree() -> None:
    # SHA-1 of the key, first 8 bytes big-endian, modulo N: these never change (a change
    # would move devices between running workers, their states left behind).
    keys = ("sl-menzel-n-001", "sl-001", "sl-002", "street:menzel", "building:hall")
    assert [partition_of(key, 2) for key in keys] == [1, 1, 1, 0, 1]
    assert [partition_of(key, 4) for key in keys] == [1, 1, 3, 0, 1]
    assert partition_of("sl-001", 1) == 0
    assert (
        partition_of("a", 1_000_003)
        == int.from_bytes(bytes.fromhex("86f7e437faa5a7fc"), "big") % 1_000_003
    ), "sha1('a') = 86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"


def test_the_hash_does_not_depend_on_the_process_hash_seed(sefrou: SiteInventory) -> None:
    """Python's hash() of a str changes with every process; two workers must agree."""
    ids = [device.id for device in sefrou.devices[::50]]
    here = [partition_of(device_id, 4) for device_id in ids]
    program = (
        "import sys; from rules.partition import partition_of; "
        "print(','.join(str(partition_of(d, 4)) for d in sys.argv[1:]))"
    )
    for seed in ("1", "2", "random"):
        result = subprocess.run(
            [sys.executable, "-c", program, *ids],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert [int(p) for p in result.stdout.strip().split(",")] == here


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8])
def test_every_device_has_exactly_one_worker(sefrou: SiteInventory, count: int) -> None:
    workers = [Partition(index, count) for index in range(count)]
    for device in sefrou.devices:
        owners = [w for w in workers if w.owns_device(device.id, device.building)]
        assert len(owners) == 1, device.id
    for subject in ("street:route-de-fes", "cabinet:fes-c1", "site:sefrou"):
        assert sum(w.owns(subject) for w in workers) == 1


@pytest.mark.parametrize(
    ("count", "bound"),
    # The largest share over the mean; the Sefrou counts are in docs/scaling.md.
    [(2, 1.02), (3, 1.06), (4, 1.10), (8, 1.20)],
)
def test_the_sefrou_fleet_is_balanced(sefrou: SiteInventory, count: int, bound: float) -> None:
    sizes = [len(part) for part in split(keys_of(sefrou), count)]
    assert sum(sizes) == len(sefrou.devices) == 2_162
    assert imbalance(sizes) <= bound, sizes
    lights = [(d.id, d.building) for d in sefrou.by_class(DeviceClass.STREETLIGHT)]
    light_sizes = [len(part) for part in split(lights, count)]
    assert imbalance(light_sizes) <= bound, f"the streetlights alone too: {light_sizes}"


def test_the_zones_of_a_building_stay_together(sefrou: SiteInventory) -> None:
    """They are compared with each other (peer_* names): one worker must see them all."""
    zones = sefrou.by_class(DeviceClass.BUILDING)
    assert len(zones) == 26
    for count in (2, 3, 4):
        by_building: dict[str, set[int]] = {}
        for zone in zones:
            assert zone.building
            owner = partition_of(affinity_key(zone.id, zone.building), count)
            by_building.setdefault(zone.building, set()).add(owner)
        assert all(len(owners) == 1 for owners in by_building.values())
    assert affinity_key("sl-001") == "sl-001"
    assert affinity_key("hall-offices", "hall") == "building:hall"


def test_one_partition_is_the_whole_fleet(sefrou: SiteInventory) -> None:
    whole = Partition()
    assert whole.whole
    assert str(whole) == "0/1"
    assert all(whole.owns_device(d.id, d.building) for d in sefrou.devices)
    assert whole.owns("anything at all")
    assert whole.client_id("smartcity-rules") == "smartcity-rules", "today's session, unchanged"


def test_each_partition_has_its_own_mqtt_session() -> None:
    ids = {Partition(index, 3).client_id("smartcity-rules") for index in range(3)}
    assert ids == {
        "smartcity-rules-0-of-3",
        "smartcity-rules-1-of-3",
        "smartcity-rules-2-of-3",
    }


@pytest.mark.parametrize(("text", "expected"), [("0/2", (0, 2)), (" 1 / 2 ", (1, 2))])
def test_parse(text: str, expected: tuple[int, int]) -> None:
    partition = Partition.parse(text)
    assert (partition.index, partition.count) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2/2", "does not exist among 2"),
        ("1", "is not a partition: write I/N"),
        ("-1/2", "is not a partition"),
        ("0/0", "at least 1"),
        ("a/b", "is not a partition"),
    ],
)
def test_parse_refuses_what_is_not_a_partition(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Partition.parse(text)


def test_split_and_imbalance() -> None:
    keys = [(f"d{index}", None) for index in range(1_000)]
    parts = split(keys, 4)
    assert sorted(d for part in parts for d in part) == sorted(d for d, _ in keys)
    assert Counter(len(part) > 0 for part in parts) == Counter({True: 4})
    assert imbalance([5, 5]) == 1.0
    assert imbalance([6, 4]) == pytest.approx(1.2)
    assert imbalance([]) == 1.0
    with pytest.raises(ValueError, match="at least 1"):
        partition_of("x", 0)
