# SPDX-License-Identifier: Apache-2.0
"""Engine benchmark: our SegFormer vs Hugging Face transformers on identical weights and input.

    make bench-engine            # or: python benchmarks/bench_engine.py --runs 10

CPU, 2 threads by default, both under ``torch.inference_mode``. Each variant
is timed side by side in one process: after warm-up the two implementations
alternate, and the median of ``--runs`` calls is reported. Also prints the
MAC counter's error against the SegFormer paper and the wall time of a few
skip configurations (skipped work is not computed). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynvit_ros.engine.checkpoint import load_model  # noqa: E402
from dynvit_ros.engine.macs import PAPER_ADE20K_GMACS, mac_report  # noqa: E402
from dynvit_ros.engine.model import VARIANTS  # noqa: E402
from dynvit_ros.engine.skip import FULL, SkipConfig  # noqa: E402
from dynvit_ros.hostload import HostLoad  # noqa: E402


def hf_and_ours(variant: str, num_labels: int = 150):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    spec = VARIANTS[variant]
    config = SegformerConfig(
        hidden_sizes=list(spec.embed_dims),
        depths=list(spec.depths),
        decoder_hidden_size=spec.decoder_dim,
        num_labels=num_labels,
    )
    torch.manual_seed(0)
    hf = SegformerForSemanticSegmentation(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours, _ = load_model(folder)
    return hf, ours


def time_pair(fns: dict, runs: int, warmup: int = 2) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for _ in range(runs):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=sorted(VARIANTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    with HostLoad() as load:
        result = report(args)
    print(json.dumps({**result, "host_load": load.report()}))
    return 0


def report(args) -> dict:
    """Prints the tables; returns the figures of the final JSON line."""
    rows, ratio_512, max_diff = [], {}, 0.0
    cases = [("b0", (360, 480))] + [(v, (512, 512)) for v in args.variants]
    models = {}
    for variant, size in cases:
        if variant not in models:
            models[variant] = hf_and_ours(variant)
        hf, ours = models[variant]
        x = torch.randn(1, 3, *size)
        with torch.inference_mode():
            diff = (hf(pixel_values=x).logits - ours(x)).abs().max().item()
        max_diff = max(max_diff, diff)
        med = time_pair({"hf": lambda: hf(pixel_values=x), "ours": lambda: ours(x)}, args.runs)
        ratio = med["ours"] / med["hf"]
        rows.append((variant, size, med["ours"], med["hf"], ratio, diff))
        if size == (512, 512):
            ratio_512[variant] = round(ratio, 3)
        print(
            f"{variant} {size[0]}x{size[1]}: ours {med['ours']:.1f} ms, hf {med['hf']:.1f} ms, "
            f"ratio {ratio:.3f}, max|diff| {diff:.2e}",
            file=sys.stderr,
            flush=True,
        )
        if variant != "b0":
            models.pop(variant)

    print(
        "\nFull model, CPU, %d threads, median of %d runs after warm-up"
        % (args.threads, args.runs)
    )
    print(f"{'variant':8} {'input':>9} {'ours ms':>9} {'HF ms':>9} {'ratio':>6} {'max|diff|':>10}")
    for variant, size, ours_ms, hf_ms, ratio, diff in rows:
        print(
            f"{variant:8} {size[0]:>4}x{size[1]:<4} {ours_ms:9.1f} {hf_ms:9.1f} {ratio:6.3f} "
            f"{diff:10.2e}"
        )

    gmacs_error = {}
    print("\nMAC counter vs SegFormer paper (ADE20K, 150 classes)")
    print(
        f"{'variant':8} {'input':>7} {'paper G':>8} {'counted G':>10} {'error %':>8} "
        f"{'executed G':>11}"
    )
    for variant, (paper, size) in PAPER_ADE20K_GMACS.items():
        report = mac_report(VARIANTS[variant], 150, (size, size))
        gmacs_error[variant] = round(100 * (report.reference_gmacs / paper - 1), 2)
        print(
            f"{variant:8} {size:>7} {paper:8.1f} {report.reference_gmacs:10.2f} "
            f"{gmacs_error[variant]:8.2f} "
            f"{report.executed_gmacs:11.2f}"
        )

    hf, ours = models["b0"]
    x = torch.randn(1, 3, 360, 480)
    last = [(s, d - 1) for s, d in enumerate(VARIANTS["b0"].depths)]
    configs = [
        FULL,
        SkipConfig(name="attn-last", skip_attention=last),
        SkipConfig(name="dw-all", skip_dwconv=[(s, b) for s in range(4) for b in range(2)]),
        SkipConfig(name="block-last", skip_block=last),
        SkipConfig(name="drop4", decoder_drop=[3]),
        SkipConfig(name="fuse8", fuse_stride=8),
        SkipConfig(name="scale0.5", input_scale=0.5),
    ]
    med = time_pair({c.name: (lambda c=c: ours(x, c)) for c in configs}, args.runs)
    print("\nSkip configurations, B0 360x480 (ours)")
    print(f"{'config':12} {'ms':>8} {'GMACs':>7}")
    for c in configs:
        g = mac_report(VARIANTS["b0"], 150, (360, 480), c).executed_gmacs
        print(f"{c.name:12} {med[c.name]:8.1f} {g:7.2f}")

    b0 = rows[0]
    return {
        "variant": "b0",
        "size": [360, 480],
        "ours_ms": round(b0[2], 2),
        "hf_ms": round(b0[3], 2),
        "ratio": round(b0[4], 3),
        "ratio_512": ratio_512,
        "max_abs_diff": max_diff,
        "gmacs_error_pct": gmacs_error,
    }


if __name__ == "__main__":
    sys.exit(main())
