# SPDX-License-Identifier: Apache-2.0
"""Allocator tuning (``runtime.tune_allocator``) on and off, side by side.

    make bench-allocator        # or: python benchmarks/bench_allocator.py --pairs 4

mallopt settings are process-wide and best set before the first tensor, so
each measurement is a fresh process; the two settings alternate, ``--pairs``
times. A process loads the shipped model and levels, then times
``SegmentationRuntime.infer`` on a camera-size frame per level (median of
``--frames`` after warm-up) and counts minor page faults per frame. Prints a
table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import resource
import statistics
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(args) -> None:
    import numpy as np

    from dynvit_ros.engine.runtime import SegmentationRuntime
    from dynvit_ros.host import tune_allocator

    if args.child == "tuned" and not tune_allocator():  # before the first tensor is allocated
        raise SystemExit("tune_allocator() is not available here (not glibc)")
    runtime = SegmentationRuntime.load(ROOT / args.model, ROOT / args.levels, args.threads)
    rgb = np.random.default_rng(0).integers(0, 256, (*args.frame_hw, 3), dtype=np.uint8)
    out = {}
    for level in range(len(runtime.levels)):
        for _ in range(3):
            runtime.infer(rgb, level)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times = [runtime.infer(rgb, level).infer_ms for _ in range(args.frames)]
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.frames
        out[level] = (statistics.median(times), faults)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/segformer_b0_camvid.safetensors")
    parser.add_argument("--levels", default="config/segformer_b0_camvid.levels.yaml")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frame-hw", type=int, nargs=2, default=(360, 480))
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--child", choices=("default", "tuned"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    runs: dict[str, list[dict]] = {"default": [], "tuned": []}
    for pair in range(args.pairs):
        for setting in runs:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                setting,
                "--model",
                args.model,
                "--levels",
                args.levels,
                "--threads",
                str(args.threads),
                "--frames",
                str(args.frames),
                "--frame-hw",
                *map(str, args.frame_hw),
            ]
            result = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            )
            runs[setting].append(result)
            print(
                f"pair {pair + 1} {setting}: level 0 {result['0'][0]:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    levels = [k for k in runs["default"][0] if k != "rss_mb"]

    def med(setting, level, i):
        return statistics.median(r[level][i] for r in runs[setting])

    print(
        f"\nSegmentationRuntime.infer, {args.frame_hw[0]}x{args.frame_hw[1]} frame, "
        f"{args.threads} thread(s); "
        f"median over {args.pairs} fresh processes per setting of each one's median of "
        f"{args.frames} frames"
    )
    print(
        f"{'level':>5} {'default ms':>11} {'tuned ms':>9} {'ratio':>6} "
        f"{'faults/frame':>13} {'tuned':>7}"
    )
    ratios = {}
    for level in levels:
        d, t = med("default", level, 0), med("tuned", level, 0)
        ratios[level] = round(t / d, 3)
        print(
            f"{level:>5} {d:11.1f} {t:9.1f} {t / d:6.3f} {med('default', level, 1):13.0f} "
            f"{med('tuned', level, 1):7.0f}"
        )
    rss = {s: round(statistics.median(r["rss_mb"] for r in runs[s]), 1) for s in runs}
    print(f"peak RSS MB: default {rss['default']}, tuned {rss['tuned']}")
    print(
        json.dumps(
            {
                "threads": args.threads,
                "frame_hw": list(args.frame_hw),
                "ratio_per_level": ratios,
                "full_ms": {s: round(med(s, levels[0], 0), 1) for s in runs},
                "faults_per_frame_full": {s: round(med(s, levels[0], 1)) for s in runs},
                "peak_rss_mb": rss,
            }
        )
    )


if __name__ == "__main__":
    main()
