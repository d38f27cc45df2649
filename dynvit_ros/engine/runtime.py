# SPDX-License-Identifier: Apache-2.0
"""Segmentation runtime: a loaded model, its skip levels, and one call per frame.

This is what the ROS node drives; it has no ROS import. Frames are resized to
the model's input size (the size its skip levels were calibrated at), and the
mask is returned at the frame's own size. The forward pass itself runs on a
backend (:mod:`dynvit_ros.engine.backends`: eager ``torch`` by default, or
``onnxruntime``); everything around it is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dynvit_ros.engine.backends import TorchBackend, load_backend
from dynvit_ros.engine.checkpoint import ModelMetadata, load_model
from dynvit_ros.engine.levels import LevelTable
from dynvit_ros.engine.macs import count_layers, total_macs
from dynvit_ros.engine.masks import UPSAMPLING, logits_to_masks, palette_array
from dynvit_ros.engine.model import SegFormer
from dynvit_ros.engine.preprocess import normalizer
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.host import set_num_threads


@dataclass(frozen=True)
class InferenceResult:
    mask: np.ndarray  # (H, W) uint8 class ids at the frame's size
    level: int
    config: SkipConfig
    infer_ms: float  # preprocessing + forward + upsample + argmax
    macs: int  # executed MACs of the forward pass


class SegmentationRuntime:
    def __init__(
        self,
        model: SegFormer,
        metadata: ModelMetadata,
        levels: LevelTable | None = None,
        upsample: str = "logits",
        backend=None,
    ):
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {UPSAMPLING}, got {upsample!r}")
        self.upsample = upsample
        self.model = model.eval()
        self.metadata = metadata
        self.levels = levels or LevelTable.from_configs([FULL])
        for level in self.levels:
            level.config.validate(model.variant.depths)
        self.input_hw = (int(metadata.input_size[0]), int(metadata.input_size[1]))
        self._normalize = normalizer(metadata.mean, metadata.std)
        self._macs = [
            total_macs(count_layers(model.variant, metadata.num_classes, self.input_hw, c))
            for c in self.levels.configs
        ]
        self.backend = backend or TorchBackend(self.model)
        self.num_threads = torch.get_num_threads()  # the most a frame uses

    @classmethod
    def load(
        cls,
        checkpoint: str | Path,
        levels: str | Path | LevelTable | None = None,
        num_threads: int | None = None,
        upsample: str = "logits",
        backend: str = "torch",
        graph_dir: str | Path | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> "SegmentationRuntime":
        """``backend``: ``torch`` or ``onnxruntime`` (sessions built here, from ``graph_dir``
        or the graph cache; ``warn`` hears why a cached graph was refused and rebuilt).
        """
        if num_threads:
            set_num_threads(num_threads)
        model, metadata = load_model(checkpoint)
        table = LevelTable.load(levels) if isinstance(levels, (str, Path)) else levels
        runtime = cls(model, metadata, table, upsample)
        if backend != "torch":
            runtime.backend = load_backend(
                backend,
                runtime.model,
                metadata,
                runtime.levels,
                runtime.input_hw,
                num_threads,
                graph_dir,
                warn,
            )
        return runtime

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
        return self._normalize(image)

    @property
    def adjustable_threads(self) -> bool:
        """Whether :meth:`infer` can change its thread count per call (onnxruntime sessions
        fix theirs when they are built).
        """
        return isinstance(self.backend, TorchBackend)

    @torch.inference_mode()
    def infer(
        self, rgb: np.ndarray, level: int = 0, threads: int | None = None
    ) -> InferenceResult:
        """``threads``: torch intra-op threads for this call and the next ones from the
        calling thread (torch keeps the count per thread; None: as it is).
        """
        if not 0 <= level < len(self.levels):
            raise ValueError(f"skip level {level} out of range 0..{len(self.levels) - 1}")
        if threads and self.adjustable_threads and torch.get_num_threads() != threads:
            torch.set_num_threads(int(threads))
        config = self.levels[level].config
        start = time.perf_counter()
        logits = self.backend.forward(self.preprocess(rgb), config)
        mask = logits_to_masks(logits, rgb.shape[:2], self.upsample)[0]
        elapsed = (time.perf_counter() - start) * 1e3
        return InferenceResult(mask, level, config, elapsed, self._macs[level])
