# SPDX-License-Identifier: Apache-2.0
"""Streaming-aware level choice: lag profiles, scene change, the choice and the controller."""

import math

import numpy as np
import pytest

from dynvit_ros.budget.arbiter import BudgetArbiter
from dynvit_ros.budget.controller import Controller
from dynvit_ros.budget.policy import LevelSelector
from dynvit_ros.budget.streaming import (
    SceneChange,
    StreamingChoice,
    lag_profile,
    streaming_value,
)
from dynvit_ros.budget.tail import TailEstimator


def test_a_gate_makes_a_level_process_every_other_frame():
    p = lag_profile(20.0, 33.3, min_stride=2)
    assert p.stride == pytest.approx(2.0) and sorted(set(p.lags)) == [0, 1]
    assert p.busy == pytest.approx(0.3, abs=0.01)


def test_a_level_that_keeps_up_is_never_stale():
    p = lag_profile(20.0, 33.3)
    assert set(p.lags) == {0} and p.stride == 1.0 and p.busy == pytest.approx(0.6, abs=0.01)


def test_a_level_twice_the_period_processes_every_other_frame():
    # Frames 0, 2, 4, ... are processed, each published as the one two frames later arrives:
    # scored at the next arrival, frame 2j+1 has frame 2j's mask (lag 1), frame 2j+2 too (lag 2).
    p = lag_profile(66.6, 33.3)
    assert p.stride == pytest.approx(2.0) and sorted(set(p.lags)) == [1, 2]
    assert p.busy == pytest.approx(1.0, abs=0.01)


def test_streaming_value_discounts_stale_masks():
    fresh, slow = lag_profile(20.0, 33.3), lag_profile(66.6, 33.3)
    assert streaming_value(60.0, fresh, 0.1) == pytest.approx(60.0)
    assert streaming_value(60.0, slow, 0.1) == pytest.approx(60.0 * (0.9 + 0.81) / 2, rel=0.02)
    assert streaming_value(60.0, slow, 0.0) == pytest.approx(60.0)


def test_scene_change_learns_from_masks_of_one_level():
    rng = np.random.default_rng(0)
    scene = SceneChange(prior=0.5, alpha=0.5, grid=1)
    mask = rng.integers(0, 5, (40, 40))
    for i in range(20):
        scene.observe(0, 2 * i, mask)  # a still scene, two frames apart
    assert scene.rate < 0.01 and scene.pairs == 19
    scene.observe(1, 50, rng.integers(0, 5, (40, 40)))  # another level: not compared
    assert scene.pairs == 19


def test_choice_trades_staleness_for_accuracy_at_a_fast_camera():
    choice = StreamingChoice([60.0, 50.0], hysteresis_frames=0)
    # 30 Hz camera, budget the whole period; level 0 takes ~1.45 periods, level 1 half of one.
    medians, quantiles = [48.0, 16.0], [55.0, 18.0]
    still = choice.plan(medians, quantiles, 33.3, 33.3, change=0.01)
    assert still.level == 0 and still.deadline_ms == pytest.approx(2 * 33.3)
    assert still.min_stride == 2  # at 1.44 periods a gate of 2 beats back to back
    choice.reset()
    busy_scene = choice.plan(medians, quantiles, 33.3, 33.3, change=0.3)
    assert busy_scene.level == 1 and busy_scene.deadline_ms == pytest.approx(33.3)


def test_budget_caps_compute_by_gating_slow_levels():
    choice = StreamingChoice([60.0, 50.0], hysteresis_frames=0)
    # Budget 20 ms per 33 ms frame: level 0 (50 ms) fits only every third frame (busy 16.7 ms
    # per frame), never back to back (busy 33 ms per frame).
    still = choice.plan([50.0, 16.0], [55.0, 18.0], 20.0, 33.3, 0.0)
    # Its deadline: three budgets with the cap's 10% tolerance (three periods at most).
    assert (still.level, still.min_stride) == (0, 3) and still.deadline_ms == pytest.approx(66)
    choice.reset()
    moving = choice.plan([50.0, 16.0], [55.0, 18.0], 20.0, 33.3, 0.1)
    assert (moving.level, moving.min_stride) == (1, 1) and moving.fits == [True, True]
    # Nothing fits: the option that overruns its deadline least.
    plan = choice.plan([50.0, 16.0], [55.0, 25.0], 5.0, 33.3, 0.0)
    assert not plan.feasible


