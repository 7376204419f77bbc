"""Pre-heating under a site power cap: the zones take turns, each as late as the cap allows,
and still reach their target by opening."""

from __future__ import annotations

import numpy as np

from control.hvac import hours_to_reach
from control.start_plan import Waiting, starts_under_cap

OUTDOOR = 2.0
TARGET = 19.3
HEAT_RATE = 2.5  # K/h at full power
LOSS_RATE = 0.07  # 1/h
DEMAND_KW = 50.0
SAFETY = 1.1  # the plan's rates derated as the optimum start's


def waiting(
    temperature: np.ndarray, hours_to_start: np.ndarray, running: np.ndarray | None = None
) -> Waiting:
    count = temperature.size
    heat_rate, loss_rate = np.full(count, HEAT_RATE), np.full(count, LOSS_RATE)
    lead = np.where(
        temperature < TARGET,
        SAFETY * hours_to_reach(temperature, TARGET, OUTDOOR, heat_rate, loss_rate),
        0.0,
    )
    return Waiting(
        lead_h=np.where(hours_to_start > 0, lead, 0.0),
        hours_to_start=hours_to_start,
        demand_kw=np.full(count, DEMAND_KW),
        running=np.zeros(count, dtype=np.bool_) if running is None else running,
    )


def test_under_a_loose_cap_each_zone_starts_at_its_own_optimum_start() -> None:
    zones = waiting(np.array([10.0, 10.0, 10.0]), np.array([3.0, 4.0, 8.0]))
    started = starts_under_cap(zones, base_kw=0.0, cap_kw=1_000.0)
    assert started.tolist() == (zones.hours_to_start <= zones.lead_h).tolist()
    assert started.tolist() == [True, True, False]


def test_a_cap_the_others_already_exceed_lets_the_zones_warm_up_one_at_a_time() -> None:
    zones = waiting(np.array([10.0, 10.0]), np.array([3.0, 4.0]))
    started = starts_under_cap(zones, base_kw=500.0, cap_kw=100.0)
    assert started.tolist() == [True, False]  # the one opening first


def run_night(cap_kw: float, zones: int = 4) -> tuple[float, float, np.ndarray]:
    """Zones opening together at 08:00 from 13 C, decided every 5 min from 20:00: the most
    they drew together, the full-power hours they ran and their temperatures at opening."""
    temperature = np.full(zones, 13.0)
    step_h = 5 / 60
    most = hours = 0.0
    on = np.zeros(zones, dtype=np.bool_)
    for k in range(int(12 / step_h)):
        hours_to_start = np.full(zones, 12.0 - k * step_h)
        on = starts_under_cap(waiting(temperature, hours_to_start, on), base_kw=0.0, cap_kw=cap_kw)
        most = max(most, DEMAND_KW * float(on.sum()))
        hours += float(on.sum()) * step_h
        drive = HEAT_RATE * on - LOSS_RATE * (temperature - OUTDOOR)
        temperature = temperature + drive * step_h
    return most, hours, temperature


def test_under_a_tight_cap_the_zones_take_turns_and_are_all_warm_at_opening() -> None:
    uncapped_most, uncapped_hours, uncapped = run_night(cap_kw=10_000.0)
    assert uncapped_most == 4 * DEMAND_KW  # all four start together without a cap
    assert (uncapped >= TARGET - 0.05).all()
    most, hours, temperature = run_night(cap_kw=3 * DEMAND_KW)
    assert most <= 3 * DEMAND_KW
    assert (temperature >= TARGET - 0.25).all(), temperature
    # Turns cost heat (a zone that starts early loses more waiting for people), but little.
    assert uncapped_hours < hours < 1.15 * uncapped_hours


def test_a_cap_too_tight_for_all_shares_the_shortfall() -> None:
    most, _, temperature = run_night(cap_kw=2 * DEMAND_KW)
    assert most <= 2 * DEMAND_KW
    assert (temperature < TARGET).all()
    assert np.ptp(temperature) < 0.5  # nobody left out in the cold
