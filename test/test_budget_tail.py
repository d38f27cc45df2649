# SPDX-License-Identifier: Apache-2.0
"""The learned tail: quantile predictions, coverage, borrowing, and the selector's use of it."""

import math

import numpy as np
import pytest

from dynvit_ros.budget.arbiter import BudgetArbiter
from dynvit_ros.budget.controller import Controller
from dynvit_ros.budget.policy import LevelSelector
from dynvit_ros.budget.tail import TailEstimator


def test_quantile_covers_its_nominal_share_of_noisy_frames():
    rng = np.random.default_rng(0)
    tail = TailEstimator(quantile=0.95, window=400)
    medians = [40.0, 25.0, 10.0]
    frames = 4000
    for i in range(frames):
        level = i % 3
        q = tail.quantiles(medians)[level]
        measured = medians[level] * float(rng.lognormal(0.0, 0.15))
        tail.observe(level, medians[level], q, measured, budget_ms=50.0)
    assert abs(tail.coverage - 0.95) < 0.02, tail.coverage
    assert tail.ratio(0) == pytest.approx(math.exp(0.15 * 1.645), rel=0.1)


def _switching_load_coverage(adapt_rate: float) -> float:
    """A load that switches on and off every 150 frames: on, frames take 1.8x and jitter far
    more (sigma 0.35 against 0.05); the latency model follows with a lag (an EWMA of the
    measured factor, like the profiled model's online correction)."""
    rng = np.random.default_rng(1)
    tail = TailEstimator(quantile=0.97, adapt_rate=adapt_rate)
    factor_estimate = 1.0
    for i in range(6000):
        on = (i // 150) % 2
        predicted = 20.0 * factor_estimate
        q = tail.quantiles([predicted])[0]
        measured = 20.0 * (1.8 if on else 1.0) * float(rng.lognormal(0.0, 0.35 if on else 0.05))
        tail.observe(0, predicted, q, measured, budget_ms=math.inf)
        factor_estimate += 0.5 * (measured / 20.0 - factor_estimate)
    return tail.coverage


def test_adaptive_level_holds_coverage_when_the_load_switches():
    fixed, adaptive = _switching_load_coverage(0.0), _switching_load_coverage(0.01)
    assert fixed < 0.96  # the window's quantile lags every switch
    assert abs(adaptive - 0.97) < 0.005, adaptive


def test_warmup_frames_teach_nothing():
    tail = TailEstimator(quantile=0.97, min_pooled=5, warmup=3)
    for _ in range(3):
        tail.observe(0, 10.0, 12.5, 40.0, 20.0)  # a cold start: 4x the prediction
    assert tail.ratio(0) == tail.prior_ratio and tail.level_in_use == 0.97
    assert tail.frames == 3 and tail.coverage == 0.0 and tail.miss_rate == 1.0
    for _ in range(5):
        tail.observe(0, 10.0, 12.5, 11.0, 20.0)
    assert tail.ratio(0) == pytest.approx(1.1)


def test_levels_without_recent_frames_borrow_the_pooled_ratio():
    # adapt_rate 0: the quantile level stays 0.9, so the ratios below are the window's.
    tail = TailEstimator(quantile=0.9, min_pooled=5, min_level=10, adapt_rate=0.0, warmup=0)
    assert tail.ratio(3) == tail.prior_ratio
    for _ in range(8):
        tail.observe(0, 10.0, 12.0, 15.0, 20.0)  # 1.5x
    assert tail.ratio(2) == pytest.approx(1.5)  # pooled, level 2 never ran
    assert tail.miss_rate == 0.0
    tail.observe(0, 10.0, 12.0, 25.0, 20.0)
    assert tail.miss_rate == pytest.approx(1 / 9)
    tail.observe(1, math.nan, 1.0, 5.0, 20.0)  # unusable: ignored
    assert tail.frames == 9


class _Latency:
    predicts_this_host = True

    def __init__(self, medians):
        self.medians = medians

    def predict_all(self, configs, input_hw):
        return self.medians

    def observe(self, config, input_hw, ms):
        pass


def test_selector_uses_the_quantile_and_reports_infeasible_budgets():
    latency = _Latency([40.0, 25.0, 10.0])
    tail = TailEstimator(quantile=0.97, min_pooled=5, warmup=0)
    arbiter = BudgetArbiter(3, budget_ms=45.0)
    c = Controller(latency, ["a", "b", "c"], (8, 8), arbiter, LevelSelector(3, 0), tail)
    # Frames run 1.3x their median: level 0 (40 -> 52 ms) no longer fits a 45 ms budget.
    for _ in range(10):
        plan = c.plan(0.0)
        c.observe(plan, plan.predicted_ms[plan.level] * 1.3)
    plan = c.plan(0.0)
    # All ratios are 1.3; the prior (1.25) missed the first frames, so the adapted level is
    # above 1: the window's largest ratio, scaled.
    assert tail.level_in_use > 1.0
    assert plan.level == 1 and plan.quantile_ms[0] == pytest.approx(52.0 * tail.level_in_use)
    arbiter.update(budget_ms=5.0)
    plan = c.plan(0.0)
    assert not plan.feasible and plan.level == 2 and c.infeasible_frames == 1


def test_models_of_other_chips_are_compared_by_their_own_predictions():
    latency = _Latency([0.4, 0.2])
    latency.predicts_this_host = False
    c = Controller(
        latency, ["a", "b"], (8, 8), BudgetArbiter(2, budget_ms=0.3), LevelSelector(2, 0)
    )
    plan = c.plan(0.0)
    assert plan.quantile_ms == [0.4, 0.2] and plan.level == 1
    c.observe(plan, 30.0)  # host time: no lesson for a GV100 model, but a miss
    assert c.tail.frames == 0 and c.tail.miss_rate == 1.0


def test_miss_feedback_gives_back_margin_while_misses_stay_under_target():
    # Level 0's median (40 ms) fits a 45 ms budget but its p97 (1.3 x 40) does not.
    latency = _Latency([40.0, 25.0, 10.0])
    tail = TailEstimator(quantile=0.97, min_pooled=5, warmup=0, adapt_rate=0.0)
    arbiter = BudgetArbiter(3, budget_ms=45.0)
    c = Controller(latency, ["a", "b", "c"], (8, 8), arbiter, LevelSelector(3, 0), tail)
    for _ in range(10):
        plan = c.plan(0.0)
        c.observe(plan, plan.predicted_ms[plan.level] * 1.3)
    assert c.plan(0.0).level == 1 and c.slack == 0.0  # off by default
    c.miss_feedback = 0.1
    levels = []
    for _ in range(200):
        plan = c.plan(0.0)
        levels.append(plan.level)
        c.observe(plan, plan.predicted_ms[plan.level] * 1.3)  # 32.5 ms: never late
    # +0.003 per frame on time, up to 0.5: level 0 compared at 46 ms, still over 45.
    assert c.slack == pytest.approx(0.5) and set(levels) == {1}
    assert c.plan(0.0).quantile_ms[0] == pytest.approx(52.0)  # reported: calibrated
    arbiter.update(budget_ms=52.0)  # the selector moves up with 10% to spare
    plan = c.plan(0.0)
    assert plan.level == 0
    c.observe(plan, 53.0)  # late: one miss takes back 0.097
    assert c.slack == pytest.approx(0.5 - 0.097)
    arbiter.update(budget_ms=46.5)  # 46 ms fitted; 40 + 12 x 0.597 = 47.2 does not
    assert c.plan(0.0).level == 1
    # Frames of a fixed level teach the latency model, not the slack.
    arbiter.mode, arbiter.skip_level = "fixed", 2
    plan = c.plan(0.0)
    c.observe(plan, 1000.0)
    assert c.slack == pytest.approx(0.5 - 0.097)
    # Feedback off: the slack left over does not count.
    arbiter.mode, c.miss_feedback = "auto", 0.0
    assert c.selection_quantiles([40.0], [52.0]) == [52.0]
