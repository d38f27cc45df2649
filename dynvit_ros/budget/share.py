# SPDX-License-Identifier: Apache-2.0
"""Several cameras on one computer: divide the compute budget between them by weight.

The load monitor measures what processes other than perception leave free and
turns it into one budget per frame period (:class:`LoadBudgetPolicy`). With N
cameras, that compute is shared: camera i gets

    budget_i = clamp(B * min(1, P * w_i / sum(w_j over active cameras j)), min_budget_ms, B)

where B is the single-camera budget, w_i the camera's weight and
P = cores / threads per perception node: how many nodes can run a frame at
the same time. With P = 1 (each node uses every core) the cameras share the
machine in time; single-threaded nodes on two cores (P = 2) with equal weights
each keep the whole budget. A camera is active while it has reported a
processed frame within ``timeout_s``; an idle, deactivated or killed camera
frees its share after that. A camera that is not active is offered what it
would get if it joined (its weight counted in). Pure and clock-free.
"""

from __future__ import annotations

import math


def parse_weights(text: str) -> dict[str, float]:
    """'front=2, rear=1' -> {'front': 2.0, 'rear': 1.0}; raises ValueError with the reason."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"camera weight {item!r} is not NAMESPACE=WEIGHT")
        weights[normalize_namespace(name)] = check_weight(value, name.strip())
    return weights


def check_weight(value, name: str = "camera") -> float:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"weight of {name} must be a number, got {value!r}") from None
    if not math.isfinite(weight) or weight <= 0:
        raise ValueError(f"weight of {name} must be finite and > 0, got {weight}")
    return weight


def parse_cameras(text: str) -> list[str] | None:
    """'front, rear' -> ['/front', '/rear']; '*' -> None (discover); '' -> [] (one camera)."""
    text = text.strip()
    if text == "*":
        return None
    return [normalize_namespace(n) for n in text.split(",") if n.strip()]


def normalize_namespace(name: str) -> str:
    name = "/" + name.strip().strip("/")
    if any(not (c.isalnum() or c in "_/") for c in name) or "//" in name:
        raise ValueError(f"{name!r} is not a valid ROS namespace")
    return name


class CameraShares:
    def __init__(
        self,
        weights: dict[str, float] | None = None,
        timeout_s: float = 3.0,
        parallel: float = 1.0,
    ):
        self.weights = dict(weights or {})
        self.timeout_s = float(timeout_s)
        self.parallel = float(parallel)  # P: perception nodes that can run a frame at once
        self._seen: dict[str, float] = {}

    def weight(self, camera: str) -> float:
        return self.weights.get(camera, 1.0)

    def seen(self, camera: str, now: float) -> None:
        """The camera processed a frame at ``now``."""
        self._seen[camera] = now

    def forget(self, camera: str) -> None:
        self._seen.pop(camera, None)

    def active(self, now: float) -> list[str]:
        return sorted(c for c, t in self._seen.items() if now - t <= self.timeout_s)

    def share(self, camera: str, now: float) -> float:
        active = set(self.active(now)) | {camera}
        return self.weight(camera) / sum(self.weight(c) for c in active)

    def budgets(
        self, cameras, budget_ms: float, min_budget_ms: float, now: float
    ) -> dict[str, float]:
        """Each camera's budget out of the single-camera ``budget_ms``."""
        return {
            c: min(
                max(budget_ms * min(1.0, self.parallel * self.share(c, now)), min_budget_ms),
                budget_ms,
            )
            for c in cameras
        }
