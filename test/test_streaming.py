# SPDX-License-Identifier: Apache-2.0
"""The streaming scorer: newest mask published before the next frame, all wrong when none."""

import numpy as np
import pytest

from dynvit_ros.training.streaming import streaming_confusion


def label(value):
    return np.full((2, 2), value, np.uint8)


def test_each_frame_is_scored_against_the_newest_mask_before_the_next_frame():
    sends = [0.0, 0.1, 0.2, 0.3]
    labels = [label(1), label(2), label(3), label(4)]
    # Frame 0's mask arrives late (after frame 1 was sent); frame 2's never; frame 3's in time.
    masks = [(0.15, label(1)), (0.25, label(3)), (0.32, label(4))]
    confusion = streaming_confusion(sends, labels, masks, num_classes=5, ignore_id=11)
    # frame 0: no mask by 0.1 -> wrong; frame 1: mask "1" (stale) vs 2 -> wrong;
    # frame 2: mask "3" (arrived 0.25 < 0.3) -> right; frame 3: mask "4" by 0.4 -> right.
    assert confusion.pixel_accuracy() == pytest.approx(50.0)


def test_ignored_pixels_stay_ignored_when_there_is_no_mask():
    lab = np.array([[11, 1], [1, 11]], np.uint8)
    confusion = streaming_confusion([0.0], [lab], [], num_classes=3, ignore_id=11)
    assert confusion.matrix.sum() == 2 and confusion.pixel_accuracy() == 0.0
