# SPDX-License-Identifier: Apache-2.0
"""The per-frame thread count: trials of other counts, switches, back-off (no ROS, no model)."""

import math

import pytest

from dynvit_ros.engine.threads import ThreadChoice, ThreadChooser, free_cores, thread_candidates


def test_candidates_are_all_one_fewer_half_and_one():
    assert thread_candidates(1) == (1,)
    assert thread_candidates(2) == (2, 1)
    assert thread_candidates(8) == (8, 7, 4, 1)
    assert thread_candidates(0) == (1,)


def test_one_count_never_probes():
    chooser = ThreadChooser([1])
    assert all(chooser.choose(float(t)) == ThreadChoice(1) for t in range(100))


def test_without_trials_only_the_ceiling_moves_the_count():
    chooser = ThreadChooser([2, 1], probe_period_s=0.0, trials=False)
    assert all(chooser.choose(float(t)) == ThreadChoice(2) for t in range(50))
    assert chooser.limit(1.0, 50.0) == 1 and chooser.choose(51.0) == ThreadChoice(1)
    assert chooser.state()["thread_probes"] == 0


class Host:
    """Frame times per thread count (ms at one level); the latency model's prediction is
    what the current count took last (a model that has learnt the current count)."""

    def __init__(self, times: dict[int, float]):
        self.times = dict(times)
        self.predicted = None

    def frame(self, chooser: ThreadChooser, now: float) -> ThreadChoice:
        choice = chooser.choose(now)
        measured = self.times[choice.threads]
        predicted = self.predicted or self.times[chooser.current]
        chooser.observe(choice, measured, predicted, now)
        if not choice.probe:
            # The latency model follows the current count within a few frames.
            self.predicted = predicted * (measured / predicted) ** 0.5
        return choice


def run(chooser, host, start, seconds, fps=20.0):
    frames = []
    for i in range(int(seconds * fps)):
        frames.append(host.frame(chooser, start + i / fps))
    return frames


def test_a_competitor_on_one_core_moves_two_threads_to_one_and_back_when_it_leaves():
    chooser = ThreadChooser([2, 1])
    host = Host({2: 36.0, 1: 53.0})  # quiet: two threads are faster
    quiet = run(chooser, host, 0.0, 10.0)
    assert chooser.current == 2
    assert sum(f.probe for f in quiet) <= 3  # periodic trials only, backing off as 1 loses
    host.times = {2: 96.0, 1: 40.0}  # a program holds one core
    burst = run(chooser, host, 10.0, 3.0)
    assert chooser.current == 1
    first_one = next(i for i, f in enumerate(burst) if f.threads == 1)
    assert first_one <= 3  # the drift in frame times starts a series at once
    series = burst[first_one : first_one + 6]  # trial, reference, three times
    assert [f.probe for f in series] == [True, False] * 3
    assert all(f.threads == 1 for f in burst[first_one + 6 :]) and chooser.switches == 1
    host.times = {2: 36.0, 1: 53.0}
    run(chooser, host, 13.0, 25.0)
    assert chooser.current == 2  # a periodic series finds two threads faster again
    assert chooser.switches == 2


def pair(chooser, now, trial_ms, reference_ms, predicted=50.0):
    trial = chooser.choose(now)
    assert trial.probe and trial.threads != chooser.current
    chooser.observe(trial, trial_ms, predicted, now)
    reference = chooser.choose(now + 0.05)
    assert reference == ThreadChoice(chooser.current)
    return chooser.observe(reference, reference_ms, predicted, now + 0.05)


def test_one_lucky_pair_does_not_switch_three_that_agree_do():
    chooser = ThreadChooser([2, 1], probe_period_s=1.0, confirm=3)
    assert chooser.choose(0.0) == ThreadChoice(2)  # the first series is due a period later
    for i in range(10):
        chooser.observe(ThreadChoice(2), 50.0, 50.0, i * 0.05)
    pair(chooser, 1.0, 35.0, 50.0)  # 30% faster: promising, another pair
    pair(chooser, 1.1, 75.0, 50.0)  # median of two: 1.1, the series ends
    assert chooser.current == 2 and chooser.switches == 0
    assert chooser.choose(1.2) == ThreadChoice(2)
    for t in (7.0, 7.1):
        assert pair(chooser, t, 35.0, 50.0) is None
    assert pair(chooser, 7.2, 35.0, 50.0) == 1
    assert chooser.current == 1 and chooser.switches == 1


