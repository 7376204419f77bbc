"""Missing data and its causes, with a fake clock: :class:`Presence` live, and
:func:`missing_intervals` over stored history, agreeing on the same event sequences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.topics import DeviceClass
from rules.backtest import silent_gaps
from rules.offline import Cause, Gone, Presence, missing_intervals

LIGHT: Final = DeviceClass.STREETLIGHT
SILENCE_S: Final = 900.0
"""Three expected intervals of a streetlight (300 s)."""
TICK_S: Final = 60.0
"""The fake clock's tick: the live engine looks at its devices this often."""
LVD_BIT: Final = 1 << 8
"""controller_status: low_voltage_disconnect."""


@dataclass(frozen=True, slots=True)
class Reading:
    at: float
    battery_soc: float = 70.0
    controller_status: float = 0.0


@dataclass(frozen=True, slots=True)
class State:
    at: float
    online: bool
    reason: str | None = None
    boot_id: str | None = "boot-a"


Event = Reading | State


def birth(at: float, boot_id: str = "boot-a") -> State:
    return State(at, True, None, boot_id)


def will(at: float) -> State:
    return State(at, False, "connection_lost")


def goodbye(at: float, reason: str) -> State:
    return State(at, False, reason)


def readings(first: float, last: float, **values: float) -> list[Reading]:
    """A reading every 300 s from ``first`` to ``last`` (both included)."""
    return [Reading(float(at), **values) for at in np.arange(first, last + 1, 300.0)]


def _order(event: Event) -> tuple[float, int]:
    # As missing_intervals orders them: at the same time, a state before a reading.
    return (event.at, 0 if isinstance(event, State) else 1)


def stored(
    events: Sequence[Event], until_s: float, device_class: DeviceClass = LIGHT
) -> list[Gone]:
    samples = sorted((e for e in events if isinstance(e, Reading)), key=lambda r: r.at)
    states = [(s.at, s.online, s.reason, s.boot_id) for s in events if isinstance(s, State)]
    values = {
        "battery_soc": np.array([r.battery_soc for r in samples]),
        "controller_status": np.array([r.controller_status for r in samples]),
    }
    return missing_intervals(
        LIGHT,
        np.array([r.at for r in samples]),
        values,
        silence_s=SILENCE_S,
        states=states,
        until_s=until_s,
    )


@dataclass
class FakeClock:
    """Ticks a :class:`Presence` every TICK_S seconds, as the live engine's timer does."""

    presence: Presence
    now_s: float | None = None

    def advance_to(self, moment: float) -> None:
        if self.now_s is not None:
            while self.now_s + TICK_S < moment:
                self.now_s += TICK_S
                self.presence.tick(self.now_s)
        self.now_s = moment
        self.presence.tick(moment)


@dataclass(frozen=True, slots=True)
class Streamed:
    gone: Gone
    ended_by_reading: bool


def streamed(events: Sequence[Event], until_s: float) -> list[Streamed]:
    """The same events fed live, in time order, with the clock ticking in between."""
    presence = Presence(LIGHT, SILENCE_S)
    clock = FakeClock(presence)
    found: list[Streamed] = []
    for event in sorted(events, key=_order):
        clock.advance_to(event.at)
        if isinstance(event, Reading):
            values = {
                "battery_soc": event.battery_soc,
                "controller_status": event.controller_status,
            }
            ended = presence.reading(event.at, values)
        else:
            ended = presence.state(event.at, event.online, event.reason, event.boot_id)
        if ended is not None and ended.back_s is not None:
            found.append(Streamed(ended, isinstance(event, Reading)))
    clock.advance_to(until_s)
    if presence.gone is not None:
        found.append(Streamed(presence.gone, ended_by_reading=False))
    return found


def as_stored(live: Streamed) -> Gone:
    """What the stored evaluation says of a live interval: a gap that a reading ended with no
    state message to explain it means the device took no readings (it had no power)."""
    if live.ended_by_reading and live.gone.cause is Cause.UNKNOWN:
        return Gone(live.gone.since_s, Cause.POWER, live.gone.back_s)
    return live.gone


def gone(since_s: float, cause: Cause, back_s: float | None = None) -> Gone:
    return Gone(since_s, cause, back_s)


