# SPDX-License-Identifier: Apache-2.0
"""Skip configurations as values, and the skip-level table."""

import pytest

from dynvit_ros.engine.levels import LevelTable, Measurement, candidate_configs, pareto_levels
from dynvit_ros.engine.model import VARIANTS
from dynvit_ros.engine.skip import FULL, SkipConfig


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


def test_candidates_are_few_distinct_and_start_with_full():
    candidates = candidate_configs(VARIANTS["b2"])
    assert candidates[0] == FULL
    assert len(candidates) == len(set(candidates)) < 100


def test_pareto_levels_order_and_yaml_round_trip(tmp_path):
    c = candidate_configs(VARIANTS["b0"])
    data = [
        Measurement(c[0], 60.0, 100.0),
        Measurement(c[1], 59.0, 80.0),
        Measurement(c[2], 61.0, 120.0),
        Measurement(c[3], 50.0, 90.0),
        Measurement(c[4], 40.0, 30.0),
        Measurement(c[5], 58.0, 80.0),
    ]
    table = pareto_levels(data, info={"variant": "b0"})
    assert table[0].config == FULL
    assert [lv.latency_ms for lv in table] == [100.0, 80.0, 30.0]
    assert [lv.accuracy for lv in table] == [60.0, 59.0, 40.0]
    with pytest.raises(ValueError, match="full model"):
        pareto_levels(data[1:])
    loaded = LevelTable.load(table.save(tmp_path / "levels.yaml"))
    assert loaded.configs == table.configs and loaded.info == {"variant": "b0"}
    assert [lv.name for lv in loaded] == [lv.name for lv in table]


def test_bad_level_tables_are_clear_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("levels: 3\n")
    with pytest.raises(ValueError, match="'levels' list"):
        LevelTable.load(path)
    path.write_text("levels:\n  - {level: 0, config: {fuse_stride: 5}}\n")
    with pytest.raises(ValueError, match="fuse_stride"):
        LevelTable.load(path)
