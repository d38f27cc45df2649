# SPDX-License-Identifier: Apache-2.0
"""One QoS vocabulary for every topic this package subscribes to or replays.

The names say reliability and durability only; depth is a separate argument,
so ``reliable`` means the same thing to the node (depth 1: only the newest
frame matters) and to the replay tool (a deeper queue).
- ``sensor_data``: best effort, volatile: what camera drivers publish; a
  best-effort subscriber also accepts reliable publishers.
- ``reliable``: reliable, volatile.
- ``system_default``: the middleware's defaults (reliable, volatile in Fast DDS).
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)

QOS_CHOICES = ("sensor_data", "reliable", "system_default")


def qos_profile(name: str, depth: int = 1) -> QoSProfile:
    """The profile called ``name`` with a keep-last history of ``depth``."""
    bases = {
        "sensor_data": qos_profile_sensor_data,
        "system_default": qos_profile_system_default,
        "reliable": QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
        ),
    }
    if name not in bases:
        raise ValueError(f"unknown QoS {name!r}; choose one of {', '.join(QOS_CHOICES)}")
    if depth < 1:
        raise ValueError(f"QoS depth must be >= 1, got {depth}")
    base = bases[name]
    return QoSProfile(
        depth=int(depth),
        history=HistoryPolicy.KEEP_LAST,
        reliability=base.reliability,
        durability=base.durability,
    )


def latched() -> QoSProfile:
    """Reliable, transient local, depth 1: a late subscriber gets the last message at once."""
    return QoSProfile(
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def matching_subscription(offered: list[QoSProfile], depth: int = 100) -> QoSProfile:
    """A subscription QoS compatible with every publisher in ``offered``, as rosbag2 records:
    reliable only if every publisher is reliable, transient local only if every one is.
    """
    reliable = bool(offered) and all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
    durable = bool(offered) and all(
        q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered
    )
    return QoSProfile(
        depth=depth,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if durable else DurabilityPolicy.VOLATILE,
    )
