# SPDX-License-Identifier: Apache-2.0
"""The shipped default model (CamVid SegFormer-B0) and its calibrated skip-level table."""

from pathlib import Path

import pytest
import torch

from dynvit_ros.engine.checkpoint import load_model
from dynvit_ros.engine.levels import LevelTable
from dynvit_ros.training import camvid
from dynvit_ros.training.evaluate import evaluate_miou

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "segformer_b0_camvid.safetensors"
LEVELS = REPO / "config" / "segformer_b0_camvid.levels.yaml"


@pytest.fixture(scope="module")
def shipped():
    model, meta = load_model(MODEL)
    return model, meta, LevelTable.load(LEVELS)


def test_weights_are_small_fp16_with_metadata(shipped):
    model, meta, _ = shipped
    assert MODEL.stat().st_size < 10e6
    assert (
        meta.variant == "b0" and meta.num_classes == 11 and meta.class_names == camvid.CLASS_NAMES
    )
    assert len(meta.palette) == 11 and meta.input_size == [352, 480]
    assert "CC BY-NC 4.0" in meta.provenance["data_license"]
    assert meta.provenance["training_command"].startswith("python -m dynvit_ros.train")


def test_level_table_is_ordered_and_fits_the_model(shipped):
    model, meta, table = shipped
    # Level 0 is the most accurate configuration, which need not be the full model.
    assert len(table) >= 3
    accuracy = [lv.accuracy for lv in table]
    assert accuracy == sorted(accuracy, reverse=True)
    for level in table:
        level.config.validate(model.variant.depths)
    latency = [lv.latency_ms for lv in table]
    assert latency == sorted(latency, reverse=True)
    assert all(lv.accuracy is not None and lv.gmacs is not None for lv in table)
    assert table.info["input_hw"] == meta.input_size


def test_level_0_reproduces_the_table_on_camvid_val(shipped):
    root = camvid.find_root()
    if root is None:
        pytest.skip("CamVid not found at ../shared/data/CamVid: the accuracy check needs it")
    model, meta, table = shipped
    torch.set_num_threads(2)
    val = camvid.load_split(root, "val")
    miou = evaluate_miou(model, val, meta.input_size, meta.mean, meta.std, table[0].config)
    assert abs(miou - table[0].accuracy) < 0.5
