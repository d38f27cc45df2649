# SPDX-License-Identifier: Apache-2.0
"""Evaluation on CamVid val: mIoU of a model under a skip configuration."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from dynvit_ros.engine.masks import logits_to_masks
from dynvit_ros.engine.model import SegFormer
from dynvit_ros.engine.preprocess import to_tensor
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.training.camvid import ConfusionMatrix, Split


@torch.inference_mode()
def evaluate_miou(
    model: SegFormer,
    split: Split,
    input_hw: Sequence[int],
    mean,
    std,
    skip: SkipConfig = FULL,
    batch_size: int = 4,
    upsample: str = "logits",
) -> float:
    """Frames are resized to ``input_hw`` and masks made at the label size, as the runtime does."""
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix()
    for start in range(0, len(split.images), batch_size):
        frames = split.images[start : start + batch_size]
        labels = split.labels[start : start + batch_size]
        images = F.interpolate(
            to_tensor(frames, mean, std),
            size=tuple(input_hw),
            mode="bilinear",
            align_corners=False,
        )
        predictions = logits_to_masks(model(images, skip), labels[0].shape, upsample)
        for prediction, label in zip(predictions, labels):
            confusion.update(prediction, label)
    model.train(was_training)
    return confusion.miou()
