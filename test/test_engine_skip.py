# SPDX-License-Identifier: Apache-2.0
"""Skip configurations as values, and the skip-level table."""

import itertools
from pathlib import Path
import random

import pytest
import yaml

from dynvit_ros.engine.levels import (
    LevelTable,
    Measurement,
    SkipLevel,
    candidate_configs,
    encoder_recipes,
    generic_ladder,
    pareto_levels,
    thin_levels,
    thinning_loss,
)
from dynvit_ros.engine.model import GRID, VARIANTS, scaled_size, stage_sizes
from dynvit_ros.engine.skip import FULL, SkipConfig

REPO = Path(__file__).resolve().parents[1]


def test_configs_are_hashable_values_and_round_trip():
    a = SkipConfig(
        name="x",
        skip_attention=[(1, 0), (0, 1)],
        decoder_drop=[3],
        fuse_stride=8,
        input_scale=0.75,
    )
    b = SkipConfig(
        name="renamed",
        skip_attention=[(0, 1), (1, 0)],
        decoder_drop=(3,),
        fuse_stride=8,
        input_scale=0.75,
    )
    assert a == b and hash(a) == hash(b) and len({a, b, FULL}) == 2
    assert SkipConfig.from_json(a.to_json()) == a
    assert SkipConfig.from_yaml(a.to_yaml()) == a
    assert SkipConfig.from_yaml(a.to_yaml()).name == "x"
    assert FULL.is_full and not a.is_full


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fuse_stride": 6}, "fuse_stride"),
        ({"input_scale": float("nan")}, "input_scale"),
        ({"input_scale": 0.0}, "input_scale"),
        ({"decoder_drop": [0, 1, 2, 3]}, "every stage"),
        ({"decoder_drop": [4]}, "0..3"),
        ({"skip_block": [(0, 1, 2)]}, "block id"),
    ],
)
def test_invalid_configs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SkipConfig(**kwargs)


def test_block_ids_are_checked_against_the_variant():
    with pytest.raises(ValueError, match="does not have"):
        SkipConfig(skip_block=[(2, 5)]).validate(VARIANTS["b0"].depths)
    SkipConfig(skip_block=[(2, 5)]).validate(VARIANTS["b2"].depths)
    with pytest.raises(ValueError, match="unknown skip configuration keys"):
        SkipConfig.from_dict({"skip_everything": True})


@pytest.mark.parametrize("variant, count", [("b0", 45), ("b1", 45), ("b2", 63), ("b5", 81)])
def test_candidates_are_few_distinct_valid_and_start_with_full(variant, count):
    spec = VARIANTS[variant]
    candidates = candidate_configs(spec)
    assert candidates[0] == FULL
    assert len(candidates) == len(set(candidates)) == count
    assert len({c.name for c in candidates}) == count
    for config in candidates:
        config.validate(spec.depths)
        # Whole-block skipping never empties a stage.
        for stage, depth in enumerate(spec.depths):
            assert sum(1 for s, _ in config.skip_block if s == stage) < depth


def test_deep_variants_get_quarter_steps_that_scale_with_depth():
    names = lambda v: [name for name, _ in encoder_recipes(VARIANTS[v].depths)]  # noqa: E731
    assert "attn-quarter" not in names("b2") and "attn-half" in names("b2")
    assert "attn-half" not in names("b0")  # the last half of a 2-block stage is its last block
    recipes = dict(encoder_recipes(VARIANTS["b5"].depths))  # depths (3, 6, 40, 3)
    in_stage = lambda ids, stage: sorted(b for s, b in ids if s == stage)  # noqa: E731
    assert in_stage(recipes["attn-last"]["skip_attention"], 2) == [39]
    assert in_stage(recipes["attn-quarter"]["skip_attention"], 2) == list(range(30, 40))
    assert in_stage(recipes["attn-half"]["skip_attention"], 2) == list(range(20, 40))
    assert in_stage(recipes["block-half"]["skip_block"], 0) == [2]


def _m(config, accuracy, latency):
    return Measurement(config, accuracy, latency)


def test_pareto_levels_most_accurate_first_and_yaml_round_trip(tmp_path):
    c = candidate_configs(VARIANTS["b0"])
    data = [
        _m(c[0], 60.0, 100.0),
        _m(c[1], 59.0, 80.0),
        _m(c[2], 61.0, 120.0),
        _m(c[3], 50.0, 90.0),  # dominated by c[1]
        _m(c[4], 40.0, 30.0),
        _m(c[5], 58.0, 80.0),  # as fast as c[1], less accurate
        _m(c[6], 59.0, 85.0),  # as accurate as c[1], slower
    ]
    table = pareto_levels(data, info={"variant": "b0"})
    assert [lv.config for lv in table] == [c[2], c[0], c[1], c[4]]
    assert [lv.latency_ms for lv in table] == [120.0, 100.0, 80.0, 30.0]
    assert [lv.accuracy for lv in table] == [61.0, 60.0, 59.0, 40.0]
    loaded = LevelTable.load(table.save(tmp_path / "levels.yaml"))
    assert loaded.configs == table.configs and loaded.info == {"variant": "b0"}
    assert [lv.name for lv in loaded] == [lv.name for lv in table]
    with pytest.raises(ValueError, match="no measurements"):
        pareto_levels([])
    with pytest.raises(ValueError, match="finite"):
        pareto_levels([_m(c[0], float("nan"), 1.0)])


