# SPDX-License-Identifier: Apache-2.0
"""Calibrate skip levels: CamVid val mIoU and host latency per candidate, then the Pareto table.

    python -m dynvit_ros.training.calibrate --model models/segformer_b0_camvid.safetensors \
        --baseline models/baselines/segformer_b0_camvid_plain.safetensors \
        --levels-out config/segformer_b0_camvid.levels.yaml

With ``--levels`` instead of ``--levels-out`` it evaluates an existing table
(no search). Either way it prints a table and ends with one JSON line:
``{"full_miou", "levels": [{"level", "miou", "ms", "gmacs"}], "posthoc_vs_skipaware"}``.
``posthoc_vs_skipaware`` needs ``--baseline``: the same architecture trained
without skipping, evaluated with the same configurations (the paper's
post-hoc setting) next to the skip-aware model.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile

import torch

from dynvit_ros.engine.checkpoint import load_model
from dynvit_ros.engine.levels import LevelTable, Measurement, candidate_configs, pareto_levels
from dynvit_ros.engine.macs import count_layers, total_macs
from dynvit_ros.host import cpu_model
from dynvit_ros.latency.base import LatencyContext
from dynvit_ros.latency.profiled import ProfiledLatencyModel
from dynvit_ros.training import camvid
from dynvit_ros.training.evaluate import evaluate_miou


def measure_latency(model, configs, input_hw, threads: int, repeats: int) -> list[float]:
    """Median ms per configuration with the host profiler, never from a cache."""
    with tempfile.TemporaryDirectory() as cache:
        context = LatencyContext(
            model=model,
            configs=list(configs),
            input_hw=tuple(input_hw),
            options={
                "threads": threads,
                "repeats": repeats,
                "recalibrate": True,
                "cache_dir": cache,
            },
        )
        profiler = ProfiledLatencyModel(context)
        return [profiler.table[c] for c in configs]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="the (skip-aware) model to calibrate")
    p.add_argument(
        "--baseline", default=None, help="a plainly trained model for the post-hoc comparison"
    )
    p.add_argument("--data", default=None, help="CamVid folder (default ../shared/data/CamVid)")
    p.add_argument("--levels", default=None, help="evaluate this level table instead of searching")
    p.add_argument("--levels-out", default=None, help="write the Pareto level table here")
    p.add_argument("--max-levels", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--limit", type=int, default=None, help="evaluate on the first N val images only"
    )
    args = p.parse_args(argv)

    root = camvid.require_root(args.data)
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.model)
    val = camvid.load_split(root, "val", limit=args.limit)
    input_hw = tuple(meta.input_size)
    spec = model.variant

    def miou(m, config):
        return evaluate_miou(m, val, input_hw, meta.mean, meta.std, config)

    if args.levels:
        configs = LevelTable.load(args.levels).configs
    else:
        configs = candidate_configs(spec)
    print(
        f"evaluating {len(configs)} configurations on {len(val.images)} val images",
        file=sys.stderr,
    )
    accuracy = [miou(model, c) for c in configs]
    latency = measure_latency(model, configs, input_hw, args.threads, args.repeats)
    gmacs = [total_macs(count_layers(spec, meta.num_classes, input_hw, c)) / 1e9 for c in configs]
    info = {
        "model": str(args.model),
        "variant": spec.name,
        "input_hw": list(input_hw),
        "accuracy": "CamVid val mIoU (%), 11 classes",
        "latency": "median ms, profiled on this host",
        "host": cpu_model(),
        "threads": args.threads,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "command": "python -m dynvit_ros.training.calibrate " + " ".join(argv or sys.argv[1:]),
    }
    measurements = [
        Measurement(c, round(a, 2), round(t, 2), round(g, 3))
        for c, a, t, g in zip(configs, accuracy, latency, gmacs)
    ]
    if args.levels:
        table = LevelTable.numbered(measurements, info)
    else:
        table = pareto_levels(measurements, info)
        table = _thin(table, args.max_levels)
    if args.levels_out:
        table.save(args.levels_out)
        print(f"wrote {args.levels_out}", file=sys.stderr)

    print(f"\nAll candidates ({spec.name}, {input_hw[0]}x{input_hw[1]}, {args.threads} threads)")
    print(f"{'config':34} {'mIoU':>6} {'ms':>7} {'GMACs':>6}")
    for m in sorted(measurements, key=lambda m: -m.latency_ms):
        print(f"{m.config.name:34} {m.accuracy:6.2f} {m.latency_ms:7.1f} {m.gmacs:6.2f}")
    full_ms = table[0].latency_ms
    print("\nSkip levels")
    print(f"{'level':>5} {'config':34} {'mIoU':>6} {'ms':>7} {'x full':>6} {'GMACs':>6}")
    for lv in table:
        print(
            f"{lv.level:5d} {lv.name:34} {lv.accuracy:6.2f} {lv.latency_ms:7.1f} "
            f"{lv.latency_ms / full_ms:6.2f} {lv.gmacs:6.2f}"
        )

    comparison = {}
    if args.baseline:
        baseline, _ = load_model(args.baseline)
        rows = [(lv.name, miou(baseline, lv.config), lv.accuracy) for lv in table]
        print("\nPost-hoc skipping (plain training) vs skip-aware training, same configurations")
        print(f"{'config':34} {'post-hoc':>8} {'skip-aware':>10} {'gain':>6}")
        for name, posthoc, aware in rows:
            print(f"{name:34} {posthoc:8.2f} {aware:10.2f} {aware - posthoc:6.2f}")
        comparison = {
            "baseline": str(args.baseline),
            "levels": [
                {"config": n, "posthoc_miou": round(a, 2), "skipaware_miou": round(b, 2)}
                for n, a, b in rows
            ],
            "mean_gain_miou": round(sum(b - a for _, a, b in rows) / len(rows), 2),
        }
    print(
        json.dumps(
            {
                "full_miou": round(table[0].accuracy, 2),
                "levels": [
                    {
                        "level": lv.level,
                        "name": lv.name,
                        "miou": round(lv.accuracy, 2),
                        "ms": round(lv.latency_ms, 2),
                        "gmacs": round(lv.gmacs, 3),
                    }
                    for lv in table
                ],
                "posthoc_vs_skipaware": comparison,
            }
        )
    )
    return 0


def _thin(table: LevelTable, max_levels: int) -> LevelTable:
    """Keep at most ``max_levels``: the first, the last, and those spreading latency most
    evenly.
    """
    levels = list(table.levels)
    if len(levels) <= max_levels:
        return table
    full, fastest = levels[0].latency_ms, levels[-1].latency_ms
    targets = [full + (fastest - full) * i / (max_levels - 1) for i in range(max_levels)]
    chosen = []
    for target in targets:
        best = min(
            (lv for lv in levels if lv not in chosen), key=lambda lv: abs(lv.latency_ms - target)
        )
        chosen.append(best)
    chosen.sort(key=lambda lv: lv.level)
    return LevelTable.numbered(chosen, table.info)


if __name__ == "__main__":
    sys.exit(main())
