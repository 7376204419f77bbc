"""When a fault can first be observed: the moment detection delays are measured from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from protocol.faults import FAULT_CLASSES, FaultType
from rules.model import load_rules
from rules.names import names_for
from rules.observability import (
    CONDITIONS,
    GROWS_FOR,
    HIDDEN_BY,
    Minimum,
    hidden_by,
    observable_from,
)
from simulators.city import SENSOR_DRIFT_K_PER_HOUR

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
    found = observable_from(FaultType.DAY_BURNING, T0, None, unix_s, env, minimum=Minimum(600.0))
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
        observable_from(FaultType.DOOR_OPEN, T0, short_end, unix_s, env, minimum=Minimum(600.0))
        is None
    )
    long_end = T0 + timedelta(minutes=15)
    assert (
        observable_from(FaultType.DOOR_OPEN, T0, long_end, unix_s, env, minimum=Minimum(600.0))
        == T0
    )


MIDNIGHT = datetime(2027, 1, 10, tzinfo=UTC)


def three_days() -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """A light's readings every 5 min over three days (UTC as local time), the sun above 5
    degrees from 08:00 to 17:00; the local day of each reading."""
    unix_s = MIDNIGHT.timestamp() + STEP_S * np.arange(3 * 288)
    hour = (unix_s - MIDNIGHT.timestamp()) % 86_400 / 3_600
    elevation = np.where((hour >= 8) & (hour < 17), 20.0, -20.0)
    days = ((unix_s - MIDNIGHT.timestamp()) // 86_400).astype(np.int64)
    return unix_s, {"sun_elevation": elevation}, days


def day_hour(day: int, hour: float) -> datetime:
    return MIDNIGHT + timedelta(days=day, hours=hour)


def test_a_fault_judged_by_whole_days_must_last_one_and_into_the_next() -> None:
    """A panel soiled from 03:00 on day 0: day 0's daylight is all under it, and it is still
    soiled at the first reading of day 1: observable from 08:00 on day 0 (when it could first
    show), the delay's origin. Mended at 23:30 on day 0, it could not be told (no reading of
    the next day under it); without whole days, it would count from 08:00 all the same."""
    unix_s, env, days = three_days()
    soiled, kind = day_hour(0, 3), FaultType.PANEL_SOILING
    found = observable_from(kind, soiled, day_hour(1, 1), unix_s, env, whole_day=days)
    assert found == day_hour(0, 8)
    assert observable_from(kind, soiled, day_hour(0, 23.5), unix_s, env, whole_day=days) is None
    assert observable_from(kind, soiled, day_hour(0, 23.5), unix_s, env) == day_hour(0, 8)


def test_a_fault_from_mid_morning_waits_for_the_next_whole_day() -> None:
    """Shaded from 10:00 on day 0: day 0 is not whole under it; to 23:00 on day 1, day 1 is
    but no reading of day 2 is; to 00:30 on day 2 it counts, from 10:00 on day 0."""
    unix_s, env, days = three_days()
    start, kind = day_hour(0, 10), FaultType.PANEL_SHADING
    assert observable_from(kind, start, day_hour(1, 23), unix_s, env, whole_day=days) is None
    found = observable_from(kind, start, day_hour(2, 0.5), unix_s, env, whole_day=days)
    assert found == day_hour(0, 10)


def test_a_whole_day_hidden_in_part_does_not_count() -> None:
    """Soiled from 03:00 on day 0 to 01:00 on day 2, but without power from 12:00 to 13:00 on
    day 0 and on day 1: no whole day was seen; without the loss on day 1, day 1 counts."""
    unix_s, env, days = three_days()
    start, end, kind = day_hour(0, 3), day_hour(2, 1), FaultType.PANEL_SOILING
    losses = [(day_hour(0, 12), day_hour(0, 13)), (day_hour(1, 12), day_hour(1, 13))]
    assert observable_from(kind, start, end, unix_s, env, hidden=losses, whole_day=days) is None
    found = observable_from(kind, start, end, unix_s, env, hidden=losses[:1], whole_day=days)
    assert found == day_hour(0, 8)


def test_a_worn_battery_shows_in_the_night_at_as_many_readings_as_its_rule_counts() -> None:
    """The lamp on from 12:00: a battery drains unseen while the sun is up; at night (sun 6
    degrees down) 3 readings, a pause, then 6 in a row. A rule counting 6 within 2 h sees it
    from the first night reading; 6 within 25 min, from the first of the six; 10, never. A
    lamp lying on the ground hides it."""
    sun = [10.0, 10.0, -8.0, -8.0, -8.0, 10.0, -8.0, -8.0, -8.0, -8.0, -8.0, -8.0]
    unix_s, env = readings([100.0] * len(sun))
    env["sun_elevation"] = np.array(sun)
    fade = FaultType.BATTERY_FADE

    def shows(count: int, within_s: float) -> datetime | None:
        minimum = Minimum(count=count, within_s=within_s)
        return observable_from(fade, T0, None, unix_s, env, minimum=minimum)

    assert observable_from(fade, T0, None, unix_s, env) == at(2)
    assert shows(6, 7200.0) == at(2)
    assert shows(6, 1500.0) == at(6)
    assert shows(10, 7200.0) is None
    assert FaultType.KNOCK_DOWN in HIDDEN_BY[fade]
    assert FaultType.KNOCK_DOWN in HIDDEN_BY[FaultType.TILT]
    assert FaultType.PANEL_SOILING in HIDDEN_BY[FaultType.PANEL_SHADING]


def test_a_drift_mended_before_it_could_grow_to_the_rules_threshold_never_showed() -> None:
    """A sensor walking 0.25 K/h is judged to 4 K: mended after 2.8 h (0.7 K) it never stood
    out; lasting 17 h it shows from its start. The 16 h are the simulator's rate and the
    rule's threshold."""
    unix_s = T0.timestamp() + 60.0 * np.arange(24 * 60, dtype=np.float64)
    env: dict[str, npt.NDArray[np.float64]] = {}
    drift = FaultType.SENSOR_DRIFT
    short_end = T0 + timedelta(hours=2.8)
    assert observable_from(drift, T0, short_end, unix_s, env) is None
    assert observable_from(drift, T0, T0 + timedelta(hours=17), unix_s, env) == T0
    assert observable_from(drift, T0, None, unix_s, env) == T0
    threshold_k = 4.0
    rule = load_rules(Path("rules/default_rules.yaml")).by_id("sensor-drift")
    assert rule.when is not None
    assert f"> {threshold_k:g}" in rule.when.text
    assert GROWS_FOR[drift] == timedelta(hours=threshold_k / SENSOR_DRIFT_K_PER_HOUR)
