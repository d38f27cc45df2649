# SPDX-License-Identifier: Apache-2.0
"""Streaming mIoU of the dynamic node against every static level, at 30 and 10 Hz.

    make bench-streaming     # or: python benchmarks/bench_streaming.py

CamVid val frames in file order are replayed as a camera (CompressedImage)
through the real segformer_node, with load_monitor_node in the loop
(target_rate_hz = the camera rate; this script counted as the camera
pipeline, not as other load), quiet and with a CPU burst on one core for the
middle third. Dynamic runs twice: ``selection: streaming`` (the level of best
streaming value within the budget: "dynamic" in the JSON) and ``selection:
deadline`` (every frame within the budget: "dynamic_deadline"). Each
labelled frame is scored against the newest mask published before the next
frame arrived (dynvit_ros/training/streaming.py). Each mode replays the
frames ``--passes`` times (3), the modes taking turns within a pass so that a
host that drifts over the minutes hits each alike, and its confusion matrices
are pooled over the passes (runs.json keeps each pass's figure, per-frame
trace and the node's /diagnostics). Also printed: mIoU of the processed frames
and deadline misses. The node runs with its shipped parameters;
``--fixed-threads`` also runs every mode with ``adaptive_threads`` off, taking
turns with the others ("fixed_threads" in the JSON), and ``--variant
PARAM=VALUE`` likewise with any node parameter ("variant"; ``--variant-modes
dynamic`` for the two dynamic modes only). CamVid's labelled frames are a
second apart in the original video, so replaying them at 30 Hz changes the
scene faster than a real camera would: harsher than real life, equally for
every mode. Ends with one JSON line
{"hz": {"30": {"quiet": {"dynamic": .., "static": [..]}, "burst": {..}}, "10": {..}}}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import sys
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from benchclient import (  # noqa: E402
    BenchClient,
    camera_node_params,
    camera_segformer_node,
    camvid_val_jpegs,
    model_parser,
    pinned_burst,
)

# What runs.json keeps of the node's /diagnostics, to tell why the controller chose.
DIAGNOSTIC_KEYS = (
    "scene_change_per_frame",
    "streaming_correction",
    "predicted_quantile_ms",
    "predicted_ms",
    "running_miss_rate",
    "miss_slack",
    "load_factor",
    "budget_ms",
)


class Camera(BenchClient):
    def __init__(self, domain: int, frames: list, labels: list):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CompressedImage, Image

        from dynvit_ros.msg import InferenceStats
        from dynvit_ros.ros.qos import qos_profile

        super().__init__(domain, "bench_streaming")
        self.pub = self.node.create_publisher(
            CompressedImage, "/camera/image_raw/compressed", qos_profile("sensor_data", 5)
        )
        self.frames, self.labels = frames, labels
        self.run_id = 0
        self.masks: list = []
        self.stats: list = []
        self.node.create_subscription(
            Image, "/segmentation/mask", self._on_mask, QoSProfile(depth=50)
        )
        self.node.create_subscription(
            InferenceStats, "/segmentation/stats", self.stats.append, QoSProfile(depth=50)
        )
        self.diagnostics: list = []
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self._on_diagnostics, QoSProfile(depth=10)
        )

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "scene_change_per_frame" in values:  # the segformer node's status
                kept = {k: values.get(k, "") for k in DIAGNOSTIC_KEYS}
                self.diagnostics.append([round(time.monotonic(), 3), kept])

    def _on_mask(self, msg) -> None:
        if msg.header.stamp.sec != self.run_id:
            return
        mask = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        self.masks.append(
            (time.monotonic(), msg.header.stamp.nanosec // 1000, mask[:, : msg.width])
        )

    def run(self, hz: float, burst: bool) -> dict:
        from sensor_msgs.msg import CompressedImage

        from dynvit_ros.training.camvid import ConfusionMatrix
        from dynvit_ros.training.streaming import streaming_confusion

        self.run_id += 1
        self.masks.clear()
        self.stats.clear()
        self.diagnostics.clear()
        period, n = 1.0 / hz, len(self.frames)
        sends, started, burster = [], time.monotonic(), None
        for k in range(n):
            due = started + k * period
            while (now := time.monotonic()) < due:
                self.executor.spin_once(timeout_sec=min(0.002, due - now))
            if burst and burster is None and k >= n // 3:
                burster = pinned_burst(n * period / 3)
            msg = CompressedImage(format="jpeg", data=self.frames[k])
            msg.header.stamp.sec, msg.header.stamp.nanosec = self.run_id, k * 1000
            msg.header.frame_id = "camera"
            sends.append(time.monotonic())
            self.pub.publish(msg)
        self.spin(max(period, 0.3))
        if burster is not None:
            burster.wait()
        streaming = streaming_confusion(sends, self.labels, [(t, m) for t, _, m in self.masks])
        processed = ConfusionMatrix()
        for _, k, mask in self.masks:
            processed.update(mask, self.labels[k])
        stats = [s for s in self.stats if s.header.stamp.sec == self.run_id]
        t0 = sends[0]
        return {
            "streaming": streaming,
            "processed": processed,
            "frames": n,
            "levels": [s.skip_level for s in stats],
            "met": [s.deadline_met for s in stats],
            "threads": [s.threads for s in stats],
            # Per frame, for diagnosis: camera frame index, level, measured, predicted, deadline
            # and budget ms, frames dropped before it, threads (negative: a trial); when each
            # mask arrived (s from start).
            "trace": [
                [
                    s.header.stamp.nanosec // 1000,
                    s.skip_level,
                    round(s.measured_ms, 1),
                    round(s.predicted_ms, 1),
                    round(s.deadline_ms, 1),
                    round(s.budget_ms, 1),
                    s.frames_dropped,
                    -s.threads if s.thread_probe else s.threads,
                ]
                for s in stats
            ],
            "mask_times": [[k, round(t - t0, 4)] for t, k, _ in self.masks],
            # The node's /diagnostics during the run (s from start, DIAGNOSTIC_KEYS).
            "diagnostics": [[round(t - t0, 2), v] for t, v in self.diagnostics],
        }


class Pooled:
    """One mode's runs over the passes: confusion matrices summed, frames counted together."""

    def __init__(self, mode: str):
        from dynvit_ros.training.camvid import ConfusionMatrix

        self.mode = mode
        self.streaming, self.processed = ConfusionMatrix(), ConfusionMatrix()
        self.frames, self.levels, self.met, self.threads, self.passes = 0, [], [], [], []

    def add(self, run: dict) -> None:
        self.streaming.matrix += run["streaming"].matrix
        self.processed.matrix += run["processed"].matrix
        self.frames += run["frames"]
        self.levels += run["levels"]
        self.met += run["met"]
        self.threads += run["threads"]
        self.passes.append(
            {
                "streaming_miou": round(run["streaming"].miou(), 2),
                "trace": run["trace"],
                "mask_times": run["mask_times"],
                "diagnostics": run["diagnostics"],
            }
        )

    def result(self) -> dict:
        return {
            "mode": self.mode,
            "streaming_miou": round(self.streaming.miou(), 2),
            "processed_miou": round(self.processed.miou(), 2) if self.levels else None,
            "processed_pct": round(100.0 * len(self.levels) / max(self.frames, 1), 1),
            "miss_pct": round(100.0 * (1 - sum(self.met) / max(len(self.met), 1)), 1),
            "mean_level": round(float(np.mean(self.levels)), 2) if self.levels else None,
            "mean_threads": round(float(np.mean(self.threads)), 2) if self.threads else None,
            "passes": self.passes,
        }


