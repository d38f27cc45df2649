# SPDX-License-Identifier: Apache-2.0
"""From logits to what a user sees: class-id masks, colour masks and overlays."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

UPSAMPLING = ("logits", "mask")


def logits_to_masks(
    logits: torch.Tensor, size: tuple[int, int], upsample: str = "logits"
) -> np.ndarray:
    """(B, K, h, w) logits -> (B, H, W) uint8 class ids.

    ``logits``: bilinear upsampling of the logits, then argmax (the accuracy
    reference). ``mask``: argmax at the logits' resolution, then nearest
    upsampling of the ids: several times cheaper, blockier at boundaries.
    The argmax runs over the last axis of a channels-last tensor, which is
    far faster on CPU than over axis 1 of a contiguous one.
    """
    if upsample not in UPSAMPLING:
        raise ValueError(f"upsample must be one of {UPSAMPLING}, got {upsample!r}")
    size = tuple(size)
    if upsample == "logits" and tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(
            logits.contiguous(memory_format=torch.channels_last),
            size=size,
            mode="bilinear",
            align_corners=False,
        )
    masks = logits.permute(0, 2, 3, 1).argmax(-1).to(torch.uint8).numpy()
    if masks.shape[1:] != size:
        masks = np.stack(
            [cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) for m in masks]
        )
    return masks


def palette_array(palette: list, num_classes: int) -> np.ndarray:
    """(256, 3) uint8 lookup table; classes without a colour get a fixed pseudo-random one."""
    table = np.random.default_rng(0).integers(0, 256, size=(256, 3), dtype=np.uint8)
    if palette:
        given = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
        table[: len(given)] = given
    return table


def colorize(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours."""
    return np.take(palette, mask, axis=0)


def overlay(rgb: np.ndarray, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    blended = rgb.astype(np.float32) * (1.0 - alpha) + colour.astype(np.float32) * alpha
    return blended.round().astype(np.uint8)
