# SPDX-License-Identifier: Apache-2.0
"""Budget validation, level selection with hysteresis, and the load-to-budget policy."""

import math

import pytest

from dynvit_ros.budget.policy import LevelSelector, LoadBudgetPolicy, validate_budget


@pytest.mark.parametrize(
    "bad", [float("nan"), -1.0, 0.0, 1.4e-45, 6.1e4, float("inf"), "fast", None]
)
def test_bad_budgets_are_rejected(bad):
    with pytest.raises(ValueError):
        validate_budget(bad)


def test_selector_picks_most_accurate_level_that_fits():
    predicted = [100.0, 70.0, 50.0, 20.0]
    sel = LevelSelector(4, hysteresis_frames=0, up_margin=1.0)
    assert sel.select(predicted, 120.0) == 0
    assert sel.select(predicted, 60.0) == 2
    assert sel.select(predicted, 10.0) == 3  # nothing fits: the fastest level


def test_selector_goes_down_at_once_and_up_only_after_hysteresis():
    predicted = [100.0, 70.0, 50.0, 20.0]
    sel = LevelSelector(4, hysteresis_frames=2, up_margin=0.9)
    assert sel.select(predicted, 200.0) == 0
    assert sel.select(predicted, 55.0) == 2
    # A budget on the edge of level 1 never moves up (margin); a generous one does on the 2nd
    # frame.
    assert [sel.select(predicted, 72.0) for _ in range(5)] == [2] * 5
    assert [sel.select(predicted, 150.0) for _ in range(3)] == [2, 0, 0]


def test_selector_climbs_to_a_level_that_fits_with_margin_even_if_a_better_one_barely_fits():
    predicted = [100.0, 70.0, 50.0, 20.0]
    sel = LevelSelector(4, hysteresis_frames=2, up_margin=0.9)
    assert sel.select(predicted, 30.0) == 3
    # Level 0 fits 105 ms without margin; level 1 fits with margin: climb to 1, not stay at 3.
    assert [sel.select(predicted, 105.0) for _ in range(3)] == [3, 1, 1]


def test_selector_leaves_a_level_that_no_longer_fits_even_when_predictions_are_not_monotone():
    sel = LevelSelector(3, hysteresis_frames=5)
    assert sel.select([100.0, 60.0, 40.0], 70.0) == 1
    # Online correction made level 1 slower than level 0 for a moment.
    assert sel.select([65.0, 90.0, 40.0], 70.0) == 0


def test_load_policy_follows_headroom_and_clamps():
    policy = LoadBudgetPolicy(
        target_rate_hz=10.0, min_budget_ms=20.0, reserve=0.0, alpha_down=1.0, alpha_up=1.0
    )
    assert policy.update(0.0) == pytest.approx(100.0)
    assert policy.update(0.5) == pytest.approx(50.0)
    assert policy.update(0.99) == pytest.approx(20.0)
    assert policy.update(2.0) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="finite"):
        policy.update(float("nan"))


def test_load_policy_drops_fast_and_recovers_slowly():
    policy = LoadBudgetPolicy(target_rate_hz=10.0, reserve=0.0, alpha_down=0.6, alpha_up=0.15)
    policy.update(0.0)
    after_burst = policy.update(0.8)
    assert after_burst < 60.0
    recovered = [policy.update(0.0) for _ in range(3)]
    assert recovered[-1] < 90.0 and all(a < b for a, b in zip(recovered, recovered[1:]))
    assert all(math.isfinite(x) for x in recovered)
