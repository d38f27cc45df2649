# SPDX-License-Identifier: Apache-2.0
"""ONNX export of every skip level: equivalence with eager PyTorch, and refused graphs.

Equivalence is checked for a tiny random model over every knob (attention, dwconv and
block skipping, dropped decoder stages, coarser fuses, input scales, an input small enough
to be padded) and for every level of the shipped table with the shipped model at its
360x480 input (a few seconds per level here).
"""

from __future__ import annotations

import json
from pathlib import Path
import shutil

import numpy as np
import pytest
import torch

from dynvit_ros.engine import onnx_export as ox
from dynvit_ros.engine.checkpoint import ModelMetadata, load_model
from dynvit_ros.engine.levels import LevelTable
from dynvit_ros.engine.model import build_segformer
from dynvit_ros.engine.skip import FULL, SkipConfig

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / "models" / "segformer_b0_camvid.safetensors"
SHIPPED_LEVELS = REPO / "config" / "segformer_b0_camvid.levels.yaml"
SAMPLE_BAG = REPO / "data" / "sample_street"
HW = (64, 96)
LAST = [(s, 1) for s in range(4)]
TINY_LEVELS = [
    FULL,
    SkipConfig(name="attn-last", skip_attention=LAST),
    SkipConfig(name="attn-dw-last+fuse8", skip_attention=LAST, skip_dwconv=LAST, fuse_stride=8),
    SkipConfig(name="block-last+drop4", skip_block=[(1, 1), (3, 1)], decoder_drop=[3]),
    SkipConfig(name="s0.75+fuse16", input_scale=0.75, fuse_stride=16),
    SkipConfig(name="attn-last+s0.5+fuse32", skip_attention=LAST, input_scale=0.5, fuse_stride=32),
    SkipConfig(name="s0.3 (padded)", input_scale=0.3, decoder_drop=[2, 3]),
]


def _tiny(num_classes: int = 5, seed: int = 0, hw=HW):
    torch.manual_seed(seed)
    model = build_segformer("b0", num_classes).eval()
    # Non-trivial batch-norm statistics, so that a train-mode forward would show.
    with torch.no_grad():
        model.decoder.fuse_norm.running_mean.uniform_(-0.5, 0.5)
        model.decoder.fuse_norm.running_var.uniform_(0.5, 2.0)
    return model, ModelMetadata("b0", num_classes, input_size=list(hw))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, meta = _tiny()
    levels = LevelTable.from_configs(TINY_LEVELS)
    folder = tmp_path_factory.mktemp("graphs")
    sessions, _ = ox.ensure_graphs(model, meta, levels, HW, folder)
    return {"model": model, "meta": meta, "levels": levels, "folder": folder, "sessions": sessions}


def test_every_knob_exports_within_tolerance(tiny):
    model, levels = tiny["model"], tiny["levels"]
    frames = ox.check_frames(HW, count=3, seed=7)  # not the frames the export checked on
    for level, session in zip(levels, tiny["sessions"]):
        reference = ox.eager_logits(model, level.config, frames)
        out = ox.run_session(session, frames)
        assert out.shape == reference.shape, level.name
        assert np.abs(out - reference).max() <= ox.TOLERANCE, level.name
    index = json.loads((tiny["folder"] / "index.json").read_text())
    assert [row["name"] for row in index["levels"]] == [lv.name for lv in levels]
    assert all(row["max_abs_diff"] <= ox.TOLERANCE for row in index["levels"])


@pytest.mark.parametrize(
    "src, dst", [((240, 320), (180, 240)), ((64, 96), (19, 29)), ((7, 9), (20, 3))]
)
def test_resize_taps_are_atens(src, dst):
    # The graphs resize a level's input with ATen's taps, not an ONNX Resize, whose
    # coordinates round differently (up to 5e-4 off here at 0.75).
    import torch.nn.functional as F

    images = torch.randn(1, 3, *src, generator=torch.Generator().manual_seed(0)) * 3
    expected = F.interpolate(images, size=dst, mode="bilinear", align_corners=False)
    got = ox.resize_with_taps(
        images, ox.bilinear_taps(src[0], dst[0]), ox.bilinear_taps(src[1], dst[1])
    )
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 1e-5


def test_graph_metadata_names_level_and_model(tiny):
    session = tiny["sessions"][5]
    props = session.get_modelmeta().custom_metadata_map
    assert props["dynvit.name"] == "attn-last+s0.5+fuse32"
    assert SkipConfig.from_json(props["dynvit.config"]) == TINY_LEVELS[5]
    assert json.loads(props["dynvit.model_metadata"])["num_classes"] == 5
    key = json.loads(props[ox.KEY_PROP])
    assert key["input_hw"] == list(HW) and key["level"] == 5
    assert key["model"] == ox.model_digest(tiny["model"])
    assert session.get_inputs()[0].shape == [1, 3, *HW]
    assert session.get_outputs()[0].shape == [1, 5, 1, 2]  # 32x48 input, stride 32


def test_export_leaves_the_model_in_eval_mode_and_eager_unchanged(tmp_path):
    # Issue 14's "attn-last exports wrong logits": torch.onnx.export restores the training
    # mode of the module it is given, recursively, so a train-mode wrapper switched the model
    # to training mode and every later eager reference was off by ~10 logits.
    model, meta = _tiny(seed=3)
    levels = LevelTable.from_configs(TINY_LEVELS[:2])
    frames = ox.check_frames(HW)
    before = [ox.eager_logits(model, c, frames) for c in levels.configs]
    ox.export_all(model, meta, levels, tmp_path, frames, report=lambda line: None)
    assert not model.training
    after = [ox.eager_logits(model, c, frames) for c in levels.configs]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_a_level_that_differs_fails_loudly_and_leaves_no_graph(tmp_path):
    model, meta = _tiny()
    levels = LevelTable.from_configs([FULL, TINY_LEVELS[1]])
    lines = []
    done, errors = ox.export_all(
        model, meta, levels, tmp_path, ox.check_frames(HW), 0.0, 1, lines.append
    )
    # A tolerance of 0 cannot be met by float rounding: every level fails, each on its own.
    assert not done and len(errors) == 2 and all("exceeds 0" in e for e in errors)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))