def test_a_lagging_model_or_a_burst_mid_series_hits_both_sides_of_a_pair():
    chooser = ThreadChooser([2, 1], probe_period_s=1.0, confirm=1)
    assert chooser.choose(0.0) == ThreadChoice(2)
    for i in range(10):
        chooser.observe(ThreadChoice(2), 50.0, 50.0, i * 0.05)
    # Everything runs 1.6x the prediction now (the model has not caught up): the trial at
    # one thread beats the prediction's old pace but not the two-thread frame beside it.
    assert pair(chooser, 2.0, 70.0, 80.0) is None
    assert chooser.current == 2
    assert chooser.last_ratio[1] == pytest.approx(70.0 / 80.0)


def test_a_pair_within_the_gain_margin_does_not_switch():
    chooser = ThreadChooser([2, 1], min_gain=0.15)
    host = Host({2: 50.0, 1: 46.0})  # one thread 8% faster: noise-level, not worth a switch
    run(chooser, host, 0.0, 30.0)
    assert chooser.current == 2 and chooser.switches == 0
    assert chooser.last_ratio[1] == pytest.approx(46.0 / 50.0)


def test_a_losing_count_is_tried_less_and_less_often_up_to_the_cap():
    chooser = ThreadChooser([2, 1], probe_period_s=5.0, max_period_s=20.0)
    host = Host({2: 36.0, 1: 53.0})
    frames = run(chooser, host, 0.0, 120.0)
    times = [i / 20.0 for i, f in enumerate(frames) if f.probe]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[0] == pytest.approx(10.0, abs=0.1) and max(gaps) == pytest.approx(20.0, abs=0.1)
    assert len(times) <= 8


def test_trial_frames_do_not_count_as_drift_and_bad_numbers_are_ignored():
    chooser = ThreadChooser([2, 1], settle_frames=0)
    assert chooser.choose(0.0) == ThreadChoice(2)
    for t in range(10):
        chooser.observe(ThreadChoice(2), 50.0, 50.0, float(t) * 0.05)
    for bad in (math.nan, -1.0, 0.0, math.inf):
        assert chooser.observe(ThreadChoice(2), bad, 50.0, 1.0) is None
        assert chooser.observe(ThreadChoice(2), 50.0, bad, 1.0) is None
    assert chooser.choose(1.0) == ThreadChoice(2)  # no drift, no series due yet
    trial = chooser.choose(3.5)
    assert trial.probe
    chooser.observe(trial, 50.0, math.nan, 3.5)  # an unusable trial ends its series
    assert chooser.choose(3.6) == ThreadChoice(2) and chooser.current == 2


def test_state_reports_counts_trials_and_ratios():
    chooser = ThreadChooser([2, 1], probe_period_s=0.0, confirm=1)
    assert pair(chooser, 0.0, 20.0, 40.0) == 1
    state = chooser.state()
    assert state["threads"] == 1 and state["thread_counts"] == [2, 1]
    assert state["thread_probes"] == 1 and state["thread_switches"] == 1
    assert state["thread_probe_ratio"][1] == pytest.approx(0.5)
    assert math.isnan(state["thread_probe_ratio"][0])


