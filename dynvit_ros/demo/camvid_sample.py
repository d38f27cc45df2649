# SPDX-License-Identifier: Apache-2.0
"""The demo's real street bag: a few CamVid val frames as a JPEG camera recording.

    python -m dynvit_ros.demo.camvid_sample --out data/camvid_street --frames 60

CamVid is CC BY-NC 4.0, so the bag inherits that licence; ``ATTRIBUTION.md``
beside it names the source, the licence and every frame, as the shipped
weights' metadata does. Frames are taken evenly over val in file order (one
drive, 0016E5), so the bag plays as a short continuous drive.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from dynvit_ros.bags.io import write_image_bag
from dynvit_ros.training import camvid
from dynvit_ros.training.sources import even_indices

MAX_FRAMES = 60  # what the project may ship of CamVid
ATTRIBUTION = """# Sample street bag: attribution and licence

`{bag}` holds {count} frames of the CamVid road-scene dataset, JPEG-compressed
(quality {quality}) as `sensor_msgs/CompressedImage` on `{topic}` at {rate:g} Hz.

- Source: CamVid, as published with the SegNet tutorial (Brostow, Fauqueur and
  Cipolla, "Semantic object classes in video: A high-definition ground truth
  database", Pattern Recognition Letters 2009; copy by Kendall, Badrinarayanan
  and Cipolla).
- Licence: {license}.
  The frames are not covered by the project's Apache-2.0 licence.
- Split: val (sequence 0016E5), the split the shipped model was selected on
  (not trained on).
- Written by: `python -m dynvit_ros.demo.camvid_sample {argv}`

Frames, in bag order:

{frames}
"""


def val_bag(
    path: Path, root=None, rate_hz: float = 10.0, topic: str = "/camera/image_raw/compressed"
) -> Path:
    """Every CamVid val frame, in file order, as a JPEG camera bag (for benchmarks and the
    demo's ``--camvid``; written from ../shared, never shipped).
    """
    split = camvid.load_split(camvid.require_root(root), "val")
    return write_image_bag(path, split.images, rate_hz, topic)


def write_sample(
    out: Path,
    root: Path,
    frames: int = MAX_FRAMES,
    rate_hz: float = 10.0,
    topic: str = "/camera/image_raw/compressed",
    quality: int = 85,
    argv: str = "",
) -> Path:
    if not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"the sample holds 1 to {MAX_FRAMES} CamVid frames, got {frames}")
    split = camvid.load_split(root, "val")
    picked = even_indices(len(split.images), frames)
    out.mkdir(parents=True, exist_ok=False)
    bag = out / "bag"
    write_image_bag(bag, [split.images[i] for i in picked], rate_hz, topic, quality=quality)
    (out / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(
            bag=bag.name,
            count=len(picked),
            quality=quality,
            topic=topic,
            rate=rate_hz,
            license=camvid.LICENSE,
            argv=argv,
            frames="\n".join(f"- {split.names[i]}" for i in picked),
        )
    )
    return bag


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("data/camvid_street"))
    p.add_argument("--frames", type=int, default=MAX_FRAMES)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--quality", type=int, default=85)
    p.add_argument("--data", default=None, help="CamVid root (default ../shared/data/CamVid)")
    args = p.parse_args(argv)
    words = sys.argv[1:] if argv is None else list(argv)
    bag = write_sample(
        args.out,
        camvid.require_root(args.data),
        args.frames,
        args.rate,
        quality=args.quality,
        argv=" ".join(words),
    )
    print(bag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
