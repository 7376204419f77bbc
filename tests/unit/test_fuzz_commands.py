"""Fuzzing command checking (protocol/commands.py) as the agent meets it on the wire.

The agent decodes a command with msgspec (a DecodeError becomes a ``command_refused`` event)
and then asks :func:`check_command`, which must answer every decoded command with a valid
command or a refusal, never an exception: an exception would leave the platform without an
acknowledgement. A valid command, encoded as the platform sends it, must come back with
exactly its parameters.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from protocol.commands import (
    ACTIONS,
    DimmingStep,
    HvacMode,
    Params,
    Refusal,
    SetBrightness,
    SetDimming,
    SetHvac,
    SetMessage,
    SetSchedule,
    ValidCommand,
    check_command,
)
from protocol.payloads import CommandPayload, encode
from protocol.topics import DeviceClass
from tests.unit.fuzz_strategies import (
    FUZZ,
    NASTY_DATETIMES,
    Document,
    documents,
    json_scalars,
    keys,
    mutated,
    nasty_scalars,
    outcome,
    utc_offsets,
    yaml_scalars,
)

NOW: Final = datetime(2026, 11, 28, 18, tzinfo=UTC)
AGENT_DECODER: Final = msgspec.json.Decoder(CommandPayload)
"""What edge_agents/agent.py decodes a command with."""
ALL_ACTIONS: Final = sorted({action for known in ACTIONS.values() for action in known})

VALID_COMMANDS: Final[dict[DeviceClass, list[dict[str, Document]]]] = {
    DeviceClass.STREETLIGHT: [
        {"action": "set_dimming", "params": {"level": 35, "hold_s": 600}},
        {
            "action": "set_schedule",
            "params": {
                "steps": [{"start": "17:00", "level": 100}, {"start": "23:00", "level": 60.5}],
                "dark_below_elevation": -2.5,
            },
        },
    ],
    DeviceClass.SIGNAGE: [
        {
            "action": "set_message",
            "params": {"message_id": 12, "text": "Bouchon", "lit_fraction": 0.4},
        },
        {"action": "set_brightness", "params": {"level": None, "lowest": 10, "highest": 90}},
    ],
    DeviceClass.BUILDING: [
        {
            "action": "set_hvac",
            "params": {
                "mode": "auto",
                "heating_setpoint": 20,
                "cooling_setpoint": 26,
                "deadband_k": 0.5,
                "min_on_s": 300,
                "supply_temperature": 55,
            },
        }
    ],
}
SEEDS: Final = [
    (
        device_class,
        {
            "v": 1,
            "id": "cmd-1",
            "issued_at": "2026-11-28T17:59:00Z",
            "expires_at": "2026-11-28T18:05:00+00:00",
            **command,
        },
    )
    for device_class, commands in VALID_COMMANDS.items()
    for command in commands
]


def check_answer(device_class: DeviceClass, command: CommandPayload) -> ValidCommand | Refusal:
    answer = check_command(device_class, command, NOW)
    if isinstance(answer, Refusal):
        assert answer.outcome in ("rejected", "expired")
        assert answer.reason.strip()
    else:
        assert answer.action in ACTIONS[device_class]
        assert isinstance(answer.params, ACTIONS[device_class][answer.action])
        assert answer.expires_at > NOW
        for value in msgspec.structs.asdict(answer.params).values():
            if isinstance(value, float):
                assert math.isfinite(value), answer
    return answer


def as_agent_receives(device_class: DeviceClass, payload: bytes) -> None:
    """The agent's path: decode (a DecodeError is refused as an event), then check."""
    command = outcome(
        lambda: AGENT_DECODER.decode(payload), msgspec.DecodeError, msgspec.ValidationError
    )
    if command is not None:
        check_answer(device_class, command)


# ------------------------------------------------------------------------------- arbitrary


@FUZZ
@given(device_class=st.sampled_from(DeviceClass), payload=st.binary(max_size=300))
def test_any_bytes_are_refused_or_checked(device_class: DeviceClass, payload: bytes) -> None:
    as_agent_receives(device_class, payload)


@FUZZ
@given(device_class=st.sampled_from(DeviceClass), document=documents())
def test_any_json_document_is_refused_or_checked(
    device_class: DeviceClass, document: Document
) -> None:
    as_agent_receives(device_class, json.dumps(document).encode())


@FUZZ
@given(
    seed=st.sampled_from(SEEDS).flatmap(
        lambda seed: st.tuples(st.just(seed[0]), mutated(seed[1], json_scalars()))
    )
)
@example(  # timestamps without an offset: a TypeError comparing them with the agent's clock
    seed=(
        DeviceClass.STREETLIGHT,
        {
            "v": 1,
            "id": "cmd-1",
            "issued_at": "2026-11-28T17:59:00",
            "expires_at": "2026-11-28T18:05:00",
            "action": "set_dimming",
            "params": {"level": 35},
        },
    )
)
@example(
    seed=(
        DeviceClass.STREETLIGHT,
        {
            "v": 1,
            "id": "cmd-1",
            "issued_at": "2026-11-28T17:59:00",
            "expires_at": "2026-11-28T18:05:00Z",
            "action": "set_dimming",
            "params": {"level": 35},
        },
    )
)
def test_almost_valid_commands_are_refused_or_checked(
    seed: tuple[DeviceClass, Document],
) -> None:
    device_class, document = seed
    as_agent_receives(device_class, json.dumps(document).encode())