UNTIL: Final = 6_000.0
CASES: Final[list[tuple[str, list[Event], list[Gone]]]] = [
    ("healthy: nothing missing", [birth(0), *readings(0, 5_700)], []),
    (
        "silence: from the last reading plus the silence to the next reading",
        [birth(0), *readings(0, 600), *readings(3_000, 5_700)],
        [gone(600 + SILENCE_S, Cause.POWER, 3_000)],
    ),
    (
        "a gap shorter than the silence is not missing",
        [birth(0), *readings(0, 600), *readings(1_200, 5_700)],
        [],
    ),
    (
        "will, then a birth with the same boot: communication",
        [birth(0), *readings(0, 600), will(700), birth(2_000), *readings(2_100, 5_700)],
        [gone(700, Cause.COMMUNICATION, 2_000)],
    ),
    (
        "will, then a birth with a new boot: power",
        [birth(0), *readings(0, 600), will(700), birth(2_000, "boot-b"), *readings(2_100, 5_700)],
        [gone(700, Cause.POWER, 2_000)],
    ),
    (
        "a replay after the will does not end it early; only the birth does",
        [birth(0), *readings(0, 5_700), will(700), birth(2_000)],
        [gone(700, Cause.COMMUNICATION, 2_000)],
    ),
    (
        "goodbye battery_depleted: battery, kept when it comes back",
        [
            birth(0),
            *readings(0, 600),
            goodbye(700, "battery_depleted"),
            birth(4_000, "boot-b"),
            *readings(4_000, 5_700),
        ],
        [gone(700, Cause.BATTERY, 4_000)],
    ),
    (
        "goodbye power_low: battery",
        [birth(0), *readings(0, 600), goodbye(700, "power_low")],
        [gone(700, Cause.BATTERY)],
    ),
    (
        "will after a flat reading (state of charge at the disconnect): battery",
        [birth(0), *readings(0, 300), Reading(600, battery_soc=9.5), will(700)],
        [gone(700, Cause.BATTERY)],
    ),
    (
        "will after a reading with the low-voltage disconnect bit: battery",
        [birth(0), *readings(0, 300), Reading(600, 40.0, LVD_BIT), will(700)],
        [gone(700, Cause.BATTERY)],
    ),
    (
        "silence after a flat reading: battery",
        [birth(0), *readings(0, 300), Reading(600, battery_soc=10.0)],
        [gone(600 + SILENCE_S, Cause.BATTERY)],
    ),
    (
        "a shutdown goodbye starts nothing",
        [birth(0), *readings(0, 600), goodbye(650, "shutdown"), birth(800), *readings(900, 5_700)],
        [],
    ),
    (
        "silence after a shutdown goodbye still does",
        [birth(0), *readings(0, 600), goodbye(650, "shutdown")],
        [gone(600 + SILENCE_S, Cause.UNKNOWN)],
    ),
    (
        "still silent at the end: open, cause unknown",
        [birth(0), *readings(0, 600)],
        [gone(600 + SILENCE_S, Cause.UNKNOWN)],
    ),
    (
        "a second will while missing changes nothing",
        [
            birth(0),
            *readings(0, 600),
            will(700),
            will(1_000),
            birth(2_000),
            *readings(2_100, 5_700),
        ],
        [gone(700, Cause.COMMUNICATION, 2_000)],
    ),
    (
        "silence, then a will: the interval began with the silence; a birth ends it",
        [birth(0), *readings(0, 600), will(2_000), birth(3_000), *readings(3_000, 5_700)],
        [gone(600 + SILENCE_S, Cause.COMMUNICATION, 3_000)],
    ),
    (
        "two outages, two intervals",
        [
            birth(0),
            *readings(0, 600),
            *readings(2_400, 3_000),
            will(3_100),
            birth(4_000, "boot-b"),
            *readings(4_200, 5_700),
        ],
        [gone(600 + SILENCE_S, Cause.POWER, 2_400), gone(3_100, Cause.POWER, 4_000)],
    ),
]


