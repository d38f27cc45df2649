# SPDX-License-Identifier: Apache-2.0
"""Backends: onnxruntime beside torch in the runtime, the node's parameter, refusals,
and the profiled latency model timing the backend the runtime uses."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from dynvit_ros.engine.backends import (
    BACKENDS,
    BackendError,
    OnnxRuntimeBackend,
    TorchBackend,
    load_backend,
)
from dynvit_ros.engine.runtime import SegmentationRuntime
from dynvit_ros.engine.skip import SkipConfig
from dynvit_ros.latency.base import LatencyContext
from dynvit_ros.latency.profiled import ProfiledLatencyModel


@pytest.fixture(scope="module")
def runtimes(tiny_model, tmp_path_factory):
    graphs = tmp_path_factory.mktemp("graphs")
    ort = SegmentationRuntime.load(
        tiny_model["model_path"],
        tiny_model["levels_path"],
        1,
        backend="onnxruntime",
        graph_dir=graphs,
    )
    ref = SegmentationRuntime.load(tiny_model["model_path"], tiny_model["levels_path"], 1)
    return ort, ref, graphs


def test_onnxruntime_masks_agree_with_torch_at_every_level(runtimes):
    ort, ref, _ = runtimes
    assert isinstance(ort.backend, OnnxRuntimeBackend) and isinstance(ref.backend, TorchBackend)
    rng = np.random.default_rng(0)
    for level in range(len(ort.levels)):
        for shape in ((120, 160, 3), (90, 171, 3)):  # the input size, and a resized frame
            rgb = rng.integers(0, 256, shape, dtype=np.uint8)
            a, b = ort.infer(rgb, level), ref.infer(rgb, level)
            assert a.mask.shape == shape[:2] and a.macs == b.macs and a.config == b.config
            assert (a.mask == b.mask).mean() >= 0.999, (level, shape)


def test_sessions_exist_before_the_first_frame(runtimes):
    ort, _, graphs = runtimes
    configs = set(ort.levels.configs)
    assert set(ort.backend._sessions) == configs
    assert ort.backend.folder == graphs and len(list(graphs.glob("level*.onnx"))) == len(configs)
    assert ort.backend.describe() == {
        "name": "onnxruntime",
        "version": ort.backend.version,
        "threads": 1,
    }


def test_onnxruntime_backend_refuses_what_it_has_no_graph_for(runtimes):
    backend = runtimes[0].backend
    with pytest.raises(ValueError, match="no graph for configuration"):
        backend.forward(torch.zeros(1, 3, 120, 160), SkipConfig(name="other", input_scale=0.9))
    with pytest.raises(ValueError, match=r"graphs take \(1, 3, 120, 160\)"):
        backend.forward(torch.zeros(1, 3, 60, 80), runtimes[0].levels[0].config)


def test_unknown_backend_is_refused(tiny_model):
    with pytest.raises(BackendError, match="unknown backend 'tensorrt'"):
        SegmentationRuntime.load(tiny_model["model_path"], backend="tensorrt")


def test_missing_onnxruntime_is_a_clear_error(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    rt = SegmentationRuntime.load(tiny_model["model_path"], tiny_model["levels_path"])
    with pytest.raises(BackendError, match="pip install 'onnxruntime") as info:
        load_backend("onnxruntime", rt.model, rt.metadata, rt.levels, rt.input_hw, 1, tmp_path)
    assert "set backend to 'torch'" in str(info.value)
    assert not list(tmp_path.iterdir())  # refused before anything was exported


def test_default_graph_cache_is_keyed_and_reused(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = SegmentationRuntime.load(
        tiny_model["model_path"], tiny_model["levels_path"], 1, backend="onnxruntime"
    )
    folder = first.backend.folder
    assert folder.parent == tmp_path / "dynvit_ros" / "onnx"
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("level*.onnx")}
    again = SegmentationRuntime.load(
        tiny_model["model_path"], tiny_model["levels_path"], 1, backend="onnxruntime"
    )
    assert again.backend.folder == folder
    assert {p: p.stat().st_mtime_ns for p in folder.glob("level*.onnx")} == stamps
    # Another level table or input size is another folder (the key holds the weights too).
    from dynvit_ros.engine import onnx_export as ox
    from dynvit_ros.engine.levels import generic_ladder

    rt = first
    key = ox.folder_key(ox.graph_specs(rt.model, rt.metadata, rt.levels, rt.input_hw))
    assert folder.name == key
    others = [
        ox.graph_specs(rt.model, rt.metadata, generic_ladder(), rt.input_hw),
        ox.graph_specs(rt.model, rt.metadata, rt.levels, (96, 128)),
    ]
    assert all(ox.folder_key(specs) != key for specs in others)


# -- profiled latency per backend -----------------------------------------------------------
class CountingBackend(TorchBackend):
    name = "counting"

    def __init__(self, model):
        super().__init__(model)
        self.version = "0.1"
        self.calls = 0

    def forward(self, images, config):
        self.calls += 1
        return super().forward(images, config)


def test_profiled_times_the_given_backend_and_keys_its_cache_on_it(runtimes, tmp_path):
    ort, ref, _ = runtimes
    options = {"cache_dir": str(tmp_path), "warmup": 1, "repeats": 2, "progress": False}

    def profiled(backend):
        extra = {"backend": backend} if backend is not None else {}
        context = LatencyContext(
            ref.model, ref.levels.configs, ref.input_hw, {**options, **extra}, model_id="m"
        )
        return ProfiledLatencyModel(context)

    counting = CountingBackend(ref.model)
    model = profiled(counting)
    assert counting.calls == 3 * len(ref.levels) and model.calibrated
    assert model.cache_key["backend"] == {"name": "counting", "version": "0.1"}
    assert "counting 0.1" in model.target

    on_ort = profiled(ort.backend)
    assert on_ort.calibrated  # another backend: not the counting backend's timings
    assert on_ort.cache_key["backend"]["name"] == "onnxruntime"
    assert profiled(ort.backend).calibrated is False  # its own cache entry is reused
    assert profiled(None).cache_key["backend"] == {"name": "torch", "version": torch.__version__}


# -- the node's parameter -------------------------------------------------------------------
def test_backend_is_a_configure_time_node_parameter():
    from dynvit_ros.ros.segmenter import PARAMETERS, UNCONFIGURED_ONLY

    spec = PARAMETERS["backend"]
    assert spec.default in BACKENDS and tuple(spec.choices) == BACKENDS
    assert "backend" in UNCONFIGURED_ONLY


def test_segmenter_runs_and_times_the_onnxruntime_backend(segmenter_params):
    from dynvit_ros.ros.segmenter import Segmenter

    params = segmenter_params(num_threads=1, backend="onnxruntime")
    seg = Segmenter.load(params, warn=lambda line: None)
    assert seg.runtime.backend.name == "onnxruntime"
    assert seg.latency_model.backend is seg.runtime.backend
    assert seg.latency_model.cache_key["backend"]["name"] == "onnxruntime"
    out = seg.run(np.zeros((120, 160, 3), np.uint8), now=0.0)
    assert out.mask.shape == (120, 160) and out.stats["measured_ms"] > 0
