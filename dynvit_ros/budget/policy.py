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


class LevelSelector:
    """Pick the most accurate skip level whose predicted latency fits the budget.

    Levels are ordered most accurate first. The level moves to a faster one at
    once when the current one no longer fits (a deadline is at stake). It
    moves to a more accurate one only after that level has fit with
    ``up_margin`` spare for ``hysteresis_frames`` consecutive frames, so the
    level does not flap when a prediction sits on the budget. ``safety``
    scales predictions (1.1 = assume 10% slower).
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

    def _first_fitting(self, predicted_ms: Sequence[float], budget_ms: float) -> int | None:
        return next(
            (i for i, ms in enumerate(predicted_ms) if ms * self.safety <= budget_ms), None
        )

    def select(self, predicted_ms: Sequence[float], budget_ms: float) -> int:
        if len(predicted_ms) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} predictions, got {len(predicted_ms)}")
        fitting = self._first_fitting(predicted_ms, budget_ms)
        if fitting is None:  # nothing fits: the fastest level
            fitting = min(range(self.num_levels), key=lambda i: predicted_ms[i])
        current = self.level
        if current is None or predicted_ms[current] * self.safety > budget_ms or fitting > current:
            self.level, self._pending_up = fitting, 0
            return self.level
        up = self._first_fitting(predicted_ms[:current], budget_ms * self.up_margin)
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
