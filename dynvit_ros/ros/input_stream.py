# SPDX-License-Identifier: Apache-2.0
"""What the camera stream says about frames the node never saw.

Frames lost before the node (in the driver, in DDS, on a full queue) are
invisible to its counters, which start at arrival. Their trace is in the
header stamps: a camera stamps at a steady period, so a gap of k periods
between two arrivals means about k - 1 frames went missing. The period is the
median of recent stamp intervals, so a few gaps do not distort it. Pure.
"""

from __future__ import annotations

from collections import deque
import statistics


class InputStream:
    def __init__(self, window: int = 60):
        self._intervals: deque[int] = deque(maxlen=window)
        self._last_ns: int | None = None
        self.frames_lost = 0  # estimated frames missing between arrivals
        self.out_of_order = 0

    def arrived(self, stamp_ns: int) -> None:
        """A frame with this header stamp (ns) arrived; stamps of 0 (unset) are ignored."""
        if stamp_ns <= 0:
            return
        last, self._last_ns = self._last_ns, stamp_ns
        if last is None:
            return
        interval = stamp_ns - last
        if interval <= 0:
            self.out_of_order += 1
            return
        period = self.period_ns()
        if period and interval > 1.5 * period:
            self.frames_lost += round(interval / period) - 1
        else:
            self._intervals.append(interval)

    def period_ns(self) -> float | None:
        """The camera's frame period from its stamps (needs a few frames)."""
        if len(self._intervals) < 5:
            return None
        return float(statistics.median(self._intervals))

    def rate_hz(self) -> float:
        period = self.period_ns()
        return 1e9 / period if period else 0.0

    def faster_than(self, frame_period_ms: float) -> bool:
        """The camera delivers frames clearly faster than a budget's assumed frame period."""
        rate = self.rate_hz()
        return bool(rate and frame_period_ms > 0 and rate > 1.2 * 1000.0 / frame_period_ms)
