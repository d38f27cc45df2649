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
that predict only a median.

A window of past ratios lags a load that switches on and off: after each
switch the frames the load factor has not caught yet fall outside a quantile
learned from the other phase. So the quantile level itself adapts to the
coverage actually achieved (adaptive conformal inference, Gibbs and Candès,
NeurIPS 2021): with miss share a = 1 - p, each frame moves

    a_t+1 = a_t + adapt_rate * (a - [measured > predicted quantile])

and the ratios' (1 - a_t) quantile is used (the window's largest ratio, scaled
by how far a_t fell below 0, once no quantile of the window is enough). In the
long run the share of frames above their predicted quantile is a, quiet or
disturbed. adapt_rate 0.05 adapts within about 20 frames, the length of a
load phase of a few seconds at camera rates. Pure and clock-free.
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
        adapt_rate: float = 0.05,
        warmup: int = 20,
    ):
        self.quantile = float(quantile)
        self.adapt_rate = float(adapt_rate)
        # The first frames after start are slow for reasons that do not repeat (lazy
        # initialisation, cold caches, the latency model's correction settling): learning
        # from them would hold a large quantile for a whole window.
        self.warmup = int(warmup)
        self._level = self.quantile  # 1 - a_t: the quantile level in use
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
        self._level = self.quantile
        self._cache = None

    @property
    def level_in_use(self) -> float:
        """The adapted quantile level (1 - a_t); above 1 means beyond the window's largest."""
        return self._level

    def _window_quantile(self, ratios) -> float:
        if self._level <= 1.0:
            return float(np.quantile(ratios, max(self._level, 0.5)))
        return float(np.max(ratios)) * self._level

    def ratio(self, level: int) -> float:
        """The quantile of measured/predicted for ``level`` (its own or the pooled one)."""
        if self._cache is None:
            self._cache = {}
        if level not in self._cache:
            own = self._levels.get(level)
            if own is not None and len(own) >= self.min_level:
                value = self._window_quantile(own)
            elif len(self._pooled) >= self.min_pooled:
                value = self._window_quantile(self._pooled)
            else:
                value = self.prior_ratio
            self._cache[level] = max(value, 1e-3)
        return self._cache[level]

    def spread(self, points: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)) -> list[float]:
        """Quantiles of measured / predicted over recent frames of every level (empty until
        ``min_pooled`` frames): how frame times scatter around the median prediction.
        """
        if len(self._pooled) < self.min_pooled:
            return []
        return [float(q) for q in np.quantile(self._pooled, points)]

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
        self.frames += 1
        covered = measured_ms <= quantile_ms
        self.covered += covered
        self.record_miss(measured_ms > budget_ms)
        if self.frames <= self.warmup:
            return
        r = measured_ms / predicted_ms
        self._pooled.append(r)
        self._levels.setdefault(level, deque(maxlen=self.window)).append(r)
        self._cache = None
        if math.isfinite(quantile_ms):
            # ACI step; bounded so a long run of one kind cannot wind it up without limit.
            target_miss = 1.0 - self.quantile
            self._level -= self.adapt_rate * (target_miss - (not covered))
            self._level = min(max(self._level, 0.5), 1.5)

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
