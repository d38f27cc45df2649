# SPDX-License-Identifier: Apache-2.0
r"""Calibrate skip levels for any SegFormer on your own frames: the level table the node loads.

    calibrate --model <HF folder | mmseg .pth | .safetensors> \
              --bag <rosbag2 dir> --topic /camera/image_raw [--frames 100] \
              --levels-out my_levels.yaml [--frame-size 480x640] [--threads N]

Sources (one): ``--bag`` with ``--topic`` (sensor_msgs Image or
CompressedImage, sqlite3 or MCAP); ``--images DIR`` (a folder of images);
``--images DIR --labels DIR`` (label PNGs of class ids with the images'
names, ``--ignore-id``); ``--camvid [DIR]`` (CamVid's val folders, also the
default when no source is given). Frames are sampled evenly over the source.

Score: without labels each candidate is scored by its agreement with the full
model on the same frames: the mIoU of its masks against the full model's, on
all but each frame's ``--uncertain`` share (0.2) of pixels the full model is
least sure of (agreement on every pixel and pixel agreement are reported
too); with labels by true mIoU (``--score agreement`` forces the former).
Latency: profiled on this host (``--threads``), including the resize from
``--frame-size`` (default: the frames' size) and the mask at that size, as
the node runs a frame.

Search: every candidate (``engine.levels.candidate_configs``: 45 for B0,
63 for B2, 81 for B3-B5) runs on ``--prune-frames`` of the frames; those
beaten by more than ``--prune-margin`` points by a candidate at least as
fast are dropped, the rest run on all frames. The table is the Pareto front
(level 0 the most accurate, each next level at least ``--min-step`` (3%)
faster and no more accurate), thinned to ``--max-levels`` (12) by losing the
least accuracy over the range of budgets (``engine.levels.thin_levels``).
The YAML records the score, the source, host, threads, sizes and this
command. An existing ``--levels-out`` is never overwritten without ``--force``.

With ``--levels`` it evaluates an existing table instead (no search).
Either way it prints tables and ends with one JSON line (``levels``,
``score``, ``search_s``, ...; ``posthoc_vs_skipaware`` with ``--baseline``
and labels: a plainly trained model under the same configurations).

Exit status: 0 when the table was written (or evaluated); 2 when no table
could be made (no usable frames, an unreadable model, an existing table, the
full model failing); what could be skipped is skipped and listed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import platform
import shlex
import sys
import tempfile
import time
from typing import Callable, Sequence

import torch

from dynvit_ros.engine.checkpoint import CheckpointError, load_model
from dynvit_ros.engine.levels import (
    LevelTable,
    Measurement,
    candidate_configs,
    pareto_levels,
    thin_levels,
)
from dynvit_ros.engine.macs import count_layers, total_macs
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.host import cpu_model, tune_allocator
from dynvit_ros.hostload import HostLoad
from dynvit_ros.latency.base import LatencyContext
from dynvit_ros.latency.profiled import ProfiledLatencyModel
from dynvit_ros.training import camvid, sources
from dynvit_ros.training.scoring import UNCERTAIN, Score, Scorer

PROG = "calibrate"
# Levels closer than this in latency are within this host's timing noise (medians of 5 runs
# moved by 2-5% between runs of the profiler on the 2-core machine).
MIN_STEP = 0.03
SCORES = ("auto", "agreement", "labels")


class CalibrationError(RuntimeError):
    """No table can be made; the message says why and names the file or frame."""


def measure_latency(
    model,
    configs: Sequence[SkipConfig],
    input_hw,
    threads: int,
    repeats: int,
    warmup: int = 1,
    frame_hw=None,
    progress: bool = True,
) -> list[float]:
    """Median ms per configuration with the host profiler, never from a cache."""
    frame_hw = tuple(frame_hw) if frame_hw and tuple(frame_hw) != tuple(input_hw) else None
    with tempfile.TemporaryDirectory() as cache:
        context = LatencyContext(
            model=model,
            configs=list(configs),
            input_hw=tuple(input_hw),
            options={
                "threads": threads,
                "repeats": repeats,
                "warmup": warmup,
                "recalibrate": True,
                "cache_dir": cache,
                "frame_hw": list(frame_hw) if frame_hw else None,
                "progress": progress,
            },
        )
        profiler = ProfiledLatencyModel(context)
        return [profiler.table[c] for c in configs]


def prune(
    scores: dict[SkipConfig, float], latency: dict[SkipConfig, float], margin: float
) -> set[SkipConfig]:
    """The configurations worth scoring further: those no candidate at least as fast beats by
    more than ``margin`` points. The full model always stays (the agreement reference).
    """
    keep = set()
    for config, value in scores.items():
        beaten = any(
            other != config
            and latency[other] <= latency[config]
            and scores[other] > value + margin
            for other in scores
        )
        if config.is_full or not beaten:
            keep.add(config)
    return keep


@dataclass
class Search:
    """What a search measured: scores, latency, and what it left out and why."""

    kind: str  # "agreement" or "labels"
    scores: dict[SkipConfig, Score] = field(default_factory=dict)  # fully scored
    latency: dict[SkipConfig, float] = field(default_factory=dict)
    gmacs: dict[SkipConfig, float] = field(default_factory=dict)
    early: dict[SkipConfig, Score] = field(default_factory=dict)  # pruned: first-stage scores
    failed: dict[str, str] = field(default_factory=dict)  # name -> message
    stage_frames: int = 0
    seconds: float = 0.0

    def measurements(self) -> list[Measurement]:
        return [
            Measurement(
                c,
                round(s.value(self.kind), 2),
                round(self.latency[c], 2),
                round(self.gmacs[c], 3),
            )
            for c, s in self.scores.items()
        ]


def _weights(model, num_classes: int, configs, input_hw) -> dict[SkipConfig, float]:
    """Each configuration's share of the work (executed MACs), for an honest ETA."""
    macs = {
        c: float(total_macs(count_layers(model.variant, num_classes, input_hw, c, executed=True)))
        for c in configs
    }
    total = sum(macs.values()) or 1.0
    return {c: len(configs) * m / total for c, m in macs.items()}


