# SPDX-License-Identifier: Apache-2.0
"""A model nobody here trained, end to end: a Hugging Face SegFormer written by ``transformers``
(and the same weights as an mmseg ``.pth``) is calibrated from a bag with the installed
``calibrate`` and served by segformer_node over DDS with that table; without a table the node
runs a generic ladder.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from ros_harness import EXE_DIR, INPUT_HW, Rig, make_frame, parse_floats

from dynvit_ros.bags.io import write_image_bag
from dynvit_ros.engine.levels import LevelTable
from dynvit_ros.engine.masks import palette_array

transformers = pytest.importorskip("transformers")

H, W = INPUT_HW
CITYSCAPES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]
# Small and quick: the HF folder carries no input size, so the model runs at 512x512.
CALIBRATE = ["--frames", "2", "--scales", "1,0.5", "--repeats", "1", "--warmup", "0"]
CALIBRATE += ["--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    import torch

    config = transformers.SegformerConfig(  # the B0 defaults
        num_labels=len(CITYSCAPES),
        id2label=dict(enumerate(CITYSCAPES)),
        label2id={n: i for i, n in enumerate(CITYSCAPES)},
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf") / "segformer-b0-cityscapes-like"
    transformers.SegformerForSemanticSegmentation(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "robot"
    frames = (make_frame(H, W, i) for i in range(4))
    return write_image_bag(path, frames, topic="/camera/image_raw", compressed=False)


def run_calibrate(model, bag, out) -> subprocess.CompletedProcess:
    """The installed executable, as a user runs it."""
    cmd = [str(EXE_DIR / "calibrate"), "--model", str(model), "--bag", str(bag)]
    cmd += ["--topic", "/camera/image_raw", "--levels-out", str(out), *CALIBRATE]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def serve(ros, model, levels, names=None):
    """Masks from segformer_node with this model and table; checks classes, colours, names."""
    from vision_msgs.msg import LabelInfo

    from dynvit_ros.ros.qos import latched

    labels = ros.client.collect(LabelInfo, "/segmentation/label_info", latched())
    rig = Rig(ros, {"model_path": str(model), "levels_path": str(levels)}, mode="auto")
    got = lambda: rig.masks and rig.colors and rig.stats and labels and rig.diag()  # noqa: E731
    assert rig.frames_until(got, 90), "no masks from segformer_node"
    mask, colour = rig.masks[0], rig.colors[0]
    assert (mask.height, mask.width) == (H, W)
    assert set(bytes(mask.data)) <= set(range(len(CITYSCAPES)))
    palette = palette_array([], len(CITYSCAPES))  # generated: HF folders carry no colours
    assert list(bytes(colour.data[:3])) == palette[mask.data[0]].tolist()
    got = [c.class_name for c in labels[0].class_map]
    assert got == (names or [f"class_{i}" for i in range(len(CITYSCAPES))])
    return rig


def test_hugging_face_folder_from_bag_to_node(ros, hf_folder, bag, tmp_path):
    out = tmp_path / "hf_levels.yaml"
    result = run_calibrate(hf_folder, bag, out)
    assert result.returncode == 0, result.stderr[-3000:]
    table = LevelTable.load(out)
    assert table.info["score"] == "agreement" and table.info["classes"] == 19
    assert table.info["source"]["topic"] == "/camera/image_raw"
    assert table.info["source"]["frames"] == 2 and table.info["input_hw"] == [512, 512]
    rig = serve(ros, hf_folder, out, CITYSCAPES)
    assert rig.diag()["levels"] == "table"
    assert rig.stats and rig.stats[-1].config_name in {lv.name for lv in table}


def test_mmseg_checkpoint_from_bag_to_node(ros, hf_folder, bag, tmp_path):
    import torch

    from dynvit_ros.engine.checkpoint import load_model, ours_to_mmseg

    model, _ = load_model(hf_folder)
    pth = tmp_path / "segformer_b0_cityscapes.pth"
    torch.save({"meta": {}, "state_dict": ours_to_mmseg(model.state_dict())}, pth)
    out = tmp_path / "mmseg_levels.yaml"
    result = run_calibrate(pth, bag, out)
    assert result.returncode == 0, result.stderr[-3000:]
    table = LevelTable.load(out)
    assert table.info["variant"] == "b0" and table.info["classes"] == 19
    rig = serve(ros, pth, out)
    assert rig.diag()["levels"] == "table"


def test_without_a_table_the_node_adapts_on_a_generic_ladder(ros, hf_folder):
    rig = serve(ros, hf_folder, "", CITYSCAPES)
    assert rig.diag()["levels"] == "generic"
    assert "generic ladder" in rig.proc.output() and "calibrate --model" in rig.proc.output()
    assert rig.client.spin_until(lambda: rig.diag()["predicted_ms"] != "", 10)
    predicted = parse_floats(rig.diag()["predicted_ms"])
    assert len(predicted) == 4 and min(predicted) < predicted[0]
    budget = min(predicted) * 0.5  # nothing fits: the fastest level of the ladder
    assert rig.frames_until(
        lambda: rig.stats and rig.stats[-1].config_name == "s0.55",
        60,
        extra=lambda: rig.send_budget(budget),
    ), [(s.config_name, s.budget_ms) for s in rig.stats[-3:]]