def mode_label(mode, shipped: bool, suffix: str) -> str:
    label = f"L{mode}" if isinstance(mode, int) else mode
    return label if shipped else f"{label}/{suffix}"


def mode_row(pooled: dict, static, shipped: bool) -> dict:
    return {
        "dynamic": pooled["streaming", shipped].result(),
        "dynamic_deadline": pooled["deadline", shipped].result(),
        "static": [pooled[m, shipped].result() for m in static if (m, shipped) in pooled],
    }


def summary_row(row: dict) -> dict:
    out = {
        "dynamic": row["dynamic"]["streaming_miou"],
        "dynamic_deadline": row["dynamic_deadline"]["streaming_miou"],
        "static": [s["streaming_miou"] for s in row["static"]],
    }
    for key in ("fixed_threads", "variant"):
        if key in row:
            out[key] = summary_row(row[key])
    return out


def shipped_parameter(name: str):
    """A segformer_node parameter as config/dynvit.yaml ships it (else its default)."""
    import yaml

    from dynvit_ros.ros.segmenter import PARAMETERS

    config = yaml.safe_load((REPO / "config" / "dynvit.yaml").read_text())
    shipped = config["/**/segformer_node"]["ros__parameters"]
    return shipped.get(name, PARAMETERS[name].default)