def _score_pass(
    scorer: Scorer,
    configs: list[SkipConfig],
    indices: list[int],
    failed: dict[str, str],
    desc: str,
    progress: bool,
    log: Callable[[str], None],
) -> list[SkipConfig]:
    """Run ``configs`` (the full model first) on ``indices``; returns those that ran."""
    from tqdm import tqdm

    weights = _weights(scorer.model, scorer.num_classes, configs, scorer.input_hw)
    done = []
    with tqdm(
        total=float(len(configs)),
        desc=desc,
        unit="cand",
        disable=not progress,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} candidates [{elapsed}<{remaining}]{postfix}",
    ) as bar:
        for config in configs:
            bar.set_postfix_str(config.name, refresh=False)
            try:
                scorer.run(config, indices)
            except Exception as exc:  # one broken candidate must not end the search
                if config.is_full:
                    raise CalibrationError(f"the full model failed: {exc}") from exc
                failed[config.name] = str(exc)
                log(f"skipping candidate {config.name}: {exc}")
            else:
                done.append(config)
            bar.update(weights[config])
    return done


def _profile(
    model, configs, input_hw, threads, repeats, warmup, frame_hw, progress, failed, log
) -> dict[SkipConfig, float]:
    """Median ms per configuration; one that cannot run is dropped (and named) if need be."""
    try:
        times = measure_latency(
            model, configs, input_hw, threads, repeats, warmup, frame_hw, progress=progress
        )
        return dict(zip(configs, times))
    except Exception as first_error:  # the profiler runs every candidate: find the broken ones
        probe = torch.zeros(1, 3, *input_hw)
        usable = []
        for config in configs:
            try:
                with torch.inference_mode():
                    model(probe, config)
            except Exception as exc:
                if config.is_full:
                    raise CalibrationError(f"the full model failed: {exc}") from exc
                failed[config.name] = f"{config.name} failed when timed: {exc}"
                log(f"skipping candidate {failed[config.name]}")
            else:
                usable.append(config)
        if len(usable) == len(configs):
            raise CalibrationError(f"latency profiling failed: {first_error}") from first_error
        return _profile(
            model, usable, input_hw, threads, repeats, warmup, frame_hw, progress, failed, log
        )


