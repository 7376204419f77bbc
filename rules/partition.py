"""Which rules engine worker looks after which device: ``smartcity rules run --partition I/N``.

Pure. Every worker receives every reading (its own subscription, not a shared one: an MQTT
shared subscription deals messages round-robin, with no affinity to a device) and keeps the
state of the devices it owns only: those whose affinity key hashes to its index, modulo N.

The hash is SHA-1 of the key's UTF-8 bytes, not Python's ``hash()``, which is salted per
process: two workers, or one worker before and after a restart, must agree on every device.

The affinity key is the device id, except for building zones: the zones of one building are
compared with each other (the ``peer_*`` names of docs/rules.md), so they go by their building
and stay together. Root-cause subjects (``street:menzel``, ``cabinet:c1``, ``site:sefrou``)
have no building: they go by their own name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

_TEXT: Final = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def partition_of(key: str, count: int) -> int:
    """The partition (0 .. count-1) of an affinity key: stable across processes and machines."""
    if count < 1:
        raise ValueError(f"a partition count is at least 1, not {count}")
    digest = hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % count


def affinity_key(device_id: str, building: str | None = None) -> str:
    """What a device is partitioned by: its building for a building zone, else its id."""
    return f"building:{building}" if building else device_id


@dataclass(frozen=True, slots=True)
class Partition:
    """Worker ``index`` of ``count``; the default, 0 of 1, owns everything."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"the number of partitions is at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"partition {self.index} does not exist among {self.count}: "
                f"write I/N with 0 <= I < N, e.g. 0/{self.count}"
            )

    @classmethod
    def parse(cls, text: str) -> Partition:
        """``"I/N"``: worker I (counted from 0) of N."""
        match = _TEXT.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a partition: write I/N, e.g. 0/2 and 1/2")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def whole(self) -> bool:
        """One worker for every device: the engine as it runs unpartitioned."""
        return self.count == 1

    def owns(self, key: str) -> bool:
        """Whether this worker looks after the affinity key (a device's, or a subject's)."""
        return self.whole or partition_of(key, self.count) == self.index

    def owns_device(self, device_id: str, building: str | None = None) -> bool:
        return self.owns(affinity_key(device_id, building))

    def client_id(self, base: str) -> str:
        """The MQTT client id of this worker: ``base`` alone when whole, else one per
        partition (each worker keeps its own persistent session)."""
        return base if self.whole else f"{base}-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def split(keys: Iterable[tuple[str, str | None]], count: int) -> list[list[str]]:
    """The device ids of (device id, building) pairs, by partition: what each worker owns."""
    parts: list[list[str]] = [[] for _ in range(count)]
    for device_id, building in keys:
        parts[partition_of(affinity_key(device_id, building), count)].append(device_id)
    return parts


def imbalance(sizes: Mapping[int, int] | list[int]) -> float:
    """The largest partition over the mean size (1.0: perfectly even)."""
    counts = list(sizes.values()) if isinstance(sizes, Mapping) else list(sizes)
    total = sum(counts)
    if not counts or total == 0:
        return 1.0
    return max(counts) / (total / len(counts))
