# SPDX-License-Identifier: Apache-2.0
"""Encoder input sizes on and off the 32-pixel grid: what snapping a level's scale buys.

    python benchmarks/bench_geometry.py [--model M] [--camvid DIR]

For each input scale of the model's input size, the shipped weights are
scored (CamVid val, and every fourth train image as a check that the effect
is not tuned on val) with the frame resized straight to the size a level
gets: off the grid (each side rounded, what levels used before `scaled_size`
snapped) and snapped to the encoder's 32-pixel grid (`engine/model.py:
scaled_size`). At scale 1: the camera's 360x480 against the model's own input
(352x480 for the shipped model).
Ends with one JSON line {"rows": [{"scale", "off_grid_hw", "snapped_hw",
"val": {"off_grid", "snapped"}, "train": {..}}], "host_load": ..}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynvit_ros.engine.checkpoint import load_model  # noqa: E402
from dynvit_ros.engine.model import scaled_size  # noqa: E402
from dynvit_ros.hostload import HostLoad  # noqa: E402
from dynvit_ros.training.camvid import Split, load_split, require_root  # noqa: E402
from dynvit_ros.training.evaluate import evaluate_miou  # noqa: E402

FRAME_HW = (360, 480)
SCALES = (1.0, 0.75, 0.6, 0.5, 0.4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="models/segformer_b0_camvid.safetensors")
    p.add_argument("--camvid", help="CamVid folder (default ../shared/data/CamVid)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.model)
    root = require_root(args.camvid)
    train = load_split(root, "train")
    splits = {
        "val": load_split(root, "val"),
        "train": Split(train.images[::4], train.labels[::4], train.names[::4]),
    }
    rows = []
    with HostLoad() as load:
        for scale in SCALES:
            # Scale 1: the camera frame as it is against the model's own input (352x480 for
            # the shipped model); other scales of the model's input, as its levels take them.
            base = FRAME_HW if scale == 1.0 else tuple(meta.input_size)
            off = tuple(max(1, round(side * scale)) for side in base)
            snapped = tuple(meta.input_size) if scale == 1.0 else scaled_size(*base, scale)
            row = {"scale": scale, "off_grid_hw": list(off), "snapped_hw": list(snapped)}
            for name, split in splits.items():
                row[name] = {
                    kind: round(evaluate_miou(model, split, hw, meta.mean, meta.std), 2)
                    for kind, hw in (("off_grid", off), ("snapped", snapped))
                }
            rows.append(row)
            print(
                f"scale {scale:4}: off grid {off[0]}x{off[1]} val {row['val']['off_grid']:.2f}"
                f" train {row['train']['off_grid']:.2f} | snapped {snapped[0]}x{snapped[1]}"
                f" val {row['val']['snapped']:.2f} train {row['train']['snapped']:.2f}",
                flush=True,
            )
    print(json.dumps({"rows": rows, "host_load": load.report()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
