# SPDX-License-Identifier: Apache-2.0
"""Calibration benchmark: is the label-free score good enough, and what does a search cost?

    make bench-calibrate         # or: python benchmarks/bench_calibrate.py [--parts ...]

1. **Validation** (CamVid val, 101 images, needs ../shared/data/CamVid): the
   shipped skip-aware model and the plain baseline run every candidate on every
   frame; each run is scored both ways, by agreement with the full model and
   against the labels. Reported: Spearman's rank correlation between
   agreement-mIoU and true mIoU over all candidates; the two tables (the
   Pareto front by agreement and by labels, with calibrate's rules: steps of
   at least 3%, thinned to 12 levels; latency timed once, shared by both
   models); and the true-mIoU loss of the agreement table level by level:
   for each level of the labelled table, its true mIoU minus that of the
   agreement table's most accurate level within the same latency (what a
   node with each table runs under that budget). Budgets above every level
   are reported apart (``generous_budget_loss``): there the agreement table
   runs the full model, which no label-free score can rank below a
   configuration that beats it. Also whether the pruned search (first pass on
   16 frames, 3-point margin) keeps the table the exhaustive one gives.
2. **Search cost**: ``transformers`` builds a SegFormer-B0 and a B2 (random
   weights, 19 Cityscapes classes with ``id2label``), ``save_pretrained``
   writes them; a bag of CamVid val frames (JPEG CompressedImage, 360x480) is
   the robot's recording, and ``calibrate`` runs on it with its defaults
   (100 frames, 2 threads). ``b0_search_s``/``b2_search_s`` are its wall
   times from model load to the written table. ``hf_roundtrip``: the folder
   and the table load in ``SegmentationRuntime``, every level makes a mask
   with the model's classes, class names come from ``id2label``, and the full
   level's logits match transformers'.

Prints tables, then one JSON line:
``{"spearman", "max_level_loss", "levels_agreement", "levels_labelled", "b0_search_s",
"b2_search_s", "hf_roundtrip", ...}`` with the host's load during the run. Parts
run separately (``--parts validation``) save their results under ``--save``;
``--reuse`` fills the line with saved parts that were not run now.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynvit_ros.demo.camvid_sample import val_bag  # noqa: E402
from dynvit_ros.engine.checkpoint import load_model  # noqa: E402
from dynvit_ros.engine.levels import (  # noqa: E402
    Measurement,
    candidate_configs,
    pareto_levels,
    thin_levels,
)
from dynvit_ros.engine.macs import count_layers, total_macs  # noqa: E402
from dynvit_ros.engine.model import VARIANTS  # noqa: E402
from dynvit_ros.engine.skip import FULL  # noqa: E402
from dynvit_ros.host import tune_allocator  # noqa: E402
from dynvit_ros.hostload import HostLoad  # noqa: E402
from dynvit_ros.training import calibrate, camvid, sources  # noqa: E402
from dynvit_ros.training.calibrate import MIN_STEP  # noqa: E402
from dynvit_ros.training.scoring import Scorer, spearman  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "skip-aware": REPO / "models" / "segformer_b0_camvid.safetensors",
    "plain": REPO / "models" / "baselines" / "segformer_b0_camvid_plain.safetensors",
}
CITYSCAPES = (
    "road sidewalk building wall fence pole traffic_light traffic_sign vegetation terrain sky "
    "person rider car truck bus train motorcycle bicycle"
).split()
PARTS = ("validation", "b0", "b2")


# ---------------------------------------------------------------------------
# 1. Validation on CamVid
# ---------------------------------------------------------------------------
def best_within(table, budget_ms: float, truth: dict) -> tuple[str, float]:
    """The level a node with ``table`` runs under ``budget_ms`` (the most accurate that fits, or
    the fastest), and its true mIoU.
    """
    fits = [lv for lv in table if lv.latency_ms <= budget_ms + 1e-9]
    level = fits[0] if fits else table[len(table) - 1]
    return level.name, truth[level.config]


def level_losses(labelled, agreement, truth: dict) -> list[dict]:
    rows = []
    for lv in labelled:
        name, miou = best_within(agreement, lv.latency_ms, truth)
        rows.append(
            {
                "budget_ms": round(lv.latency_ms, 1),
                "labelled": lv.name,
                "labelled_miou": round(truth[lv.config], 2),
                "agreement": name,
                "agreement_miou": round(miou, 2),
                "loss": round(truth[lv.config] - miou, 2),
            }
        )
    return rows


def tables(configs, scores: dict, latency: dict, max_levels: int):
    by = {}
    for kind in ("agreement", "labels"):
        measurements = [
            Measurement(c, round(scores[c].value(kind), 2), round(latency[c], 2)) for c in configs
        ]
        by[kind] = thin_levels(pareto_levels(measurements, min_step=MIN_STEP), max_levels)
    return by["agreement"], by["labels"]


def validate(args) -> dict:
    root = camvid.require_root(args.data)
    frames = sources.from_camvid(root, "val", args.frames)
    torch.set_num_threads(args.threads)
    out = {"frames": len(frames), "models": {}}
    latency = None
    for label, path in MODELS.items():
        model, meta = load_model(path)
        configs = candidate_configs(model.variant)
        start = time.perf_counter()
        result = calibrate.search(
            model,
            frames,
            configs,
            meta.input_size,
            meta.mean,
            meta.std,
            "labels",
            threads=args.threads,
            frame_hw=frames.frame_hw(),
            prune_frames=None,
            progress=not args.no_progress,
            latency=latency,
        )
        if latency is None:  # one architecture and input size: the same times serve both models
            latency = result.latency
        scores = result.scores
        agree = [scores[c].agreement_miou for c in configs]
        truth = {c: scores[c].label_miou for c in configs}
        rho = spearman(agree, [truth[c] for c in configs])
        # The alternatives the score was chosen over, for the record.
        rho_all = spearman(
            [scores[c].agreement_miou_all for c in configs], [truth[c] for c in configs]
        )
        rho_pixel = spearman(
            [scores[c].pixel_agreement for c in configs], [truth[c] for c in configs]
        )
        by_agreement, by_labels = tables(configs, scores, latency, args.max_levels)
        losses = level_losses(by_labels, by_agreement, truth)
        # The pruned search: first-pass scores on 16 of the frames, then the survivors' scores
        # on all of them (which are the exhaustive scores above).
        first = sources.Frames(
            [frames.images[i] for i in sources.even_indices(len(frames), args.prune_frames)],
            ["" for _ in range(args.prune_frames)],
        )
        scorer = Scorer(model, first, meta.input_size, meta.mean, meta.std)
        for c in configs:
            scorer.run(c, range(len(first)))
        keep = calibrate.prune(
            {c: scorer.score(c).agreement_miou for c in configs}, latency, args.prune_margin
        )
        pruned, _ = tables([c for c in configs if c in keep], scores, latency, args.max_levels)
        model_out = {
            "spearman": round(rho, 4),
            "spearman_all_pixels": round(rho_all, 4),
            "spearman_pixel_agreement": round(rho_pixel, 4),
            "max_level_loss": max(r["loss"] for r in losses),
            "levels_agreement": [lv.name for lv in by_agreement],
            "levels_labelled": [lv.name for lv in by_labels],
            "level_losses": losses,
            "generous_budget_loss": round(
                truth[by_labels[0].config] - truth[by_agreement[0].config], 2
            ),
            "pruned_survivors": len(keep),
            "pruned_table_same": [lv.config for lv in pruned] == by_agreement.configs,
            "seconds": round(time.perf_counter() - start, 1),
        }
        out["models"][label] = model_out
        print_validation(label, configs, scores, latency, by_agreement, by_labels, model_out)
    models = out["models"].values()
    out["spearman"] = min(m["spearman"] for m in models)
    out["max_level_loss"] = max(m["max_level_loss"] for m in models)
    out["levels_agreement"] = out["models"]["skip-aware"]["levels_agreement"]
    out["levels_labelled"] = out["models"]["skip-aware"]["levels_labelled"]
    return out


def print_validation(label, configs, scores, latency, by_agreement, by_labels, result) -> None:
    print(f"\n== {label}: {len(configs)} candidates on CamVid val ==")
    print("agreement mIoU on the full model's sure pixels (the score) / on all pixels")
    print(f"{'candidate':30} {'agree':>6} {'all':>6} {'pixel %':>7} {'true mIoU':>9} {'ms':>6}")
    for c in sorted(configs, key=lambda c: -scores[c].agreement_miou):
        s = scores[c]
        print(
            f"{c.name:30} {s.agreement_miou:6.2f} {s.agreement_miou_all:6.2f} "
            f"{s.pixel_agreement:7.2f} {s.label_miou:9.2f} {latency[c]:6.1f}"
        )
    print(
        f"Spearman with true mIoU: agreement {result['spearman']:.4f} (on all pixels "
        f"{result['spearman_all_pixels']:.4f}, pixel agreement "
        f"{result['spearman_pixel_agreement']:.4f})"
    )
    print("\nlevel  by agreement (true mIoU, ms)              by labels (true mIoU, ms)")
    for i in range(max(len(by_agreement), len(by_labels))):
        cells = []
        for table in (by_agreement, by_labels):
            if i < len(table):
                lv = table[i]
                cells.append(
                    f"{lv.name:24} {scores[lv.config].label_miou:6.2f} {lv.latency_ms:6.1f}"
                )
            else:
                cells.append(" " * 38)
        print(f"{i:5d}  {cells[0]}   {cells[1]}")
    print("\nloss at each labelled level's latency (what a node with either table runs)")
    print(
        f"{'budget ms':>9} {'labelled table':24} {'mIoU':>6} {'agreement table':24} "
        f"{'mIoU':>6} {'loss':>5}"
    )
    for r in result["level_losses"]:
        print(
            f"{r['budget_ms']:9.1f} {r['labelled']:24} {r['labelled_miou']:6.2f} "
            f"{r['agreement']:24} {r['agreement_miou']:6.2f} {r['loss']:5.2f}"
        )
    print(
        f"above every level's latency: labelled runs {by_labels[0].name}, agreement runs "
        f"{by_agreement[0].name}: loss {result['generous_budget_loss']:.2f}"
    )
    print(
        f"pruned search: {result['pruned_survivors']} of {len(configs)} candidates survive the "
        f"first pass; same table as exhaustive: {result['pruned_table_same']}"
    )


# ---------------------------------------------------------------------------
# 2. Search cost on a model nobody here trained
# ---------------------------------------------------------------------------
def hf_folder(variant: str, folder: Path):
    """A transformers SegFormer of ``variant`` (random weights) written by save_pretrained."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    spec = VARIANTS[variant]
    config = SegformerConfig(
        hidden_sizes=list(spec.embed_dims),
        depths=list(spec.depths),
        decoder_hidden_size=spec.decoder_dim,
        num_labels=len(CITYSCAPES),
        id2label=dict(enumerate(CITYSCAPES)),
        label2id={n: i for i, n in enumerate(CITYSCAPES)},
    )
    torch.manual_seed(0)
    hf = SegformerForSemanticSegmentation(config).eval()
    hf.save_pretrained(folder)
    return hf


