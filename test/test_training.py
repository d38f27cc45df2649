# SPDX-License-Identifier: Apache-2.0
"""Training recipes without data: the sandwich step's passes and its bottom slice."""

import random

import torch
import torch.nn.functional as F

from dynvit_ros.engine.levels import LevelTable, candidate_configs
from dynvit_ros.engine.macs import count_layers, total_macs
from dynvit_ros.engine.model import VARIANTS, build_segformer
from dynvit_ros.engine.skip import FULL
from dynvit_ros.training import camvid
from dynvit_ros.training.train import (
    cheapest_config,
    sample_skip,
    sandwich_step,
    shippable_students,
    table_students,
)


def test_cheapest_config_has_the_fewest_macs_of_the_candidates():
    spec = VARIANTS["b0"]
    cheapest = cheapest_config(spec, 11, (240, 320))
    macs = lambda c: total_macs(count_layers(spec, 11, (240, 320), c))  # noqa: E731
    assert macs(cheapest) < 0.2 * macs(FULL)
    assert cheapest.input_scale < 1.0 and cheapest.skip_block


def test_shippable_students_are_the_candidates_between_the_slices():
    spec = VARIANTS["b0"]
    cheapest = cheapest_config(spec, 11, (360, 480))
    students = shippable_students(spec, cheapest)
    assert FULL not in students and cheapest not in students
    assert len(students) == len(candidate_configs(spec)) - 2
    assert {c.input_scale for c in students} == {1.0, 0.75, 0.5}


def test_table_students_are_the_shipped_levels_between_the_slices(tmp_path):
    spec = VARIANTS["b0"]
    cheapest = cheapest_config(spec, 11, (360, 480))
    middle = [c for c in candidate_configs(spec) if c not in (FULL, cheapest)][:3]
    path = LevelTable.from_configs([FULL, *middle, cheapest]).save(tmp_path / "levels.yaml")
    assert table_students(path, cheapest) == middle


def test_sandwich_step_trains_the_full_model_on_labels_and_students_on_it():
    torch.manual_seed(0)
    model = build_segformer("b0", 11).eval()  # eval: deterministic passes, gradients still flow
    images = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 11, (2, 64, 64))
    labels[:, :4] = camvid.IGNORE_ID
    weights = torch.ones(11)
    student = sample_skip(model.variant, random.Random(0), p_full=0.0)
    cheapest = cheapest_config(model.variant, 11, (64, 64))

    loss = sandwich_step(model, images, labels, weights, [])
    full_only = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        logits = F.interpolate(model(images, FULL), size=(64, 64), mode="bilinear")
        expected = F.cross_entropy(logits, labels, weight=weights, ignore_index=camvid.IGNORE_ID)
    assert abs(loss - expected.item()) < 1e-5

    sandwich_step(model, images, labels, weights, [cheapest, student])
    both = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    # The students add gradient on top of the full model's (accumulated, one optimizer step).
    assert set(full_only) <= set(both)
    assert any(not torch.allclose(both[n], full_only[n]) for n in full_only)
