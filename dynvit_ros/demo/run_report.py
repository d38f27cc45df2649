# SPDX-License-Identifier: Apache-2.0
"""Read a recorded run (output bag) into a timeline, and draw its plots and overlays."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynvit_ros.bags.io import read_messages, typestore
from dynvit_ros.ros.stamps import to_ns

STATS_TOPIC = "/segmentation/stats"
BUDGET_TOPIC = "/compute_budget"
MASK_TOPIC = "/segmentation/mask"


@dataclass
class Timeline:
    t0_ns: int = 0  # wall time of the first record
    t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # s since first record, per frame
    level: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    predicted_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    measured_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    budget_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    met: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    frame_stamps: list[int] = field(default_factory=list)
    budget_t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # budget topic samples
    budget_topic_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def frames(self) -> int:
        return len(self.t)

    def miss_pct(self, mask: np.ndarray | None = None) -> float:
        met = self.met if mask is None else self.met[mask]
        return float(100.0 * (1 - met.mean())) if len(met) else float("nan")


def read_timeline(bag: Path) -> Timeline:
    store = typestore()
    rows, budgets, t0 = [], [], None
    for msg in read_messages(bag, [STATS_TOPIC, BUDGET_TOPIC]):
        t0 = msg.timestamp_ns if t0 is None else t0
        data = store.deserialize_cdr(msg.data, msg.msgtype)
        if msg.topic == STATS_TOPIC:
            rows.append(((msg.timestamp_ns - t0) / 1e9, data))
        else:
            budgets.append(((msg.timestamp_ns - t0) / 1e9, float(data.budget_ms)))
    tl = Timeline(t0_ns=t0 or 0)
    if rows:
        tl.t = np.array([r[0] for r in rows])
        tl.level = np.array([r[1].skip_level for r in rows])
        tl.predicted_ms = np.array([r[1].predicted_ms for r in rows])
        tl.measured_ms = np.array([r[1].measured_ms for r in rows])
        tl.budget_ms = np.array([r[1].budget_ms for r in rows])
        tl.met = np.array([bool(r[1].deadline_met) for r in rows])
        tl.dropped = np.array([r[1].frames_dropped for r in rows])
        tl.frame_stamps = [to_ns(r[1].header.stamp) for r in rows]
    if budgets:
        tl.budget_t = np.array([b[0] for b in budgets])
        tl.budget_topic_ms = np.array([b[1] for b in budgets])
    return tl


def read_masks(bag: Path, topic: str = MASK_TOPIC) -> dict[int, np.ndarray]:
    """Output masks keyed by their header stamp (ns)."""
    store = typestore()
    masks = {}
    for msg in read_messages(bag, [topic]):
        image = store.deserialize_cdr(msg.data, msg.msgtype)
        masks[to_ns(image.header.stamp)] = np.asarray(image.data, np.uint8).reshape(
            image.height, image.step
        )[:, : image.width]
    return masks


def plot_timeline(
    tl: Timeline, out: Path, title: str, spans: list[tuple[float, float, str]] = ()
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []

    def shade(ax):
        for start, end, label in spans:
            ax.axvspan(start, end, color="orange", alpha=0.15, label=label)

    fig, ax = plt.subplots(figsize=(10, 4))
    shade(ax)
    ax.plot(tl.t, tl.budget_ms, label="budget in force", color="black", lw=1.5)
    ax.plot(tl.t, tl.predicted_ms, ".", label="predicted", ms=3, color="tab:blue")
    ax.plot(tl.t, tl.measured_ms, ".", label="measured", ms=3, color="tab:red")
    ax.set(xlabel="time (s)", ylabel="ms per frame", title=f"{title}: budget vs latency")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out / "latency.png"))

    fig, ax = plt.subplots(figsize=(10, 3))
    shade(ax)
    ax.step(tl.t, tl.level, where="post", color="tab:green")
    ax.set(xlabel="time (s)", ylabel="skip level", title=f"{title}: skip level (0 = full model)")
    ax.invert_yaxis()
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out / "skip_level.png"))

    fig, ax = plt.subplots(figsize=(10, 3))
    shade(ax)
    misses = ~tl.met
    ax.plot(tl.t, np.cumsum(misses), color="tab:red", label="cumulative deadline misses")
    ax.plot(tl.t[misses], np.cumsum(misses)[misses], "x", color="tab:red")
    ax.plot(tl.t, np.cumsum(tl.dropped), color="tab:gray", label="cumulative dropped frames")
    ax.set(xlabel="time (s)", ylabel="frames", title=f"{title}: deadline misses and drops")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out / "misses.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def save_overlays(
    frames: dict[int, np.ndarray],
    masks: dict[int, np.ndarray],
    palette: np.ndarray,
    out: Path,
    count: int = 3,
) -> list[Path]:
    """Side-by-side frame | colour mask | overlay PNGs for ``count`` frames spread over the run."""
    import cv2

    from dynvit_ros.engine.masks import colorize, overlay

    stamps = [s for s in sorted(masks) if s in frames]
    chosen = (
        [stamps[int(i)] for i in np.linspace(0, len(stamps) - 1, min(count, len(stamps)))]
        if stamps
        else []
    )
    paths = []
    for i, s in enumerate(chosen):
        rgb = frames[s]
        colour = colorize(masks[s], palette)
        panel = np.concatenate([rgb, colour, overlay(rgb, colour)], axis=1)
        path = out / f"overlay_{i}.png"
        cv2.imwrite(str(path), panel[:, :, ::-1])
        paths.append(path)
    return paths
