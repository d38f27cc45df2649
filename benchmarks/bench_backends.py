# SPDX-License-Identifier: Apache-2.0
"""torch vs onnxruntime for every skip level of the shipped table, against a GEMM roofline.

For each thread count (1 and 2) and each level, the two backends run the same real frames
(the bundled sample bag, resized to the model's input as the node does) alternating in
one process, in short blocks (see ``time_levels``); the figure is the median time of the
forward pass (normalised frame in, logits out). Masks from both (logits upsampled to the
frame's size, then argmax, as the node does by default) are compared pixel by pixel.

Roofline: executed GFLOP of a level (2 x the MAC counter's executed MACs) divided by its
time, as a share of what a dense fp32 GEMM (torch.mm, 1024^3 and 2048^3, the better)
reaches with the same threads in the same run. Where the rest of the time goes comes from
onnxruntime's profiler (per operator type) and torch's profiler, at the table's first
level and at the full model (printed, and in the JSON).

Prints tables, then one JSON line:
``{"levels": [{"level", "name", "torch_ms", "ort_ms", "ratio", "pixel_agreement",
"roofline_pct", ...}], "gemm_gflops": .., "one_thread": {...}, "host_load": {...}}``
where ``roofline_pct`` is that of the shipped default backend (config/dynvit.yaml).
Graphs come from the graph cache (exported and checked on the first run).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path
import statistics
import sys
import tempfile
import time

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dynvit_ros.engine import onnx_export as ox  # noqa: E402
from dynvit_ros.engine.backends import TorchBackend, load_backend  # noqa: E402
from dynvit_ros.engine.checkpoint import load_model  # noqa: E402
from dynvit_ros.engine.levels import LevelTable, SkipLevel  # noqa: E402
from dynvit_ros.engine.macs import count_layers, total_macs  # noqa: E402
from dynvit_ros.engine.masks import logits_to_masks  # noqa: E402
from dynvit_ros.engine.skip import FULL  # noqa: E402
from dynvit_ros.host import cpu_model, tune_allocator  # noqa: E402
from dynvit_ros.hostload import HostLoad  # noqa: E402


def default_backend() -> str:
    data = yaml.safe_load((REPO / "config" / "dynvit.yaml").read_text())
    params = data["/**/segformer_node"]["ros__parameters"]
    return str(params.get("backend", "torch"))


def gemm_gflops(threads: int, repeats: int = 7) -> float:
    """Best median GFLOP/s of a dense fp32 GEMM over two sizes, with ``threads`` threads."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in (1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        for _ in range(2):
            torch.mm(a, b, out=out)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - start)
        best = max(best, 2 * n**3 / statistics.median(times) / 1e9)
    return best


def executed_gflop(model, num_classes: int, input_hw, config) -> float:
    layers = count_layers(model.variant, num_classes, input_hw, config, executed=True)
    return 2 * total_macs(layers) / 1e9


def time_levels(
    backends: dict, levels, frames, rounds: int, warmup: int, block: int = 2, gap: float = 0.05
):
    """{backend: [[ms per run] per level]}. Backends alternate (their order too, round by
    round) in blocks of one untimed and ``block`` timed runs of a level, each block after
    ``gap`` seconds idle: both backends' worker threads spin for a while after a run
    (onnxruntime's for more than 10 ms here), and run by run alternation had torch at 2
    threads contend with them (up to 1.8x slower)."""
    times = {name: [[] for _ in levels] for name in backends}
    names = list(backends)
    with torch.inference_mode():
        for r in range(warmup + rounds):
            frame = frames[r % len(frames)][None]
            for i, level in enumerate(levels):
                for name in names if r % 2 == 0 else names[::-1]:
                    time.sleep(gap)
                    backends[name].forward(frame, level.config)
                    for _ in range(block):
                        start = time.perf_counter()
                        backends[name].forward(frame, level.config)
                        elapsed = (time.perf_counter() - start) * 1e3
                        if r >= warmup:
                            times[name][i].append(elapsed)
    return times


def agreement(backends: dict, levels, frames, frame_hw) -> list[float]:
    """Share of mask pixels on which onnxruntime agrees with torch, per level."""
    shares = []
    with torch.inference_mode():
        for level in levels:
            same = total = 0
            for frame in frames:
                masks = [
                    logits_to_masks(b.forward(frame[None], level.config), frame_hw)
                    for b in backends.values()
                ]
                same += int((masks[0] == masks[1]).sum())
                total += masks[0].size
            shares.append(same / total)
    return shares


def ort_profile(path: Path, threads: int, frame: torch.Tensor, runs: int = 20) -> list:
    """[(op type, ms per run, share of kernel time)] from onnxruntime's profiler."""
    ort = ox.import_onnxruntime()
    options = ox.session_options(threads, ort)
    options.enable_profiling = True
    tmp = tempfile.mkdtemp(prefix="dynvit_ort_profile_")
    options.profile_file_prefix = os.path.join(tmp, "ort")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {ox.INPUT_NAME: frame[None].numpy()}
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    kernel = sum(totals.values())
    return [
        (op, round(us / runs / 1e3, 3), round(100 * us / kernel, 1))
        for op, us in totals.most_common()
    ]


