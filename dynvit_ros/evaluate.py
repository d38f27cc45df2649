"""Evaluation on CamVid val: mIoU of a model under a skip configuration."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .camvid import ConfusionMatrix, Split, to_tensor
from .model import SegFormer
from .skip import FULL, SkipConfig


@torch.inference_mode()
def evaluate_miou(model: SegFormer, split: Split, input_hw: Sequence[int], mean, std,
                  skip: SkipConfig = FULL, batch_size: int = 4) -> float:
    """Frames are resized (bilinear, as the runtime does) to ``input_hw``; logits are upsampled to the label size, as the node does."""
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix()
    for start in range(0, len(split.images), batch_size):
        frames = split.images[start:start + batch_size]
        labels = split.labels[start:start + batch_size]
        images = F.interpolate(to_tensor(frames, mean, std), size=tuple(input_hw), mode="bilinear",
                               align_corners=False)
        logits = model(images, skip)
        logits = F.interpolate(logits, size=labels[0].shape, mode="bilinear", align_corners=False)
        for prediction, label in zip(logits.argmax(1).numpy().astype(np.uint8), labels):
            confusion.update(prediction, label)
    model.train(was_training)
    return confusion.miou()
