# SPDX-License-Identifier: Apache-2.0
"""What a stale mask costs: mIoU of masks g frames old, against the streaming choice's model.

    python benchmarks/bench_staleness.py [--levels 0 3 7] [--split val]

The streaming choice (dynvit_ros/budget/streaming.py) values a level's masks at
``accuracy * (1 - c) ** age``, with ``c`` the share of mask pixels that change
per camera frame (``SceneChange``, label-free). This checks that model on the
frames bench-streaming replays (CamVid val in file order): for each level, the
mIoU of frame k scored with the mask of frame k - g (g = 0..3), as a ratio of
the fresh mIoU, next to the pixel agreement of masks g frames apart (on
SceneChange's 8-pixel grid) and the model's ``(1 - c) ** g`` with ``c`` from
one-frame pairs. Ends with one JSON line {"levels": [{"level", "name",
"miou": [..], "ratio": [..], "agreement": [..], "model": [..], "c"}],
"split", "host_load"}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dynvit_ros.engine.runtime import SegmentationRuntime  # noqa: E402
from dynvit_ros.hostload import HostLoad  # noqa: E402
from dynvit_ros.training.camvid import ConfusionMatrix, load_split, require_root  # noqa: E402

GAPS = (0, 1, 2, 3)
GRID = 8  # SceneChange's


def staleness(masks: list, labels: list) -> dict:
    miou, agreement = [], []
    for g in GAPS:
        confusion = ConfusionMatrix()
        agree = []
        for k in range(g, len(masks)):
            confusion.update(masks[k - g], labels[k])
            agree.append(np.mean(masks[k][::GRID, ::GRID] == masks[k - g][::GRID, ::GRID]))
        miou.append(confusion.miou())
        agreement.append(float(np.mean(agree)))
    c = 1.0 - agreement[1]
    return {
        "miou": [round(m, 2) for m in miou],
        "ratio": [round(m / miou[0], 3) for m in miou],
        "agreement": [round(a, 3) for a in agreement],
        "model": [round((1.0 - c) ** g, 3) for g in GAPS],
        "c": round(c, 4),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(REPO / "models/segformer_b0_camvid.safetensors"))
    p.add_argument("--levels-file", default=str(REPO / "config/segformer_b0_camvid.levels.yaml"))
    p.add_argument("--levels", type=int, nargs="+", default=[0, 3, 7])
    p.add_argument("--split", default="val", help="CamVid split, in file order")
    p.add_argument("--camvid", help="CamVid folder (default ../shared/data/CamVid)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    runtime = SegmentationRuntime.load(args.model, args.levels_file, num_threads=args.threads)
    split = load_split(require_root(args.camvid), args.split)
    rows = []
    with HostLoad() as load:
        for level in args.levels:
            masks = [runtime.infer(image, level).mask for image in split.images]
            row = {"level": level, "name": runtime.levels[level].name}
            row.update(staleness(masks, split.labels))
            rows.append(row)
            print(
                f"L{level} {row['name']:24} c {row['c']:.3f}  mIoU by age {row['miou']}  "
                f"ratio {row['ratio']}  model {row['model']}  pixel agreement {row['agreement']}",
                flush=True,
            )
    print(json.dumps({"levels": rows, "split": args.split, "host_load": load.report()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
