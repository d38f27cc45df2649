# SPDX-License-Identifier: Apache-2.0
"""Budget-tracking benchmark: the dynamic node against each static skip level, on CamVid val.

    make bench-budget     # or: python benchmarks/bench_budget.py --seconds 20

One real segformer_node (installed executable, own process) receives CamVid
val frames at camera rate over DDS while this script publishes a budget
trace on /compute_budget. Traces: a step, a ramp and a sine between 40% and
100% of the full level's latency on these frames (raised to 1.1x the fastest
level's latency where that is more), and a real CPU burst (busy
processes on half the cores for half the run) with the load monitor setting
the budget. The sine trace runs quiet and again disturbed: a competing process
pinned to one core starts and stops every 2 s (``--disturb-period``), dynamic
against every static level in both. Dynamic runs with the shipped
``selection: streaming`` (the budget caps compute; a level may take every
other frame, its deadline then two budgets) and, as "dynamic_deadline", with
``selection: deadline`` (every frame within its budget). Node parameters not set here
keep their shipped defaults. The node's mode and skip level are switched live
through its parameter service between runs. For each run: deadline-miss rate, mean
mIoU over the processed frames (masks matched to labels by header stamp),
frames dropped. Misses are counted twice: ``miss_pct`` against each frame's own
deadline (``InferenceStats.deadline_ms``: for the streaming choice up to ceil(stride)
budgets, with its 10% tolerance), ``budget_miss_pct`` against the budget in force for
every mode alike. Selection overhead is the per-frame cost of the latency
model's predictions plus the level choice, timed in-process on the same code.
Ends with one JSON line.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
import statistics
import sys
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from benchclient import (  # noqa: E402
    BenchClient,
    OnOffDisturbance,
    camera_node_params,
    camvid_val_jpegs,
    model_parser,
)


def trace_range(full_ms: float, fastest_ms: float, safety: float = 1.1) -> tuple[float, float]:
    """Budgets span 40-100% of the full level, but never go below what the fastest level needs
    (with the node's default latency_safety): a budget no level meets tests nothing but the
    host."""
    return max(0.4 * full_ms, safety * fastest_ms), full_ms


def trace_budget(kind: str, t: float, seconds: float, lo: float, hi: float) -> float:
    if kind == "step":
        return lo if seconds / 3 <= t < 2 * seconds / 3 else hi
    if kind == "ramp":
        x = abs(2 * t / seconds - 1)  # 1 -> 0 -> 1
        return lo + (hi - lo) * x
    if kind == "sine":
        return lo + (hi - lo) * (0.5 + 0.5 * math.cos(2 * math.pi * t / (seconds / 2)))
    raise ValueError(kind)


def selection_overhead_ms(
    model_path: Path, levels_path: Path, cache_dir: Path, iterations: int = 2000
) -> float:
    from dynvit_ros.budget.policy import LevelSelector
    from dynvit_ros.engine.runtime import SegmentationRuntime
    from dynvit_ros.latency.base import LatencyContext, load_latency_model

    runtime = SegmentationRuntime.load(model_path, levels_path)
    context = LatencyContext(
        model=runtime.model,
        configs=runtime.levels.configs,
        input_hw=runtime.input_hw,
        options={"cache_dir": str(cache_dir), "progress": False},
        model_id=str(model_path),
    )
    latency = load_latency_model("profiled", context)
    selector = LevelSelector(len(runtime.levels))
    times = []
    for i in range(iterations):
        start = time.perf_counter()
        level = selector.select(
            latency.predict_all(runtime.levels.configs, runtime.input_hw), 50.0 + i % 50
        )
        latency.observe(runtime.levels[level].config, runtime.input_hw, 40.0)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class Bench(BenchClient):
    def __init__(self, domain: int, frames: list, labels: list, camera_hz: float):
        from rclpy.qos import QoSPresetProfiles, QoSProfile
        from sensor_msgs.msg import CompressedImage, Image

        from dynvit_ros.msg import ComputeBudget, InferenceStats

        super().__init__(domain, "bench_budget")
        self.image_pub = self.node.create_publisher(
            CompressedImage, "/camera/image_raw/compressed", QoSPresetProfiles.SENSOR_DATA.value
        )
        self.budget_pub = self.node.create_publisher(ComputeBudget, "/compute_budget", 10)
        self.node.create_subscription(
            InferenceStats, "/segmentation/stats", self._on_stats, QoSProfile(depth=50)
        )
        self.node.create_subscription(
            Image, "/segmentation/mask", self._on_mask, QoSProfile(depth=50)
        )
        self.frames, self.labels, self.period = frames, labels, 1.0 / camera_hz
        self.stats, self.masks = [], {}
        self.ComputeBudget = ComputeBudget

    def _on_stats(self, msg) -> None:
        self.stats.append(msg)

    def _on_mask(self, msg) -> None:
        # stamp.sec is the send counter (unique per frame), nanosec / 1000 the CamVid index.
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec // 1000)
        self.masks[key] = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[
            :, : msg.width
        ]

    def run(self, seconds: float, budget_fn) -> dict:
        from sensor_msgs.msg import CompressedImage

        self.stats, self.masks = [], {}
        self.spin(0.5)
        self.stats, self.masks = [], {}
        start = time.monotonic()
        next_frame, i = start, 0
        while (now := time.monotonic()) - start < seconds:
            if now >= next_frame:
                t = now - start
                budget = budget_fn(t)
                if budget is not None:
                    self.budget_pub.publish(
                        self.ComputeBudget(
                            budget_ms=float(budget),
                            pinned_level=-1,
                            source="bench_budget",
                            valid=True,
                        )
                    )
                index = i % len(self.frames)
                msg = CompressedImage(format="jpeg", data=self.frames[index])
                msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + i, index * 1000
                msg.header.frame_id = "camera"
                self.image_pub.publish(msg)
                i += 1
                next_frame += self.period
            self.executor.spin_once(timeout_sec=0.002)
        self.spin(1.0)
        return self._summary(i)

    def _summary(self, sent: int) -> dict:
        from dynvit_ros.training.camvid import ConfusionMatrix

        confusion = ConfusionMatrix()
        for (_, index), mask in self.masks.items():
            confusion.update(mask, self.labels[index])
        met = [s.deadline_met for s in self.stats]
        # Every mode against the same line: the budget in force, no stride or tolerance.
        within = [s.measured_ms <= s.budget_ms for s in self.stats]
        return {
            "sent": sent,
            "processed": len(self.stats),
            "processed_pct": round(100.0 * len(self.stats) / max(sent, 1), 1),
            "miss_pct": round(100.0 * (1 - sum(met) / max(len(met), 1)), 1),
            "budget_miss_pct": round(100.0 * (1 - sum(within) / max(len(within), 1)), 1),
            "miou": round(confusion.miou(), 2) if self.masks else float("nan"),
            "dropped": int(sum(s.frames_dropped for s in self.stats)),
            "mean_level": round(float(np.mean([s.skip_level for s in self.stats])), 2)
            if self.stats
            else None,
            "levels": [int(s.skip_level) for s in self.stats],
            "budget": [round(float(s.budget_ms), 1) for s in self.stats],
            "measured": [round(float(s.measured_ms), 1) for s in self.stats],
        }


def main(argv=None) -> int:
    p = model_parser(__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    p.add_argument("--camera-hz", type=float, default=10.0)
    p.add_argument("--traces", nargs="+", default=["sine", "step", "ramp", "burst"])
    p.add_argument(
        "--disturb-period", type=float, default=2.0, help="s on / s off of the disturbance"
    )
    p.add_argument("--no-disturbed", action="store_true", help="skip the disturbed sine runs")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_budget")
    p.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default=None, help="node's backend"
    )
    args = p.parse_args(argv)

    from dynvit_ros.demo.demo import cpu_burst
    from dynvit_ros.demo.node_process import NodeProcess
    from dynvit_ros.engine.levels import LevelTable
    from dynvit_ros.hostload import HostLoad

    frames, labels, frame_hw = camvid_val_jpegs()
    levels = LevelTable.load(args.levels)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = (REPO / "outputs" / "cache").resolve()
    domain = 150 + os.getpid() % 50
    seg = NodeProcess(
        "segformer_node",
        "segformer_node",
        camera_node_params(
            args.model,
            args.levels,
            frame_hw,
            latency_model="profiled",
            mode="auto",
            default_budget_ms=1000.0,
            budget_timeout_s=1.0,
            # The node's default unless given: the benchmark measures what ships.
            **({"backend": args.backend} if args.backend else {}),
        ),
        domain,
        args.out / "logs",
        remaps={"image": "/camera/image_raw/compressed"},
    )
    bench = Bench(domain, frames, labels, args.camera_hz)
    monitor = None
    results: dict = {}
    with HostLoad() as load:
        try:
            bench.wait_for_publisher("/segmentation/stats", [seg])
            bench.spin(2.0)
            # "Full-level latency" is what the full model takes on these frames in this node
            # (camera-size resize and mask upsampling included), not the level table's figure at
            # the model's input size.
            bench.set_params("segformer_node", {"mode": "fixed", "skip_level": 0})
            full_ms = statistics.median(
                bench.run(min(10.0, args.seconds), lambda t: 1000.0)["measured"]
            )
            bench.set_params("segformer_node", {"mode": "fixed", "skip_level": len(levels) - 1})
            fastest_ms = statistics.median(
                bench.run(min(10.0, args.seconds), lambda t: 1000.0)["measured"]
            )
            lo, hi = trace_range(full_ms, fastest_ms)
            print(
                f"full level on these frames: {full_ms:.1f} ms "
                f"(table: {levels[0].latency_ms} ms); "
                f"fastest {fastest_ms:.1f} ms (table: {levels[-1].latency_ms} ms); "
                f"traces {lo:.1f}-{hi:.1f} ms",
                file=sys.stderr,
            )
            runs = [(trace, "auto", None) for trace in args.traces]
            runs += [("sine", "fixed", k) for k in range(len(levels))]
            runs += [(trace, "fixed", 0) for trace in args.traces if trace != "sine"]
            runs += [("sine", "deadline", None)]
            if not args.no_disturbed:
                runs += [("disturbed", "auto", None), ("disturbed", "deadline", None)]
                runs += [("disturbed", "fixed", k) for k in range(len(levels))]
            for trace, mode, level in runs:
                # "deadline": auto mode with selection: deadline; "auto": the shipped
                # streaming one.
                selection = {"selection": "deadline" if mode == "deadline" else "streaming"}
                bench.set_params(
                    "segformer_node",
                    {
                        "mode": "fixed" if mode == "fixed" else "auto",
                        **selection,
                        **({"skip_level": level} if level is not None else {}),
                    },
                )
                label = f"{trace}/{mode}" + (f"/{level}" if level is not None else "")
                if trace == "burst":
                    if monitor is None:
                        monitor = NodeProcess(
                            "load_monitor_node",
                            "load_monitor_node",
                            {
                                "target_rate_hz": args.camera_hz,
                                "publish_rate_hz": 5.0,
                                "perception_pid": seg.pid,
                                "max_budget_ms": round(full_ms, 1),
                            },
                            domain,
                            args.out / "logs",
                        )
                        bench.spin(3.0)
                    procs = cpu_burst(args.seconds / 2, max(1, (os.cpu_count() or 2) // 2))
                    row = bench.run(args.seconds, lambda t: None)
                    for proc in procs:
                        proc.join(timeout=1)
                else:
                    if monitor is not None:
                        monitor.stop()
                        monitor = None
                    sine = "sine" if trace == "disturbed" else trace

                    def budget(t, k=sine):
                        return trace_budget(k, t, args.seconds, lo, hi)

                    if trace == "disturbed":
                        with OnOffDisturbance(args.disturb_period):
                            row = bench.run(args.seconds, budget)
                    else:
                        row = bench.run(args.seconds, budget)
                results[label] = row
                print(
                    f"{label:16} processed {row['processed']:4d}/{row['sent']:4d}  "
                    f"miss {row['miss_pct']:5.1f}% (over budget {row['budget_miss_pct']:5.1f}%)  "
                    f"mIoU {row['miou']:6.2f}  dropped {row['dropped']:4d}  "
                    f"mean level {row['mean_level']}",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            bench.close()
            if monitor is not None:
                monitor.stop()
            seg.stop()

    host_load = load.report()
    select_ms = selection_overhead_ms(args.model, args.levels, cache)
    (args.out / "runs.json").write_text(json.dumps(results, indent=1))
    _plot(results, args.out, args.traces + ([] if args.no_disturbed else ["disturbed"]))
    print(
        f"\nBudget tracking, CamVid val at {args.camera_hz:g} Hz, {args.seconds:g} s per run, "
        f"full level {full_ms:.1f} ms, fastest {fastest_ms:.1f} ms (measured on these frames), "
        f"traces {lo:.1f}-{hi:.1f} ms"
    )
    print(
        f"{'trace':8} {'mode':12} {'miss %':>7} {'>budget':>7} {'mIoU':>7} {'dropped':>8} "
        f"{'processed':>9} {'mean level':>10}"
    )
    for label, row in results.items():
        trace, mode, *level = label.split("/")
        name = mode + (f" L{level[0]}" if level else "")
        print(
            f"{trace:8} {name:12} {row['miss_pct']:7.1f} {row['budget_miss_pct']:7.1f} "
            f"{row['miou']:7.2f} {row['dropped']:8d} {row['processed']:9d} "
            f"{row['mean_level']!s:>10}"
        )
    print(f"selection overhead: {select_ms:.3f} ms per frame (median)")
    print(f"host load: {host_load}")

    def compare(trace: str) -> dict:
        keys = ("miss_pct", "budget_miss_pct", "miou", "dropped", "processed_pct")
        auto = results.get(f"{trace}/auto", {})
        deadline = results.get(f"{trace}/deadline", {})
        return {
            "dynamic": {k: auto.get(k) for k in keys},
            "dynamic_deadline": {k: deadline.get(k) for k in keys},
            "static": [
                {
                    "level": k,
                    **{
                        m: results[f"{trace}/fixed/{k}"][m]
                        for m in ("miss_pct", "budget_miss_pct", "miou")
                    },
                }
                for k in range(len(levels))
                if f"{trace}/fixed/{k}" in results
            ],
        }

    print(
        json.dumps(
            {
                "backend": args.backend or "node default",
                "full_ms": round(full_ms, 1),
                "fastest_ms": round(fastest_ms, 1),
                "trace_ms": [round(lo, 1), round(hi, 1)],
                **compare("sine"),
                "disturbed": compare("disturbed"),
                "select_ms": round(select_ms, 4),
                "host_load": host_load,
                "traces": {
                    label: {k: row[k] for k in ("miss_pct", "budget_miss_pct", "miou", "dropped")}
                    for label, row in results.items()
                },
            }
        )
    )
    return 0


def _plot(results: dict, out: Path, traces: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(traces), 1, figsize=(10, 2.6 * len(traces)), squeeze=False)
    for ax, trace in zip(axes[:, 0], traces):
        auto = results.get(f"{trace}/auto")
        full = results.get(f"{trace}/fixed/0")
        if auto:
            ax.plot(auto["budget"], color="black", label="budget")
            ax.plot(auto["measured"], ".", ms=3, color="tab:blue", label="dynamic: measured ms")
        if full:
            ax.plot(full["measured"], ".", ms=3, color="tab:red", label="static full: measured ms")
        ax.set(title=f"{trace} trace", xlabel="processed frame", ylabel="ms")
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "budget_tracking.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
