# SPDX-License-Identifier: Apache-2.0
"""The battery policy: the cap's formula, when there is none, and bad BatteryStates."""

from dataclasses import dataclass
import math

import pytest

from dynvit_ros.budget.battery import MJ_PER_WH, BatteryEnergyPolicy, reading_from

NAN = math.nan


@dataclass
class Battery:
    """The fields of sensor_msgs/BatteryState the policy reads (NaN: unmeasured)."""

    percentage: float = NAN
    charge: float = NAN
    capacity: float = NAN
    design_capacity: float = NAN
    voltage: float = NAN
    power_supply_status: int = 2  # DISCHARGING


def policy(**kw) -> BatteryEnergyPolicy:
    defaults = dict(low_fraction=0.2, share=0.1, horizon_s=3600.0, capacity_wh=100.0)
    defaults.update(kw)
    return BatteryEnergyPolicy(**defaults)


def test_cap_by_hand():
    p = policy()
    assert p.take(Battery(percentage=0.1), now=0.0)
    # 10% of 100 Wh = 10 Wh = 3.6e7 mJ; a tenth of it over 3600 s at 10 Hz (36,000 frames).
    assert p.energy_budget_mj(1.0, rate_hz=10.0) == pytest.approx(
        0.1 * 0.1 * 100 * MJ_PER_WH / 36_000
    )
    assert p.energy_budget_mj(1.0, rate_hz=10.0) == pytest.approx(100.0)
    assert "energy capped" in p.state(1.0)
    # The cap follows the charge down (the drain slows as the battery empties) ...
    p.take(Battery(percentage=0.05), now=2.0)
    assert p.energy_budget_mj(2.0, 10.0) == pytest.approx(50.0)
    # ... to the floor, never 0 (which would mean "no energy budget").
    p.take(Battery(percentage=0.0), now=3.0)
    assert p.energy_budget_mj(3.0, 10.0) == pytest.approx(p.min_energy_mj) and p.min_energy_mj > 0


def test_no_cap_above_the_threshold_while_charging_when_stale_or_silent():
    p = policy(timeout_s=30.0)
    assert p.energy_budget_mj(0.0, 10.0) == 0.0 and "no battery state" in p.state(0.0)
    p.take(Battery(percentage=0.5), now=0.0)
    assert p.energy_budget_mj(1.0, 10.0) == 0.0 and "no cap" in p.state(1.0)
    p.take(Battery(percentage=0.1, power_supply_status=1), now=2.0)  # CHARGING
    assert p.energy_budget_mj(2.0, 10.0) == 0.0 and "charging" in p.state(2.0)
    p.take(Battery(percentage=0.1), now=3.0)
    assert p.energy_budget_mj(3.0, 10.0) > 0
    assert p.energy_budget_mj(40.0, 10.0) == 0.0 and "stale" in p.state(40.0)
    never = policy(low_fraction=0.0)  # 0 = never cap
    never.take(Battery(percentage=0.0), 0.0)
    assert never.energy_budget_mj(0.0, 10.0) == 0.0


def test_capacity_from_the_message_or_none():
    p = policy(capacity_wh=0.0)
    p.take(Battery(percentage=0.1, capacity=10.0, voltage=12.0), now=0.0)  # 120 Wh
    assert p.energy_budget_mj(0.0, 10.0) == pytest.approx(120.0)
    p.take(Battery(percentage=0.1, design_capacity=5.0, voltage=12.0), now=1.0)  # 60 Wh
    assert p.energy_budget_mj(1.0, 10.0) == pytest.approx(60.0)
    p.take(Battery(percentage=0.1), now=2.0)  # no capacity, no voltage: cannot size a cap
    assert p.energy_budget_mj(2.0, 10.0) == 0.0 and "capacity unknown" in p.state(2.0)


def test_charge_over_capacity_when_percentage_is_unmeasured():
    reading = reading_from(Battery(charge=2.0, capacity=10.0, voltage=12.0), now=0.0)
    assert reading.soc == pytest.approx(0.2) and reading.capacity_wh == pytest.approx(120.0)


@pytest.mark.parametrize(
    "bad",
    [
        Battery(),  # nothing measured
        Battery(percentage=NAN, charge=NAN, capacity=10.0),
        Battery(percentage=1.5),
        Battery(percentage=85.0),  # a driver publishing percent instead of a fraction
        Battery(percentage=-0.1),
        Battery(percentage=math.inf),
        Battery(percentage=NAN, charge=12.0, capacity=10.0),  # charge above capacity
    ],
)
def test_bad_charge_is_ignored_counted_and_the_last_reading_kept(bad):
    p = policy()
    p.take(Battery(percentage=0.1), now=0.0)
    assert not p.take(bad, now=1.0)
    assert p.ignored == 1 and "state of charge" in p.last_refusal
    assert p.reading.soc == pytest.approx(0.1)  # the previous reading stays in force
    assert p.energy_budget_mj(1.0, 10.0) == pytest.approx(100.0)


@pytest.mark.parametrize(
    "kw",
    [
        {"low_fraction": 1.5},
        {"share": 0.0},
        {"horizon_s": 0.0},
        {"capacity_wh": -1.0},
        {"min_energy_mj": 0.0},
    ],
)
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        policy(**kw)