def search(
    model,
    frames: sources.Frames,
    configs: Sequence[SkipConfig],
    input_hw,
    mean,
    std,
    kind: str,
    *,
    threads: int,
    repeats: int = 5,
    warmup: int = 1,
    frame_hw=None,
    prune_frames: int | None = 16,
    prune_margin: float = 3.0,
    batch_size: int = 4,
    progress: bool = True,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    latency: dict[SkipConfig, float] | None = None,
    uncertain: float = UNCERTAIN,
) -> Search:
    """Time ``configs``, then score them on ``frames``: a first pass on a few frames, pruning,
    then the survivors on all of them. ``prune_frames`` None (or >= the frame count) scores
    everything on every frame. ``latency`` (ms per configuration) skips the profiling, e.g. for
    a second model of the same architecture.

    Timing comes first, in a process that has not run anything big yet: after a scoring pass
    (batches of frames, reference masks held) the same configurations timed 25-40% slower and
    less steadily here, and the node that will use the table is a fresh process too.
    """
    start = time.perf_counter()
    configs = [FULL] + [c for c in configs if not c.is_full]
    out = Search(kind)
    if latency is None:
        latency = _profile(
            model, configs, input_hw, threads, repeats, warmup, frame_hw, progress, out.failed, log
        )
    ran = [c for c in configs if c in latency]
    out.latency = {c: latency[c] for c in ran}
    num_classes = int(model.config.num_classes)
    for config in ran:
        out.gmacs[config] = (
            total_macs(count_layers(model.variant, num_classes, tuple(input_hw), config)) / 1e9
        )

    scorer = Scorer(model, frames, input_hw, mean, std, batch_size, uncertain)
    everything = list(range(len(frames)))
    staged = prune_frames is not None and 0 < prune_frames < len(frames)
    first = sources.even_indices(len(frames), prune_frames) if staged else everything
    out.stage_frames = len(first)
    desc = f"scoring on {len(first)} frames" if staged else f"scoring on {len(frames)} frames"
    ran = _score_pass(scorer, ran, first, out.failed, desc, progress, log)

    survivors = ran
    if staged:
        values = {c: scorer.score(c).value(kind) for c in ran}
        keep = prune(values, out.latency, prune_margin)
        survivors = [c for c in ran if c in keep]
        out.early = {c: scorer.score(c) for c in ran if c not in keep}
        log(
            f"{len(survivors)} of {len(ran)} candidates within {prune_margin:g} points of the "
            f"front after {len(first)} frames; scoring them on all {len(frames)}"
        )
        survivors = _score_pass(
            scorer,
            survivors,
            everything,
            out.failed,
            f"scoring on {len(frames)} frames",
            progress,
            log,
        )
    out.scores = {c: scorer.score(c) for c in survivors}
    if scorer.out_of_range_pixels:
        log(
            f"{scorer.out_of_range_pixels} label pixels hold class ids the model does not have "
            f"(0..{scorer.num_classes - 1}): scored as ignored"
        )
    out.seconds = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Calibrate skip levels for a SegFormer from a rosbag, an image folder or "
        "labelled images; writes the level table segformer_node loads (levels_path).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, help="HF folder, mmseg .pth or .safetensors")
    src = p.add_argument_group("source (one of; default CamVid val)")
    src.add_argument("--bag", default=None, help="rosbag2 folder (or .mcap/.db3 file)")
    src.add_argument("--topic", default=None, help="image topic in --bag")
    src.add_argument("--images", default=None, help="folder of images")
    src.add_argument("--labels", default=None, help="folder of label PNGs matching --images")
    src.add_argument("--ignore-id", type=int, default=sources.DEFAULT_IGNORE_ID)
    src.add_argument(
        "--camvid",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="CamVid folder (default ../shared/data/CamVid or $DYNVIT_CAMVID)",
    )
    src.add_argument("--data", default=None, help=argparse.SUPPRESS)  # old name of --camvid
    src.add_argument("--split", default="val", help="CamVid split")
    p.add_argument("--frames", type=int, default=100, help="frames sampled evenly over the source")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--levels-out", default=None, help="write the level table here")
    out.add_argument("--levels", default=None, help="evaluate this table instead of searching")
    p.add_argument("--force", action="store_true", help="overwrite an existing --levels-out")
    p.add_argument(
        "--score", choices=SCORES, default="auto", help="auto: labels if the source has them"
    )
    p.add_argument(
        "--frame-size", default=None, help="HxW of the node's camera frames (default: the frames')"
    )
    p.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads"
    )
    p.add_argument("--max-levels", type=int, default=12)
    p.add_argument(
        "--min-step",
        type=float,
        default=MIN_STEP,
        help="each level at least this fraction faster than the one before",
    )
    p.add_argument(
        "--uncertain",
        type=float,
        default=UNCERTAIN,
        help="share of each frame's pixels, the full model's least confident, that agreement "
        "leaves out",
    )
    p.add_argument(
        "--scales", default="1,0.75,0.5", help="input scales the candidates try (1 is always in)"
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per candidate")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per candidate")
    p.add_argument("--prune-frames", type=int, default=16, help="frames of the first pass")
    p.add_argument("--prune-margin", type=float, default=3.0, help="points (mIoU)")
    p.add_argument("--no-prune", action="store_true", help="score every candidate on every frame")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--baseline", default=None, help="a plainly trained model: post-hoc comparison")
    p.add_argument("--no-progress", action="store_true")
    return p


