# SPDX-License-Identifier: Apache-2.0
"""Several cameras on one computer: divide the compute budget between them by weight.

The load monitor measures what processes other than perception leave free and
turns it into one budget per frame period (:class:`LoadBudgetPolicy`). With N
cameras, that compute is shared: camera i gets

    budget_i = clamp(B * P_i * w_i / sum(w_j over active cameras j), min_budget_ms, B_max)

where B is the single-camera budget (the machine's share over a frame period,
in ms), w_i the camera's weight and P_i = cores / the threads camera i's node
runs (as it reports them; before that, the ``parallel`` given): a node on fewer
threads than cores takes longer for the same share of the machine. With P = 1
(each node uses every core) the cameras share the machine in time;
single-threaded nodes on two cores (P = 2) with equal weights each keep the
whole budget, and one single-threaded camera alone gets 2B. A camera is
active while it has reported a processed frame within ``timeout_s``; an idle,
deactivated or killed camera frees its share after that. A camera that is not
active is offered what it would get if it joined (its weight counted in).

Feasibility floor: each camera reports, with every processed frame, the
smallest budget it can meet under the load it sees (the predicted
deadline quantile of its fastest level, ``InferenceStats.fastest_quantile_ms``).
The budget above is measured in CPU time left by other processes, while a
node's frame times already stretch with that contention; on a crowded machine
the product of the two falls below what even the fastest level can do, and
such a budget only turns into deadline misses. So

    final_i = clamp(max(budget_i, margin * floor_i), min_budget_ms, B_max)

where B_max is the policy's largest budget (the frame period): at its floor a
camera already runs its cheapest level, the most it can yield. The floor holds
while the camera is active. Pure and clock-free.
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
        cores: int = 0,
    ):
        self.weights = dict(weights or {})
        self.timeout_s = float(timeout_s)
        # P: perception nodes that can run a frame at once, for a camera whose node has not
        # said how many threads it runs; with ``cores``, cores / threads for one that has.
        self.parallel = float(parallel)
        self.cores = int(cores)
        self._seen: dict[str, float] = {}
        self._floors: dict[str, float] = {}
        self._threads: dict[str, int] = {}

    def weight(self, camera: str) -> float:
        return self.weights.get(camera, 1.0)

    def seen(self, camera: str, now: float, floor_ms: float = math.nan, threads: int = 0) -> None:
        """The camera processed a frame at ``now``; ``floor_ms``: the least budget it can meet;
        ``threads``: the threads its frames use (0: not said, the last count holds).
        """
        self._seen[camera] = now
        if 0 < threads <= 4096:
            self._threads[camera] = int(threads)
        floor = float(floor_ms)
        if math.isfinite(floor) and floor > 0:
            self._floors[camera] = floor
        else:  # unknown (a node that does not report it): no floor
            self._floors.pop(camera, None)

    def forget(self, camera: str) -> None:
        self._seen.pop(camera, None)
        self._floors.pop(camera, None)
        self._threads.pop(camera, None)

    def parallel_of(self, camera: str) -> float:
        """How many frames like this camera's can run at once: cores / its threads."""
        threads = self._threads.get(camera, 0)
        if threads and self.cores > 0:
            return max(1.0, self.cores / threads)
        return self.parallel

    def floor(self, camera: str, now: float) -> float:
        """The least budget ``camera`` reported it can meet; 0 while unknown or inactive."""
        t = self._seen.get(camera)
        if t is None or now - t > self.timeout_s:
            return 0.0
        return self._floors.get(camera, 0.0)

    def active(self, now: float) -> list[str]:
        return sorted(c for c, t in self._seen.items() if now - t <= self.timeout_s)

    def share(self, camera: str, now: float) -> float:
        active = set(self.active(now)) | {camera}
        return self.weight(camera) / sum(self.weight(c) for c in active)

    def budgets(
        self,
        cameras,
        budget_ms: float,
        min_budget_ms: float,
        now: float,
        max_budget_ms: float | None = None,
        margin: float = 1.0,
        machine_share: bool = True,
    ) -> dict[str, float]:
        """Each camera's budget out of the single-camera ``budget_ms`` (a share of the whole
        machine, in ms of the period): its weight's share, times how many of its frames can
        run at once (a node on fewer threads than cores takes as long for a smaller share of
        the machine), raised to its floor (times ``margin``) but never above
        ``max_budget_ms`` (default ``budget_ms``). ``machine_share=False``: ``budget_ms`` is
        already a time per frame (a budget set by hand), split by weight but not by threads.
        """
        ceiling = budget_ms if max_budget_ms is None else max(max_budget_ms, budget_ms)
        out = {}
        for c in cameras:
            parallel = self.parallel_of(c) if machine_share else 1.0
            shared = budget_ms * parallel * self.share(c, now)
            floored = max(shared, margin * self.floor(c, now), min_budget_ms)
            out[c] = min(floored, ceiling)
        return out