@pytest.mark.parametrize(("events", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_stored_history(events: list[Event], expected: list[Gone]) -> None:
    assert stored(events, UNTIL) == expected


@pytest.mark.parametrize(("events", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_streaming_gives_the_same_intervals(events: list[Event], expected: list[Gone]) -> None:
    assert [as_stored(live) for live in streamed(events, UNTIL)] == expected


def test_live_reading_after_silence_leaves_the_cause_unknown() -> None:
    """Live, a reading that ends a silence cannot tell whether the device was off; stored
    history can (its readings are stored when taken), hence POWER there."""
    (live,) = streamed([birth(0), *readings(0, 600), *readings(3_000, 5_700)], UNTIL)
    assert live == Streamed(gone(1_500, Cause.UNKNOWN, 3_000), ended_by_reading=True)


def test_silence_starts_when_the_clock_says_so_not_before() -> None:
    presence = Presence(LIGHT, SILENCE_S)
    presence.reading(600, {"battery_soc": 70.0})
    assert presence.tick(600 + SILENCE_S - 1) is None
    assert presence.tick(600 + SILENCE_S) == gone(1_500, Cause.UNKNOWN)
    assert presence.tick(9_999) is None, "reported once"


def test_a_device_never_heard_is_not_missing() -> None:
    assert Presence(LIGHT, SILENCE_S).tick(1e9) is None
    assert stored([], UNTIL) == []


def test_a_sign_whose_supply_failed_went_for_power() -> None:
    values = {"supply_voltage": np.array([230.0, 0.0])}
    (found,) = missing_intervals(
        DeviceClass.SIGNAGE, np.array([0.0, 60.0]), values, silence_s=300, until_s=1_000
    )
    assert found == gone(360, Cause.POWER)


# ----------------------------------------------------------------------------- property


def _events() -> st.SearchStrategy[list[Event]]:
    reading = st.builds(
        Reading,
        st.integers(0, 200).map(lambda slot: slot * 60.0),
        st.sampled_from([70.0, 9.0]),
        st.sampled_from([0.0, float(LVD_BIT)]),
    )
    state = st.builds(
        State,
        st.integers(0, 200).map(lambda slot: slot * 60.0 + 30.0),
        st.booleans(),
        st.sampled_from([None, "connection_lost", "shutdown", "battery_depleted"]),
        st.sampled_from(["boot-a", "boot-b", None]),
    )
    return st.lists(st.one_of(reading, reading, state), max_size=40).map(_unique_times)


def _unique_times(events: list[Event]) -> list[Event]:
    """At most one reading per time (stored readings have a primary key) and one state."""
    seen: set[tuple[float, bool]] = set()
    kept: list[Event] = []
    for event in events:
        key = (event.at, isinstance(event, Reading))
        if key not in seen:
            seen.add(key)
            kept.append(event)
    return kept


@settings(max_examples=300, deadline=None)
@given(_events())
def test_streaming_and_stored_agree_on_any_sequence(events: list[Event]) -> None:
    until = 13_000.0
    assert [as_stored(live) for live in streamed(events, until)] == stored(events, until)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 400), unique=True, max_size=60).map(sorted),
    st.lists(st.sampled_from([70.0, 9.0, np.nan]), min_size=60, max_size=60),
    st.lists(st.sampled_from([0.0, float(LVD_BIT), np.nan]), min_size=60, max_size=60),
    st.sampled_from([None, 400 * 60.0, 420 * 60.0]),
)
def test_the_backtests_numpy_path_is_missing_intervals_without_states(
    slots: list[int], socs: list[float], words: list[float], until_s: float | None
) -> None:
    """The backtest computes the missing intervals of a device without state messages (all
    of a simulated history) with numpy; they must be exactly missing_intervals'."""
    sample_s = np.array(slots, dtype=np.float64) * 60.0
    values = {
        "battery_soc": np.array(socs[: len(slots)]),
        "controller_status": np.array(words[: len(slots)]),
    }
    expected = missing_intervals(LIGHT, sample_s, values, silence_s=SILENCE_S, until_s=until_s)
    assert silent_gaps(LIGHT, sample_s, values, silence_s=SILENCE_S, until_s=until_s) == expected


def test_a_state_message_delivered_twice_counts_once() -> None:
    """A broker redelivers what was not acknowledged: the same will, then the same birth."""
    presence = Presence(DeviceClass.STREETLIGHT, 900.0)
    presence.state(0.0, True, None, "boot-a", sent_s=0.0)
    assert presence.state(100.0, False, "connection_lost", "boot-a", sent_s=0.0) is not None
    assert presence.state(101.0, False, "connection_lost", "boot-a", sent_s=0.0) is None
    back = presence.state(200.0, True, None, "boot-a", sent_s=190.0)
    assert back is not None
    assert back.cause is Cause.COMMUNICATION
    assert presence.state(201.0, True, None, "boot-a", sent_s=190.0) is None
    assert presence.gone is None


def test_the_will_tells_the_boot_it_ends() -> None:
    """Without a birth seen first, the will's boot id still tells a reboot."""
    presence = Presence(DeviceClass.STREETLIGHT, 900.0)
    presence.state(100.0, False, "connection_lost", "boot-a", sent_s=0.0)
    back = presence.state(200.0, True, None, "boot-b", sent_s=190.0)
    assert back is not None
    assert back.cause is Cause.POWER
