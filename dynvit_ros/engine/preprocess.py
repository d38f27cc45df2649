# SPDX-License-Identifier: Apache-2.0
"""Input normalisation shared by training, evaluation and the runtime."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def normalizer(
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function mapping (B, 3, H, W) float pixels in 0..255 to normalised input."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    return lambda pixels: (pixels - m) / s


def to_tensor(
    images: Sequence[np.ndarray],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """(H, W, 3) uint8 RGB images of one size -> normalised (B, 3, H, W) batch."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return normalizer(mean, std)(batch)