def test_frames_use_no_more_threads_than_the_cores_others_leave_free():
    assert free_cores(0.45, 2) == pytest.approx(1.1)
    assert free_cores(float("nan"), 2) == 2.0 and free_cores(1.5, 4) == 0.0
    chooser = ThreadChooser([2, 1], probe_period_s=0.0)
    assert chooser.limit(free_cores(0.02, 2), 0.0) is None and chooser.current == 2
    # A program holding one core of two (it reads 0.4-0.5 while the node's second thread
    # takes some of its core): one thread, and no trials of two while that lasts.
    assert chooser.limit(free_cores(0.45, 2), 1.0) == 1
    assert [chooser.choose(1.0 + t).threads for t in range(10)] == [1] * 10
    assert chooser.state()["thread_ceiling"] == 1
    # A count comes back once others leave half of its core (1.5 free), not at 1.4 ...
    assert chooser.limit(1.4, 20.0) is None and chooser.current == 1
    assert chooser.limit(1.5, 21.0) == 2 and chooser.ceiling == 2
    assert chooser.state()["thread_ceiling_changes"] == 2
    # ... and is given up only once they take most of it: 1.35 free cores keep two.
    assert chooser.limit(1.35, 21.5) is None and chooser.current == 2
    # Nothing free still leaves one thread; NaN says nothing about the others.
    assert chooser.limit(0.0, 22.0) == 1
    assert chooser.limit(float("nan"), 23.0) == 2
    # A series under way ends when the ceiling moves: no trial frame of a count not allowed.
    eight = ThreadChooser(thread_candidates(8), probe_period_s=0.0)
    assert eight.choose(0.0).probe
    assert eight.limit(4.2, 0.0) == 4
    assert all(eight.choose(0.1 * t).threads <= 4 for t in range(1, 40))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"counts": []},
        {"counts": [0]},
        {"counts": [2], "min_gain": 1.5},
        {"counts": [2], "keep": 0.3, "regain": 0.5},
        {"counts": [2], "keep": 1.0},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ThreadChooser(**kwargs)


def test_the_segmenter_runs_trials_without_teaching_the_latency_model(
    segmenter_params, monkeypatch
):
    import numpy as np
    import torch

    from dynvit_ros.ros.segmenter import PARAMETERS, UNCONFIGURED_ONLY, Segmenter

    assert PARAMETERS["adaptive_threads"].default is True
    assert PARAMETERS["thread_trials"].default is False
    assert "adaptive_threads" not in UNCONFIGURED_ONLY  # switched live
    params = segmenter_params(num_threads=2, mode="fixed", thread_trials=True)
    before = torch.get_num_threads()
    try:
        seg = Segmenter.load(params, warn=lambda line: None)
        assert seg.threads.counts == (2, 1)
        seg.threads = ThreadChooser((2, 1), probe_period_s=0.0)  # a series at once
        taught = []
        monkeypatch.setattr(seg.latency_model, "observe", lambda *a: taught.append(a))
        rgb = np.zeros((120, 160, 3), np.uint8)
        out = seg.run(rgb, now=0.0)
        assert torch.get_num_threads() == 1 and taught == []
        assert out.stats["measured_ms"] > 0 and seg.tail.miss_rate in (0.0, 1.0)
        values = seg.diagnostics({}, 1.0)[2]
        assert values["thread_choice"] == "adaptive" and values["thread_probes"] == 1
        seg.apply({"adaptive_threads": False})
        assert seg.threads is None
        seg.run(rgb, now=0.1)
        assert torch.get_num_threads() == 2 and len(taught) == 1
        values = seg.diagnostics({}, 2.0)[2]
        assert values["thread_choice"] == "fixed" and values["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_the_segmenter_yields_a_core_the_load_monitor_reports_busy(segmenter_params):
    from types import SimpleNamespace

    import numpy as np
    import torch

    from dynvit_ros.ros.segmenter import Segmenter

    params = segmenter_params(num_threads=2)
    before = torch.get_num_threads()
    zero = SimpleNamespace(sec=0, nanosec=0)

    def budget(other_cpu):
        return SimpleNamespace(
            valid=True, budget_ms=40.0, pinned_level=-1, source="load_monitor",
            expires_after=zero, energy_budget_mj=0.0, frame_period_ms=100.0,
            other_cpu_fraction=other_cpu,
        )  # fmt: skip

    try:
        seg = Segmenter.load(params, warn=lambda line: None)
        seg.cores = 2
        seg.threads = ThreadChooser((2, 1), probe_period_s=1e9)
        rgb = np.zeros((120, 160, 3), np.uint8)
        seg.take_budget(budget(0.5), 0.0)
        assert seg.run(rgb, now=0.1).stats["threads"] == 1
        assert torch.get_num_threads() == 1
        seg.take_budget(budget(0.05), 0.2)
        assert seg.run(rgb, now=0.3).stats["threads"] == 2
        # A budget set by parameter is no report of the other programs: all threads.
        seg.take_budget(budget(0.5), 0.4)
        seg.apply({"budget_ms": 40.0})
        assert seg.run(rgb, now=0.5).stats["threads"] == 2
    finally:
        torch.set_num_threads(before)
