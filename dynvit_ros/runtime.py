"""Segmentation runtime: a loaded model, its skip levels, and one call per frame.

This is what the ROS node drives; it has no ROS import. Frames are resized to
the model's input size (the size its skip levels were calibrated at), and the
mask is returned at the frame's own size.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import ModelMetadata, load_model
from .macs import count_layers, total_macs
from .model import UPSAMPLING, SegFormer, logits_to_masks
from .skip import FULL, SkipConfig
from .skip_levels import LevelTable


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_allocator: dict = {}


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Keep freed tensor memory in the process instead of handing it back to the kernel.

    PyTorch's CPU tensors come straight from malloc. With glibc's defaults,
    every activation above the mmap threshold is a fresh ``mmap`` that is
    page-faulted in and unmapped again each frame; raising the mmap and trim
    thresholds lets the heap reuse those pages (no page faults left per frame,
    a 15-18% faster full-model frame here: ``make bench-allocator``). The cost
    is that RSS stays at its peak. Process-wide; returns False where the C
    library is not glibc, changing nothing.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))):
        return False
    _allocator.update(mmap_threshold=int(mmap_threshold), trim_threshold=int(trim_threshold))
    return True


def allocator_settings() -> dict:
    """What :func:`tune_allocator` set in this process (empty: the C library's defaults);
    timings taken under one setting do not hold under the other."""
    return dict(_allocator)


@dataclass(frozen=True)
class InferenceResult:
    mask: np.ndarray        # (H, W) uint8 class ids at the frame's size
    level: int
    config: SkipConfig
    infer_ms: float         # preprocessing + forward + upsample + argmax
    macs: int               # executed MACs of the forward pass


class SegmentationRuntime:
    def __init__(self, model: SegFormer, metadata: ModelMetadata, levels: LevelTable | None = None,
                 upsample: str = "logits"):
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {UPSAMPLING}, got {upsample!r}")
        self.upsample = upsample
        self.model = model.eval()
        self.metadata = metadata
        self.levels = levels or LevelTable.from_configs([FULL])
        for level in self.levels:
            level.config.validate(model.variant.depths)
        self.input_hw = (int(metadata.input_size[0]), int(metadata.input_size[1]))
        self._mean = torch.tensor(metadata.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(metadata.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self._macs = [total_macs(count_layers(model.variant, metadata.num_classes, self.input_hw, c))
                      for c in self.levels.configs]

    @classmethod
    def load(cls, checkpoint: str | Path, levels: str | Path | None = None,
             num_threads: int | None = None, upsample: str = "logits") -> "SegmentationRuntime":
        if num_threads:
            torch.set_num_threads(int(num_threads))
        model, metadata = load_model(checkpoint)
        table = LevelTable.load(levels) if levels else None
        return cls(model, metadata, table, upsample)

    @property
    def palette(self) -> np.ndarray:
        return palette_array(self.metadata.palette, self.metadata.num_classes)

    def macs(self, level: int) -> int:
        return self._macs[level]

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> normalised (1, 3, h, w) at the model's input size."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float()
        if tuple(image.shape[-2:]) != self.input_hw:
            image = F.interpolate(image, size=self.input_hw, mode="bilinear", align_corners=False)
        return (image - self._mean) / self._std

    @torch.inference_mode()
    def infer(self, rgb: np.ndarray, level: int = 0) -> InferenceResult:
        if not 0 <= level < len(self.levels):
            raise ValueError(f"skip level {level} out of range 0..{len(self.levels) - 1}")
        config = self.levels[level].config
        start = time.perf_counter()
        logits = self.model(self.preprocess(rgb), config)
        mask = logits_to_masks(logits, rgb.shape[:2], self.upsample)[0]
        elapsed = (time.perf_counter() - start) * 1e3
        return InferenceResult(mask, level, config, elapsed, self._macs[level])


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