def main(argv=None) -> int:
    p = model_parser(__doc__.split("\n")[0])
    p.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default="torch", help="the node's backend"
    )
    p.add_argument("--rates", type=float, nargs="+", default=[30.0, 10.0])
    p.add_argument(
        "--conditions", nargs="+", choices=("quiet", "burst"), default=["quiet", "burst"]
    )
    p.add_argument(
        "--static",
        type=int,
        nargs="*",
        default=None,
        help="static levels to run (default: all; none with an empty list)",
    )
    p.add_argument(
        "--passes",
        type=int,
        default=3,
        help="times each mode replays the frames, modes taking turns (pooled)",
    )
    p.add_argument(
        "--fixed-threads",
        action="store_true",
        help="also run every mode with adaptive_threads off (turns alternate)",
    )
    p.add_argument(
        "--variant",
        metavar="PARAM=VALUE",
        help="also run modes with this node parameter (a YAML value; turns alternate)",
    )
    p.add_argument("--variant-modes", choices=("all", "dynamic"), default="all")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_streaming")
    args = p.parse_args(argv)
    if args.passes < 1:
        p.error("--passes must be at least 1")
    if args.fixed_threads and args.variant:
        p.error("--fixed-threads is a --variant: give one of them")
    variant, key, suffix = {}, "", ""
    if args.fixed_threads:
        variant, key, suffix = {"adaptive_threads": False}, "fixed_threads", "fixed-thr"
    elif args.variant:
        import yaml

        name, sep, value = args.variant.partition("=")
        if not (sep and name):
            p.error("--variant takes PARAM=VALUE")
        variant, key, suffix = {name: yaml.safe_load(value)}, "variant", args.variant
    shipped_values = {name: shipped_parameter(name) for name in variant}

    from dynvit_ros.demo.node_process import NodeProcess
    from dynvit_ros.engine.levels import LevelTable
    from dynvit_ros.hostload import HostLoad

    frames, labels, frame_hw = camvid_val_jpegs()
    levels = LevelTable.load(args.levels)
    domain = 20 + os.getpid() % 40
    seg = camera_segformer_node(
        camera_node_params(args.model, args.levels, frame_hw, backend=args.backend),
        domain,
        args.out / "logs",
    )
    monitor = NodeProcess(
        "load_monitor_node",
        "load_monitor_node",
        {"target_rate_hz": args.rates[0], "pipeline_process_pattern": r"bench_streaming\.py"},
        domain,
        args.out / "logs",
    )
    cam = Camera(domain, frames, labels)
    results: dict = {"hz": {}}
    try:
        cam.wait_for_publisher("/segmentation/stats", [seg, monitor])
        cam.spin(3.0)
        with HostLoad() as load:
            for hz in args.rates:
                cam.set_params("load_monitor_node", {"target_rate_hz": hz})
                by_rate = results["hz"][f"{hz:g}"] = {}
                for condition in args.conditions:
                    static = range(len(levels)) if args.static is None else args.static
                    every = ("streaming", "deadline", *static)
                    modes = [(m, True) for m in every]
                    if variant:
                        some = every if args.variant_modes == "all" else every[:2]
                        modes += [(m, False) for m in some]
                    pooled = {m: Pooled(mode_label(*m, suffix)) for m in modes}
                    # Modes take turns within each pass, so a host that drifts slower or
                    # faster over the minutes hits every mode alike.
                    for turn in range(args.passes):
                        for mode, shipped in modes:
                            if mode in ("streaming", "deadline"):
                                values = {"mode": "auto", "selection": mode}
                            else:
                                values = {"mode": "fixed", "skip_level": mode}
                            if variant:
                                values.update(shipped_values if shipped else variant)
                            cam.set_params("segformer_node", values)
                            cam.spin(1.0)
                            run = cam.run(hz, condition == "burst")
                            pooled[mode, shipped].add(run)
                            print(
                                f"{hz:4g} Hz {condition:5} pass {turn + 1} "
                                f"{pooled[mode, shipped].mode:15} streaming "
                                f"{run['streaming'].miou():6.2f}",
                                file=sys.stderr,
                                flush=True,
                            )
                    row = by_rate[condition] = mode_row(pooled, static, True)
                    if variant:
                        row[key] = mode_row(pooled, static, False)
                    for r in pooled.values():
                        r = r.result()
                        print(
                            f"{hz:4g} Hz {condition:5} {r['mode']:15} streaming "
                            f"{r['streaming_miou']:6.2f}  processed {r['processed_miou']}  "
                            f"({r['processed_pct']:5.1f}% of frames)  miss {r['miss_pct']:5.1f}%"
                            f"  level {r['mean_level']}  threads {r['mean_threads']}",
                            file=sys.stderr,
                            flush=True,
                        )
        results["host_load"] = load.report()
    finally:
        cam.close()
        monitor.stop()
        seg.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs.json").write_text(json.dumps(results, indent=1))
    summary = {"hz": {}, "host_load": results["host_load"]}
    for hz, by_rate in results["hz"].items():
        summary["hz"][hz] = {c: summary_row(row) for c, row in by_rate.items()}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
