# SPDX-License-Identifier: Apache-2.0
"""Train a SegFormer on CamVid, optionally skip-aware (one set of weights for every skip level).

    python -m dynvit_ros.training.train --out runs/b0_skipaware --skip-aware
    python -m dynvit_ros.training.train --out runs/b0_sandwich --sandwich --init plain.safetensors

``--skip-aware`` trains one sampled configuration per step on the labels.
``--sandwich`` follows once-for-all / slimmable training: every step trains the
full configuration on the labels and, by in-place distillation, the cheapest
candidate and a sampled one on the full configuration's soft predictions, so
the full model stays the most accurate level and the others learn to agree
with it (which is also what the label-free calibration score measures).
``--students candidates`` samples that one among the calibration candidates,
so training time goes to the configurations a level table can ship rather than
to arbitrary mixes of the knobs.

CPU-friendly (uses CUDA when present), resumable (``--resume``), AdamW with
linear warm-up and a poly schedule. The schedule runs on progress = the larger
of steps done / total steps and elapsed / ``--max-minutes``, so a run bounded
by wall time still anneals properly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dynvit_ros.engine.checkpoint import ModelMetadata, save_checkpoint
from dynvit_ros.engine.levels import LevelTable, candidate_configs
from dynvit_ros.engine.macs import count_layers, total_macs
from dynvit_ros.engine.model import SegFormer, VariantSpec, build_segformer
from dynvit_ros.engine.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_tensor
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.training import camvid
from dynvit_ros.training.evaluate import evaluate_miou

MEAN, STD = IMAGENET_MEAN, IMAGENET_STD


def sample_skip(spec: VariantSpec, rng: random.Random, p_full: float = 0.4) -> SkipConfig:
    """A random configuration over the paper's knobs, so every path gets trained."""
    if rng.random() < p_full:
        return FULL
    attention, dwconv, whole = [], [], []
    for stage, depth in enumerate(spec.depths):
        for block in range(depth):
            if depth > 1 and rng.random() < 0.15:
                whole.append((stage, block))
                continue
            if rng.random() < 0.25:
                attention.append((stage, block))
            if rng.random() < 0.25:
                dwconv.append((stage, block))
    return SkipConfig(
        name="sampled",
        skip_attention=attention,
        skip_dwconv=dwconv,
        skip_block=whole,
        decoder_drop=[3] if rng.random() < 0.25 else [],
        fuse_stride=8 if rng.random() < 0.3 else 4,
        input_scale=rng.choice([1.0, 1.0, 0.75, 0.5]),
    )


def cheapest_config(spec: VariantSpec, num_classes: int, input_hw) -> SkipConfig:
    """The candidate level with the fewest MACs: the bottom slice of the sandwich."""
    return min(
        candidate_configs(spec),
        key=lambda c: total_macs(count_layers(spec, num_classes, tuple(input_hw), c)),
    )


def shippable_students(spec: VariantSpec, cheapest: SkipConfig) -> list[SkipConfig]:
    """The calibration candidates other than the full model and the cheapest one: the
    configurations a level table can ship, which ``--students candidates`` trains directly.
    """
    return [c for c in candidate_configs(spec) if c not in (FULL, cheapest)]


def table_students(levels_path: str | Path, cheapest: SkipConfig) -> list[SkipConfig]:
    """The configurations a level table ships, other than the full model and the cheapest
    one: ``--students table`` spends a fine-tuning phase on exactly the levels a node runs.
    """
    return [c for c in LevelTable.load(levels_path).configs if c not in (FULL, cheapest)]


def _at(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)


def sandwich_step(
    model: SegFormer,
    images: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    students: list[SkipConfig],
) -> float:
    """Accumulate the gradients of one sandwich step; returns the full configuration's loss.

    Each pass is backpropagated at once, so only one graph is alive at a time.
    """
    logits = _at(model(images, FULL), labels)
    loss = F.cross_entropy(logits, labels, weight=weights, ignore_index=camvid.IGNORE_ID)
    loss.backward()
    teacher = logits.detach().softmax(1)
    valid = labels != camvid.IGNORE_ID
    for config in students:
        student = _at(model(images, config), labels).log_softmax(1)
        distill = -(teacher * student).sum(1)[valid].mean()
        distill.backward()
    return loss.item()