def test_hysteresis_and_unusable_predictions():
    choice = StreamingChoice([60.0, 50.0], hysteresis_frames=2)
    assert choice.plan([50.0, 16.0], [55.0, 18.0], 10.0, 33.3, 0.0).level == 1
    assert choice.plan([20.0, 16.0], [22.0, 18.0], 33.3, 33.3, 0.0).level == 1  # 1 of 2
    assert choice.plan([20.0, 16.0], [22.0, 18.0], 33.3, 33.3, 0.0).level == 0
    plan = choice.plan([math.inf, 16.0], [math.inf, 18.0], 33.3, 33.3, 0.0)
    assert plan.level == 1 and plan.values[0] == -math.inf
    with pytest.raises(ValueError):
        StreamingChoice([60.0, float("nan")])


def test_realised_mask_ages_correct_a_level_that_falls_behind_its_promise():
    # Level 0 (60 points, 48 ms) beats level 1 (59 points, 16 ms) on the model at a
    # still-ish scene; its masks then arrive older than the profile promised, and the
    # choice moves to level 1. The correction stays when the choice is reset.
    choice = StreamingChoice([60.0, 59.0], hysteresis_frames=0, correction_rate=0.2)
    medians, quantiles = [48.0, 16.0], [55.0, 18.0]
    first = choice.plan(medians, quantiles, 33.3, 33.3, change=0.01)
    assert first.level == 0 and choice.correction == [1.0, 1.0]
    for _ in range(20):
        choice.realised(6, 0.01)  # six frames old instead of one or two
    assert choice.correction[0] < 0.97 and choice.realised_frames == [20, 0]
    assert choice.plan(medians, quantiles, 33.3, 33.3, change=0.01).level == 1
    choice.reset()
    assert choice.plan(medians, quantiles, 33.3, 33.3, change=0.01).level == 1
    # A level whose masks are as fresh as promised keeps its value; bad reports are ignored.
    for _ in range(50):
        choice.realised(0, 0.01)
    assert choice.correction[1] == pytest.approx(1.0)
    choice.realised(float("nan"), 0.01)
    choice.realised(-1, 0.01)
    assert choice.realised_frames == [20, 50]
    low, high = choice.correction_bounds
    assert low <= min(choice.correction) and max(choice.correction) <= high


class _Fixed:
    """A latency plugin with fixed predictions (the controller's input)."""

    predicts_this_host = True

    def __init__(self, ms):
        self.ms = ms

    def predict_all(self, configs, input_hw):
        return list(self.ms)

    def observe(self, config, input_hw, measured_ms):
        pass


def _streaming_controller(arbiter, medians, accuracy) -> Controller:
    """Two levels with fixed predictions, a 1.1 tail and no hysteresis."""
    return Controller(
        _Fixed(medians),
        [None, None],
        (240, 320),
        arbiter,
        LevelSelector(2, hysteresis_frames=0),
        TailEstimator(prior_ratio=1.1),
        StreamingChoice(accuracy, hysteresis_frames=0),
    )


def test_controller_uses_the_streaming_choice_only_with_a_camera_period():
    arbiter = BudgetArbiter(2, 100.0, 2.0, "auto", 0, 33.3)
    controller = _streaming_controller(arbiter, [48.0, 16.0], [60.0, 50.0])
    deadline_mode = controller.plan(0.0)
    assert deadline_mode.level == 1 and not deadline_mode.streaming
    assert deadline_mode.frame_deadline_ms == pytest.approx(33.3)
    streaming = controller.plan(0.0, period_ms=33.3, change=0.01)
    assert streaming.level == 0 and streaming.streaming
    assert streaming.frame_deadline_ms == pytest.approx(66.6)


def test_a_level_just_under_the_period_that_scatters_is_staler_than_its_median_says():
    # Median 92 ms at a 100 ms camera: on its median every mask is out before the next
    # frame; frame times scattered like a busy node's put a share of them a frame late.
    choice = StreamingChoice([62.8, 61.2], hysteresis_frames=0)
    medians, quantiles = [92.0, 60.0], [99.0, 70.0]
    at_median = choice.plan(medians, quantiles, 100.0, 100.0, 0.05)
    spread = [0.85, 0.95, 1.0, 1.1, 1.25]  # two frames in five over the period
    scattered = choice.plan(medians, quantiles, 100.0, 100.0, 0.05, spread=spread)
    assert at_median.level == 0 and at_median.values[0] == pytest.approx(62.8)
    assert scattered.values[0] == pytest.approx(62.8 * (3 + 2 * 0.95) / 5, rel=0.01)
    assert scattered.values[1] == pytest.approx(61.2)  # 75 ms at most: never late
    # Nonsense in the spread is ignored rather than trusted.
    assert choice.plan(medians, quantiles, 100.0, 100.0, 0.05, spread=[math.nan, -1.0]).values[
        0
    ] == pytest.approx(62.8)