@FUZZ
@given(
    device_class=st.sampled_from(DeviceClass),
    issued_at=st.datetimes(timezones=st.none() | utc_offsets()) | st.sampled_from(NASTY_DATETIMES),
    expires_at=st.datetimes(timezones=st.none() | utc_offsets()) | st.sampled_from(NASTY_DATETIMES),
    action=st.sampled_from(ALL_ACTIONS) | st.text(max_size=20),
    params=st.dictionaries(keys(), yaml_scalars() | documents(), max_size=6)
    | st.sampled_from([command["params"] for _, seed in SEEDS for command in [seed]]).flatmap(
        lambda params: mutated(params, nasty_scalars())
    ),
)
@example(  # NaN does not come over JSON, but the platform builds commands in Python
    device_class=DeviceClass.STREETLIGHT,
    issued_at=NOW,
    expires_at=NOW + timedelta(minutes=5),
    action="set_dimming",
    params={"level": math.nan},
)
def test_commands_built_in_python_are_refused_or_checked(
    device_class: DeviceClass,
    issued_at: datetime,
    expires_at: datetime,
    action: str,
    params: object,
) -> None:
    command = CommandPayload(
        v=1,
        id="cmd-1",
        issued_at=issued_at,
        expires_at=expires_at,
        action=action,
        params=params,  # type: ignore[arg-type]  # anything, as a careless caller would
    )
    check_answer(device_class, command)


# ------------------------------------------------------------------------------- round trip

percent = st.floats(0, 100)
hold_s = st.integers(60, 7 * 86_400)
clock_times = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


@st.composite
def set_brightness(draw: st.DrawFn) -> SetBrightness:
    lowest, highest = sorted((draw(percent), draw(percent)))
    return SetBrightness(draw(st.none() | percent), draw(hold_s), lowest, highest)


@st.composite
def set_hvac(draw: st.DrawFn) -> SetHvac:
    mode = draw(st.sampled_from(HvacMode))
    deadband_k = draw(st.floats(0.2, 3))
    heating = draw(st.floats(5, 35))
    if mode is HvacMode.AUTO:
        cooling = draw(
            st.floats(min(35.0, heating + 2 * deadband_k), 35).filter(
                lambda cooling: cooling - heating >= 2 * deadband_k
            )
        )
    else:
        cooling = draw(st.floats(5, 35))
    return SetHvac(
        mode,
        heating,
        cooling,
        draw(hold_s),
        deadband_k,
        draw(st.integers(0, 3_600)),
        draw(st.integers(0, 3_600)),
        draw(st.none() | st.floats(25, 85)),
    )


VALID_PARAMS: Final[dict[DeviceClass, st.SearchStrategy[tuple[str, Params]]]] = {
    DeviceClass.STREETLIGHT: st.one_of(
        st.tuples(st.just("set_dimming"), st.builds(SetDimming, percent, hold_s)),
        st.tuples(
            st.just("set_schedule"),
            st.builds(
                SetSchedule,
                st.lists(st.builds(DimmingStep, clock_times, percent), min_size=1, max_size=24),
                st.floats(-12, 5),
            ),
        ),
    ),
    DeviceClass.SIGNAGE: st.one_of(
        st.tuples(
            st.just("set_message"),
            st.builds(SetMessage, st.integers(0, 65_535), st.text(max_size=200), st.floats(0, 1)),
        ),
        st.tuples(st.just("set_brightness"), set_brightness()),
    ),
    DeviceClass.BUILDING: st.tuples(st.just("set_hvac"), set_hvac()),
}


@FUZZ
@given(
    case=st.sampled_from(DeviceClass).flatmap(
        lambda device_class: st.tuples(st.just(device_class), VALID_PARAMS[device_class])
    ),
    command_id=st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"),
    lifetime=st.integers(1, 86_400),
    zone=utc_offsets(),
)
def test_valid_commands_come_back_with_exactly_their_parameters(
    case: tuple[DeviceClass, tuple[str, Params]],
    command_id: str,
    lifetime: int,
    zone: timezone,
) -> None:
    device_class, (action, params) = case
    sent = CommandPayload(
        v=1,
        id=command_id,
        issued_at=(NOW - timedelta(seconds=1)).astimezone(zone),
        expires_at=(NOW + timedelta(seconds=lifetime)).astimezone(zone),
        action=action,
        params=msgspec.to_builtins(params),
    )
    received = AGENT_DECODER.decode(encode(sent))
    answer = check_command(device_class, received, NOW)
    assert answer == ValidCommand(command_id, action, params, sent.expires_at)
