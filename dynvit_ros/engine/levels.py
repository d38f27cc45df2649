# SPDX-License-Identifier: Apache-2.0
"""Skip levels: candidate configurations, the Pareto search, and their YAML table.

A skip level is an index into an ordered list of configurations: level 0 is
the full model, each next level is faster and (on the measured data) no more
accurate. ``pareto_levels`` builds that list from measurements;
``candidate_configs`` proposes what to measure, grouped by stage and kind
rather than all 2^N block subsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from dynvit_ros.engine.model import VariantSpec
from dynvit_ros.engine.skip import FULL, SkipConfig


@dataclass(frozen=True)
class SkipLevel:
    level: int
    config: SkipConfig
    accuracy: float | None = None  # e.g. val mIoU in percent
    latency_ms: float | None = None  # measured where the table was made
    gmacs: float | None = None

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class LevelTable:
    levels: list[SkipLevel]
    info: dict = field(default_factory=dict)  # model, variant, input size, host, how measured

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("a level table needs at least one level")
        if [lv.level for lv in self.levels] != list(range(len(self.levels))):
            raise ValueError("levels must be numbered 0..N-1 in order")

    def __len__(self) -> int:
        return len(self.levels)

    def __getitem__(self, index: int) -> SkipLevel:
        return self.levels[index]

    @property
    def configs(self) -> list[SkipConfig]:
        return [lv.config for lv in self.levels]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "info": self.info,
            "levels": [
                {
                    "level": lv.level,
                    "name": lv.name,
                    "accuracy": lv.accuracy,
                    "latency_ms": lv.latency_ms,
                    "gmacs": lv.gmacs,
                    "config": {k: v for k, v in lv.config.to_dict().items() if k != "name"},
                }
                for lv in self.levels
            ],
        }
        path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LevelTable":
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read skip-level table {path}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("levels"), list):
            raise ValueError(f"{path}: a skip-level table needs a 'levels' list")
        levels = []
        for i, item in enumerate(data["levels"]):
            config = SkipConfig.from_dict(
                {"name": item.get("name", f"level{i}"), **(item.get("config") or {})}
            )
            levels.append(
                SkipLevel(
                    int(item.get("level", i)),
                    config,
                    item.get("accuracy"),
                    item.get("latency_ms"),
                    item.get("gmacs"),
                )
            )
        return cls(levels, data.get("info") or {})

    @classmethod
    def from_configs(cls, configs: Sequence[SkipConfig], info: dict | None = None) -> "LevelTable":
        return cls([SkipLevel(i, c) for i, c in enumerate(configs)], info or {})

    @classmethod
    def numbered(
        cls, levels: Iterable["SkipLevel | Measurement"], info: dict | None = None
    ) -> "LevelTable":
        """A table of ``levels`` (or measurements) in the given order, numbered 0..N-1."""
        rows = [
            replace(lv, level=i)
            if isinstance(lv, SkipLevel)
            else SkipLevel(i, lv.config, lv.accuracy, lv.latency_ms, lv.gmacs)
            for i, lv in enumerate(levels)
        ]
        return cls(rows, info or {})


# Input scales of the ladder used when a model comes without a calibrated table:
# they need nothing from the architecture and cut the encoder's work roughly by scale**2.
GENERIC_SCALES = (1.0, 0.85, 0.7, 0.55)


def generic_ladder(scales: Sequence[float] = GENERIC_SCALES) -> LevelTable:
    """Levels for any SegFormer without calibration: the full model, then smaller inputs."""
    configs = [FULL] + [SkipConfig(name=f"s{s:g}", input_scale=s) for s in scales if s != 1.0]
    return LevelTable.from_configs(configs, {"levels": "generic", "scales": list(scales)})


@dataclass(frozen=True)
class Measurement:
    config: SkipConfig
    accuracy: float
    latency_ms: float
    gmacs: float | None = None


def pareto_levels(measurements: Iterable[Measurement], info: dict | None = None) -> LevelTable:
    """Level 0 is the full model; then the Pareto front of the faster configurations, most
    accurate first.

    A configuration survives if it is faster than every more accurate one
    kept before it. Configurations not faster than the full model are never
    levels: a level exists to save time.
    """
    measurements = list(measurements)
    full = next((m for m in measurements if m.config.is_full), None)
    if full is None:
        raise ValueError("the measurements must include the full model (SkipConfig())")
    rest = sorted(
        (m for m in measurements if not m.config.is_full),
        key=lambda m: (-m.accuracy, m.latency_ms),
    )
    front = [full]
    for point in rest:
        if point.latency_ms < front[-1].latency_ms:
            front.append(point)
    return LevelTable.numbered(front, info)


def _tail(depth: int, count: int) -> range:
    """The last ``count`` blocks of a stage: later blocks refine, earlier ones build features."""
    return range(depth - count, depth)


def candidate_configs(
    spec: VariantSpec,
    input_scales: Sequence[float] = (1.0, 0.75, 0.5),
    fuse_strides: Sequence[int] = (4, 8),
) -> list[SkipConfig]:
    """A few dozen configurations that cover the paper's knobs.

    Encoder recipes grow step by step (attention of the last block per stage,
    then its dwconv, then whole last blocks), each combined with decoder
    options (drop the deepest stage, a coarser fuse) and input scales.
    """
    depths = spec.depths
    encoder: list[tuple[str, dict]] = [("full", {})]
    last = [(s, depths[s] - 1) for s in range(4)]
    encoder.append(("attn-last", {"skip_attention": last}))
    encoder.append(("attn-dw-last", {"skip_attention": last, "skip_dwconv": last}))
    halves = [(s, b) for s in range(4) for b in _tail(depths[s], max(1, depths[s] // 2))]
    encoder.append(("dw-half", {"skip_dwconv": halves}))
    encoder.append(("attn-half", {"skip_attention": halves}))
    encoder.append(("block-last", {"skip_block": [b for b in last if depths[b[0]] > 1]}))
    encoder.append(("block-half", {"skip_block": [b for b in halves if depths[b[0]] > 1]}))

    decoders: list[tuple[str, dict]] = [("", {})]
    for stride in fuse_strides:
        if stride != 4:
            decoders.append((f"fuse{stride}", {"fuse_stride": stride}))
    decoders.append(("drop4", {"decoder_drop": [3]}))

    configs: dict[SkipConfig, None] = {}
    for scale in input_scales:
        for enc_name, enc in encoder:
            for dec_name, dec in decoders:
                parts = (
                    [enc_name]
                    + ([dec_name] if dec_name else [])
                    + ([f"s{scale:g}"] if scale != 1.0 else [])
                )
                config = SkipConfig(
                    name="+".join(parts), input_scale=scale, **enc, **dec
                ).validate(depths)
                configs.setdefault(config)
    ordered = [FULL] + [c for c in configs if c != FULL]
    return ordered