def lr_factor(progress: float, warmup: float, power: float = 1.0) -> float:
    if progress < warmup:
        return max(progress / warmup, 1e-3)
    return max(1.0 - (progress - warmup) / (1.0 - warmup), 0.0) ** power


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="CamVid folder (default ../shared/data/CamVid)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, log, exported model")
    p.add_argument("--variant", default="b0")
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=[240, 320],
        metavar=("H", "W"),
        help="size frames are resized to at inference (the base of the scale augmentation)",
    )
    p.add_argument("--crop", type=int, nargs=2, default=[192, 256], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.05, help="share of training used for warm-up")
    p.add_argument("--epochs", type=int, default=400)
    p.add_argument(
        "--max-minutes", type=float, default=0.0, help="stop after this wall time (0 = none)"
    )
    p.add_argument(
        "--skip-aware", action="store_true", help="sample a skip configuration every step"
    )
    p.add_argument(
        "--sandwich",
        action="store_true",
        help="full on labels + cheapest and one sampled configuration distilled from it",
    )
    p.add_argument(
        "--students",
        choices=("random", "candidates", "table"),
        default="random",
        help="where the sandwich's sampled configuration comes from: any mix of the paper's "
        "knobs, the calibration candidates (the configurations a level table can ship), or "
        "the levels of --levels (the configurations a table does ship)",
    )
    p.add_argument(
        "--levels",
        default="config/segformer_b0_camvid.levels.yaml",
        help="level table whose configurations --students table trains",
    )
    p.add_argument("--eval-every", type=int, default=5, help="epochs between val mIoU logs")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    root = camvid.require_root(args.data)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train, val = camvid.load_split(root, "train"), camvid.load_split(root, "val")
    weights = camvid.class_weights(train.labels).to(device)
    augment = camvid.Augment(tuple(args.input_size), tuple(args.crop), seed=args.seed)
    model: SegFormer = build_segformer(args.variant, camvid.NUM_CLASSES).to(device)
    if args.init:
        from dynvit_ros.engine.checkpoint import load_model

        model.load_state_dict(load_model(args.init)[0].state_dict())
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
    )
    steps_per_epoch = len(train.images) // args.batch
    total_steps = steps_per_epoch * args.epochs
    step, elapsed_before = 0, 0.0
    history: list[dict] = []
    if args.resume and (out / "last.pt").exists():
        state = torch.load(out / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_before = int(state["step"]), float(state["elapsed"])
        history = (
            json.loads((out / "history.json").read_text())
            if (out / "history.json").exists()
            else []
        )
        print(f"resumed at step {step}", file=sys.stderr)

    metadata = ModelMetadata(
        variant=args.variant,
        num_classes=camvid.NUM_CLASSES,
        class_names=camvid.CLASS_NAMES,
        palette=camvid.PALETTE,
        mean=MEAN,
        std=STD,
        input_size=list(args.input_size),
        provenance={
            "training_command": "python -m dynvit_ros.training.train "
            + " ".join(argv or sys.argv[1:]),
            "data": "CamVid train (367 images)",
            "data_license": camvid.LICENSE,
            "skip_aware": args.skip_aware or args.sandwich,
            "recipe": ("sandwich" if args.sandwich else "skip-aware")
            if args.skip_aware or args.sandwich
            else "plain",
        },
    )
    cheapest = cheapest_config(model.variant, camvid.NUM_CLASSES, args.input_size)
    candidates = (
        table_students(args.levels, cheapest)
        if args.students == "table"
        else shippable_students(model.variant, cheapest)
    )
    start = time.time()
    order: list[int] = []
    bar = tqdm(total=total_steps, initial=step, desc="train", mininterval=30, file=sys.stderr)
    model.train()
    while step < total_steps:
        elapsed = elapsed_before + time.time() - start
        progress = step / total_steps
        if args.max_minutes:
            progress = max(progress, elapsed / (60 * args.max_minutes))
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = args.lr * lr_factor(progress, args.warmup)
        if len(order) < args.batch:
            order = list(range(len(train.images)))
            rng.shuffle(order)
        batch = [augment(train.images[i], train.labels[i]) for i in order[: args.batch]]
        del order[: args.batch]
        images = to_tensor([b[0] for b in batch], MEAN, STD).to(device)
        labels = torch.from_numpy(np.stack([b[1] for b in batch])).long().to(device)
        optimizer.zero_grad(set_to_none=True)
        if args.sandwich:
            sampled = (
                rng.choice(candidates)
                if args.students in ("candidates", "table")
                else sample_skip(model.variant, rng, p_full=0.0)
            )
            loss = sandwich_step(model, images, labels, weights, [cheapest, sampled])
        else:
            skip = sample_skip(model.variant, rng) if args.skip_aware else FULL
            logits = _at(model(images, skip), labels)
            loss = F.cross_entropy(logits, labels, weight=weights, ignore_index=camvid.IGNORE_ID)
            loss.backward()
            loss = loss.item()
        optimizer.step()
        step += 1
        bar.update(1)
        if step % steps_per_epoch == 0:
            epoch = step // steps_per_epoch
            record = {
                "epoch": epoch,
                "step": step,
                "loss": round(loss, 4),
                "lr": optimizer.param_groups[0]["lr"],
                "minutes": round(elapsed / 60, 1),
            }
            if epoch % args.eval_every == 0:
                # Logged for the learning curve only; the shipped model is the final one
                # (no val selection).
                record["val_miou"] = round(
                    evaluate_miou(model, val, args.input_size, MEAN, STD), 2
                )
            history.append(record)
            print(json.dumps(record), flush=True)
            (out / "history.json").write_text(json.dumps(history, indent=1))
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "elapsed": elapsed,
                },
                out / "last.pt",
            )
    bar.close()
    final = round(evaluate_miou(model, val, args.input_size, MEAN, STD), 2)
    history.append(
        {
            "final": True,
            "step": step,
            "val_miou": final,
            "minutes": round((elapsed_before + time.time() - start) / 60, 1),
        }
    )
    (out / "history.json").write_text(json.dumps(history, indent=1))
    save_checkpoint(out / "final.safetensors", model, metadata)
    print(json.dumps(history[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
