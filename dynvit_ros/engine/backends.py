# SPDX-License-Identifier: Apache-2.0
"""Inference backends: what turns a normalised frame into logits for one skip level.

``torch`` runs the SegFormer eagerly: the reference, and the only backend that runs any
configuration at any input size. ``onnxruntime`` holds one session per level of the
table, each over a fixed-size graph exported and checked against eager PyTorch
(:mod:`dynvit_ros.engine.onnx_export`), created when the backend is built (at configure),
never on the first frame. Both take and return torch tensors, so resizing, masks, MACs,
latency models and level selection do not know which one runs.

If onnxruntime is not importable, asking for it raises :class:`BackendError` at configure
with what to install. No silent fallback to torch: the latency model, the stats and the
user would then describe a backend other than the one that runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from dynvit_ros.engine.checkpoint import ModelMetadata
from dynvit_ros.engine.levels import LevelTable
from dynvit_ros.engine.model import SegFormer
from dynvit_ros.engine.skip import SkipConfig

BACKENDS = ("torch", "onnxruntime")


class BackendError(RuntimeError):
    """A backend could not be built (unknown name, missing package, graphs unusable)."""


class TorchBackend:
    """Eager PyTorch on the model itself."""

    name = "torch"

    def __init__(self, model: SegFormer):
        self.model = model
        self.version = torch.__version__

    def describe(self) -> dict:
        """Identity for latency caches: timings of one backend do not hold for another."""
        return {"name": self.name, "version": self.version}

    def forward(self, images: torch.Tensor, config: SkipConfig) -> torch.Tensor:
        return self.model(images, config)


class OnnxRuntimeBackend:
    """One onnxruntime session per skip level (batch 1, the model's input size)."""

    name = "onnxruntime"

    def __init__(
        self,
        sessions: Sequence,
        configs: Sequence[SkipConfig],
        input_hw: tuple[int, int],
        threads: int,
        folder: Path | None = None,
    ):
        import onnxruntime

        if len(sessions) != len(configs):
            raise BackendError(f"{len(sessions)} sessions for {len(configs)} levels")
        self.version = onnxruntime.__version__
        self.threads = int(threads)
        self.folder = folder
        self.input_shape = (1, 3, int(input_hw[0]), int(input_hw[1]))
        # Equal configurations share a session (a name is not part of a configuration).
        self._sessions: dict[SkipConfig, object] = {}
        for config, session in zip(configs, sessions):
            self._sessions.setdefault(config, session)

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "threads": self.threads}

    def forward(self, images: torch.Tensor, config: SkipConfig) -> torch.Tensor:
        session = self._sessions.get(config)
        if session is None:
            raise ValueError(
                f"onnxruntime backend: no graph for configuration {config.name!r} "
                "(only the level table's configurations are exported)"
            )
        if tuple(images.shape) != self.input_shape:
            raise ValueError(
                f"onnxruntime backend: graphs take {self.input_shape}, got {tuple(images.shape)}"
            )
        frame = np.ascontiguousarray(images.detach().numpy(), dtype=np.float32)
        (logits,) = session.run(["logits"], {"images": frame})
        return torch.from_numpy(logits)


def load_backend(
    name: str,
    model: SegFormer,
    metadata: ModelMetadata,
    levels: LevelTable,
    input_hw: tuple[int, int],
    num_threads: int | None = None,
    graph_dir: str | Path | None = None,
    warn: Callable[[str], None] | None = None,
):
    """Build the backend ``name`` for these levels.

    ``onnxruntime``: graphs come from ``graph_dir`` or the per-model cache folder, exported
    and checked where missing, rebuilt (with a ``warn``) where refused; ``num_threads``
    (None or 0: torch's current count, so both backends use the same) intra-op threads.
    """
    if name == "torch":
        return TorchBackend(model)
    if name != "onnxruntime":
        raise BackendError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    from dynvit_ros.engine.onnx_export import OnnxRuntimeMissing, ensure_graphs

    threads = int(num_threads or torch.get_num_threads())
    try:
        sessions, folder = ensure_graphs(
            model, metadata, levels, input_hw, graph_dir, threads=threads, warn=warn
        )
    except OnnxRuntimeMissing as exc:
        raise BackendError(str(exc)) from None
    return OnnxRuntimeBackend(sessions, levels.configs, input_hw, threads, folder)