def test_the_tails_spread_is_the_scatter_of_recent_frames():
    tail = TailEstimator(warmup=0, min_pooled=5)
    assert tail.spread() == []
    for r in (0.9, 1.0, 1.0, 1.1, 1.3):
        tail.observe(0, 100.0, 130.0, 100.0 * r, 200.0)
    low, *_, high = tail.spread()
    assert low == pytest.approx(0.94) and high == pytest.approx(1.22)


def test_one_thread_beside_a_busy_core_keeps_every_frame_within_the_monitors_share():
    from dynvit_ros.budget.share import CameraShares

    # 10 Hz camera; the monitor leaves 44% of two cores (one is busy). A level taking 75 ms
    # at two threads would use 75% of the machine per period: gated to every other frame.
    # At one thread it uses 37.5%, within the share: the monitor budgets one-thread frames
    # twice the time, and the node runs it on every frame, as a fixed level would.
    shares = CameraShares(cores=2)

    def plan(threads):
        shares.seen("", 0.0, threads=threads)
        budget = shares.budgets([""], 44.0, 5.0, 0.0, max_budget_ms=100.0)[""]
        arbiter = BudgetArbiter(2, 100.0, 2.0)
        arbiter.accept(budget, -1, "load_monitor", 0.0, 0.0)
        controller = _streaming_controller(arbiter, [75.0, 30.0], [61.0, 52.0])
        return budget, controller.plan(
            0.0, period_ms=100.0, change=0.05, other_cpu=0.5, cpu_share=threads / 2
        )

    budget, two = plan(2)
    assert budget == pytest.approx(44.0) and (two.level, two.min_stride) == (0, 2)
    budget, one = plan(1)
    assert budget == pytest.approx(88.0) and (one.level, one.min_stride) == (0, 1)
    assert one.frame_deadline_ms == pytest.approx(96.8)  # 88 ms x 1.1 < the period


@pytest.fixture
def gated_slot():
    """A started FrameSlot recording (frame, dropped) and signalling each frame it takes."""
    import threading

    from dynvit_ros.ros.segmenter import FrameSlot

    done, finished = [], threading.Event()
    slot = FrameSlot(lambda msg, dropped: (done.append((msg, dropped)), finished.set()))
    slot.start()
    yield slot, done, finished
    slot.stop()


def test_frame_slot_takes_no_frame_before_the_gate_opens(gated_slot):
    import time

    slot, done, finished = gated_slot
    t0 = time.monotonic()
    slot.hold_until(t0 + 0.3)
    slot.put("a")
    slot.put("b")  # replaces "a" while the gate is shut
    assert finished.wait(5.0)
    assert time.monotonic() - t0 >= 0.29 and done == [("b", 1)]


def test_frame_slot_skips_a_frame_that_came_before_the_gate(gated_slot):
    import time

    slot, done, finished = gated_slot
    # A level faster than the camera with a stride of 2: the frame that came during the
    # gate is skipped, not taken late; the next one is taken as soon as it arrives.
    t0 = time.monotonic()
    slot.hold_until(t0 + 0.2, grace=5.0)
    slot.put("during the gate")
    time.sleep(0.3)
    assert done == []
    slot.put("after the gate")
    assert finished.wait(1.0)
    assert done == [("after the gate", 1)] and time.monotonic() - t0 < 2.0
    # With no newer frame (the camera stopped), the skipped one is taken after the grace.
    finished.clear()
    t1 = time.monotonic()
    slot.hold_until(t1 + 0.1, grace=0.2)
    slot.put("last frame")
    assert finished.wait(5.0)
    assert time.monotonic() - t1 >= 0.29 and done[-1] == ("last frame", 0)


def test_arrival_period_follows_a_rate_change():
    from dynvit_ros.budget.streaming import ArrivalPeriod

    period = ArrivalPeriod(window=10, min_frames=3)
    assert period.period_ms() == 0.0
    t = 0.0
    for _ in range(20):
        t += 1 / 30
        period.arrived(t)
    assert period.period_ms() == pytest.approx(33.3, abs=0.1)
    for _ in range(10):  # a window later, at the new rate only
        t += 0.1
        period.arrived(t)
    assert period.period_ms() == pytest.approx(100.0)


