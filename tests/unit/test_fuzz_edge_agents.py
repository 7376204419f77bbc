"""Fuzzing what the edge agent reads: its configuration file and the charge controller's registers.

``load_agent_config`` takes any file and returns a configuration or raises AgentConfigError
naming the problem (a crew editing ``agent.yaml`` on a pole sees that line, not a traceback).
The Modbus decoders take any register values a bus may return and give finite readings,
scaled exactly as the register map says. The agent's command decoding is fuzzed in
test_fuzz_commands.py (the same decoder and check_command).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from edge_agents.config import AgentConfig, load_agent_config
from edge_agents.errors import AgentConfigError
from edge_agents.modbus import (
    REALTIME_COUNT,
    REALTIME_FIRST,
    REALTIME_REGISTERS,
    STATUS_COUNT,
    decode_controller_status,
    decode_reading,
    decode_realtime,
)
from protocol.catalogue import CHARGE_CONTROLLER_STATUS_BITS
from protocol.topics import DeviceClass
from tests.unit.fuzz_strategies import (
    FUZZ,
    Document,
    identifiers,
    mutated,
    mutated_text,
    outcome,
    to_yaml,
    yaml_texts,
)

VALID_CONFIG: Final[dict[str, Document]] = {
    "site": "sefrou",
    "device_id": "sl-menzel-n-001",
    "device_class": "streetlight",
    "latitude": 33.8269,
    "longitude": -4.8237,
    "timezone": "Africa/Casablanca",
    "broker": {"host": "10.0.0.2", "port": 1883, "keepalive_s": 30},
    "spool": {
        "path": "/var/lib/smartcity-agent/spool.sqlite",
        "max_bytes": 16_777_216,
        "max_age_days": 7,
    },
    "sampling": {"samples_per_message": 1, "interval_s": 300},
    "driver": {"kind": "modbus", "host": "192.168.1.50", "port": 502, "unit": 1},
}
VALID_CONFIG_TEXT: Final = to_yaml(VALID_CONFIG)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file, rewritten by each example (hypothesis runs examples one after another)."""
    return tmp_path_factory.mktemp("fuzz-agent") / "agent.yaml"


def loads_or_refuses(path: Path, content: str | bytes) -> AgentConfig | None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    config = outcome(lambda: load_agent_config(path), AgentConfigError)
    if config is not None:
        assert math.isfinite(config.latitude)
        assert math.isfinite(config.longitude)
        assert config.device_class is DeviceClass.STREETLIGHT or config.driver.kind == "simulated"
    return config


def test_the_seed_is_a_valid_configuration(config_path: Path) -> None:
    config = loads_or_refuses(config_path, VALID_CONFIG_TEXT)
    assert config is not None
    assert config.identity.device_id == "sl-menzel-n-001"


@FUZZ
@given(text=yaml_texts())
@example(text="site: !!int ''")  # a ValueError out of PyYAML's constructor
@example(text="site: 2026-13-45")
def test_any_yaml_is_a_configuration_or_an_agent_config_error(config_path: Path, text: str) -> None:
    loads_or_refuses(config_path, text)


@FUZZ
@given(content=st.binary(max_size=200))
@example(content=b"site: \xff\xfe")  # a UnicodeDecodeError out of read_text()
@example(content=VALID_CONFIG_TEXT.encode("utf-16"))
def test_any_bytes_are_a_configuration_or_an_agent_config_error(
    config_path: Path, content: bytes
) -> None:
    loads_or_refuses(config_path, content)


@FUZZ
@given(document=mutated(VALID_CONFIG))
def test_almost_valid_configurations_load_or_say_what_is_wrong(
    config_path: Path, document: Document
) -> None:
    loads_or_refuses(config_path, to_yaml(document))


@FUZZ
@given(text=mutated_text(VALID_CONFIG_TEXT))
def test_mistyped_configurations_load_or_say_what_is_wrong(config_path: Path, text: str) -> None:
    loads_or_refuses(config_path, text)


@st.composite
def valid_configurations(draw: st.DrawFn) -> dict[str, Document]:
    device_class = draw(st.sampled_from(DeviceClass))
    port = draw(st.integers(1, 65_535))
    if device_class is DeviceClass.STREETLIGHT:
        driver: dict[str, Document] = {"kind": "modbus", "host": "gateway", "port": port}
    else:
        seed = draw(st.integers(-(2**63), 2**63))
        driver = {"kind": "simulated", "site_file": "sites/sefrou.yaml", "seed": seed}
    return {
        "site": draw(identifiers()),
        "device_id": draw(identifiers()),
        "device_class": device_class.value,
        "latitude": draw(st.floats(-90, 90)),
        "longitude": draw(st.floats(-180, 180)),
        "timezone": draw(st.sampled_from(("Africa/Casablanca", "UTC", "America/St_Johns"))),
        "broker": {"port": port},
        "spool": {"path": "spool.sqlite", "max_age_days": draw(st.floats(0, 90, exclude_min=True))},
        "sampling": {"samples_per_message": draw(st.integers(1, 1_000))},
        "driver": driver,
    }


