# SPDX-License-Identifier: Apache-2.0
"""Checkpoint loading: formats, safe loaders, and errors that say what is wrong."""

import json

import pytest
from safetensors.torch import save_file
import torch

from dynvit_ros.engine.checkpoint import (
    CheckpointError,
    ModelMetadata,
    load_model,
    ours_to_mmseg,
    read_checkpoint,
    save_checkpoint,
)
from dynvit_ros.engine.model import build_segformer


@pytest.fixture(scope="module")
def b0():
    torch.manual_seed(1)
    return build_segformer("b0", 11).eval()


def test_own_format_round_trip_keeps_metadata_and_weights(b0, tmp_path):
    meta = ModelMetadata(
        variant="b0",
        num_classes=11,
        class_names=[f"c{i}" for i in range(11)],
        palette=[[i, i, i] for i in range(11)],
        input_size=[240, 320],
        provenance={
            "training_command": "python -m dynvit_ros.training.train",
            "data_license": "CC BY-NC 4.0",
        },
    )
    path = save_checkpoint(tmp_path / "model.safetensors", b0, meta, dtype=torch.float32)
    model, loaded = load_model(path)
    assert loaded == meta
    x = torch.randn(1, 3, 64, 80)
    with torch.inference_mode():
        assert torch.equal(model(x), b0(x))


def test_fp16_checkpoint_is_small_and_close(b0, tmp_path):
    meta = ModelMetadata(variant="b0", num_classes=11)
    path = save_checkpoint(tmp_path / "model.safetensors", b0, meta)
    assert path.stat().st_size < 8e6
    model, _ = load_model(path)
    x = torch.randn(1, 3, 64, 80)
    with torch.inference_mode():
        assert (model(x) - b0(x)).abs().max() < 1e-2


def test_shape_mismatch_names_the_variant_and_classes(b0, tmp_path):
    path = tmp_path / "b0_11.pth"
    torch.save(ours_to_mmseg(b0.state_dict()), path)
    with pytest.raises(
        CheckpointError, match=r"looks like SegFormer-B0 with 11 classes.*B0 with 19 classes"
    ):
        load_model(path, expect_classes=19)
    with pytest.raises(CheckpointError, match=r"looks like SegFormer-B0 with 11 classes"):
        load_model(path, expect_variant="b1")


def test_missing_and_unexpected_keys_are_listed(b0, tmp_path):
    state = dict(b0.state_dict())
    del state["decoder.classifier.bias"]
    path = tmp_path / "missing.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(CheckpointError, match="missing keys: decoder.classifier.bias"):
        load_model(path)
    mm = ours_to_mmseg(b0.state_dict())
    mm["backbone.block1.0.attn.rel_pos_bias"] = torch.zeros(3)
    torch.save(mm, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected keys.*rel_pos_bias"):
        load_model(tmp_path / "extra.pth")


def test_truncated_files_are_reported(b0, tmp_path):
    meta = ModelMetadata(variant="b0", num_classes=11)
    good = save_checkpoint(tmp_path / "good.safetensors", b0, meta)
    data = good.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(tmp_path / "cut.safetensors")
    torch.save(ours_to_mmseg(b0.state_dict()), tmp_path / "full.pth")
    blob = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(tmp_path / "cut.pth")


def test_unknown_formats_are_rejected(tmp_path):
    (tmp_path / "weights.onnx").write_bytes(b"\x08\x07onnx")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_model(tmp_path / "weights.onnx")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_model(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not segformer"):
        load_model(tmp_path / "hf")


class _Payload:
    """Unpickling this would create a file: what an unsafe loader runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_pickles_with_code_are_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload_ran"
    torch.save(
        {"state_dict": {"backbone.norm1.weight": torch.zeros(2)}, "hook": _Payload(marker)},
        tmp_path / "evil.pth",
    )
    with pytest.raises(CheckpointError, match="refusing untrusted pickle") as info:
        read_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()
    assert "weights_only" not in str(info.value) and "GLOBAL" in str(info.value)


def test_a_text_file_named_pth_is_reported_corrupt(tmp_path):
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="corrupt or not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "notes.pth")


def test_a_broken_metadata_header_is_a_clear_error(b0, tmp_path):
    state = {k: v.contiguous() for k, v in b0.state_dict().items()}
    save_file(
        state,
        str(tmp_path / "bad.safetensors"),
        metadata={"format_tag": "dynvit_ros/segformer/v1", "dynvit": "{not json"},
    )
    with pytest.raises(CheckpointError, match="bad dynvit metadata"):
        load_model(tmp_path / "bad.safetensors")