def load_frames(args) -> sources.Frames:
    """The frames named on the command line (SourceError when nothing is usable)."""
    chosen = [name for name in ("bag", "images") if getattr(args, name)]
    if args.camvid is not None or args.data:
        chosen.append("camvid")
    if len(chosen) > 1:
        raise CalibrationError(f"give one source, not {' and '.join('--' + c for c in chosen)}")
    if args.labels and not args.images:
        raise CalibrationError("--labels needs --images (the folder the labels belong to)")
    if args.bag:
        if not args.topic:
            raise CalibrationError("--bag needs --topic (the image topic to calibrate on)")
        return sources.from_bag(args.bag, args.topic, args.frames)
    if args.topic:
        raise CalibrationError("--topic needs --bag")
    if args.images:
        return sources.from_folder(args.images, args.labels, args.frames, args.ignore_id)
    root = camvid.find_root(args.camvid or args.data or None)
    if root is None:
        raise CalibrationError(
            "no source given and " + camvid.NOT_FOUND + "; or calibrate from your own data "
            "with --bag B --topic T or --images DIR"
        )
    return sources.from_camvid(root, args.split, args.frames)


def _scales(text: str) -> list[float]:
    try:
        scales = sorted({1.0, *(float(v) for v in text.split(",") if v.strip())}, reverse=True)
    except ValueError:
        raise CalibrationError(f"--scales takes numbers like 1,0.75,0.5; got {text!r}") from None
    for scale in scales:
        SkipConfig(input_scale=scale)  # range check
    return scales


def _log(line: str) -> None:
    print(line, file=sys.stderr)


def _command(argv) -> str:
    return " ".join([PROG, *(shlex.quote(str(a)) for a in argv)])


HEADER = "agreement mIoU: on the full model's sure pixels / on all; pixel agreement %"


def _print_candidates(result: Search, labelled: bool) -> None:
    print(HEADER)
    print(f"{'candidate':36} {'agree':>6} {'all':>6} {'pixel':>6}", end="")
    print(f" {'mIoU':>6}" if labelled else "", end="")
    print(f" {'ms':>7} {'GMACs':>6}  note")
    rows = [(c, s, "") for c, s in result.scores.items()]
    rows += [(c, s, f"pruned after {s.frames} frames") for c, s in result.early.items()]
    for config, score, note in sorted(rows, key=lambda r: -result.latency[r[0]]):
        scores = _score_cells(
            score.agreement_miou,
            score.agreement_miou_all,
            score.pixel_agreement,
            score.label_miou if labelled else None,
        )
        print(f"{config.name:36} {scores} {result.latency[config]:7.1f} ", end="")
        print(f"{result.gmacs[config]:6.3f}  {note}")
    for name, message in result.failed.items():
        print(f"{name:36} failed: {message[:200]}")


def _score_cells(agreement: float, everywhere: float, pixel: float, miou: float | None) -> str:
    """The score columns of a table row: agreement, all-pixel agreement, pixel agreement and,
    with labels, mIoU.
    """
    cells = f"{agreement:6.2f} {everywhere:6.2f} {pixel:6.2f}"
    return cells if miou is None else f"{cells} {miou:6.2f}"


def _print_levels(rows: list[dict], labelled: bool) -> None:
    top = rows[0]["ms"]
    print(f"{'level':>5} {'configuration':36} {'agree':>6} {'all':>6} {'pixel':>6}", end="")
    print(f" {'mIoU':>6}" if labelled else "", end="")
    print(f" {'ms':>7} {'x L0':>5} {'GMACs':>6}")
    for row in rows:
        scores = _score_cells(
            row["agreement_miou"],
            row["agreement_miou_all"],
            row["pixel_agreement"],
            row["miou"] if labelled else None,
        )
        print(f"{row['level']:5d} {row['name']:36} {scores} ", end="")
        print(f"{row['ms']:7.1f} {row['ms'] / top:5.2f} {row['gmacs']:6.3f}")