def test_steps_smaller_than_min_step_are_not_levels():
    c = candidate_configs(VARIANTS["b0"])
    data = [_m(c[0], 60.0, 100.0), _m(c[1], 59.0, 98.0), _m(c[2], 58.0, 96.0), _m(c[3], 50, 50)]
    assert len(pareto_levels(data)) == 4
    assert [lv.config for lv in pareto_levels(data, min_step=0.03)] == [c[0], c[2], c[3]]
    with pytest.raises(ValueError, match="min_step"):
        pareto_levels(data, min_step=1.0)


def test_a_dominated_full_model_is_not_a_level():
    c = candidate_configs(VARIANTS["b0"])
    table = pareto_levels([_m(FULL, 52.8, 54.5), _m(c[1], 55.4, 46.0), _m(c[2], 50.0, 40.0)])
    assert [lv.config for lv in table] == [c[1], c[2]]


def _level(i, name, accuracy, latency):
    return SkipLevel(i, SkipConfig(name=name, input_scale=1.0 - 0.05 * i), accuracy, latency)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("full", 52.83, 54.46), ("attn-last", 55.45, 46.02)], "both faster and more accurate"),
        ([("a", 60.0, 50.0), ("b", 50.0, 50.0)], "not faster"),
        ([("a", 60.0, 50.0), ("b", 61.0, 60.0)], "slower but more accurate"),
        ([("a", 60.0, 50.0), ("b", 55.0, 40.0), ("c", 60.5, 30.0)], "level 2 .* level 0"),
    ],
)
def test_level_table_refuses_a_table_out_of_order(tmp_path, rows, message):
    levels = [_level(i, *row) for i, row in enumerate(rows)]
    with pytest.raises(ValueError, match=message):
        LevelTable(levels)
    path = tmp_path / "levels.yaml"
    LevelTable(levels[:1]).save(path)
    data = yaml.safe_load(path.read_text())
    data["levels"] = [
        {"level": i, "name": n, "accuracy": a, "latency_ms": t, "config": {"input_scale": 0.5}}
        for i, (n, a, t) in enumerate(rows)
    ]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=f"{path}: skip levels out of order"):
        LevelTable.load(path)


def test_level_tables_without_figures_and_equal_accuracy_are_accepted():
    LevelTable([_level(0, "a", None, None), _level(1, "b", None, None)])
    LevelTable([_level(0, "a", 60.0, 50.0), _level(1, "b", 60.0, 40.0)])
    LevelTable([_level(0, "a", 60.0, 50.0), _level(1, "b", None, 60.0)])


def test_the_shipped_table_is_in_order():
    table = LevelTable.load(REPO / "config" / "segformer_b0_camvid.levels.yaml")
    assert len(table) >= 3 and all(lv.accuracy is not None for lv in table)


def test_generic_ladder_needs_no_calibration():
    ladder = generic_ladder()
    assert ladder.configs[0] == FULL
    assert [c.input_scale for c in ladder.configs] == [1.0, 0.85, 0.7, 0.55]
    assert ladder.info["levels"] == "generic"
    for spec in VARIANTS.values():  # architecture-agnostic
        for config in ladder.configs:
            config.validate(spec.depths)


def test_thinning_keeps_the_ends_and_loses_the_least_accuracy():
    rng = random.Random(0)
    for trial in range(30):
        n = rng.randint(4, 11)
        latency = sorted((rng.uniform(5, 100) for _ in range(n)), reverse=True)
        accuracy = sorted((rng.uniform(20, 60) for _ in range(n)), reverse=True)
        front = LevelTable([_level(i, f"l{i}", accuracy[i], latency[i]) for i in range(n)])
        k = rng.randint(2, n - 1)
        thin = thin_levels(front, k)
        assert len(thin) == k and thin[0].name == "l0" and thin[k - 1].name == f"l{n - 1}"
        assert [lv.level for lv in thin] == list(range(k))
        kept = [int(lv.name[1:]) for lv in thin]
        best = min(
            thinning_loss(front, (0, *middle, n - 1))
            for middle in itertools.combinations(range(1, n - 1), k - 2)
        )
        assert thinning_loss(front, kept) == pytest.approx(best, abs=1e-9)
    # Near-duplicates go first: the 0.3 ms step that costs 7 points is the one to drop.
    front = LevelTable(
        [
            _level(0, "a", 55.2, 29.6),
            _level(1, "b", 47.5, 29.3),
            _level(2, "c", 47.0, 21.1),
            _level(3, "d", 41.9, 11.9),
        ]
    )
    assert [lv.name for lv in thin_levels(front, 3)] == ["a", "c", "d"]
    assert thin_levels(front, 10) is front
    assert len(thin_levels(front, 1)) == 1


@pytest.mark.parametrize("scale", [0.1, 0.3, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 1.25])
def test_scaled_inputs_tile_the_encoder_grid(scale):
    # Off the 32-pixel grid the stages' token grids overhang the image unequally and the
    # decoder misaligns them; scale 1 keeps the model's own size untouched.
    for hw in ((360, 480), (352, 480), (240, 320), (61, 97)):
        h, w = scaled_size(*hw, scale)
        assert h % GRID == 0 and w % GRID == 0 and h >= GRID and w >= GRID
        assert abs(h - hw[0] * scale) <= GRID / 2 or h == GRID
        assert abs(w - hw[1] * scale) <= GRID / 2 or w == GRID
        assert stage_sizes(h, w, VARIANTS["b0"])[3] == (h // GRID, w // GRID)
        assert scaled_size(*hw, 1.0) == hw
