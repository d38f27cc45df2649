# SPDX-License-Identifier: Apache-2.0
"""How far real frame times fall above the latency model's median: a learned tail.

Latency models predict a typical (median-like) frame time. On a noisy
computer the deadline is decided by the tail, so the selector compares a
quantile with the budget: for level i,

    q_i = median_i * Q_p(measured / predicted over recent frames)

with p = 1 - deadline_miss_target. The ratios are measured against the
prediction made *before* each frame (what the selector used), so they hold
everything the model's online correction has not caught: jitter, bursts,
cache effects. A level with enough recent frames of its own uses its own
ratios; the others borrow the pooled ratios of all levels, since the load that
widens the tail is shared. Works with any plugin, including third-party ones
that predict only a median. Pure and clock-free.
"""

from __future__ import annotations

from collections import deque
import math

import numpy as np


class TailEstimator:
    def __init__(
        self,
        quantile: float = 0.97,
        window: int = 200,
        min_pooled: int = 20,
        min_level: int = 40,
        prior_ratio: float = 1.25,
    ):
        self.quantile = float(quantile)
        self.window, self.min_pooled, self.min_level = int(window), int(min_pooled), int(min_level)
        self.prior_ratio = float(prior_ratio)  # until enough frames are seen
        self._pooled: deque[float] = deque(maxlen=self.window)
        self._levels: dict[int, deque[float]] = {}
        self._cache: dict[int, float] | None = None
        self.frames = 0
        self.covered = 0  # frames at or below their predicted quantile
        self._recent_misses: deque[bool] = deque(maxlen=self.window)

    def set_quantile(self, quantile: float) -> None:
        self.quantile = float(quantile)
        self._cache = None

    def ratio(self, level: int) -> float:
        """The quantile of measured/predicted for ``level`` (its own or the pooled one)."""
        if self._cache is None:
            self._cache = {}
        if level not in self._cache:
            own = self._levels.get(level)
            if own is not None and len(own) >= self.min_level:
                value = float(np.quantile(own, self.quantile))
            elif len(self._pooled) >= self.min_pooled:
                value = float(np.quantile(self._pooled, self.quantile))
            else:
                value = self.prior_ratio
            self._cache[level] = max(value, 1e-3)
        return self._cache[level]

    def quantiles(self, medians: list[float]) -> list[float]:
        """Per-level quantile predictions from median predictions (inf stays inf)."""
        return [m * self.ratio(i) if math.isfinite(m) else math.inf for i, m in enumerate(medians)]

    def observe(
        self,
        level: int,
        predicted_ms: float,
        quantile_ms: float,
        measured_ms: float,
        budget_ms: float,
    ) -> None:
        if not (
            predicted_ms > 0
            and math.isfinite(predicted_ms)
            and measured_ms > 0
            and math.isfinite(measured_ms)
        ):
            return
        r = measured_ms / predicted_ms
        self._pooled.append(r)
        self._levels.setdefault(level, deque(maxlen=self.window)).append(r)
        self._cache = None
        self.frames += 1
        self.covered += measured_ms <= quantile_ms
        self.record_miss(measured_ms > budget_ms)

    def record_miss(self, missed: bool) -> None:
        """Count a frame for the miss rate only (when its time cannot teach the tail)."""
        self._recent_misses.append(bool(missed))

    @property
    def coverage(self) -> float:
        """Share of frames at or below the quantile predicted for them (nominal: quantile)."""
        return self.covered / self.frames if self.frames else math.nan

    @property
    def miss_rate(self) -> float:
        """Deadline misses over the recent window."""
        return sum(self._recent_misses) / len(self._recent_misses) if self._recent_misses else 0.0
