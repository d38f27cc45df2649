# SPDX-License-Identifier: Apache-2.0
"""The per-frame thread count: trials of other counts, switches, back-off (no ROS, no model)."""

import math

import pytest

from dynvit_ros.engine.threads import ThreadChoice, ThreadChooser, thread_candidates


def test_candidates_are_all_one_fewer_half_and_one():
    assert thread_candidates(1) == (1,)
    assert thread_candidates(2) == (2, 1)
    assert thread_candidates(8) == (8, 7, 4, 1)
    assert thread_candidates(0) == (1,)


def test_one_count_never_probes():
    chooser = ThreadChooser([1])
    assert all(chooser.choose(float(t)) == ThreadChoice(1) for t in range(100))


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
    assert first_one <= 3  # the drift in frame times triggers the trial at once
    settled = burst[first_one + 3 :]  # two more trials confirm the first
    assert all(f.threads == 1 for f in settled[:20]) and chooser.switches == 1
    host.times = {2: 36.0, 1: 53.0}
    run(chooser, host, 13.0, 25.0)
    assert chooser.current == 2  # the periodic trial finds two threads faster again
    assert chooser.switches == 2


def test_one_lucky_trial_does_not_switch_three_that_agree_do():
    chooser = ThreadChooser([2, 1], probe_period_s=1.0, confirm=3)
    assert chooser.choose(0.0) == ThreadChoice(2)  # the first trial is due a period later
    for i in range(10):
        chooser.observe(ThreadChoice(2), 50.0, 50.0, i * 0.05)
    trial = chooser.choose(1.0)
    assert trial == ThreadChoice(1, probe=True)
    chooser.observe(trial, 35.0, 50.0, 1.0)  # 30% faster: promising, tried again at once
    assert chooser.choose(1.05) == ThreadChoice(1, probe=True)
    chooser.observe(ThreadChoice(1, probe=True), 75.0, 50.0, 1.05)  # median of two: 1.1
    assert chooser.current == 2 and chooser.switches == 0
    assert chooser.choose(1.1) == ThreadChoice(2)  # no third trial once the median loses
    trial = chooser.choose(7.0)  # the next periodic trial starts a fresh series
    assert trial == ThreadChoice(1, probe=True)
    for t in (7.0, 7.05, 7.1):
        chooser.observe(ThreadChoice(1, probe=True), 35.0, 50.0, t)
        if t < 7.1:
            assert chooser.choose(t + 0.05) == ThreadChoice(1, probe=True)
    assert chooser.current == 1 and chooser.switches == 1


def test_trials_are_judged_against_the_current_counts_pace_not_a_lagging_model():
    chooser = ThreadChooser([2, 1], probe_period_s=1.0, confirm=1)
    assert chooser.choose(0.0) == ThreadChoice(2)
    for i in range(10):  # the model predicts 50 ms but frames take 80: it lags a slowdown
        chooser.observe(ThreadChoice(2), 80.0, 50.0, i * 0.05)
    assert chooser.pace() == pytest.approx(1.6)
    trial = chooser.choose(2.0)
    chooser.observe(trial, 70.0, 50.0, 2.0)  # faster than the model says, not than 2 threads
    assert chooser.current == 2
    assert chooser.last_ratio[1] == pytest.approx(70.0 / 80.0)


def test_a_trial_within_the_gain_margin_does_not_switch():
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


def test_probe_frames_do_not_count_as_drift_and_bad_numbers_are_ignored():
    chooser = ThreadChooser([2, 1], settle_frames=0)
    for t in range(10):
        chooser.observe(ThreadChoice(2), 50.0, 50.0, float(t) * 0.05)
    chooser.observe(ThreadChoice(1, probe=True), 80.0, 50.0, 0.6)  # slower: no switch
    assert chooser.current == 2
    for bad in (math.nan, -1.0, 0.0, math.inf):
        assert chooser.observe(ThreadChoice(2), bad, 50.0, 1.0) is None
        assert chooser.observe(ThreadChoice(2), 50.0, bad, 1.0) is None
    assert chooser.choose(1.0) == ThreadChoice(2)  # no drift, no trial due yet


def test_state_reports_counts_trials_and_ratios():
    chooser = ThreadChooser([2, 1], probe_period_s=0.0, confirm=1)
    choice = chooser.choose(0.0)
    assert choice == ThreadChoice(1, probe=True)
    assert chooser.observe(choice, 20.0, 40.0, 0.0) == 1
    state = chooser.state()
    assert state["threads"] == 1 and state["thread_counts"] == [2, 1]
    assert state["thread_probes"] == 1 and state["thread_switches"] == 1
    assert state["thread_probe_ratio"][1] == pytest.approx(0.5)
    assert math.isnan(state["thread_probe_ratio"][0])


@pytest.mark.parametrize(
    "kwargs", [{"counts": []}, {"counts": [0]}, {"counts": [2], "min_gain": 1.5}]
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ThreadChooser(**kwargs)


def test_the_segmenter_runs_trials_without_teaching_the_latency_model(
    tiny_model, monkeypatch, tmp_path
):
    import numpy as np
    import torch

    from dynvit_ros.ros.segmenter import PARAMETERS, UNCONFIGURED_ONLY, Segmenter

    assert PARAMETERS["adaptive_threads"].default is True
    assert "adaptive_threads" not in UNCONFIGURED_ONLY  # switched live
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    params = {name: spec.default for name, spec in PARAMETERS.items()}
    params.update(
        model_path=tiny_model["model_path"],
        levels_path=tiny_model["levels_path"],
        num_threads=2,
        tune_allocator=False,
        mode="fixed",
        latency_options="{warmup: 1, repeats: 1, progress: false}",
    )
    before = torch.get_num_threads()
    try:
        seg = Segmenter.load(params, warn=lambda line: None)
        assert seg.threads.counts == (2, 1)
        seg.threads = ThreadChooser((2, 1), probe_period_s=0.0)  # a trial on every frame
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
