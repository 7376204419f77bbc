"""When a fault can first be observed: the moment detection delays are measured from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from protocol.faults import FAULT_CLASSES, FaultType
from rules.names import names_for
from rules.observability import CONDITIONS, HIDDEN_BY, hidden_by, observable_from

T0 = datetime(2027, 1, 10, 12, tzinfo=UTC)
STEP_S = 300.0


def readings(levels: list[float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A light's readings every 5 min from T0 with these commanded levels."""
    unix_s = T0.timestamp() + STEP_S * np.arange(len(levels))
    return unix_s, {
        "dimming_level": np.array(levels, dtype=float),
        "status_low_voltage_disconnect": np.zeros(len(levels)),
    }


def at(index: int) -> datetime:
    return T0 + timedelta(seconds=STEP_S * index)


def test_a_dead_lamp_shows_when_it_is_switched_on() -> None:
    unix_s, env = readings([0, 0, 0, 0, 100, 100, 100])
    found = observable_from(FaultType.LAMP_FAILURE, T0, None, unix_s, env)
    assert found == at(4)


def test_a_lamp_mended_before_dusk_never_showed() -> None:
    unix_s, env = readings([0, 0, 0, 0, 100, 100])
    assert observable_from(FaultType.LAMP_FAILURE, T0, at(3), unix_s, env) is None


def test_a_fault_without_a_condition_shows_at_its_first_reading() -> None:
    unix_s, env = readings([0, 0])
    start = T0 + timedelta(minutes=2)
    assert observable_from(FaultType.KNOCK_DOWN, start, None, unix_s, env) == at(1)


def test_a_link_or_power_loss_shows_at_its_start_by_silence() -> None:
    unix_s, env = readings([0, 0])
    start = T0 + timedelta(minutes=2)
    assert observable_from(FaultType.POWER_LOSS, start, None, unix_s, env) == start
    assert observable_from(FaultType.COMMUNICATION_LOSS, start, None, unix_s, env) == start


def test_a_power_loss_hides_a_pole_knocked_down_meanwhile() -> None:
    """Knocked down at 12:02 while the light had no power until 12:12: first read at 12:15."""
    unix_s, env = readings([0, 0, 0, 0, 0, 0])
    found = observable_from(
        FaultType.KNOCK_DOWN,
        T0 + timedelta(minutes=2),
        None,
        unix_s,
        env,
        hidden=[(T0, T0 + timedelta(minutes=12))],
    )
    assert found == at(3)
    assert FaultType.POWER_LOSS in hidden_by(FaultType.KNOCK_DOWN)
    assert hidden_by(FaultType.POWER_LOSS) == frozenset()


def test_a_stretch_shorter_than_the_rules_minimum_does_not_count() -> None:
    """Stuck on at 17:25: 5 min commanded off, then full all evening (a stuck lamp at full
    looks healthy), then dimmed at 23:00; with a 10 min minimum it shows at the dimming."""
    unix_s, env = readings([0, 0, 100, 100, 100, 60, 60, 60, 60])
    found = observable_from(FaultType.DAY_BURNING, T0, None, unix_s, env, min_span_s=600.0)
    assert found == at(5)
    assert observable_from(FaultType.DAY_BURNING, T0, None, unix_s, env) == at(0)


def test_a_dead_lamp_hides_one_stuck_on() -> None:
    unix_s, env = readings([0, 0, 0, 0, 0, 0])
    dead_until = at(3)
    found = observable_from(FaultType.DAY_BURNING, T0, None, unix_s, env, hidden=[(T0, dead_until)])
    assert found == at(3)
    assert FaultType.LAMP_FAILURE in HIDDEN_BY[FaultType.DAY_BURNING]


def test_every_condition_reads_names_of_its_class() -> None:
    for fault, condition in CONDITIONS.items():
        (device_class,) = FAULT_CLASSES[fault]
        assert condition.names <= names_for(device_class), fault


def test_a_fault_shorter_than_the_rules_minimum_never_showed() -> None:
    """A sign's door open 10 min, when the rule waits 10 and readings come every 5: its
    readings span 5 min at most, too short to be reported; open 15 min, it shows."""
    unix_s, env = readings([0, 0, 0, 0])
    short_end = T0 + timedelta(minutes=10)
    assert (
        observable_from(FaultType.DOOR_OPEN, T0, short_end, unix_s, env, min_span_s=600.0) is None
    )
    long_end = T0 + timedelta(minutes=15)
    assert observable_from(FaultType.DOOR_OPEN, T0, long_end, unix_s, env, min_span_s=600.0) == T0
