# SPDX-License-Identifier: Apache-2.0
"""The profiled model with a synthetic clock: cache keys, staleness, online correction.

No wall time is asserted: ``measure`` is replaced by a deterministic function.
"""

import json
import math

import pytest
import torch

from dynvit_ros.engine.model import build_segformer
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.latency import profiled as profiled_module
from dynvit_ros.latency.base import LatencyContext, LatencyModelError
from dynvit_ros.latency.profiled import ProfiledLatencyModel

HW = (64, 96)
LEVELS = [
    FULL,
    SkipConfig(name="no-dw", skip_dwconv=[(0, 1), (1, 1)]),
    SkipConfig(name="drop4", decoder_drop=[3]),
    SkipConfig(name="half", input_scale=0.5),
]
TRUE_MS = {LEVELS[0]: 40.0, LEVELS[1]: 34.0, LEVELS[2]: 30.0, LEVELS[3]: 12.0}


class Synthetic(ProfiledLatencyModel):
    """Times come from TRUE_MS; every call is counted."""

    calls = 0

    def measure(self, config, input_hw):
        type(self).calls += 1
        return TRUE_MS[config]


@pytest.fixture(scope="module")
def model():
    return build_segformer("b0", 19)


@pytest.fixture
def make(model, tmp_path):
    def build(**options):
        Synthetic.calls = 0
        opts = {
            "cache_dir": str(tmp_path),
            "threads": 1,
            "warmup": 1,
            "repeats": 3,
            "progress": False,
        }
        opts.update(options)
        model_id = opts.pop("model_id", "ckpt-a")
        return Synthetic(LatencyContext(model, LEVELS, HW, opts, model_id=model_id))

    return build


def test_calibration_then_cache_hit(make):
    first = make()
    assert first.calibrated and Synthetic.calls == len(LEVELS) * (1 + 3)
    assert [first.predict(c, HW) for c in LEVELS] == [TRUE_MS[c] for c in LEVELS]
    stored = json.loads(first.cache_path.read_text())
    assert stored["key"]["variant"] == "b0" and stored["key"]["threads"] == 1
    assert stored["key"]["torch"] == torch.__version__ and stored["key"]["cpu"]
    second = make()
    assert not second.calibrated and Synthetic.calls == 0
    assert second.table == first.table


@pytest.mark.parametrize(
    "change",
    [
        {"threads": 2},
        {"model_id": "ckpt-b"},
        {"call": "forward"},
        {"recalibrate": True},
    ],
)
def test_changed_key_recalibrates(make, change):
    make()
    again = make(**change)
    assert again.calibrated and Synthetic.calls > 0


def test_stale_file_recalibrates(make, tmp_path, monkeypatch):
    path = tmp_path / "fixed.json"
    make(cache_file=str(path))
    assert not make(cache_file=str(path)).calibrated
    monkeypatch.setattr(torch, "__version__", "0.0-other")
    assert make(cache_file=str(path)).calibrated
    monkeypatch.setattr(profiled_module, "cpu_model", lambda: "another CPU")
    assert make(cache_file=str(path)).calibrated
    monkeypatch.setattr(profiled_module, "allocator_settings", lambda: {"mmap_threshold": 1 << 25})
    assert make(cache_file=str(path)).calibrated
    path.write_text("{not json")
    assert make(cache_file=str(path)).calibrated


def run(model, frames, factor, per_level=None):
    """Feed ``frames`` synthetic frames cycling through the levels; return the relative errors."""
    errors = []
    for i in range(frames):
        config = LEVELS[i % len(LEVELS)]
        truth = TRUE_MS[config] * factor * (per_level or {}).get(config, 1.0)
        errors.append(model.predict(config, HW) / truth - 1.0)
        model.observe(config, HW, truth)
    return errors


@pytest.mark.parametrize("factor", [2.0, 0.5, 3.0])
def test_load_step_shifts_every_level_within_a_few_frames(make, factor):
    model = make()
    assert max(map(abs, run(model, 8, 1.0))) < 1e-9
    errors = run(model, 12, factor)
    recovered = next(i for i, e in enumerate(errors) if all(abs(x) <= 0.10 for x in errors[i:]))
    assert recovered <= 5, errors
    # Every level, including ones not seen since the step, is now predicted at the new load.
    for config in LEVELS:
        assert model.predict(config, HW) == pytest.approx(TRUE_MS[config] * factor, rel=0.05)


def test_one_outlier_frame_moves_predictions_boundedly(make):
    model = make()
    run(model, 8, 1.0)
    model.observe(LEVELS[0], HW, 10 * TRUE_MS[LEVELS[0]])
    assert model.load_factor < math.exp(0.5 * 0.5) + 1e-9
    errors = run(model, 8, 1.0)
    assert all(abs(e) <= 0.10 for e in errors[4:])


def test_per_level_bias_is_learned_without_disturbing_the_others(make):
    model = make()
    bias = {LEVELS[3]: 1.25}
    errors = run(model, 400, 1.0, bias)
    assert all(abs(e) <= 0.05 for e in errors[-len(LEVELS) :])
    assert model.predict(LEVELS[3], HW) == pytest.approx(1.25 * TRUE_MS[LEVELS[3]], rel=0.05)
    assert model.predict(LEVELS[0], HW) == pytest.approx(TRUE_MS[LEVELS[0]], rel=0.05)


def test_invalid_measurements_are_ignored(make):
    model = make()
    for bad in (float("nan"), float("inf"), 0.0, -3.0):
        model.observe(FULL, HW, bad)
    assert model.load_factor == 1.0


def test_unknown_configs_scale_from_a_calibrated_neighbour(make):
    model = make()
    between = SkipConfig(name="dw-one", skip_dwconv=[(0, 1)])
    guess = model.predict(between, HW)
    assert TRUE_MS[LEVELS[1]] <= guess <= TRUE_MS[LEVELS[0]]
    bigger = model.predict(FULL, (128, 192))
    assert bigger > 2 * TRUE_MS[FULL]
    strict = make(unknown="error")
    with pytest.raises(LatencyModelError, match="was not calibrated"):
        strict.predict(between, HW)
    assert strict.predict(LEVELS[2], HW) == TRUE_MS[LEVELS[2]]
