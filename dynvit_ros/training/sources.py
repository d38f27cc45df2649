# SPDX-License-Identifier: Apache-2.0
"""Frames to calibrate skip levels on: a rosbag2 image topic, a folder of images, or images with
a matching folder of label PNGs (CamVid is one such pair of folders).

Frames are sampled evenly over the whole source, so a bag that starts in a
car park and ends on a road is represented by both. What cannot be used (a
frame that does not decode, a label of the wrong size, a missing label) is
skipped with a message naming the file or the bag message, collected in
:attr:`Frames.skipped`; a source with nothing usable raises
:class:`SourceError`, whose message says what was looked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
DEFAULT_IGNORE_ID = 255
MAX_PIXELS = 4096 * 4096


class SourceError(RuntimeError):
    """No usable frames: a missing bag or topic, an empty folder, or every frame bad."""


@dataclass
class Frames:
    """RGB frames (and, for a labelled source, class-id masks of the same size)."""

    images: list[np.ndarray]  # (H, W, 3) uint8 RGB
    names: list[str]  # where each frame came from, for messages
    labels: list[np.ndarray] | None = None  # (H, W) integer class ids
    ignore_id: int | None = None
    skipped: list[str] = field(default_factory=list)  # "what: why"
    info: dict = field(default_factory=dict)  # recorded in the level table

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def frame_hw(self) -> tuple[int, int] | None:
        """The frames' common size, or None when they differ."""
        sizes = {image.shape[:2] for image in self.images}
        return tuple(sizes.pop()) if len(sizes) == 1 else None


