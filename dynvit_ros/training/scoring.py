# SPDX-License-Identifier: Apache-2.0
"""How good a skip configuration is on calibration frames, with labels or without.

Without labels a configuration is scored by its **agreement** with the full
model on the same frames: the mIoU of its masks taken against the full
model's masks as ground truth, on the pixels the full model is surest of
(each frame's ``uncertain`` share of least confident pixels, by softmax
probability, is left out, as pseudo-labels usually are). That needs nothing
but frames from the robot, and it measures what skipping costs relative to
the model the user chose. Where the full model hesitates (object boundaries,
ambiguous regions) it is often wrong itself, so a configuration that
disagrees there has not lost much; on CamVid val this ranked candidates
closer to their true mIoU than agreement on every pixel (see
``benchmarks/bench_calibrate.py``). Agreement on all pixels (mIoU and pixel
agreement) is reported too. With labels the score is the true mIoU
(``ConfusionMatrix``, an ignore id left out).

Frames go through the model as :class:`~dynvit_ros.engine.runtime.SegmentationRuntime`
runs them: resized (bilinear) to the model's input size, normalised, logits
upsampled and argmaxed. Agreement masks are compared at the model's input
size (the frame-size upsampling is the same for every configuration);
labelled masks are made at the label's size, as ``evaluate_miou`` does.
Scores accumulate per configuration, so a search can score every candidate
on a few frames, drop the clearly dominated ones, and go on with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dynvit_ros.engine.masks import logits_to_masks
from dynvit_ros.engine.model import SegFormer
from dynvit_ros.engine.preprocess import normalizer
from dynvit_ros.engine.skip import SkipConfig
from dynvit_ros.training.camvid import ConfusionMatrix
from dynvit_ros.training.sources import Frames

NO_IGNORE = -1  # the full model's masks have no unscored pixels
# Share of each frame's pixels, the full model's least confident, left out of agreement.
UNCERTAIN = 0.2


@dataclass
class Score:
    """What one configuration achieved on the frames it was run on."""

    config: SkipConfig
    agreement_miou: float  # % mIoU against the full model's masks where it is confident
    agreement_miou_all: float  # % mIoU against the full model's masks, every pixel
    pixel_agreement: float  # % of pixels given the full model's class
    label_miou: float | None  # % mIoU against labels (labelled sources only)
    frames: int
    label_class_iou: tuple[float, ...] | None = None  # % IoU per class (NaN: class absent)

    def value(self, kind: str) -> float:
        """The score named ``kind``: "agreement" or "labels"."""
        return self.label_miou if kind == "labels" else self.agreement_miou


class Scorer:
    """Runs configurations over a fixed set of frames and keeps their confusion matrices.

    The full model must be scored on a frame before any other configuration
    is: its masks (and where it is confident) are the reference for agreement.
    """

    def __init__(
        self,
        model: SegFormer,
        frames: Frames,
        input_hw: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int = 4,
        uncertain: float = UNCERTAIN,
    ):
        if not 0.0 <= uncertain < 1.0:
            raise ValueError(f"uncertain must be in [0, 1), got {uncertain}")
        self.uncertain = float(uncertain)
        self.model = model.eval()
        self.frames = frames
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.num_classes = int(model.config.num_classes)
        self.batch_size = max(1, int(batch_size))
        self._normalize = normalizer(mean, std)
        self._reference: dict[int, np.ndarray] = {}
        self._confident: dict[int, np.ndarray] = {}  # frame -> flat mask of its sure pixels
        self._agreement: dict[SkipConfig, ConfusionMatrix] = {}
        self._agreement_all: dict[SkipConfig, ConfusionMatrix] = {}
        self._labels: dict[SkipConfig, ConfusionMatrix] = {}
        self._counted: dict[SkipConfig, set[int]] = {}
        self.out_of_range_pixels = 0
        self.labels = None
        if frames.labels is not None:
            self.labels = [self._clean_label(label) for label in frames.labels]

    def _clean_label(self, label: np.ndarray) -> np.ndarray:
        """Class ids the model does not have are scored as ignored, and counted."""
        ignore = int(self.frames.ignore_id)
        outside = (label >= self.num_classes) | (label < 0)
        outside &= label != ignore
        count = int(outside.sum())
        if count:
            self.out_of_range_pixels += count
            label = label.astype(np.int32)
            label[outside] = ignore
        return label

    # -- running ------------------------------------------------------------------
    def batches(self, indices: Sequence[int]) -> list[list[int]]:
        """Consecutive frames of one size, at most ``batch_size`` at a time."""
        out: list[list[int]] = []
        for i in indices:
            shape = self.frames.images[i].shape
            if out and len(out[-1]) < self.batch_size:
                if self.frames.images[out[-1][0]].shape == shape:
                    out[-1].append(i)
                    continue
            out.append([i])
        return out

    def _inputs(self, batch: list[int]) -> torch.Tensor:
        images = np.stack([self.frames.images[i] for i in batch])
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        if tuple(pixels.shape[-2:]) != self.input_hw:
            pixels = F.interpolate(
                pixels, size=self.input_hw, mode="bilinear", align_corners=False
            )
        return self._normalize(pixels)

    @torch.inference_mode()
    def run(self, config: SkipConfig, indices: Sequence[int]) -> None:
        """Score ``config`` on frames ``indices`` (frames it has seen are not counted twice)."""
        seen = self._counted.setdefault(config, set())
        todo = [i for i in indices if i not in seen]
        if not config.is_full:
            missing = [i for i in todo if i not in self._reference]
            if missing:
                raise RuntimeError(
                    f"score the full model on frames {missing[:5]} before {config.name}"
                )
        agreement = self._agreement.setdefault(
            config, ConfusionMatrix(self.num_classes, NO_IGNORE)
        )
        agreement_all = self._agreement_all.setdefault(
            config, ConfusionMatrix(self.num_classes, NO_IGNORE)
        )
        if self.labels is not None and config not in self._labels:
            self._labels[config] = ConfusionMatrix(self.num_classes, int(self.frames.ignore_id))
        for batch in self.batches(todo):
            try:
                logits = self.model(self._inputs(batch), config)
            except Exception as exc:  # a broken configuration: say where
                raise RuntimeError(
                    f"{config.name} failed on {self.frames.names[batch[0]]}"
                    + (f" (and {len(batch) - 1} more in its batch)" if len(batch) > 1 else "")
                    + f": {exc}"
                ) from exc
            masks = logits_to_masks(logits, self.input_hw)
            if config.is_full:
                for i, sure in zip(batch, self._sure_pixels(logits)):
                    self._confident[i] = sure
            for i, mask in zip(batch, masks):
                if config.is_full:
                    self._reference[i] = mask
                reference = self._reference[i]
                agreement_all.update(mask, reference)
                sure = self._confident[i]
                agreement.update(mask.reshape(-1)[sure], reference.reshape(-1)[sure])
            if self.labels is not None:
                label_hw = self.labels[batch[0]].shape
                label_masks = masks if label_hw == self.input_hw else None
                if label_masks is None:
                    label_masks = logits_to_masks(logits, label_hw)
                for i, mask in zip(batch, label_masks):
                    self._labels[config].update(mask, self.labels[i])
            seen.update(batch)

    def _sure_pixels(self, logits: torch.Tensor) -> list[np.ndarray]:
        """Per frame, a flat mask of the pixels (at the input size) whose softmax
        probability is not among the ``uncertain`` lowest: a rank, not a threshold, so it works
        the same for a model whose probabilities are over- or under-confident.
        """
        if self.uncertain == 0.0:
            everything = np.ones(self.input_hw[0] * self.input_hw[1], dtype=bool)
            return [everything for _ in range(logits.shape[0])]
        up = F.interpolate(
            logits.contiguous(memory_format=torch.channels_last),
            size=self.input_hw,
            mode="bilinear",
            align_corners=False,
        )
        confidence = up.softmax(1).amax(1).reshape(up.shape[0], -1).numpy()
        out = []
        for frame in confidence:
            threshold = np.quantile(frame, self.uncertain)
            out.append(frame >= threshold)
        return out

    def score(self, config: SkipConfig) -> Score:
        agreement = self._agreement[config]
        everywhere = self._agreement_all[config]
        labels = self._labels.get(config)
        return Score(
            config,
            agreement.miou(),
            everywhere.miou(),
            everywhere.pixel_accuracy(),
            labels.miou() if labels is not None else None,
            len(self._counted[config]),
            tuple(float(v) * 100.0 for v in labels.iou()) if labels is not None else None,
        )


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN if either side is constant."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("spearman needs two sequences of the same length, at least 2")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def _ranks(values: Sequence[float]) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks
