# SPDX-License-Identifier: Apache-2.0
"""Skip configurations: which parts of a trained SegFormer are not computed.

A configuration is a frozen, hashable value. The model reads it once per
forward pass; nothing about skipping lives in module state, so any level can
be chosen per frame without touching the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
import json
import math
from typing import Iterable, Sequence

import yaml

BlockId = tuple[int, int]  # (stage index 0..3, block index within the stage)
FUSE_STRIDES = (4, 8, 16, 32)
NUM_STAGES = 4


@dataclass(frozen=True)
class BlockSkip:
    """What one encoder block leaves out."""

    attention: bool = False
    ffn_dwconv: bool = False
    whole: bool = False


_NO_SKIP = BlockSkip()
_WHOLE = BlockSkip(whole=True)


def _block_ids(value: Iterable[Sequence[int]]) -> tuple[BlockId, ...]:
    ids = set()
    for item in value:
        if len(item) != 2:
            raise ValueError(f"a block id is [stage, block], got {item!r}")
        stage, block = (int(v) for v in item)
        ids.add((stage, block))
    return tuple(sorted(ids))


@dataclass(frozen=True)
class SkipConfig:
    """The paper's knobs, applied to trained weights without retraining.

    - ``skip_attention``: blocks whose efficient self-attention sub-layer is
      not run (the residual passes through).
    - ``skip_dwconv``: blocks whose Mix-FFN depthwise 3x3 conv is identity.
    - ``skip_block``: blocks skipped entirely.
    - ``decoder_drop``: stages (0..3) left out of the decoder's fuse. Dropping
      the deepest stages also ends the encoder early, since nothing else
      reads them.
    - ``fuse_stride``: resolution of the decoder's fuse and classifier
      (4 is the reference; 8/16/32 are coarser).
    - ``input_scale``: the input is resized by about this factor before the
      encoder, each side snapped to the encoder's 32-pixel grid
      (:func:`dynvit_ros.engine.model.scaled_size`).
    """

    name: str = field(default="full", compare=False)
    skip_attention: tuple[BlockId, ...] = ()
    skip_dwconv: tuple[BlockId, ...] = ()
    skip_block: tuple[BlockId, ...] = ()
    decoder_drop: tuple[int, ...] = ()
    fuse_stride: int = 4
    input_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("skip_attention", "skip_dwconv", "skip_block"):
            object.__setattr__(self, name, _block_ids(getattr(self, name)))
        drop = tuple(sorted({int(s) for s in self.decoder_drop}))
        object.__setattr__(self, "decoder_drop", drop)
        if any(not 0 <= s < NUM_STAGES for s in drop):
            raise ValueError(f"decoder_drop stages must be in 0..3, got {drop}")
        if len(drop) == NUM_STAGES:
            raise ValueError("decoder_drop cannot drop every stage")
        if int(self.fuse_stride) not in FUSE_STRIDES:
            raise ValueError(f"fuse_stride must be one of {FUSE_STRIDES}, got {self.fuse_stride}")
        object.__setattr__(self, "fuse_stride", int(self.fuse_stride))
        scale = float(self.input_scale)
        if not (math.isfinite(scale) and 0.1 <= scale <= 2.0):
            raise ValueError(
                f"input_scale must be a finite value in [0.1, 2.0], got {self.input_scale}"
            )
        object.__setattr__(self, "input_scale", scale)

    # -- queries used by the model and the MAC counter -------------------
    def block(self, stage: int, index: int) -> BlockSkip:
        key = (stage, index)
        if key in self.skip_block:
            return _WHOLE
        attention = key in self.skip_attention
        dwconv = key in self.skip_dwconv
        if attention or dwconv:
            return BlockSkip(attention=attention, ffn_dwconv=dwconv)
        return _NO_SKIP

    @property
    def decoder_stages(self) -> tuple[int, ...]:
        return tuple(s for s in range(NUM_STAGES) if s not in self.decoder_drop)

    @property
    def fuse_level(self) -> int:
        """Index of the stage whose resolution the decoder fuses at (stride 4 -> 0 ... 32 -> 3)."""
        return FUSE_STRIDES.index(self.fuse_stride)

    @property
    def encoder_stages(self) -> int:
        """How many encoder stages must run: up to the deepest one decoded."""
        return max(self.decoder_stages) + 1

    @property
    def is_full(self) -> bool:
        return self == FULL

    def validate(self, depths: Sequence[int]) -> "SkipConfig":
        """Raise ValueError if a block id does not exist in a model with these depths."""
        for name in ("skip_attention", "skip_dwconv", "skip_block"):
            for stage, block in getattr(self, name):
                if not (0 <= stage < len(depths) and 0 <= block < depths[stage]):
                    raise ValueError(
                        f"{name} names block ({stage}, {block}), which a model with depths "
                        f"{list(depths)} does not have"
                    )
        return self

    # -- serialisation ----------------------------------------------------
    def to_dict(self) -> dict:
        out: dict = {"name": self.name}
        for f in fields(self):
            if f.name == "name":
                continue
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = (
                    [list(v) for v in value]
                    if f.name.startswith("skip_")
                    else (list(value) if isinstance(value, tuple) else value)
                )
        return out

    def key(self) -> dict:
        """What the configuration computes, without its display name (caches key on it)."""
        return {k: v for k, v in self.to_dict().items() if k != "name"}

    @classmethod
    def from_dict(cls, data: dict) -> "SkipConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown skip configuration keys: {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SkipConfig":
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=True, default_flow_style=None)

    @classmethod
    def from_yaml(cls, text: str) -> "SkipConfig":
        return cls.from_dict(yaml.safe_load(text) or {})


FULL = SkipConfig()