def _write(table: LevelTable, path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise CalibrationError(f"{path} exists: pass --force to overwrite it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        table.save(tmp)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CalibrationError(f"cannot write {path}: {exc}") from exc


def run(args, argv: Sequence[str]) -> int:
    progress = not args.no_progress
    levels_out = Path(args.levels_out) if args.levels_out else None
    if levels_out is not None and levels_out.exists() and not args.force:
        raise CalibrationError(f"{levels_out} exists: pass --force to overwrite it")
    frame_hw = sources.parse_size(args.frame_size) if args.frame_size else None
    scales = _scales(args.scales)
    if args.threads < 1:
        raise CalibrationError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    tune_allocator()  # as segformer_node does by default: time what the node will run

    started = time.perf_counter()
    try:
        model, meta = load_model(args.model)
    except CheckpointError as exc:
        raise CalibrationError(f"cannot load --model: {exc}") from exc
    try:
        frames = load_frames(args)
    except sources.SourceError as exc:
        raise CalibrationError(str(exc)) from exc
    for line in frames.skipped[:10]:
        _log(f"skipped {line}")
    if len(frames.skipped) > 10:
        _log(f"... and {len(frames.skipped) - 10} more skipped")
    kind = args.score
    if kind == "auto":
        kind = "labels" if frames.labelled else "agreement"
    if kind == "labels" and not frames.labelled:
        raise CalibrationError("--score labels needs a labelled source (--labels or --camvid)")
    input_hw = tuple(int(v) for v in meta.input_size)
    frame_hw = frame_hw or frames.frame_hw()
    spec = model.variant

    if args.levels:
        try:
            shipped = LevelTable.load(args.levels)
            configs = [c.validate(spec.depths) for c in shipped.configs]
        except ValueError as exc:
            raise CalibrationError(str(exc)) from exc
    else:
        configs = candidate_configs(spec, input_scales=scales)
    _log(
        f"{PROG}: SegFormer-{spec.name.upper()} ({meta.num_classes} classes, input "
        f"{input_hw[0]}x{input_hw[1]}), {len(configs)} configurations, {len(frames)} frames "
        f"({frames.info.get('kind')}), score: {kind}, {args.threads} threads"
    )
    with HostLoad() as load:
        result = search(
            model,
            frames,
            configs,
            input_hw,
            meta.mean,
            meta.std,
            kind,
            threads=args.threads,
            repeats=args.repeats,
            warmup=args.warmup,
            frame_hw=frame_hw,
            prune_frames=None if (args.no_prune or args.levels) else args.prune_frames,
            prune_margin=args.prune_margin,
            batch_size=args.batch_size,
            progress=progress,
            log=_log,
            uncertain=args.uncertain,
        )
    labelled = frames.labelled
    accuracy = (
        f"mIoU (%) against labels, {meta.num_classes} classes, ignore id {frames.ignore_id}"
        if kind == "labels"
        else (
            "agreement mIoU (%): each level's masks against the full model's on the same "
            f"frames, leaving out each frame's {args.uncertain:g} least confident pixels"
        )
    )
    info = {
        "model": str(args.model),
        "variant": spec.name,
        "classes": meta.num_classes,
        "input_hw": list(input_hw),
        "frame_hw": list(frame_hw) if frame_hw else None,
        "score": kind,
        "accuracy": accuracy,
        "source": dict(frames.info, skipped=len(frames.skipped)),
        "latency": "median ms, profiled on this host (frame resize, forward, mask)",
        "host": cpu_model(),
        "threads": args.threads,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "search": {
            "candidates": len(configs),
            "scored_on_all_frames": len(result.scores),
            "pruned": len(result.early),
            "failed": len(result.failed),
            "first_pass_frames": result.stage_frames,
            "seconds": round(result.seconds, 1),
            # What else ran while the levels were timed (their latencies depend on it).
            "host_load": load.report(),
        },
        "command": _command(argv),
    }
    if args.levels:
        order = {c: i for i, c in enumerate(configs)}
        chosen = sorted(
            (m for m in result.measurements() if m.config in order), key=lambda m: order[m.config]
        )
        levels = [(i, m) for i, m in enumerate(chosen)]
    else:
        if not result.scores:
            raise CalibrationError("no candidate could be scored: no table")
        front = pareto_levels(result.measurements(), info, args.min_step)
        table = thin_levels(front, args.max_levels)
        table.info["pixel_agreement"] = {
            lv.name: round(result.scores[lv.config].pixel_agreement, 2) for lv in table
        }
        levels = [(lv.level, lv) for lv in table]
        if levels_out is not None:
            _write(table, levels_out, args.force)
            _log(f"wrote {levels_out} ({len(table)} levels)")

    rows, row_configs = [], []
    for index, level in levels:
        row_configs.append(level.config)
        score = result.scores[level.config]
        rows.append(
            {
                "level": index,
                "name": level.config.name,
                "accuracy": round(score.value(kind), 2),
                "agreement_miou": round(score.agreement_miou, 2),
                "agreement_miou_all": round(score.agreement_miou_all, 2),
                "pixel_agreement": round(score.pixel_agreement, 2),
                **({"miou": round(score.label_miou, 2)} if labelled else {}),
                **({"class_iou": _class_iou(score, meta)} if labelled else {}),
                "ms": round(result.latency[level.config], 2),
                "gmacs": round(result.gmacs[level.config], 3),
            }
        )
    where = f"{input_hw[0]}x{input_hw[1]}" + (
        f" from {frame_hw[0]}x{frame_hw[1]} frames" if frame_hw else ""
    )
    print(f"\nCandidates (SegFormer-{spec.name.upper()}, {where}, {args.threads} threads)")
    _print_candidates(result, labelled)
    print("\nSkip levels" + ("" if args.levels else f" ({kind})"))
    _print_levels(rows, labelled)

    comparison = {}
    if args.baseline:
        comparison = _posthoc(args.baseline, frames, rows, row_configs, input_hw, meta, args)
    if labelled and rows:
        print("\nClass IoU (%) of level 0, " + rows[0]["name"])
        for name, iou in rows[0]["class_iou"].items():
            print(f"  {name:16} {iou:6.2f}" if iou is not None else f"  {name:16}    n/a")
    full = result.scores.get(FULL)
    print(
        json.dumps(
            {
                "score": kind,
                "source": frames.info,
                "skipped": len(frames.skipped),
                "full_miou": round(full.label_miou, 2) if full and labelled else None,
                "levels": rows,
                "class_iou": rows[0]["class_iou"] if labelled and rows else None,
                "failed": sorted(result.failed),
                "search_s": round(result.seconds, 1),
                "host_load": info["search"]["host_load"],
                "total_s": round(time.perf_counter() - started, 1),
                "levels_out": str(levels_out) if levels_out and not args.levels else None,
                "posthoc_vs_skipaware": comparison,
            }
        )
    )
    return 0


def _class_iou(score: Score, meta) -> dict[str, float | None]:
    """IoU per class name (None for a class neither in the labels nor predicted)."""
    names = list(meta.class_names) or [f"class_{i}" for i in range(meta.num_classes)]
    return {
        name: (round(v, 2) if v == v else None)
        for name, v in zip(names, score.label_class_iou or ())
    }


def _posthoc(baseline_path, frames, rows, row_configs, input_hw, meta, args) -> dict:
    """The same configurations on a plainly trained model (labels needed)."""
    if not frames.labelled:
        print("--baseline needs labels: post-hoc comparison skipped", file=sys.stderr)
        return {}
    try:
        baseline, _ = load_model(baseline_path)
    except CheckpointError as exc:
        print(f"cannot load --baseline: {exc}", file=sys.stderr)
        return {}
    scorer = Scorer(baseline, frames, input_hw, meta.mean, meta.std, args.batch_size)
    everything = list(range(len(frames)))
    scorer.run(FULL, everything)
    out = []
    for row, config in zip(rows, row_configs):
        scorer.run(config, everything)
        out.append((row["name"], scorer.score(config).label_miou, row["miou"]))
    print("\nPost-hoc skipping (plain training) vs skip-aware training, same configurations")
    print(f"{'config':36} {'post-hoc':>8} {'skip-aware':>10} {'gain':>6}")
    for name, posthoc, aware in out:
        print(f"{name:36} {posthoc:8.2f} {aware:10.2f} {aware - posthoc:6.2f}")
    return {
        "baseline": str(baseline_path),
        "levels": [
            {"config": n, "posthoc_miou": round(a, 2), "skipaware_miou": round(b, 2)}
            for n, a, b in out
        ],
        "mean_gain_miou": round(sum(b - a for _, a, b in out) / len(out), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return run(args, argv)
    except (CalibrationError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        print(f"{PROG}: no level table written", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
