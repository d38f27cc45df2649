# SPDX-License-Identifier: Apache-2.0
"""Energy budget per frame from the battery: below a state of charge, stretch what is left.

Policy (pure and clock-free; the load monitor feeds it ``sensor_msgs/BatteryState``):

    cap_mJ = max(min_energy_mj, share * soc * capacity_Wh * 3.6e6 / (horizon_s * rate_hz))

while ``soc < low_fraction`` and the battery is not charging; otherwise no cap (0). Read it as:
perception may spend ``share`` of the energy left in the battery (``soc * capacity_Wh``,
3.6e6 mJ per Wh) over the next ``horizon_s`` seconds of frames at ``rate_hz``. The cap
shrinks with the charge, so the drain slows as the battery empties instead of running flat
at the full-accuracy rate. ``capacity_Wh`` is the ``capacity_wh`` setting, else the message's
``capacity`` (or ``design_capacity``) in Ah times its ``voltage``; where neither is known
the policy cannot size a cap and sets none (``state`` says why).

A message whose state of charge is NaN or outside [0, 1] (``percentage``, else
``charge / capacity``) is ignored and counted; the previous reading stays in force until it
is older than ``timeout_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

MJ_PER_WH = 3.6e6
# sensor_msgs/BatteryState.power_supply_status values meaning "on external power".
CHARGING, FULL = 1, 4


def _finite_positive(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


@dataclass(frozen=True)
class BatteryReading:
    soc: float  # state of charge in [0, 1]
    capacity_wh: float | None  # from the message; None when it does not say
    charging: bool
    received: float  # monotonic seconds


def reading_from(msg, now: float) -> BatteryReading:
    """A :class:`BatteryReading` from anything shaped like ``sensor_msgs/BatteryState``;
    raises ValueError with the reason when its state of charge is unusable.
    """
    soc = float(getattr(msg, "percentage", math.nan))
    charge, capacity = (getattr(msg, name, math.nan) for name in ("charge", "capacity"))
    if math.isnan(soc) and _finite_positive(capacity) and _finite_positive(charge):
        soc = float(charge) / float(capacity)
    if not (math.isfinite(soc) and 0.0 <= soc <= 1.0):
        raise ValueError(f"state of charge must be in [0, 1], got {soc:g}")
    amp_hours = _finite_positive(capacity) or _finite_positive(getattr(msg, "design_capacity", 0))
    volts = _finite_positive(getattr(msg, "voltage", math.nan))
    status = int(getattr(msg, "power_supply_status", 0))
    return BatteryReading(
        soc,
        amp_hours * volts if amp_hours and volts else None,
        status in (CHARGING, FULL),
        now,
    )


class BatteryEnergyPolicy:
    def __init__(
        self,
        low_fraction: float = 0.2,
        share: float = 0.1,
        horizon_s: float = 3600.0,
        capacity_wh: float = 0.0,
        min_energy_mj: float = 0.1,
        timeout_s: float = 30.0,
    ):
        if not 0.0 <= low_fraction <= 1.0:
            raise ValueError(f"battery_low_fraction must be in [0, 1], got {low_fraction}")
        if not 0.0 < share <= 1.0:
            raise ValueError(f"battery_perception_share must be in (0, 1], got {share}")
        if not (horizon_s > 0 and math.isfinite(horizon_s)):
            raise ValueError(f"battery_horizon_s must be > 0, got {horizon_s}")
        if not (capacity_wh >= 0 and math.isfinite(capacity_wh)):
            raise ValueError(f"battery_capacity_wh must be >= 0, got {capacity_wh}")
        if not (min_energy_mj > 0 and math.isfinite(min_energy_mj)):
            # a cap of 0 would read as "no energy budget"
            raise ValueError(f"min_energy_budget_mj must be > 0, got {min_energy_mj}")
        self.low_fraction, self.share, self.horizon_s = low_fraction, share, horizon_s
        self.capacity_wh, self.min_energy_mj = capacity_wh, min_energy_mj
        self.timeout_s = float(timeout_s)
        self.reading: BatteryReading | None = None
        self.ignored = 0
        self.last_refusal = ""

    def take(self, msg, now: float) -> bool:
        """Take a BatteryState; a bad one is ignored, counted, and its reason kept."""
        try:
            self.reading = reading_from(msg, now)
        except (TypeError, ValueError) as exc:
            self.ignored += 1
            self.last_refusal = str(exc)
            return False
        return True

    def capacity(self) -> float | None:
        """Battery energy when full, Wh: the setting, else what the last message says."""
        if self.capacity_wh > 0:
            return self.capacity_wh
        return self.reading.capacity_wh if self.reading else None

    def _status(self, now: float) -> tuple[bool, str]:
        r = self.reading
        if r is None:
            return False, "no battery state received"
        if now - r.received > self.timeout_s:
            return False, f"battery state stale ({now - r.received:.0f} s old)"
        if r.charging:
            return False, "charging: no cap"
        if r.soc >= self.low_fraction:
            return False, f"charge {r.soc:.0%} >= {self.low_fraction:.0%}: no cap"
        if self.capacity() is None:
            return False, "capacity unknown: set battery_capacity_wh"
        return True, f"charge {r.soc:.0%} < {self.low_fraction:.0%}: energy capped"

    def state(self, now: float) -> str:
        """Why the cap is what it is (no reading, stale, charging, above the threshold,
        capacity unknown, capped).
        """
        return self._status(now)[1]

    def energy_budget_mj(self, now: float, rate_hz: float) -> float:
        """The cap per frame in mJ at ``rate_hz`` frames per second; 0 = none."""
        if not self._status(now)[0]:
            return 0.0
        left_mj = self.reading.soc * self.capacity() * MJ_PER_WH
        return max(self.min_energy_mj, self.share * left_mj / (self.horizon_s * rate_hz))