def torch_profile(model, config, frame: torch.Tensor, runs: int = 10) -> list:
    """[(aten op, ms per run, share of self CPU time)] from torch's profiler."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for _ in range(3):
            model(frame[None], config)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(frame[None], config)
    rows = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in rows)
    rows.sort(key=lambda r: -r[1])
    return [(k, round(t / runs / 1e3, 3), round(100 * t / total, 1)) for k, t in rows if t > 0]


def measure(args, model, meta, levels, frames, frame_hw, threads: int) -> dict:
    torch.set_num_threads(threads)
    backends = {
        "torch": TorchBackend(model),
        "onnxruntime": load_backend(
            "onnxruntime", model, meta, levels, tuple(meta.input_size), threads, args.graphs
        ),
    }
    gemm_before = gemm_gflops(threads)
    times = time_levels(backends, levels, frames, args.rounds, args.warmup)
    gemm = max(gemm_before, gemm_gflops(threads))
    shares = agreement(backends, levels, frames, frame_hw)
    shipped = default_backend()
    rows = []
    for i, level in enumerate(levels):
        t_ms = statistics.median(times["torch"][i])
        o_ms = statistics.median(times["onnxruntime"][i])
        gflop = executed_gflop(model, meta.num_classes, tuple(meta.input_size), level.config)
        pct = {
            "torch": 100 * gflop / (t_ms / 1e3) / gemm,
            "onnxruntime": 100 * gflop / (o_ms / 1e3) / gemm,
        }
        rows.append(
            {
                "level": level.level,
                "name": level.name,
                "torch_ms": round(t_ms, 2),
                "ort_ms": round(o_ms, 2),
                "ratio": round(o_ms / t_ms, 3),
                "pixel_agreement": round(shares[i], 5),
                "roofline_pct": round(pct[shipped], 1),
                "torch_roofline_pct": round(pct["torch"], 1),
                "ort_roofline_pct": round(pct["onnxruntime"], 1),
                "gflop": round(gflop, 3),
            }
        )
    return {"threads": threads, "levels": rows, "gemm_gflops": round(gemm, 1)}, backends


def print_table(result: dict) -> None:
    print(
        f"\n{result['threads']} thread(s), dense fp32 GEMM {result['gemm_gflops']} GFLOP/s"
        "\nlevel  name                         GFLOP  torch ms  ORT ms  ratio  agree %"
        "  torch %roof  ORT %roof"
    )
    for r in result["levels"]:
        print(
            f"{r['level']!s:>5}  {r['name']:<27} {r['gflop']:6.3f} {r['torch_ms']:9.2f} "
            f"{r['ort_ms']:7.2f} {r['ratio']:6.3f} {100 * r['pixel_agreement']:8.3f} "
            f"{r['torch_roofline_pct']:12.1f} {r['ort_roofline_pct']:10.1f}"
        )


def _label(threads: int) -> str:
    return "one_thread" if threads == 1 else f"threads_{threads}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models/segformer_b0_camvid.safetensors"))
    parser.add_argument("--levels", default=str(REPO / "config/segformer_b0_camvid.levels.yaml"))
    parser.add_argument("--frames", default=str(REPO / "data/sample_street"))
    parser.add_argument("--count", type=int, default=8, help="frames to cycle through")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--graphs", help="graph folder (default: the node's cache)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_backends")
    args = parser.parse_args()

    tune_allocator()  # as the node does by default
    model, meta = load_model(args.model)
    table = LevelTable.load(args.levels)
    # The full model as a reference row where the table does not start with it.
    rows = list(table.levels)
    if not any(lv.config == FULL for lv in rows):
        rows.append(SkipLevel(len(rows), FULL))
    levels = LevelTable(rows, table.info)
    rgb = ox.load_frames([args.frames], args.count)
    frames = ox.preprocess_frames(rgb, meta)
    frame_hw = rgb[0].shape[:2]
    print(
        f"{len(levels)} levels ({len(table)} in the table), {len(frames)} frames "
        f"{frame_hw[1]}x{frame_hw[0]} -> {meta.input_size[1]}x{meta.input_size[0]}, "
        f"{cpu_model()}, torch {torch.__version__}, onnxruntime "
        f"{ox.import_onnxruntime().__version__}, default backend {default_backend()}"
    )
    results = []
    with HostLoad() as load:
        for threads in args.threads:
            result, backends = measure(args, model, meta, levels, frames, frame_hw, threads)
            print_table(result)
            results.append((result, backends))
    main_result, backends = results[0]
    profiles = {}
    if not args.no_profile:
        threads = main_result["threads"]
        torch.set_num_threads(threads)
        folder = backends["onnxruntime"].folder
        for index in sorted({0, len(levels) - 1}):
            config = levels[index].config
            name = levels[index].name
            profiles[name] = {
                "onnxruntime": ort_profile(ox.graph_path(folder, index), threads, frames[0]),
                "torch": torch_profile(model, config, frames[0])[:15],
            }
            for backend, table_rows in profiles[name].items():
                print(f"\n{backend} profile, {name}, {threads} threads: op, ms/run, % of ops")
                for op, ms, pct in table_rows[:12]:
                    print(f"  {op:<36} {ms:7.3f} {pct:5.1f}")
    summary = {
        **main_result,
        **{
            ("one_thread" if r["threads"] == 1 else f"threads_{r['threads']}"): r
            for r, _ in results[1:]
        },
        "default_backend": default_backend(),
        "host_load": load.report(),
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": ox.import_onnxruntime().__version__,
            "cpu": cpu_model(),
        },
        "profiles": {
            name: {b: rows[:10] for b, rows in p.items()} for name, p in profiles.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
