# SPDX-License-Identifier: Apache-2.0
"""Calibration from any source: bag, folder and labelled folder, the scores, the search and the
command line's answers to bad input. A tiny random SegFormer-B0 at 64x64 keeps it fast.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import yaml

from dynvit_ros.bags.io import BagWriter, image_message
from dynvit_ros.engine.checkpoint import ModelMetadata, load_model, save_checkpoint
from dynvit_ros.engine.levels import LevelTable
from dynvit_ros.engine.model import SegFormer, build_segformer
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.training import calibrate, sources
from dynvit_ros.training.scoring import Scorer, spearman

CLASSES = 5
HW = (48, 64)  # frames
FAST = ["--scales", "1,0.5", "--repeats", "1", "--warmup", "0", "--threads", "1", "--no-progress"]


def frame(seed: int, hw=HW) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : hw[0], 0 : hw[1]]
    rgb = np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 3 % 256], -1).astype(np.uint8)
    rgb[: hw[0] // 2, : hw[1] // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
    return rgb


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = build_segformer("b0", CLASSES)
    meta = ModelMetadata(variant="b0", num_classes=CLASSES, input_size=[64, 64])
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return str(save_checkpoint(path, model, meta))


def write_bag(path, count=6, storage="mcap", compressed=False, topic="/cam/image", bad=()):
    with BagWriter(path, storage=storage) as writer:
        for i in range(count):
            stamp = 1_700_000_000_000_000_000 + i * 50_000_000
            msg = image_message(writer.store, frame(i), stamp, "cam", compressed=compressed)
            if i in bad:
                msg.step = 7  # wrong step: cannot be decoded
            writer.write_message(topic, stamp, msg)
        writer.write_message(
            "/other", stamp, image_message(writer.store, frame(0), stamp, "x", compressed=True)
        )
    return path


def write_folder(root, count=4, labels=True, bad_label=None, missing_label=None):
    images, masks = root / "images", root / "labels"
    images.mkdir(parents=True)
    masks.mkdir()
    for i in range(count):
        cv2.imwrite(str(images / f"f{i:02d}.png"), frame(i)[:, :, ::-1])
        if labels and i != missing_label:
            label = (np.arange(HW[0] * HW[1]).reshape(HW) // 300 % CLASSES).astype(np.uint8)
            label[0, :4] = 255  # ignored
            if i == bad_label:
                label = label[:10]
            cv2.imwrite(str(masks / f"f{i:02d}.png"), label)
    return images, masks


# -- sources -----------------------------------------------------------------------------
def test_even_sampling_and_sizes():
    assert sources.even_indices(10, 3) == [0, 4, 9]
    assert sources.even_indices(5, 10) == [0, 1, 2, 3, 4]
    assert sources.even_indices(7, 1) == [3]
    assert len(set(sources.even_indices(1000, 200))) == 200
    assert sources.parse_size("480x640") == (480, 640)
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        sources.parse_size("480")


@pytest.mark.parametrize("storage, compressed", [("sqlite3", False), ("mcap", True)])
def test_bag_frames_are_sampled_evenly_and_bad_ones_skipped(tmp_path, storage, compressed):
    bag = write_bag(tmp_path / "bag", 9, storage, compressed, bad=() if compressed else (4,))
    frames = sources.from_bag(bag, "/cam/image", 3)
    assert frames.info["topic"] == "/cam/image" and frames.info["messages"] == 9
    if compressed:
        assert len(frames) == 3 and not frames.skipped
        assert "message 0 " in frames.names[0] and "message 8 " in frames.names[-1]
    else:
        assert len(frames) == 2 and frames.names[1].split()[3] == "8"
        assert len(frames.skipped) == 1 and "message 4 " in frames.skipped[0]
        assert "step" in frames.skipped[0]
    assert frames.images[0].shape == (*HW, 3) and frames.frame_hw() == HW
    assert not frames.labelled


def test_bag_without_the_topic_names_what_it_has(tmp_path):
    bag = write_bag(tmp_path / "bag", 2)
    with pytest.raises(
        sources.SourceError, match=r"no topic '/camera'.*\['/cam/image', '/other'\]"
    ):
        sources.from_bag(bag, "/camera")
    with pytest.raises(sources.SourceError, match="bag not found"):
        sources.from_bag(tmp_path / "nope", "/cam/image")
    every_bad = write_bag(tmp_path / "bad", 2, bad=(0, 1))
    with pytest.raises(sources.SourceError, match="none of the 2 sampled messages"):
        sources.from_bag(every_bad, "/cam/image")


def test_folder_and_labelled_folder(tmp_path):
    images, labels = write_folder(tmp_path, 5, bad_label=1, missing_label=2)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    (images / "notes.txt").write_text("ignored")
    plain = sources.from_folder(images)
    assert len(plain) == 5 and plain.skipped == [f"{images / 'broken.jpg'}: not a readable image"]
    assert plain.info["kind"] == "folder" and not plain.labelled
    labelled = sources.from_folder(images, labels, ignore_id=255)
    assert len(labelled) == 3 and labelled.labelled and labelled.ignore_id == 255
    problems = "\n".join(labelled.skipped)
    assert "f01.png: label is 64x10, its image is 64x48" in problems
    assert f"no label {labels / 'f02.png'}" in problems
    assert labelled.labels[0].shape == HW


def test_folders_with_nothing_usable_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(sources.SourceError, match="holds no images"):
        sources.from_folder(tmp_path / "empty")
    with pytest.raises(sources.SourceError, match="image folder not found"):
        sources.from_folder(tmp_path / "missing")
    images, _ = write_folder(tmp_path / "x", 2, labels=False)
    with pytest.raises(sources.SourceError, match="none of the 2 sampled images"):
        sources.from_folder(images, tmp_path / "x" / "labels")


# -- scores ------------------------------------------------------------------------------
def test_agreement_and_label_scores(tiny, tmp_path):
    model, meta = load_model(tiny)
    images, labels = write_folder(tmp_path, 3)
    frames = sources.from_folder(images, labels)
    frames.labels[0][5, 5] = 9  # a class the model does not have: ignored, counted
    scorer = Scorer(model, frames, meta.input_size, meta.mean, meta.std, batch_size=2)
    half = SkipConfig(name="s0.5", input_scale=0.5)
    with pytest.raises(RuntimeError, match="full model"):
        scorer.run(half, [0])
    scorer.run(FULL, [0, 1, 2])
    scorer.run(half, [0, 1])
    scorer.run(half, [1, 2])  # frame 1 is not counted twice
    full, skipped = scorer.score(FULL), scorer.score(half)
    assert full.agreement_miou == full.agreement_miou_all == full.pixel_agreement == 100.0
    assert skipped.frames == 3 and 0 <= skipped.pixel_agreement <= 100
    assert 0 <= full.label_miou <= 100 and scorer.out_of_range_pixels == 1
    assert skipped.value("labels") == skipped.label_miou
    assert skipped.value("agreement") == skipped.agreement_miou
    # Class IoUs average to the mIoU over the classes present.
    ious = np.array(full.label_class_iou)
    assert len(ious) == CLASSES and abs(np.nanmean(ious) - full.label_miou) < 1e-9


def test_agreement_leaves_out_the_full_models_least_sure_pixels(tiny):
    model, meta = load_model(tiny)
    frames = sources.Frames([frame(0), frame(1)], ["a", "b"])
    half = SkipConfig(name="s0.5", input_scale=0.5)
    scores = {}
    for uncertain in (0.0, 0.5):
        scorer = Scorer(model, frames, meta.input_size, meta.mean, meta.std, uncertain=uncertain)
        scorer.run(FULL, [0, 1])
        scorer.run(half, [0, 1])
        sure = scorer._confident[0]
        assert sure.dtype == bool and sure.size == 64 * 64
        assert abs(sure.mean() - (1 - uncertain)) < 0.05
        scores[uncertain] = scorer.score(half)
    assert scores[0.0].agreement_miou == scores[0.0].agreement_miou_all
    assert scores[0.5].agreement_miou_all == scores[0.0].agreement_miou_all
    assert scores[0.5].agreement_miou != scores[0.0].agreement_miou
    with pytest.raises(ValueError, match="uncertain"):
        Scorer(model, frames, meta.input_size, meta.mean, meta.std, uncertain=1.0)


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_pruning_keeps_the_front_within_the_margin():
    a, b, c, d = (
        SkipConfig(name=n, input_scale=s)
        for n, s in [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6)]
    )
    scores = {FULL: 100.0, a: 90.0, b: 95.0, c: 93.5, d: 60.0}
    latency = {FULL: 10.0, a: 9.0, b: 8.0, c: 8.5, d: 2.0}
    # a is beaten by b (faster, 5 points better); c by b by 1.5 points only.
    assert calibrate.prune(scores, latency, 3.0) == {FULL, b, c, d}
    assert calibrate.prune(scores, latency, 1.0) == {FULL, b, d}


# -- the command line --------------------------------------------------------------------
def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = calibrate.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_from_a_bag_without_labels(tiny, tmp_path, capsys):
    bag = write_bag(tmp_path / "bag", 6, bad=(2,))
    out = tmp_path / "levels.yaml"
    args = ["--model", tiny, "--bag", bag, "--topic", "/cam/image", "--frames", "4"]
    rc, stdout, stderr = run_cli(
        capsys, *args, "--levels-out", out, "--prune-frames", "2", "--frame-size", "96x128", *FAST
    )
    assert rc == 0, stderr
    assert "message 2 " in stderr and "skipped" in stderr
    table = LevelTable.load(out)  # the order check passes
    assert table[0].config == FULL and table[0].accuracy == 100.0
    info = table.info
    assert info["score"] == "agreement" and "agreement" in info["accuracy"]
    assert info["source"]["topic"] == "/cam/image" and info["source"]["frames"] == 3
    assert info["source"]["skipped"] == 1 and info["source"]["kind"] == "rosbag2"
    assert info["input_hw"] == [64, 64] and info["frame_hw"] == [96, 128]
    assert info["threads"] == 1 and info["command"].startswith("calibrate --model")
    assert info["search"]["candidates"] == 30 and info["search"]["first_pass_frames"] == 2
    assert set(info["pixel_agreement"]) == {lv.name for lv in table}
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["score"] == "agreement" and result["levels_out"] == str(out)
    assert [r["name"] for r in result["levels"]] == [lv.name for lv in table]
    assert result["levels"][0]["pixel_agreement"] == 100.0
    # What else ran while the levels were timed, in the table and the JSON (Linux: /proc/stat).
    assert set(result["host_load"]) == {"other_cpu_pct", "steal_pct"}
    assert info["search"]["host_load"] == result["host_load"]

    # An existing table is kept unless --force.
    before = out.read_text()
    rc, _, stderr = run_cli(capsys, *args, "--levels-out", out, *FAST)
    assert rc == 2 and "exists: pass --force" in stderr and out.read_text() == before
    rc, _, stderr = run_cli(capsys, *args, "--levels-out", out, "--force", "--no-prune", *FAST)
    assert rc == 0, stderr
    assert LevelTable.load(out).info["search"]["pruned"] == 0

    # And an existing table can be evaluated on new frames.
    rc, stdout, stderr = run_cli(capsys, *args, "--levels", out, *FAST)
    assert rc == 0, stderr
    assert len(json.loads(stdout.strip().splitlines()[-1])["levels"]) == len(LevelTable.load(out))


def test_from_a_labelled_folder(tiny, tmp_path, capsys):
    images, labels = write_folder(tmp_path, 4, bad_label=3)
    out = tmp_path / "levels.yaml"
    labelled = ["--model", tiny, "--images", images, "--labels", labels, "--levels-out", out]
    rc, stdout, stderr = run_cli(capsys, *labelled, *FAST)
    assert rc == 0, stderr
    assert "f03.png: label is" in stderr
    table = LevelTable.load(out)
    assert table.info["score"] == "labels" and "ignore id 255" in table.info["accuracy"]
    assert table.info["source"]["kind"] == "labelled folder"
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["full_miou"] is not None and "miou" in result["levels"][0]
    assert result["class_iou"] == result["levels"][0]["class_iou"]
    assert len(result["class_iou"]) == CLASSES
    # Labels present, agreement asked for.
    rc, _, stderr = run_cli(capsys, *labelled, "--force", "--score", "agreement", *FAST)
    assert rc == 0 and LevelTable.load(out).info["score"] == "agreement"


def test_a_failing_candidate_is_skipped_and_reported(tiny, tmp_path, capsys, monkeypatch):
    class Flaky(SegFormer):
        def forward(self, images, skip=FULL):
            if skip.fuse_stride == 8 and images.shape[0] > 1:  # fails on frames, not when timed
                raise RuntimeError("out of memory (simulated)")
            if skip.decoder_drop:  # fails whenever it runs
                raise RuntimeError("unsupported (simulated)")
            return super().forward(images, skip)

    def flaky_load(path, *a, **k):
        model, meta = real_load(path, *a, **k)
        model.__class__ = Flaky
        return model, meta

    real_load = calibrate.load_model
    monkeypatch.setattr(calibrate, "load_model", flaky_load)
    images, _ = write_folder(tmp_path, 2, labels=False)
    out = tmp_path / "levels.yaml"
    rc, stdout, stderr = run_cli(
        capsys, "--model", tiny, "--images", images, "--levels-out", out, *FAST
    )
    assert rc == 0, stderr
    assert "skipping candidate attn-last+fuse8: attn-last+fuse8 failed on" in stderr
    assert "f00.png (and 1 more in its batch): out of memory (simulated)" in stderr
    assert "skipping candidate full+drop4 failed when timed: unsupported (simulated)" in stderr
    failed = json.loads(stdout.strip().splitlines()[-1])["failed"]
    assert len(failed) == 20 and all("fuse8" in name or "drop4" in name for name in failed)
    assert all(lv.config.fuse_stride == 4 for lv in LevelTable.load(out))


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t, m: ["--bag", write_bag(t / "b", 2), "--topic", "/nope"], "no topic '/nope'"),
        (lambda t, m: ["--bag", write_bag(t / "b", 2)], "--bag needs --topic"),
        (lambda t, m: ["--images", (t / "e").mkdir() or t / "e"], "holds no images"),
        (
            lambda t, m: [
                "--images",
                write_folder(t, 1, labels=False)[0],
                "--labels",
                t / "labels",
            ],
            "none of the 1 sampled images",
        ),
        (
            lambda t, m: ["--images", write_folder(t, 1)[0], "--score", "labels"],
            "needs a labelled source",
        ),
        (
            lambda t, m: ["--images", t, "--bag", t],
            "one source",
        ),
    ],
)
def test_bad_input_is_a_clear_error_and_no_table(tiny, tmp_path, capsys, make_args, message):
    out = tmp_path / "levels.yaml"
    rc, _, stderr = run_cli(
        capsys, "--model", tiny, *make_args(tmp_path, tiny), "--levels-out", out, *FAST
    )
    assert rc == 2 and message in stderr and "no level table written" in stderr
    assert not out.exists()


def test_an_unknown_checkpoint_is_a_clear_error(tmp_path, capsys):
    model = tmp_path / "weights.onnx"
    model.write_bytes(b"\x08\x01")
    images, _ = write_folder(tmp_path, 1, labels=False)
    rc, _, stderr = run_cli(
        capsys, "--model", model, "--images", images, "--levels-out", tmp_path / "l.yaml"
    )
    assert rc == 2 and "cannot load --model" in stderr and "unknown checkpoint format" in stderr


def test_the_yaml_records_the_command_and_loads_in_the_runtime(tiny, tmp_path, capsys):
    from dynvit_ros.engine.runtime import SegmentationRuntime

    bag = write_bag(tmp_path / "bag", 3, storage="sqlite3", compressed=True)
    out = tmp_path / "my levels.yaml"
    rc, _, stderr = run_cli(
        capsys, "--model", tiny, "--bag", bag, "--topic", "/cam/image", "--levels-out", out, *FAST
    )
    assert rc == 0, stderr
    data = yaml.safe_load(out.read_text())
    assert "'" in data["info"]["command"]  # the path with a space is quoted
    runtime = SegmentationRuntime.load(tiny, out)
    for level in range(len(runtime.levels)):
        assert runtime.infer(frame(0), level).mask.shape == HW
