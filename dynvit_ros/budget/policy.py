# SPDX-License-Identifier: Apache-2.0
"""Budget policy: from system load to a per-frame budget, and from a budget to a skip level.

Both classes are pure and clock-free (time is passed in), so they are unit
tested without ROS and reused by the nodes and the benchmarks.
"""

from __future__ import annotations

import math
from typing import Sequence

# A frame budget outside these bounds is a unit mistake or an attack, not a budget:
# below 10 us no network runs (the accelerator model's smallest levels take ~0.1 ms);
# above a minute nothing is real-time.
MIN_BUDGET_MS = 0.01
MAX_BUDGET_MS = 60_000.0
# An energy budget per frame above a kilojoule is a unit mistake (the GV100 model's largest
# frames take a few joules); 0 means no energy budget.
MAX_ENERGY_BUDGET_MJ = 1.0e6


def validate_budget(value: float) -> float:
    """A budget must be a finite number of milliseconds in [MIN_BUDGET_MS, MAX_BUDGET_MS]."""
    try:
        budget = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"budget must be a number of milliseconds, got {value!r}") from None
    if not math.isfinite(budget):
        raise ValueError(f"budget must be finite, got {budget}")
    if not MIN_BUDGET_MS <= budget <= MAX_BUDGET_MS:
        raise ValueError(
            f"budget must be in [{MIN_BUDGET_MS:g}, {MAX_BUDGET_MS:g}] ms, got {budget:g}"
        )
    return budget


def validate_energy_budget(value: float) -> float:
    """An energy budget is a finite number of mJ in [0, MAX_ENERGY_BUDGET_MJ]; 0 = none."""
    try:
        energy = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"energy budget must be a number of mJ, got {value!r}") from None
    if not math.isfinite(energy) or not 0.0 <= energy <= MAX_ENERGY_BUDGET_MJ:
        raise ValueError(
            f"energy budget must be finite and in [0, {MAX_ENERGY_BUDGET_MJ:g}] mJ (0 = none), "
            f"got {energy:g}"
        )
    return energy


class LevelSelector:
    """Pick the most accurate skip level whose predicted latency fits the budget, and whose
    predicted energy fits the energy budget when there is one.

    Levels are ordered most accurate first. The level moves to a faster one at
    once when the current one no longer fits (a deadline is at stake). It
    moves to a more accurate one only after that level has fit with
    ``up_margin`` spare for ``hysteresis_frames`` consecutive frames, so the
    level does not flap when a prediction sits on the budget. ``safety``
    scales predictions (1.1 = assume 10% slower).

    Energy: ``energy_budget_mj`` <= 0 means none. A level whose energy is
    unknown (NaN: a latency-only model) is not held back by an energy budget.
    When no level fits both budgets, the level that overruns them least
    (the larger of predicted / budget over the two) runs: the fastest level
    when only time is budgeted.
    """

    def __init__(
        self,
        num_levels: int,
        hysteresis_frames: int = 3,
        safety: float = 1.0,
        up_margin: float = 0.9,
    ):
        if num_levels < 1:
            raise ValueError("num_levels must be >= 1")
        self.num_levels = num_levels
        self.hysteresis_frames = max(0, int(hysteresis_frames))
        self.safety = float(safety)
        self.up_margin = float(up_margin)
        self.level: int | None = None
        self._pending_up = 0

    def fits(
        self,
        predicted_ms: Sequence[float],
        budget_ms: float,
        predicted_mj: Sequence[float] | None = None,
        energy_budget_mj: float = 0.0,
        margin: float = 1.0,
    ) -> list[bool]:
        """Per level: whether it fits both budgets, each shrunk by ``margin``."""
        out = []
        for i, ms in enumerate(predicted_ms):
            ok = ms * self.safety <= budget_ms * margin
            if ok and energy_budget_mj > 0 and predicted_mj is not None:
                mj = predicted_mj[i]
                ok = math.isnan(mj) or mj <= energy_budget_mj * margin
            out.append(ok)
        return out

    def _overrun(self, i, predicted_ms, budget_ms, predicted_mj, energy_budget_mj) -> float:
        ratio = predicted_ms[i] * self.safety / budget_ms
        if energy_budget_mj > 0 and predicted_mj is not None and predicted_mj[i] >= 0:
            ratio = max(ratio, predicted_mj[i] / energy_budget_mj)
        return ratio

    def select(
        self,
        predicted_ms: Sequence[float],
        budget_ms: float,
        predicted_mj: Sequence[float] | None = None,
        energy_budget_mj: float = 0.0,
    ) -> int:
        if len(predicted_ms) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} predictions, got {len(predicted_ms)}")
        if predicted_mj is not None and len(predicted_mj) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} energies, got {len(predicted_mj)}")
        budgets = (budget_ms, predicted_mj, energy_budget_mj)
        fit = self.fits(predicted_ms, *budgets)
        fitting = next((i for i, ok in enumerate(fit) if ok), None)
        if fitting is None:  # nothing fits: the level that overruns its budgets least
            fitting = min(
                range(self.num_levels), key=lambda i: self._overrun(i, predicted_ms, *budgets)
            )
        current = self.level
        if current is None or not fit[current] or fitting > current:
            self.level, self._pending_up = fitting, 0
            return self.level
        up_fit = self.fits(predicted_ms, *budgets, margin=self.up_margin)[:current]
        up = next((i for i, ok in enumerate(up_fit) if ok), None)
        self._pending_up = self._pending_up + 1 if up is not None else 0
        if up is not None and self._pending_up >= self.hysteresis_frames:
            self.level, self._pending_up = up, 0
        return self.level

    def reset(self) -> None:
        self.level, self._pending_up = None, 0


