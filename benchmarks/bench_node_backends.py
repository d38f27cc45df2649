# SPDX-License-Identifier: Apache-2.0
"""torch vs onnxruntime inside the running segformer_node, every level, under a live camera.

    make bench-node-backends     # or: python benchmarks/bench_node_backends.py

bench_backends.py times the backends in a quiet process of its own. A node is
not that: its executor thread takes every camera message and budget on the same
interpreter, and eager PyTorch gives up the GIL on every operator and must win
it back from that thread before the next one (a few hundred times per frame),
while an onnxruntime session runs the whole graph without the GIL. So this
benchmark starts the real node (fixed mode) once per backend in turn, replays
CamVid val as a compressed camera at ``--hz`` for every level, and reads the
node's own per-frame inference time (InferenceStats.measured_ms). Backends take
turns for ``--rounds`` rounds (a fresh node each time), so a host that drifts
hits both alike; figures are medians pooled over the rounds, the ratio per
level is onnxruntime / torch, and the streaming mIoU of each static level is
printed alongside. Ends with one JSON line
{"hz": .., "levels": [{"level", "torch_ms", "ort_ms", "ratio", ...}], "host_load": {..}}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import statistics
import sys

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_streaming import Camera, Pooled  # noqa: E402
from benchclient import (  # noqa: E402
    camera_node_params,
    camera_segformer_node,
    camvid_val_jpegs,
    model_parser,
)

BACKENDS = ("torch", "onnxruntime")


def main(argv=None) -> int:
    p = model_parser(__doc__.split("\n")[0])
    p.add_argument("--hz", type=float, default=30.0, help="camera rate")
    p.add_argument("--rounds", type=int, default=3, help="fresh nodes per backend, in turns")
    p.add_argument("--only", type=int, nargs="*", default=None, help="levels (default: all)")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_node_backends")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")

    from dynvit_ros.engine.levels import LevelTable
    from dynvit_ros.hostload import HostLoad

    frames, labels, frame_hw = camvid_val_jpegs()
    table = LevelTable.load(args.levels)
    levels = list(range(len(table))) if args.only is None else args.only
    domain = 20 + os.getpid() % 40
    cam = Camera(domain, frames, labels)
    times = {(b, lv): [] for b in BACKENDS for lv in levels}
    round_medians = {(b, lv): [] for b in BACKENDS for lv in levels}
    pooled = {(b, lv): Pooled(f"{b} L{lv}") for b in BACKENDS for lv in levels}
    try:
        with HostLoad() as load:
            for turn in range(args.rounds):
                for backend in BACKENDS:
                    params = camera_node_params(
                        args.model, args.levels, frame_hw, backend=backend, mode="fixed"
                    )
                    node = camera_segformer_node(params, domain, args.out / "logs")
                    try:
                        cam.wait_for_publisher("/segmentation/stats", [node])
                        cam.spin(2.0)
                        for level in levels:
                            cam.set_params("segformer_node", {"skip_level": level})
                            cam.spin(1.0)
                            run = cam.run(args.hz, burst=False)
                            measured = [row[2] for row in run["trace"]]
                            times[(backend, level)] += measured
                            median = statistics.median(measured) if measured else float("nan")
                            if measured:
                                round_medians[(backend, level)].append(round(median, 2))
                            pooled[(backend, level)].add(run)
                            print(
                                f"round {turn + 1} {backend:11} L{level:<2} {median:7.1f}"
                                f" ms  streaming {run['streaming'].miou():6.2f}",
                                file=sys.stderr,
                                flush=True,
                            )
                    finally:
                        node.stop()
        host = load.report()
    finally:
        cam.close()

    rows = []
    for level in levels:
        t = times[("torch", level)]
        o = times[("onnxruntime", level)]
        torch_ms = statistics.median(t) if t else float("nan")
        ort_ms = statistics.median(o) if o else float("nan")
        # Per round, the two backends ran minutes apart at most: their ratio is the fair one.
        per_round = [
            round(b / a, 3)
            for a, b in zip(round_medians[("torch", level)], round_medians[("onnxruntime", level)])
        ]
        by_torch = pooled[("torch", level)].result()
        by_ort = pooled[("onnxruntime", level)].result()
        rows.append(
            {
                "level": level,
                "name": table[level].config.name,
                "torch_ms": round(torch_ms, 2),
                "ort_ms": round(ort_ms, 2),
                "ratio": round(ort_ms / torch_ms, 3),
                "ratio_per_round": per_round,
                "torch_streaming": by_torch["streaming_miou"],
                "ort_streaming": by_ort["streaming_miou"],
                "torch_processed_pct": by_torch["processed_pct"],
                "ort_processed_pct": by_ort["processed_pct"],
            }
        )
        r = rows[-1]
        print(
            f"L{level:<2} {r['name']:24} torch {r['torch_ms']:7.1f} ms  onnxruntime "
            f"{r['ort_ms']:7.1f} ms  ratio {r['ratio']:.2f} (rounds {per_round})  streaming "
            f"{r['torch_streaming']:.2f} / {r['ort_streaming']:.2f}",
            file=sys.stderr,
        )
    summary = {"hz": args.hz, "rounds": args.rounds, "levels": rows, "host_load": host}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
