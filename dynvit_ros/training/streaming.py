# SPDX-License-Identifier: Apache-2.0
"""Streaming mIoU: how right is the newest mask the robot has, at each camera frame?

After Li, Wang and Ramanan, "Towards Streaming Perception" (ECCV 2020), which
defines streaming AP; here for segmentation. Labelled frames are replayed as a
camera at a fixed rate. Labelled frame k is scored against the newest mask
that had been *published* when frame k+1 arrived (the mask of an older frame
if the node is behind; every pixel wrong if there is no mask yet; the last
frame against what was there one period later). One confusion matrix over
all frames, so a node that keeps up with stale or poor masks and one that
lags with good masks are compared on what a consumer would have used.
"""

from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np

from dynvit_ros.training.camvid import IGNORE_ID, NUM_CLASSES, ConfusionMatrix


def streaming_confusion(
    send_times: Sequence[float],
    labels: Sequence[np.ndarray],
    masks: Sequence[tuple[float, np.ndarray]],
    num_classes: int = NUM_CLASSES,
    ignore_id: int = IGNORE_ID,
) -> ConfusionMatrix:
    """``send_times[k]``: when labelled frame k was sent; ``masks``: (arrival time, mask)."""
    confusion = ConfusionMatrix(num_classes, ignore_id)
    order = sorted(range(len(masks)), key=lambda i: masks[i][0])
    arrivals = [masks[i][0] for i in order]
    period = float(np.median(np.diff(send_times))) if len(send_times) > 1 else 0.0
    for k, label in enumerate(labels):
        deadline = send_times[k + 1] if k + 1 < len(send_times) else send_times[k] + period
        newest = bisect.bisect_left(arrivals, deadline) - 1
        if newest >= 0:
            mask = masks[order[newest]][1]
        else:  # nothing published yet: every labelled pixel counts as wrong
            mask = np.where(label == ignore_id, 0, (label.astype(np.int64) + 1) % num_classes)
        confusion.update(mask, label)
    return confusion
