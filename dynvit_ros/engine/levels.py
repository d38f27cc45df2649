# SPDX-License-Identifier: Apache-2.0
"""Skip levels: candidate configurations, the Pareto search, and their YAML table.

A skip level is an index into an ordered list of configurations: level 0 is
the most accurate, each next level is strictly faster and no more accurate
(on the measured data). That order is what lets the node climb to the most
accurate level that fits a budget by taking the first one that fits, so
:class:`LevelTable` refuses a table that breaks it. ``pareto_levels`` builds
such a list from measurements; ``candidate_configs`` proposes what to
measure, grouped by stage and kind rather than all 2^N block subsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from dynvit_ros.engine.model import VariantSpec
from dynvit_ros.engine.skip import FULL, BlockId, SkipConfig


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
        check_order(self.levels)

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
        try:
            return cls(levels, data.get("info") or {})
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

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


def check_order(levels: Sequence[SkipLevel]) -> None:
    """Raise ValueError unless every level is strictly faster and no more accurate than each
    level before it.

    Checked wherever both figures are known (a table written by hand, or the
    generic ladder, may carry none). A level that is both faster and at
    least as accurate as an earlier one makes the earlier one pointless, and
    a node choosing "the lowest level that fits" would run the slower, worse
    configuration whenever the budget is generous.
    """
    known = [lv for lv in levels if lv.accuracy is not None and lv.latency_ms is not None]
    for i, upper in enumerate(known):
        for lower in known[i + 1 :]:
            faster = float(lower.latency_ms) < float(upper.latency_ms)
            no_better = float(lower.accuracy) <= float(upper.accuracy)
            if faster and no_better:
                continue
            what = {
                (True, False): "is both faster and more accurate than",
                (False, True): "is not faster than",
                (False, False): "is slower but more accurate than",
            }[(faster, no_better)]
            raise ValueError(
                f"skip levels out of order: level {lower.level} ({_describe(lower)}) {what} "
                f"level {upper.level} ({_describe(upper)}). Level 0 must be the most accurate "
                "and each next level strictly faster and no more accurate: a dominated "
                "configuration is never a level (re-run calibrate to get a Pareto table)"
            )


def _describe(level: SkipLevel) -> str:
    return f"{level.name}: accuracy {level.accuracy:g}, {level.latency_ms:g} ms"


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


def pareto_levels(
    measurements: Iterable[Measurement], info: dict | None = None, min_step: float = 0.0
) -> LevelTable:
    """The Pareto front of accuracy against latency, most accurate first.

    Level 0 is the most accurate measurement (the faster one on a tie); a
    measurement becomes the next level only if it is strictly faster than
    the level before it, by at least ``min_step`` of its latency (0.03: 3%).
    So every configuration left out is dominated, or within ``min_step`` of
    the latency of a level at least as accurate: a step smaller than the
    timing noise of the host is no step. The full model is
    level 0 only where nothing faster is as accurate: a label-free score
    (agreement with the full model's masks) ranks it first by construction,
    a labelled one may not (a skipped sub-layer can help a small model).
    """
    measurements = list(measurements)
    if not measurements:
        raise ValueError("no measurements: nothing to build skip levels from")
    bad = [
        m.config.name for m in measurements if not (_finite(m.accuracy) and _finite(m.latency_ms))
    ]
    if bad:
        raise ValueError(f"measurements without a finite accuracy and latency: {bad}")
    ranked = sorted(measurements, key=lambda m: (-m.accuracy, m.latency_ms))
    if not 0.0 <= min_step < 1.0:
        raise ValueError(f"min_step must be in [0, 1), got {min_step}")
    front = [ranked[0]]
    for point in ranked[1:]:
        if point.latency_ms < front[-1].latency_ms * (1.0 - min_step):
            front.append(point)
    return LevelTable.numbered(front, info)


def thin_levels(table: LevelTable, max_levels: int) -> LevelTable:
    """At most ``max_levels`` of an ordered table, chosen to lose the least accuracy over the
    range of budgets; the first and the last level always stay.

    Under a budget ``b`` a node runs the first level whose latency fits. Leaving
    levels out makes it run a less accurate one for some budgets; the loss is
    integrated over ``log b`` between the fastest and the slowest level (a
    step from 40 to 20 ms weighs as much as one from 20 to 10 ms) and
    minimised exactly by dynamic programming over the ordered levels
    (:func:`thinning_loss` is the quantity). Picking levels by evenly spaced
    latency instead keeps near-duplicates and drops the steps that matter.
    A subset of an ordered table is still in order.
    """
    levels = list(table.levels)
    if max_levels < 1:
        raise ValueError(f"max_levels must be at least 1, got {max_levels}")
    if len(levels) <= max_levels:
        return table
    if max_levels == 1:
        return LevelTable.numbered(levels[:1], table.info)
    accuracy, weight = _budget_weights(levels)
    n = len(levels)
    # Prefix sums over j of weight[j] and weight[j] * accuracy[j] make each gap O(1).
    w_sum, wa_sum = [0.0] * (n + 1), [0.0] * (n + 1)
    for j in range(n):
        w_sum[j + 1] = w_sum[j] + weight[j]
        wa_sum[j + 1] = wa_sum[j] + weight[j] * accuracy[j]

    def gap(a: int, c: int) -> float:  # levels a+1..c-1 left out: budgets there run level c
        return (wa_sum[c + 1] - wa_sum[a + 1]) - accuracy[c] * (w_sum[c + 1] - w_sum[a + 1])

    inf = float("inf")
    cost = [[inf] * n for _ in range(max_levels + 1)]
    back = [[-1] * n for _ in range(max_levels + 1)]
    cost[1][0] = 0.0
    for m in range(2, max_levels + 1):
        for c in range(1, n):
            for a in range(c):
                if cost[m - 1][a] < inf and cost[m - 1][a] + gap(a, c) < cost[m][c]:
                    cost[m][c], back[m][c] = cost[m - 1][a] + gap(a, c), a
    chosen, index = [], n - 1
    for m in range(max_levels, 0, -1):
        chosen.append(levels[index])
        index = back[m][index]
    return LevelTable.numbered(reversed(chosen), table.info)


def thinning_loss(table: LevelTable, kept: Sequence[int]) -> float:
    """Accuracy lost by keeping only the levels ``kept`` of ``table``, integrated over log budget
    (accuracy units x log ms): what :func:`thin_levels` minimises.
    """
    accuracy, weight = _budget_weights(list(table.levels))
    kept = sorted(set(kept))
    loss = 0.0
    for j in range(len(accuracy)):
        runs = next((k for k in kept if k >= j), None)
        if runs is None:
            raise ValueError("the kept levels must include the last one")
        loss += weight[j] * (accuracy[j] - accuracy[runs])
    return loss


def _budget_weights(levels: Sequence[SkipLevel]) -> tuple[list[float], list[float]]:
    """Accuracy per level, and the log-budget width over which each level is the one that runs
    (level ``j`` for budgets from its latency up to level ``j-1``'s; level 0 gets none).
    """
    if any(not (_finite(lv.accuracy) and _finite(lv.latency_ms)) for lv in levels):
        raise ValueError("thinning needs every level's accuracy and latency")
    if any(lv.latency_ms <= 0 for lv in levels):
        raise ValueError("thinning needs positive latencies")
    accuracy = [float(lv.accuracy) for lv in levels]
    latency = [float(lv.latency_ms) for lv in levels]
    weight = [0.0] + [math.log(latency[j - 1] / latency[j]) for j in range(1, len(levels))]
    return accuracy, weight


def _finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def _tail(depth: int, count: int) -> tuple[int, ...]:
    """The last ``count`` blocks of a stage: later blocks refine, earlier ones build features."""
    return tuple(range(depth - count, depth))


def _tails(depths: Sequence[int], fraction: float | None, keep_one: bool) -> list[BlockId]:
    """Per stage, its last block (``fraction`` None) or its last ``int(depth * fraction)``
    blocks (at least one).

    ``keep_one`` leaves every stage at least one block (for whole-block skipping).
    """
    ids = []
    for stage, depth in enumerate(depths):
        count = 1 if fraction is None else max(1, int(depth * fraction))
        if keep_one:
            count = min(count, depth - 1)
        ids.extend((stage, b) for b in _tail(depth, count))
    return ids


# Deep variants (B3-B5 have 18-40 blocks in their third stage) get a step between "the last
# block" and "the last half"; on B0-B2 it would repeat one of those or differ by one block.
QUARTER_FROM_DEPTH = 8


def encoder_recipes(depths: Sequence[int]) -> list[tuple[str, dict]]:
    """Named encoder skip sets for a variant with these stage depths, mildest first.

    Attention of the last block per stage, then also its depthwise conv, then
    the last quarter (deep variants) or half of every stage; whole blocks the
    same way (never a stage's only block). Recipes that come out equal for
    these depths are listed once.
    """
    fractions: list[tuple[str, float | None]] = [("last", None)]
    if max(depths) >= QUARTER_FROM_DEPTH:
        fractions.append(("quarter", 0.25))
    fractions.append(("half", 0.5))
    recipes: list[tuple[str, dict]] = [("full", {})]
    last = _tails(depths, None, keep_one=False)
    for tag, fraction in fractions:
        recipes.append((f"attn-{tag}", {"skip_attention": _tails(depths, fraction, False)}))
        if tag == "last":
            recipes.append(("attn-dw-last", {"skip_attention": last, "skip_dwconv": last}))
    recipes.append(("dw-half", {"skip_dwconv": _tails(depths, 0.5, False)}))
    for tag, fraction in fractions:
        recipes.append((f"block-{tag}", {"skip_block": _tails(depths, fraction, True)}))
    unique: dict[SkipConfig, tuple[str, dict]] = {}
    for name, recipe in recipes:
        config = SkipConfig(name=name, **recipe)
        if config == SkipConfig() and name != "full":
            continue  # e.g. whole-block skipping of a variant with single-block stages
        unique.setdefault(config, (name, recipe))
    return list(unique.values())


def candidate_configs(
    spec: VariantSpec,
    input_scales: Sequence[float] = (1.0, 0.75, 0.5),
    fuse_strides: Sequence[int] = (4, 8),
) -> list[SkipConfig]:
    """Every encoder recipe (:func:`encoder_recipes`) times the decoder options (as is, a
    coarser fuse, the deepest stage dropped) times the input scales, the full model first.

    45 candidates for B0/B1, 63 for B2 and 81 for B3-B5 with the defaults:
    the search costs about one pass over the calibration frames per candidate.
    """
    depths = spec.depths
    decoders: list[tuple[str, dict]] = [("", {})]
    for stride in fuse_strides:
        if stride != 4:
            decoders.append((f"fuse{stride}", {"fuse_stride": stride}))
    decoders.append(("drop4", {"decoder_drop": [3]}))

    configs: dict[SkipConfig, None] = {}
    for scale in input_scales:
        for enc_name, enc in encoder_recipes(depths):
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
    return [FULL] + [c for c in configs if c != FULL]