def roundtrip(hf, folder: Path, levels: Path, frame: np.ndarray) -> dict:
    from dynvit_ros.engine.runtime import SegmentationRuntime

    runtime = SegmentationRuntime.load(folder, levels)
    checks = {"class_names": runtime.metadata.class_names == CITYSCAPES}
    masks_ok = True
    for level in range(len(runtime.levels)):
        mask = runtime.infer(frame, level).mask
        masks_ok &= mask.shape == frame.shape[:2] and int(mask.max()) < len(CITYSCAPES)
    checks["masks"] = bool(masks_ok)
    x = runtime.preprocess(frame)
    with torch.inference_mode():
        diff = (hf(pixel_values=x).logits - runtime.model(x, FULL)).abs().max().item()
    checks["logits_match"] = diff < 1e-3
    checks["logits_max_abs_diff"] = diff
    return checks


def search_cost(variant: str, args, workdir: Path, bag: Path) -> dict:
    folder = workdir / f"segformer-{variant}-cityscapes-like"
    hf = hf_folder(variant, folder)
    levels = workdir / f"{variant}.levels.yaml"
    argv = [
        "--model", str(folder), "--bag", str(bag), "--topic", "/camera/image_raw/compressed",
        "--levels-out", str(levels), "--threads", str(args.threads),
    ]  # fmt: skip
    if args.no_progress:
        argv.append("--no-progress")
    if args.search_frames:
        argv += ["--frames", str(args.search_frames)]
    start = time.perf_counter()
    captured = io.StringIO()
    stdout, sys.stdout = sys.stdout, captured
    try:
        rc = calibrate.main(argv)
    finally:
        sys.stdout = stdout
    seconds = time.perf_counter() - start
    text = captured.getvalue()
    print(f"\n== calibrate {' '.join(argv)} ==\n{text}")
    if rc != 0:
        return {"search_s": None, "roundtrip": {"calibrate_rc": rc}, "ok": False}
    result = json.loads(text.strip().splitlines()[-1])
    frames = sources.from_bag(bag, "/camera/image_raw/compressed", 1)
    checks = roundtrip(hf, folder, levels, frames.images[0])
    spec = VARIANTS[variant]
    gmacs = total_macs(count_layers(spec, len(CITYSCAPES), (512, 512), FULL)) / 1e9
    return {
        "search_s": round(seconds, 1),
        "scoring_and_latency_s": result["search_s"],
        "candidates": len(candidate_configs(spec)),
        "levels": [lv["name"] for lv in result["levels"]],
        "full_gmacs_512": round(gmacs, 2),
        "roundtrip": checks,
        "ok": all(v for k, v in checks.items() if k != "logits_max_abs_diff"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated of {PARTS}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-levels", type=int, default=12)
    p.add_argument("--prune-frames", type=int, default=16)
    p.add_argument("--prune-margin", type=float, default=3.0)
    p.add_argument("--data", default=None, help="CamVid folder")
    p.add_argument("--frames", type=int, default=None, help="validation frames (default all)")
    p.add_argument(
        "--search-frames", type=int, default=None, help="calibrate --frames (default its own)"
    )
    p.add_argument("--save", default=str(REPO / "outputs" / "bench_calibrate"))
    p.add_argument("--reuse", action="store_true", help="fill parts not run from --save")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    parts = [part for part in args.parts.split(",") if part]
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    tune_allocator()
    save = Path(args.save)
    save.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    with HostLoad() as load:
        if "validation" in parts:
            results["validation"] = validate(args)
        if {"b0", "b2"} & set(parts):
            with tempfile.TemporaryDirectory() as tmp:
                # CamVid val frames as a robot's recording: JPEG CompressedImage at 10 Hz.
                bag = val_bag(Path(tmp) / "camvid_val_bag", args.data)
                for variant in ("b0", "b2"):
                    if variant in parts:
                        results[variant] = search_cost(variant, args, Path(tmp), bag)
    host_load = load.report()
    for part, value in results.items():
        value["host_load"] = host_load
        (save / f"{part}.json").write_text(json.dumps(value, indent=1))
    if args.reuse:
        for part in PARTS:
            if part not in results and (save / f"{part}.json").exists():
                results[part] = json.loads((save / f"{part}.json").read_text())
    validation = results.get("validation", {})
    searches = [results[v] for v in ("b0", "b2") if v in results]
    line = {
        "spearman": validation.get("spearman"),
        "max_level_loss": validation.get("max_level_loss"),
        "levels_agreement": validation.get("levels_agreement"),
        "levels_labelled": validation.get("levels_labelled"),
        "b0_search_s": results.get("b0", {}).get("search_s"),
        "b2_search_s": results.get("b2", {}).get("search_s"),
        "hf_roundtrip": bool(searches) and all(s["ok"] for s in searches),
        "per_model": {
            name: {
                k: m[k]
                for k in (
                    "spearman",
                    "max_level_loss",
                    "generous_budget_loss",
                    "pruned_table_same",
                )
            }
            for name, m in validation.get("models", {}).items()
        },
        "host_load": {part: results[part]["host_load"] for part in results},
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
