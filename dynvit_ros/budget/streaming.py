# SPDX-License-Identifier: Apache-2.0
"""Streaming-aware level choice: the accuracy a level buys at the camera's rate.

After Li, Wang and Ramanan, "Towards Streaming Perception" (ECCV 2020): what
the robot has at each camera frame is the newest mask published by then. A
level whose frame time L exceeds the camera period T cannot process every
frame: the node takes the newest frame each time it is free, so its masks
arrive every few frames and are some frames old when used. For a level:

- ``lag_profile(L, T)`` replays that pipeline (frames every T, one frame in
  flight, newest frame taken) and gives, for each camera frame, how many
  frames old the newest published mask is when the next frame arrives, the
  mean stride between processed frames, and the share of time the node is busy;
- its streaming value is ``accuracy * mean((1 - c) ** lag)``, where ``c`` is
  the share of the scene that changes per camera frame (:class:`SceneChange`
  learns it from consecutive masks of the same level, label-free);
- the budget caps compute, not pace: a level processed every ``stride``
  frames on average is busy ``L / stride`` per camera period, and that (with
  its median L plus the node's per-frame overhead) must fit the budget, which
  is what the monitor asks for, to within ``cap_tolerance`` (10%: about the
  accuracy of a latency prediction, so that a budget of 95% of the period
  still lets a level run back to back); each of its frames must be out within
  ``ceil(stride)`` budgets, with the same tolerance but never beyond as many
  camera periods (its deadline: a mask out before the next frame it would
  take arrives is as fresh as it can be), checked with its (1 - miss target)
  quantile. Without the tolerance, a budget a few percent under the period
  would forbid a level whose p97 lies between the two from running back to
  back, and gating it to every other frame costs more than its rare late
  frame;
- a load monitor's budget leaves out what other processes take, and the
  same contention stretches the node's frames: counted twice, a one-core
  burst on two cores would cut the node to a quarter. The caller passes the
  stretch ``s`` the budget has already paid for
  (:meth:`dynvit_ros.budget.controller.Controller.contention`); the cap then
  takes ``L / s`` (the compute a frame takes) and the deadline ``s`` budgets
  per camera frame, at most the camera period.

:class:`StreamingChoice` takes the level of highest streaming value among
those that fit, and moves to a different one only after it has been better by
``min_gain`` points for ``hysteresis_frames`` frames (at once when the current
level stops fitting). Under a budget below the camera period a slow level fits
only if the node also idles: each level is also tried with a gate of 2 to
``max_stride`` camera frames between the frames it takes (every other frame,
...), which the node then holds. When every level keeps up with the camera
(all L <= T) no mask is ever stale and the choice is the deadline selector's:
the most accurate level that fits. Pure and clock-free.

The lag profile is a model: a fixed frame time, masks out the instant the
model finishes. In a node, frame times scatter around their median, and a
level whose median lies just under a whole number of periods publishes half
its masks a frame later than its median promises. So the freshness of an
option is averaged over the lag profiles of a few frame times spread like
the recent ones (``spread``: quantiles of measured / predicted, from
:meth:`dynvit_ros.budget.tail.TailEstimator.spread`). A level just switched
to runs slower for a while, and publishing takes time. So, after Chanakya
(Ghosh et al., NeurIPS 2023: learn the run-time choice from what it
achieved), each level's value is corrected by what its
masks actually achieved: the caller reports, at every camera frame, the age in
frames of the newest mask it has published (:meth:`StreamingChoice.realised`);
the ratio of the realised ``(1 - c) ** age`` to the freshness the profile
promised for the option in force is averaged per level (exponentially,
``correction_rate``), and multiplies that level's value from then on. A level
never run keeps the model's value (1), so the choice still tries it; one that
did worse than promised loses its edge over the neighbours it was tied with.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from functools import lru_cache
import math
from typing import Sequence

import numpy as np

# Camera frames replayed per lag profile: enough for the pattern to repeat a few times.
_PROFILE_FRAMES = 48


@dataclass(frozen=True)
class LagProfile:
    lags: tuple[int, ...]  # per camera frame: age in frames of the newest mask at the next frame
    stride: float  # mean camera frames between processed frames
    busy: float  # share of time spent processing
    shares: tuple[tuple[int, float], ...]  # (lag, share of camera frames): the lags' histogram


def lag_profile(latency_ms: float, period_ms: float, min_stride: int = 1) -> LagProfile:
    """Steady state of a node with frame time ``latency_ms`` fed every ``period_ms`` that
    takes no frame that arrived sooner than ``min_stride`` periods after the previous one it
    took (1: the newest, as soon as it is free).
    """
    ratio = max(latency_ms, 1e-6) / max(period_ms, 1e-6)
    return _profile(round(ratio, 2), max(1, int(min_stride)))


@lru_cache(maxsize=4096)
def _profile(ratio: float, min_stride: int) -> LagProfile:
    # Time in camera periods: frame j arrives at j, processing takes `ratio`; the node takes
    # the newest frame once it is free and frame last + min_stride has arrived.
    published: list[tuple[float, int]] = []
    free, last = 0.0, -min_stride
    while True:
        start = max(free, float(last + min_stride))
        newest = math.floor(start + 1e-9)
        if newest >= _PROFILE_FRAMES:
            break
        free = start + ratio
        published.append((free, newest))
        last = newest
    first = _PROFILE_FRAMES // 3  # past the start-up transient
    lags, k = [], 0
    for frame in range(first, _PROFILE_FRAMES - 1):
        while k < len(published) and published[k][0] <= frame + 1 + 1e-9:
            k += 1
        lags.append(frame - published[k - 1][1] if k else _PROFILE_FRAMES)
    done = [idx for t, idx in published if first <= idx < _PROFILE_FRAMES - 1]
    stride = (done[-1] - done[0]) / (len(done) - 1) if len(done) > 1 else 1.0
    counts = Counter(lags)
    shares = tuple((lag, counts[lag] / len(lags)) for lag in sorted(counts))
    return LagProfile(tuple(lags), max(stride, 1.0), min(1.0, ratio / max(stride, 1.0)), shares)


def kept(change: float, age_frames: float) -> float:
    """Share of the scene still as a mask ``age_frames`` frames old shows it."""
    return (1.0 - min(max(float(change), 0.0), 1.0)) ** float(age_frames)


def freshness(profile: LagProfile, change: float) -> float:
    """Share of the scene still as the newest mask shows it, averaged over camera frames."""
    return sum(share * kept(change, lag) for lag, share in profile.shares)


def streaming_value(accuracy: float, profile: LagProfile, change: float) -> float:
    """Expected accuracy of the mask the robot has at a camera frame."""
    return accuracy * freshness(profile, change)


class ArrivalPeriod:
    """The camera's frame period as the node sees it: the mean of the last ``window``
    intervals between frame arrivals, pauses left out (seconds in, ms out; 0 until
    ``min_frames`` intervals). Not the median: a node busy computing takes its messages
    in bunches (a short interval, then a long one), which leaves the mean right and pulls
    the median low. A pause (an interval above 3x the mean, e.g. a camera restarted) is
    dropped, twice over, so it does not inflate the period.
    """

    def __init__(self, window: int = 30, min_frames: int = 5):
        self._intervals: deque[float] = deque(maxlen=int(window))
        self.min_frames = int(min_frames)
        self._last: float | None = None

    def arrived(self, t: float) -> None:
        last, self._last = self._last, float(t)
        if last is not None and t > last:
            self._intervals.append(t - last)

    def period_ms(self) -> float:
        if len(self._intervals) < self.min_frames:
            return 0.0
        kept = np.asarray(self._intervals)
        for _ in range(2):
            kept = kept[kept <= 3.0 * kept.mean()]
        return 1e3 * float(kept.mean())


class SceneChange:
    """Share of mask pixels that change per camera frame, from consecutive masks of one level.

    Each pair of masks ``gap`` frames apart that agree on a share ``a`` of
    pixels gives ``1 - a ** (1 / gap)``; an exponential average follows the
    scene. Masks from different levels are not compared (levels disagree with
    each other on still scenes). Masks are compared on a strided grid.
    """

    def __init__(self, prior: float = 0.05, alpha: float = 0.1, grid: int = 8):
        self.rate = float(prior)
        self.alpha, self.grid = float(alpha), int(grid)
        self._last: tuple[int, float, np.ndarray] | None = None
        self.pairs = 0

    def observe(self, level: int, arrival_frame: float, mask: np.ndarray) -> None:
        small = np.ascontiguousarray(mask[:: self.grid, :: self.grid])
        last, self._last = self._last, (level, arrival_frame, small)
        if last is None or last[0] != level or last[2].shape != small.shape:
            return
        gap = arrival_frame - last[1]
        if not (gap >= 0.5 and math.isfinite(gap)):
            return
        agree = float(np.mean(small == last[2]))
        per_frame = 1.0 - max(agree, 1e-6) ** (1.0 / gap)
        self.rate += self.alpha * (per_frame - self.rate)
        self.pairs += 1


@dataclass(frozen=True)
class StreamingPlan:
    level: int
    deadline_ms: float  # ceil(stride) x the (stretched) budget: what this frame may take
    min_stride: int  # start the next frame no sooner than this many camera periods after
    values: list[float]  # per level: streaming value (accuracy points)
    fits: list[bool]
    feasible: bool


class StreamingChoice:
    def __init__(
        self,
        accuracy: Sequence[float],
        hysteresis_frames: int = 3,
        min_gain: float = 0.2,
        max_stride: int = 4,
        cap_tolerance: float = 0.1,
        correction_rate: float = 0.03,
        correction_bounds: tuple[float, float] = (0.5, 1.5),
    ):
        if not accuracy or not all(math.isfinite(a) for a in accuracy):
            raise ValueError("streaming choice needs every level's accuracy")
        self.accuracy = [float(a) for a in accuracy]
        self.hysteresis_frames = max(0, int(hysteresis_frames))
        self.min_gain = float(min_gain)
        self.max_stride = int(max_stride)
        self.cap_tolerance = float(cap_tolerance)
        self.choice: tuple[int, int] | None = None  # (level, min stride)
        self._pending = 0
        self.correction_rate = float(correction_rate)
        self.correction_bounds = (float(correction_bounds[0]), float(correction_bounds[1]))
        # Per level: realised / promised freshness (1 until the level has run), and the
        # freshness the last plan promised for each option.
        self.correction = [1.0] * len(self.accuracy)
        self.realised_frames = [0] * len(self.accuracy)
        self._promised: dict[tuple[int, int], float] = {}

    def realised(self, age_frames: float, change: float) -> None:
        """At a camera frame: the newest published mask is ``age_frames`` frames old."""
        if self.choice is None or not (math.isfinite(age_frames) and age_frames >= 0):
            return
        promised = self._promised.get(self.choice, 0.0)
        if not promised > 0:
            return
        level = self.choice[0]
        ratio = kept(change, age_frames) / promised
        low, high = self.correction_bounds
        updated = self.correction[level] + self.correction_rate * (ratio - self.correction[level])
        self.correction[level] = min(max(updated, low), high)
        self.realised_frames[level] += 1

    def plan(
        self,
        medians: Sequence[float],
        quantiles: Sequence[float],
        budget_ms: float,
        period_ms: float,
        change: float,
        stretch: float = 1.0,
        overhead_ms: float = 0.0,
        spread: Sequence[float] = (),
    ) -> StreamingPlan:
        """``medians`` and ``quantiles``: per level, frame times under the load now;
        ``stretch`` (>= 1): the part of the slowdown of the node's frames that the budget
        has already paid for; ``overhead_ms``: per frame time outside the model (decode,
        publish); ``spread``: frame time / median at a few quantiles (empty: the median
        only), over which each option's freshness is averaged.
        """
        n = len(self.accuracy)
        if len(medians) != n or len(quantiles) != n:
            raise ValueError(f"expected {n} predictions")
        stretch = max(1.0, float(stretch)) if math.isfinite(stretch) else 1.0
        overhead = max(0.0, float(overhead_ms)) if math.isfinite(overhead_ms) else 0.0
        spread = [float(r) for r in spread if math.isfinite(r) and r > 0] or [1.0]
        # Contention the budget has paid for stretches the node's frames without raising
        # the compute they take: the cap compares uncontended compute, and a frame's
        # deadline is its budgets stretched alike (never beyond the camera frames it has).
        frame_budget = min(budget_ms * stretch, max(period_ms, budget_ms))
        # The cap's tolerance, up to the camera period: a mask out before the next frame
        # is as fresh as one out on budget.
        frame_budget = min(frame_budget * (1.0 + self.cap_tolerance), max(period_ms, frame_budget))
        # Per (level, stride): streaming value, whether it fits, its deadline and overrun;
        # per level: its best value and whether any of its options fits.
        options: dict[tuple[int, int], tuple[float, bool, float, float]] = {}
        values, fits = [-math.inf] * n, [False] * n
        for i in range(n):
            if not (math.isfinite(medians[i]) and math.isfinite(quantiles[i])):
                options[(i, 1)] = (-math.inf, False, budget_ms, math.inf)
                continue
            cycle = medians[i] + overhead
            cycles = [medians[i] * r + overhead for r in spread]
            compute = cycle / stretch
            for min_stride in range(1, self.max_stride + 1):
                profile = lag_profile(cycle, period_ms, min_stride)
                deadline = math.ceil(profile.stride - 1e-6) * frame_budget
                busy_ok = compute <= profile.stride * budget_ms * (1.0 + self.cap_tolerance)
                fit = busy_ok and quantiles[i] <= deadline
                fresh = sum(
                    freshness(lag_profile(c, period_ms, min_stride), change) for c in cycles
                ) / len(cycles)
                self._promised[(i, min_stride)] = fresh
                value = self.accuracy[i] * fresh * self.correction[i]
                options[(i, min_stride)] = (value, fit, deadline, quantiles[i] / deadline)
                values[i], fits[i] = max(values[i], value), fits[i] or fit
                if profile.stride >= min_stride + 1:
                    break  # slower than the gate already: larger gates change nothing
        eligible = [key for key, (_v, f, *_r) in options.items() if f]
        if not eligible:  # nothing fits: the option that overruns its deadline least
            best = min(options, key=lambda key: (options[key][3], key[1]))
            self.choice, self._pending = best, 0
            return self._plan(best, options, values, fits, False)
        best = max(eligible, key=lambda key: (options[key][0], -key[1], -key[0]))
        current = self.choice
        if current is None or current not in options or not options[current][1]:
            self.choice, self._pending = best, 0
        elif best != current and options[best][0] > options[current][0] + self.min_gain:
            self._pending += 1
            if self._pending >= self.hysteresis_frames:
                self.choice, self._pending = best, 0
        else:
            self._pending = 0
        return self._plan(self.choice, options, values, fits, True)

    def _plan(self, choice, options, values, fits, feasible) -> StreamingPlan:
        level, min_stride = choice
        return StreamingPlan(level, options[choice][2], min_stride, values, fits, feasible)

    @property
    def level(self) -> int | None:
        return None if self.choice is None else self.choice[0]

    def reset(self) -> None:
        self.choice, self._pending = None, 0
