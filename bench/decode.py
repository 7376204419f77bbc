"""Which JSON and validation library should decode device messages? Measured, not guessed.

The same telemetry payloads are decoded and validated into typed objects by:
- msgspec (the platform's decoder, ``protocol.decoding.decode``, catalogue checks included);
- msgspec structs alone (the parsing and schema part of the above);
- orjson + pydantic v2 (model_validate on the parsed dict);
- pydantic v2 parsing the JSON itself (model_validate_json);
- the standard library json + pydantic v2.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
from pydantic import BaseModel, ConfigDict, Field

from protocol.catalogue import CATALOGUE
from protocol.decoding import Telemetry, decode
from protocol.payloads import TelemetryPayload
from protocol.topics import DeviceClass


class PydanticSample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ts: datetime
    values: dict[str, Any] = Field(min_length=1, max_length=64)


class PydanticTelemetry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: int
    seq: int = Field(ge=0)
    samples: list[PydanticSample] = Field(min_length=1, max_length=1000)


def sample_payloads(count: int, samples_per_message: int) -> list[bytes]:
    start = datetime.now(UTC) - timedelta(hours=1)
    metrics = CATALOGUE[DeviceClass.STREETLIGHT].metrics
    payloads = []
    for index in range(count):
        samples = []
        for offset in range(samples_per_message):
            values: dict[str, float | bool] = {
                name: (True if name == "lamp_on" else round((index + offset) % 50 * 0.5, 2))
                for name in metrics
            }
            ts = (start + timedelta(milliseconds=index * samples_per_message + offset)).isoformat()
            samples.append({"ts": ts, "values": values})
        payloads.append(json.dumps({"v": 1, "seq": index, "samples": samples}).encode())
    return payloads


def _rate(function: Callable[[bytes], object], payloads: list[bytes]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for payload in payloads:
            function(payload)
        best = min(best, time.perf_counter() - started)
    return len(payloads) / best


def run(count: int = 20_000, samples_per_message: int = 1) -> dict[str, float]:
    payloads = sample_payloads(count, samples_per_message)
    topic = "sc/sefrou/streetlight/sl-0001/telemetry"
    now = datetime.now(UTC)
    struct_decoder = msgspec.json.Decoder(TelemetryPayload)

    def platform(payload: bytes) -> object:
        decoded = decode(topic, payload, now)
        if not isinstance(decoded, Telemetry):
            raise TypeError(f"benchmark message refused: {decoded}")
        return decoded

    candidates: dict[str, Callable[[bytes], object]] = {
        "protocol.decode (msgspec + catalogue checks)": platform,
        "msgspec struct only": struct_decoder.decode,
        "orjson + pydantic": lambda p: PydanticTelemetry.model_validate(orjson.loads(p)),
        "pydantic model_validate_json": PydanticTelemetry.model_validate_json,
        "json + pydantic": lambda p: PydanticTelemetry.model_validate(json.loads(p)),
    }
    return {name: _rate(function, payloads) for name, function in candidates.items()}


def report(rates: dict[str, float], samples_per_message: int) -> str:
    baseline = rates["json + pydantic"]
    lines = [
        f"decode + validate, streetlight telemetry, {samples_per_message} sample(s) x 13 values"
    ]
    for name, rate in sorted(rates.items(), key=lambda item: -item[1]):
        lines.append(f"  {name:46s} {rate:>10,.0f} msg/s  x{rate / baseline:5.2f} vs json+pydantic")
    return "\n".join(lines)