class LoadBudgetPolicy:
    """Per-frame compute budget from the load that other processes put on the CPU.

    budget = clamp(smooth(period * headroom), min_budget_ms, max_budget_ms) with
    - period = 1000 / target_rate_hz (the camera's frame period),
    - headroom = max(0, 1 - other_cpu - reserve) / (1 - reserve): the share of
      the machine that other processes leave, after a reserve kept free;
    - smooth: exponential smoothing that follows a drop quickly (``alpha_down``)
      and a recovery slowly (``alpha_up``), so load bursts cut the budget within
      a sample or two and the node returns to full accuracy only once load has
      stayed low;
    - max_budget_ms defaults to the period: a frame may never take longer than
      the time until the next one.
    """

    def __init__(
        self,
        target_rate_hz: float = 10.0,
        min_budget_ms: float = 5.0,
        max_budget_ms: float | None = None,
        reserve: float = 0.1,
        alpha_down: float = 0.6,
        alpha_up: float = 0.15,
    ):
        if not (target_rate_hz > 0 and math.isfinite(target_rate_hz)):
            raise ValueError("target_rate_hz must be > 0")
        if not 0.0 <= reserve < 1.0:
            raise ValueError("reserve must be in [0, 1)")
        self.period_ms = 1000.0 / target_rate_hz
        self.min_budget_ms = float(min_budget_ms)
        self.max_budget_ms = float(max_budget_ms) if max_budget_ms else self.period_ms
        if self.min_budget_ms > self.max_budget_ms:
            raise ValueError("min_budget_ms must not exceed max_budget_ms")
        self.reserve = reserve
        self.alpha_down, self.alpha_up = alpha_down, alpha_up
        self.budget_ms: float | None = None

    def raw_budget(self, other_cpu_fraction: float) -> float:
        other = float(other_cpu_fraction)
        if not math.isfinite(other):
            raise ValueError(f"other_cpu_fraction must be finite, got {other}")
        other = min(max(other, 0.0), 1.0)
        headroom = max(0.0, 1.0 - other - self.reserve) / (1.0 - self.reserve)
        return self.period_ms * headroom

    def update(self, other_cpu_fraction: float) -> float:
        raw = self.raw_budget(other_cpu_fraction)
        if self.budget_ms is None:
            smoothed = raw
        else:
            alpha = self.alpha_down if raw < self.budget_ms else self.alpha_up
            smoothed = self.budget_ms + alpha * (raw - self.budget_ms)
        self.budget_ms = min(max(smoothed, self.min_budget_ms), self.max_budget_ms)
        return self.budget_ms
