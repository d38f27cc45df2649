# SPDX-License-Identifier: Apache-2.0
"""builtin_interfaces Time/Duration <-> integer nanoseconds.

Works on any object with ``sec`` and ``nanosec`` (rclpy messages and rosbags
dataclasses alike), so bag tools and nodes share one conversion.
"""

from __future__ import annotations

NS_PER_S = 1_000_000_000


def to_ns(stamp) -> int:
    """A Time or Duration message -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def split_ns(ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> (sec, nanosec) with 0 <= nanosec < 1e9."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec


def seconds_to_fields(seconds: float) -> tuple[int, int]:
    """A non-negative duration in seconds -> (sec, nanosec)."""
    return split_ns(round(float(seconds) * NS_PER_S))