@pytest.mark.skipif(not SHIPPED_MODEL.exists(), reason="shipped model not in this checkout")
def test_every_shipped_level_exports_within_tolerance_on_real_frames(tmp_path):
    model, meta = load_model(SHIPPED_MODEL)
    levels = LevelTable.load(SHIPPED_LEVELS)
    frames = ox.preprocess_frames(ox.load_frames([SAMPLE_BAG], 2), meta)
    assert frames.shape[-2:] == tuple(meta.input_size)
    done, errors = ox.export_all(
        model, meta, levels, tmp_path, frames, threads=2, report=lambda line: None
    )
    assert not errors
    assert [d["name"] for d in done] == [lv.name for lv in levels]
    assert max(d["max_abs_diff"] for d in done) <= ox.TOLERANCE


# -- graphs refused at load -----------------------------------------------------------------
def _specs(model, meta, levels, hw=HW):
    return ox.graph_specs(model, meta, levels, hw)


def test_cached_graphs_are_reused_without_export(tiny, monkeypatch):
    def no_export(*args, **kwargs):
        raise AssertionError("a valid cached graph was exported again")

    monkeypatch.setattr(ox, "export_level", no_export)
    sessions, _ = ox.ensure_graphs(tiny["model"], tiny["meta"], tiny["levels"], HW, tiny["folder"])
    assert len(sessions) == len(TINY_LEVELS)


@pytest.fixture
def small(tmp_path):
    """A two-level graph folder of its own (tests below damage it)."""
    model, meta = _tiny()
    levels = LevelTable.from_configs([TINY_LEVELS[6], TINY_LEVELS[5]])  # the cheapest two
    ox.ensure_graphs(model, meta, levels, HW, tmp_path)
    return model, meta, levels, tmp_path


def _rebuild(model, meta, levels, folder):
    warnings: list[str] = []
    ox.ensure_graphs(model, meta, levels, HW, folder, warn=warnings.append)
    return warnings


def test_corrupt_graph_is_refused_and_rebuilt(small):
    model, meta, levels, folder = small
    path = ox.graph_path(folder, 0)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights still parses
    path.write_bytes(bytes(data))
    warnings = _rebuild(model, meta, levels, folder)
    assert (
        len(warnings) == 1 and "SHA-256 mismatch" in warnings[0] and "level0.onnx" in warnings[0]
    )
    assert _rebuild(model, meta, levels, folder) == []

    path.write_bytes(b"not an onnx graph")  # and a sidecar that agrees with the damage
    side = path.with_suffix(".json")
    info = json.loads(side.read_text())
    side.write_text(json.dumps({**info, "sha256": ox.file_digest(path)}))
    warnings = _rebuild(model, meta, levels, folder)
    assert len(warnings) == 1 and "cannot be loaded" in warnings[0]
    assert ox.check_graph(path, _specs(model, meta, levels)[0]) is None


def _transplant(source: Path, level: int, folder: Path, as_level: int = None) -> None:
    as_level = level if as_level is None else as_level
    for suffix in (".onnx", ".json"):
        shutil.copy(
            ox.graph_path(source, level).with_suffix(suffix),
            ox.graph_path(folder, as_level).with_suffix(suffix),
        )


@pytest.mark.parametrize(
    "other, reason",
    [
        ({"seed": 1}, "is from another model"),
        ({"num_classes": 7}, "has 7 classes, the model 5"),
        ({"hw": (96, 128)}, "takes input [96, 128], the model runs at [64, 96]"),
    ],
)
def test_graph_of_another_model_size_or_class_count_is_refused(
    small, tmp_path_factory, other, reason
):
    model, meta, levels, folder = small
    other_model, other_meta = _tiny(**other)
    other_hw = tuple(other_meta.input_size)
    source = tmp_path_factory.mktemp("other")
    ox.ensure_graphs(
        other_model, other_meta, LevelTable.from_configs([levels[0].config]), other_hw, source
    )
    _transplant(source, 0, folder)
    assert reason in ox.check_graph(ox.graph_path(folder, 0), _specs(model, meta, levels)[0])
    warnings = _rebuild(model, meta, levels, folder)
    assert len(warnings) == 1 and reason in warnings[0]
    assert ox.check_graph(ox.graph_path(folder, 0), _specs(model, meta, levels)[0]) is None


def test_graph_of_another_level_or_tool_is_refused(small):
    model, meta, levels, folder = small
    specs = _specs(model, meta, levels)
    _transplant(folder, 1, folder, as_level=0)
    assert "is level 1" in ox.check_graph(ox.graph_path(folder, 0), specs[0])

    foreign = folder / "foreign.onnx"
    with pytest.warns(DeprecationWarning):  # the TorchScript exporter says it is deprecated
        torch.onnx.export(
            torch.nn.Conv2d(3, 5, 1).eval(), (torch.zeros(1, 3, *HW),), str(foreign), dynamo=False
        )
    assert "carries no dynvit_ros key" in ox.check_graph(foreign, specs[0])
    assert ox.check_graph(folder / "missing.onnx", specs[0]) == "does not exist"
