# SPDX-License-Identifier: Apache-2.0
"""A procedurally drawn street sequence, and the command that writes it as the bundled sample bag.

    python -m dynvit_ros.demo.sample_scene --out data/sample_street --frames 120

The frames are synthetic (no CamVid pixels), so the project is free to ship
them: sky, buildings, trees, poles, pavement, a road with moving lane marks
and cars, seen from a camera driving forward.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

import cv2
import numpy as np

from dynvit_ros.bags.io import write_image_bag


def street_frame(index: int, height: int = 240, width: int = 320, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = index * 0.08
    img = np.zeros((height, width, 3), np.uint8)
    horizon = int(height * 0.45)
    sky = np.linspace(235, 150, horizon)[:, None]
    img[:horizon] = np.stack([sky * 0.75, sky * 0.85, sky], -1).astype(np.uint8)
    # Buildings recede towards the vanishing point and slide outwards as the camera moves.
    for side in (-1, 1):
        for i in range(6):
            phase = (i / 6 + t * 0.15) % 1.0
            x_near = width / 2 + side * (width * (0.18 + 0.55 * phase))
            w = int(20 + 50 * phase)
            top = int(horizon - (30 + 80 * phase) - rng.integers(0, 20))
            x0 = int(min(x_near, x_near + side * w))
            colour = tuple(int(c) for c in rng.integers(90, 170, 3))
            cv2.rectangle(img, (x0, top), (x0 + w, horizon + int(20 * phase)), colour, -1)
            for wy in range(top + 6, horizon, 12):
                cv2.line(img, (x0 + 4, wy), (x0 + w - 4, wy), (60, 70, 90), 2)
    road = np.array(
        [
            [width * 0.45, horizon],
            [width * 0.55, horizon],
            [width * 1.1, height],
            [-width * 0.1, height],
        ],
        np.int32,
    )
    cv2.fillPoly(
        img,
        [
            np.array(
                [[0, horizon + 10], [width * 0.45, horizon], [width * 0.1, height], [0, height]],
                np.int32,
            )
        ],
        (150, 140, 170),
    )
    cv2.fillPoly(
        img,
        [
            np.array(
                [
                    [width, horizon + 10],
                    [width * 0.55, horizon],
                    [width * 0.9, height],
                    [width, height],
                ],
                np.int32,
            )
        ],
        (150, 140, 170),
    )
    cv2.fillPoly(img, [road], (110, 100, 120))
    for k in range(8):
        d = ((k / 8) + t * 0.5) % 1.0
        y0, y1 = (
            horizon + (height - horizon) * d**2,
            horizon + (height - horizon) * min(1, (d + 0.05)) ** 2,
        )
        cv2.line(
            img, (width // 2, int(y0)), (width // 2, int(y1)), (240, 240, 240), max(1, int(4 * d))
        )
    for side in (-1, 1):  # trees and poles along the pavement
        for k in range(4):
            d = ((k / 4) + t * 0.4 + (0.1 if side > 0 else 0)) % 1.0
            x = int(width / 2 + side * width * (0.08 + 0.5 * d))
            y = int(horizon + (height - horizon) * d * 0.6)
            size = int(6 + 30 * d)
            if k % 2:
                cv2.circle(img, (x, y - size), size, (40, 120, 40), -1)
                cv2.line(img, (x, y - size), (x, y + size // 2), (70, 50, 30), max(1, size // 6))
            else:
                cv2.line(
                    img, (x, y - 2 * size), (x, y + size // 2), (180, 180, 150), max(1, size // 8)
                )
    for k, lane in enumerate((-0.2, 0.22)):  # cars
        d = (0.3 + 0.25 * k + 0.2 * np.sin(t * (0.6 + 0.3 * k))) % 1.0
        cx = int(width / 2 + lane * width * (0.2 + 1.2 * d))
        cy = int(horizon + (height - horizon) * d)
        w, h = int(20 + 70 * d), int(14 + 40 * d)
        cv2.rectangle(img, (cx - w // 2, cy - h), (cx + w // 2, cy), (60 + 80 * k, 30, 120), -1)
        cv2.rectangle(img, (cx - w // 3, cy - h), (cx + w // 3, cy - h // 2), (40, 50, 60), -1)
    noise = np.random.default_rng(index).normal(0, 3, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def write_sample_bag(
    out: Path,
    frames: int,
    rate_hz: float,
    height: int,
    width: int,
    topic: str,
    frame_id: str,
    compressed: bool,
    storage: str = "mcap",
) -> Path:
    images = (street_frame(i, height, width) for i in range(frames))
    return write_image_bag(out, images, rate_hz, topic, frame_id, compressed, storage)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write the procedurally generated sample street bag.")
    p.add_argument("--out", default="data/sample_street")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    p.add_argument("--topic", default="/camera/image_raw/compressed")
    p.add_argument("--frame-id", default="camera_optical_frame")
    p.add_argument(
        "--raw", action="store_true", help="sensor_msgs/Image instead of JPEG CompressedImage"
    )
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    args = p.parse_args(argv)
    path = write_sample_bag(
        Path(args.out),
        args.frames,
        args.rate,
        *args.size,
        args.topic,
        args.frame_id,
        not args.raw,
        args.storage,
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
