# SPDX-License-Identifier: Apache-2.0
"""CamVid (SegNet copy): class table, loading, augmentation and the mIoU metric.

The data stays in ``../shared/data/CamVid`` (CC BY-NC 4.0) and is never copied
into the project. Everything here is pure numpy/OpenCV/torch.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import sys

import cv2
import numpy as np
import torch

from dynvit_ros.share import SOURCE_ROOT

CLASS_NAMES = [
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
]
# The SegNet tutorial's CamVid colours.
PALETTE = [
    [128, 128, 128],
    [128, 0, 0],
    [192, 192, 128],
    [128, 64, 128],
    [60, 40, 222],
    [128, 128, 0],
    [192, 128, 128],
    [64, 64, 128],
    [64, 0, 128],
    [64, 64, 0],
    [0, 128, 192],
]
IGNORE_ID = 11
NUM_CLASSES = len(CLASS_NAMES)
LICENSE = "CamVid (SegNet tutorial copy): CC BY-NC 4.0, personal and research use only"
DEFAULT_ROOT = Path(
    os.environ.get("DYNVIT_CAMVID", SOURCE_ROOT / ".." / "shared" / "data" / "CamVid")
)
NOT_FOUND = (
    "CamVid not found: pass --data, set $DYNVIT_CAMVID or place it at ../shared/data/CamVid"
)


def find_root(root: str | Path | None = None) -> Path | None:
    """The CamVid folder if present (argument, $DYNVIT_CAMVID, or ../shared/data/CamVid)."""
    for candidate in ([Path(root)] if root else []) + [
        DEFAULT_ROOT,
        Path.cwd() / ".." / "shared" / "data" / "CamVid",
    ]:
        if (candidate / "val.txt").exists():
            return candidate.resolve()
    return None


def require_root(root: str | Path | None = None) -> Path:
    """:func:`find_root`, or exit status 2 with the one message that says where CamVid is looked
    for.
    """
    found = find_root(root)
    if found is None:
        print(NOT_FOUND, file=sys.stderr)
        raise SystemExit(2)
    return found


@dataclass
class Split:
    images: list[np.ndarray]  # (H, W, 3) uint8 RGB
    labels: list[np.ndarray]  # (H, W) uint8 ids, 11 = ignore
    names: list[str]


def load_split(root: str | Path, split: str, limit: int | None = None) -> Split:
    root = Path(root)
    lines = (root / f"{split}.txt").read_text().split("\n")
    pairs = [line.split() for line in lines if line.strip()][:limit]
    images, labels, names = [], [], []
    for image_path, label_path in pairs:
        image_path = root / image_path.replace("/SegNet/CamVid/", "")
        label_path = root / label_path.replace("/SegNet/CamVid/", "")
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if bgr is None or label is None:
            raise FileNotFoundError(f"cannot read {image_path} or {label_path}")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        labels.append(label)
        names.append(image_path.stem)
    return Split(images, labels, names)


def class_weights(labels: list[np.ndarray]) -> torch.Tensor:
    """Median-frequency balancing (as SegNet used on CamVid)."""
    counts = np.zeros(NUM_CLASSES, dtype=np.float64)
    present = np.zeros(NUM_CLASSES, dtype=np.float64)
    for label in labels:
        hist = np.bincount(label.ravel(), minlength=IGNORE_ID + 1)[:NUM_CLASSES]
        counts += hist
        present += (hist > 0) * label.size
    freq = counts / np.maximum(present, 1)
    return torch.tensor(np.median(freq) / np.maximum(freq, 1e-12), dtype=torch.float32)


class Augment:
    """Random scale, crop, horizontal flip and colour jitter for one (image, label) pair."""

    def __init__(
        self,
        base_hw: tuple[int, int],
        crop_hw: tuple[int, int],
        scale_range=(0.5, 1.75),
        seed: int = 0,
    ):
        self.base_hw, self.crop_hw, self.scale_range = base_hw, crop_hw, scale_range
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        scale = rng.uniform(*self.scale_range)
        h, w = max(8, int(self.base_hw[0] * scale)), max(8, int(self.base_hw[1] * scale))
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        ch, cw = self.crop_hw
        pad_h, pad_w = max(0, ch - h), max(0, cw - w)
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
            label = cv2.copyMakeBorder(
                label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE_ID
            )
        y = rng.integers(0, image.shape[0] - ch + 1)
        x = rng.integers(0, image.shape[1] - cw + 1)
        image, label = image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        image = image.astype(np.float32)
        image = image * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25)  # contrast, brightness
        grey = image.mean(axis=2, keepdims=True)
        image = grey + (image - grey) * rng.uniform(0.7, 1.3)  # saturation
        return np.clip(image, 0, 255).astype(np.uint8), np.ascontiguousarray(label)


class ConfusionMatrix:
    """Accumulates a confusion matrix; mIoU over classes present in the ground truth or
    predictions.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_id: int = IGNORE_ID):
        self.num_classes, self.ignore_id = num_classes, ignore_id
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, prediction: np.ndarray, label: np.ndarray) -> None:
        valid = label != self.ignore_id
        index = label[valid].astype(np.int64) * self.num_classes + prediction[valid].astype(
            np.int64
        )
        self.matrix += np.bincount(index, minlength=self.num_classes**2).reshape(
            self.num_classes, -1
        )

    def iou(self) -> np.ndarray:
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        return float(np.nanmean(self.iou()) * 100.0)

    def pixel_accuracy(self) -> float:
        return float(np.diag(self.matrix).sum() / max(self.matrix.sum(), 1) * 100.0)