def even_indices(total: int, count: int | None) -> list[int]:
    """``count`` indices spread evenly over ``range(total)``, first and last included."""
    if count is None or count >= total:
        return list(range(total))
    if count < 1:
        raise ValueError(f"the frame count must be at least 1, got {count}")
    if count == 1:
        return [total // 2]
    return [round(i * (total - 1) / (count - 1)) for i in range(count)]


def parse_size(text: str) -> tuple[int, int]:
    """'480x640' (height x width) -> (480, 640)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"a size is HEIGHTxWIDTH, e.g. 480x640; got {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"a size must be positive, got {text!r}")
    return height, width


def _check_pixels(height: int, width: int, max_pixels: int) -> str | None:
    if height < 1 or width < 1:
        return f"zero-size image ({width}x{height})"
    if height * width > max_pixels:
        return f"image too large ({width}x{height}; at most {max_pixels} pixels)"
    return None


# ---------------------------------------------------------------------------
# rosbag2
# ---------------------------------------------------------------------------
def from_bag(
    path: str | Path,
    topic: str,
    count: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Frames:
    """``count`` frames spread evenly over ``topic`` (Image or CompressedImage) of a rosbag2."""
    from dynvit_ros.bags.io import BagError, bag_topics, read_messages, typestore
    from dynvit_ros.ros.image_io import to_rgb

    path = Path(path)
    try:
        topics = bag_topics(path)
    except BagError as exc:
        raise SourceError(str(exc)) from exc
    if topic not in topics:
        images = sorted(t for t, (kind, _) in topics.items() if kind in IMAGE_TYPES)
        raise SourceError(
            f"{path} has no topic {topic!r}; its image topics: {images or 'none'} "
            f"(all topics: {sorted(topics)})"
        )
    msgtype, total = topics[topic]
    if msgtype not in IMAGE_TYPES:
        raise SourceError(
            f"{path}: topic {topic} carries {msgtype}, not one of {', '.join(IMAGE_TYPES)}"
        )
    if total == 0:
        raise SourceError(f"{path}: topic {topic} has no messages")
    wanted = set(even_indices(total, count))
    store = typestore()
    images, names, skipped = [], [], []
    read = 0
    try:
        for index, message in enumerate(read_messages(path, [topic])):
            read = index + 1
            if index not in wanted:
                continue
            name = f"{path} {topic} message {index} (t={message.timestamp_ns} ns)"
            try:
                rgb = to_rgb(store.deserialize_cdr(message.data, message.msgtype), max_pixels)
            except Exception as exc:  # rosbags and the decoders raise several kinds
                skipped.append(f"{name}: {exc}")
                continue
            images.append(rgb)
            names.append(name)
    except BagError as exc:
        skipped.append(f"{path}: reading stopped after {read} of {total} messages: {exc}")
    else:
        if read < total:
            skipped.append(f"{path}: the index lists {total} messages on {topic}, {read} read")
    if not images:
        raise SourceError(
            f"{path}: none of the {len(wanted)} sampled messages of {topic} could be used"
            + (f" (first problem: {skipped[0]})" if skipped else "")
        )
    info = {
        "kind": "rosbag2",
        "bag": str(path),
        "topic": topic,
        "msgtype": msgtype,
        "messages": total,
        "frames": len(images),
    }
    return Frames(images, names, skipped=skipped, info=info)


# ---------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------
def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"image folder not found: {folder}")
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _label_path(image: Path, labels: Path) -> Path | None:
    """The label with the image's stem (PNG preferred: labels must be lossless)."""
    for suffix in (".png", image.suffix, ".tif", ".tiff", ".pgm"):
        candidate = labels / f"{image.stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_label(path: Path, image_hw: tuple[int, int]) -> tuple[np.ndarray | None, str | None]:
    """A single-channel integer label image of ``image_hw``, or (None, why not)."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        return None, f"{path}: not a readable image"
    if label.ndim != 2 or label.dtype.kind not in "ui":
        return None, (
            f"{path}: a label must be a single-channel PNG of class ids, got "
            f"{label.dtype} with shape {list(label.shape)}"
        )
    if label.shape != tuple(image_hw):
        return None, (
            f"{path}: label is {label.shape[1]}x{label.shape[0]}, its image is "
            f"{image_hw[1]}x{image_hw[0]} (width x height)"
        )
    return label, None


def from_folder(
    images: str | Path,
    labels: str | Path | None = None,
    count: int | None = None,
    ignore_id: int = DEFAULT_IGNORE_ID,
    max_pixels: int = MAX_PIXELS,
) -> Frames:
    """``count`` images spread evenly over a folder (sorted by name); with ``labels``, each
    image's label PNG of the same stem from that folder (class ids, ``ignore_id`` unscored).
    """
    images = Path(images)
    files = image_files(images)
    if not files:
        raise SourceError(
            f"{images} holds no images (looked for {', '.join(IMAGE_SUFFIXES)} files)"
        )
    label_dir = Path(labels) if labels is not None else None
    if label_dir is not None and not label_dir.is_dir():
        raise SourceError(f"label folder not found: {label_dir}")
    frames, names, masks, skipped = [], [], [], []
    for index in even_indices(len(files), count):
        path = files[index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            skipped.append(f"{path}: not a readable image")
            continue
        problem = _check_pixels(bgr.shape[0], bgr.shape[1], max_pixels)
        if problem:
            skipped.append(f"{path}: {problem}")
            continue
        if label_dir is not None:
            label_path = _label_path(path, label_dir)
            if label_path is None:
                skipped.append(f"{path}: no label {label_dir / (path.stem + '.png')}")
                continue
            label, problem = read_label(label_path, bgr.shape[:2])
            if problem:
                skipped.append(problem)
                continue
            masks.append(label)
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        names.append(str(path))
    if not frames:
        raise SourceError(
            f"{images}: none of the {len(even_indices(len(files), count))} sampled images "
            "could be used" + (f" (first problem: {skipped[0]})" if skipped else "")
        )
    info = {"kind": "folder", "images": str(images), "files": len(files), "frames": len(frames)}
    if label_dir is not None:
        info.update(kind="labelled folder", labels=str(label_dir), ignore_id=int(ignore_id))
    return Frames(
        frames,
        names,
        labels=masks if label_dir is not None else None,
        ignore_id=int(ignore_id) if label_dir is not None else None,
        skipped=skipped,
        info=info,
    )


def from_camvid(root: str | Path, split: str = "val", count: int | None = None) -> Frames:
    """CamVid (SegNet copy) as a labelled folder pair: ``<split>/`` and ``<split>annot/``."""
    from dynvit_ros.training import camvid

    root = Path(root)
    frames = from_folder(
        root / split, root / f"{split}annot", count=count, ignore_id=camvid.IGNORE_ID
    )
    frames.info.update(kind="CamVid", split=split, classes=camvid.NUM_CLASSES)
    return frames