def test_arrival_period_is_not_fooled_by_bunched_arrivals_or_a_pause():
    from dynvit_ros.budget.streaming import ArrivalPeriod

    # A busy node takes its messages in bunches: three at once, then a long gap. The camera
    # still sends every 33.3 ms; the median interval (5 ms) would say 200 Hz.
    period = ArrivalPeriod(window=30, min_frames=5)
    t = 0.0
    for k in range(31):
        t += 0.005 if k % 3 else 0.09
        period.arrived(t)
    assert period.period_ms() == pytest.approx(33.3, abs=0.5)
    t += 2.0  # the camera paused for 2 s
    period.arrived(t)
    for _ in range(5):
        t += 1 / 30
        period.arrived(t)
    assert period.period_ms() == pytest.approx(33.3, abs=0.5)


def test_contention_is_not_counted_twice():
    """The budget already leaves out what a busy process takes; the same process stretches
    the node's frames. With the stretch known, the cap compares uncontended compute and the
    deadline stretches alike, so the accurate level still runs on every frame.
    """
    from dynvit_ros.budget.streaming import StreamingChoice

    choice = StreamingChoice([60.0, 50.0], hysteresis_frames=0)
    args = ([80.0, 30.0], [90.0, 35.0], 45.0, 100.0, 0.05)
    counted_twice = choice.plan(*args)
    assert (counted_twice.level, counted_twice.min_stride) != (0, 1)
    choice.reset()
    once = choice.plan(*args, stretch=2.0)
    assert (once.level, once.min_stride) == (0, 1)
    assert once.deadline_ms == pytest.approx(99.0)  # 45 ms x 2 x 1.1, within the period
    choice.reset()
    assert choice.plan(*args, stretch=float("nan")) == counted_twice  # unknown: no stretch


def test_a_budget_just_under_the_period_lets_a_level_keep_up():
    # 10 Hz camera, a budget of 94 ms (the monitor's margin), a level whose p97 is 98 ms:
    # its masks are out before the next frame, so it runs on every frame, not every other.
    from dynvit_ros.budget.streaming import StreamingChoice

    choice = StreamingChoice([61.0, 55.0], hysteresis_frames=0)
    plan = choice.plan([80.0, 40.0], [98.0, 45.0], 94.0, 100.0, 0.1)
    assert (plan.level, plan.min_stride) == (0, 1)
    assert plan.deadline_ms == pytest.approx(100.0)  # the tolerance stops at the period
    choice.reset()
    late = choice.plan([80.0, 40.0], [104.0, 45.0], 94.0, 100.0, 0.1)
    assert (late.level, late.min_stride) != (0, 1)


def test_per_frame_overhead_makes_masks_staler():
    from dynvit_ros.budget.streaming import StreamingChoice

    choice = StreamingChoice([60.0])
    bare = choice.plan([30.0], [31.0], 33.0, 33.3, 0.05)
    with_overhead = choice.plan([30.0], [31.0], 33.0, 33.3, 0.05, overhead_ms=8.0)
    assert bare.values[0] == pytest.approx(60.0)  # keeps up: every mask is fresh
    assert with_overhead.values[0] < bare.values[0]


def test_contention_counted_once_only_for_the_monitors_budget():
    from dynvit_ros.budget.arbiter import Decision

    model = _Fixed([48.0, 16.0])
    controller = Controller(
        model, [None, None], (240, 320), BudgetArbiter(2, 100.0, 2.0), LevelSelector(2)
    )
    topic = Decision(40.0, "topic", "auto", None)
    model.load_factor = 1.8
    # The monitor left out half the machine: up to 2x of the slowdown is already paid for.
    assert controller.contention(topic, 0.5) == pytest.approx(1.8)
    assert controller.contention(topic, 0.2) == pytest.approx(1.25)  # 1 / (1 - 0.2)
    # A budget the user set (or the fallback) left nothing out; NaN and 0 say nothing.
    assert controller.contention(Decision(40.0, "parameter", "auto", None), 0.5) == 1.0
    assert controller.contention(topic, float("nan")) == 1.0
    assert controller.contention(topic, 0.0) == 1.0
    # Threads that fit in the cores others leave wait for nobody: nothing to pay for. Those
    # that do not are stretched as above.
    assert controller.contention(topic, 0.45, cpu_share=0.5) == 1.0
    assert controller.contention(topic, 0.8, cpu_share=0.5) == pytest.approx(1.8)
    assert controller.contention(topic, 0.5, cpu_share=float("nan")) == pytest.approx(1.8)
    model.load_factor = 0.7  # faster than calibrated: no stretch
    assert controller.contention(topic, 0.5) == 1.0
    model.predicts_this_host = False  # a model of another chip measures nothing here
    assert (
        Controller(
            model, [None, None], (240, 320), BudgetArbiter(2, 100.0, 2.0), LevelSelector(2)
        ).contention(topic, 0.5)
        == 1.0
    )