@FUZZ
@given(document=valid_configurations())
def test_valid_configurations_load_as_written(
    config_path: Path, document: dict[str, Document]
) -> None:
    config = loads_or_refuses(config_path, yaml.safe_dump(document))
    assert config is not None
    written = {key: document[key] for key in ("site", "device_id", "latitude", "longitude")}
    assert written == {key: getattr(config, key) for key in written}
    assert config.device_class.value == document["device_class"]
    assert config.timezone == document["timezone"]
    assert config.broker.model_dump()["port"] == document["broker"]["port"]  # type: ignore[index]
    assert config.spool.model_dump()["max_age_days"] == document["spool"]["max_age_days"]  # type: ignore[index]
    loaded_driver = config.driver.model_dump(mode="json")
    assert {**loaded_driver, **document["driver"]} == loaded_driver  # type: ignore[dict-item]


# ------------------------------------------------------------------------------- Modbus

words = st.integers(0, 0xFFFF)
any_ints = st.integers(-(2**40), 2**40)
"""What a misbehaving client library might hand over instead of 16-bit words."""
UNSIGNED_16_MAX: Final = 0xFFFF / 100
UNSIGNED_32_MAX: Final = 0xFFFF_FFFF / 100
STATUS_NEVER_SET: Final = ("pv_reverse_polarity", "controller_over_temperature", "rtc_fault")


@FUZZ
@given(block=st.lists(words | any_ints, min_size=REALTIME_COUNT, max_size=REALTIME_COUNT))
def test_any_real_time_block_decodes_to_finite_values_in_the_registers_range(
    block: list[int],
) -> None:
    reading = decode_realtime(block)
    assert set(reading) == {register.metric for register in REALTIME_REGISTERS}
    for register in REALTIME_REGISTERS:
        value = reading[register.metric]
        assert isinstance(value, float)
        assert math.isfinite(value)
        width = 16 * register.words
        if register.signed:
            assert -(2 ** (width - 1)) / register.scale <= value < 2 ** (width - 1) / register.scale
        else:
            assert 0 <= value <= (2**width - 1) / register.scale


@FUZZ
@given(
    block=st.lists(any_ints, max_size=2 * REALTIME_COUNT).filter(lambda b: len(b) != REALTIME_COUNT)
)
def test_a_block_of_the_wrong_length_is_a_value_error(block: list[int]) -> None:
    assert outcome(lambda: decode_realtime(block), ValueError) is None


@FUZZ
@given(
    status=st.lists(words | any_ints, min_size=3, max_size=3),
    realtime=st.lists(words, min_size=REALTIME_COUNT, max_size=REALTIME_COUNT),
)
def test_any_status_words_decode_to_the_catalogues_bits(
    status: list[int], realtime: list[int]
) -> None:
    controller_status = decode_controller_status(*status)
    assert 0 <= controller_status < 2 ** len(CHARGE_CONTROLLER_STATUS_BITS)
    for name in STATUS_NEVER_SET:
        assert not controller_status & (1 << CHARGE_CONTROLLER_STATUS_BITS.index(name))
    reading = decode_reading(realtime, status)
    assert reading["controller_status"] == controller_status
    assert reading["lamp_on"] is bool(status[2] & 1)


@FUZZ
@given(status=st.lists(words, max_size=6).filter(lambda s: len(s) != STATUS_COUNT))
def test_a_status_block_of_the_wrong_length_is_a_value_error(status: list[int]) -> None:
    realtime = [0] * REALTIME_COUNT
    assert outcome(lambda: decode_reading(realtime, status), ValueError) is None


@st.composite
def register_values(draw: st.DrawFn) -> dict[str, int]:
    """Raw fixed-point values, as the controller holds them (value * scale)."""
    raw: dict[str, int] = {}
    for register in REALTIME_REGISTERS:
        width = 16 * register.words
        if register.signed:
            raw[register.metric] = draw(st.integers(-(2 ** (width - 1)), 2 ** (width - 1) - 1))
        else:
            raw[register.metric] = draw(st.integers(0, 2**width - 1))
    return raw


@FUZZ
@given(raw=register_values(), filler=words)
def test_register_values_round_trip(raw: dict[str, int], filler: int) -> None:
    block = [filler] * REALTIME_COUNT  # registers the driver does not report
    for register in REALTIME_REGISTERS:
        unsigned = raw[register.metric] & ((1 << (16 * register.words)) - 1)
        for index in range(register.words):  # low word first
            block[register.address - REALTIME_FIRST + index] = (unsigned >> (16 * index)) & 0xFFFF
    reading = decode_realtime(block)
    for register in REALTIME_REGISTERS:
        assert reading[register.metric] == raw[register.metric] / register.scale
