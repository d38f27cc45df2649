# SPDX-License-Identifier: Apache-2.0
"""Which budget is in force: precedence, staleness, expiry, pinned level, fixed mode, refusals."""

import math

import pytest

from dynvit_ros.budget.arbiter import BudgetArbiter
from dynvit_ros.budget.controller import Controller
from dynvit_ros.budget.policy import MAX_BUDGET_MS, LevelSelector


def arbiter(**kw):
    return BudgetArbiter(num_levels=4, default_budget_ms=100.0, timeout_s=2.0, **kw)


def test_fallback_until_a_budget_arrives_and_notice_once():
    a = arbiter()
    first = a.decide(0.0)
    assert (first.budget_ms, first.source, first.mode, first.level) == (
        100.0,
        "fallback",
        "auto",
        None,
    )
    assert "no budget received yet" in first.notice
    assert a.decide(0.1).notice is None  # said once
    assert "back" in a.accept(40.0, -1, "monitor", 0.0, now=0.2)
    d = a.decide(0.3)
    assert (d.budget_ms, d.source, d.level) == (40.0, "topic", None)


def test_topic_goes_stale_after_timeout_then_expiry_wins_if_sooner():
    a = arbiter()
    a.accept(40.0, -1, "m", 0.0, now=10.0)
    assert a.decide(11.9).source == "topic"
    late = a.decide(12.1)
    assert late.source == "fallback" and "old" in late.notice
    a.accept(30.0, -1, "m", expires_after_s=0.5, now=20.0)
    assert a.decide(20.4).budget_ms == 30.0
    expired = a.decide(20.6)
    assert expired.source == "fallback" and "expired" in expired.notice


def test_parameter_budget_overrides_topic_and_fixed_mode_overrides_all():
    a = arbiter(budget_ms=55.0)
    a.accept(10.0, 2, "m", 0.0, now=0.0)
    d = a.decide(0.1)
    assert (d.budget_ms, d.source, d.mode, d.level) == (55.0, "parameter", "auto", None)
    a.update(budget_ms=0.0)
    pinned = a.decide(0.2)
    assert (pinned.source, pinned.mode, pinned.level) == ("topic", "pinned", 2)
    a.update(mode="fixed", skip_level=3)
    fixed = a.decide(0.3)
    assert (fixed.mode, fixed.level, fixed.source) == ("fixed", 3, "topic")


@pytest.mark.parametrize(
    "budget", [math.nan, math.inf, -5.0, 0.0, 1.4e-45, MAX_BUDGET_MS * 2, "x"]
)
def test_hostile_budgets_are_refused_and_change_nothing(budget):
    a = arbiter()
    a.accept(40.0, -1, "m", 0.0, now=0.0)
    with pytest.raises(ValueError, match="budget"):
        a.accept(budget, -1, "evil", 0.0, now=0.1)
    assert a.decide(0.2).budget_ms == 40.0 and a.accepted == 1


@pytest.mark.parametrize("pinned", [-2, -32768, 4, 10**6])
def test_pinned_level_must_be_minus_one_or_a_level(pinned):
    with pytest.raises(ValueError, match="pinned_level"):
        arbiter().accept(40.0, pinned, "m", 0.0, now=0.0)


@pytest.mark.parametrize("expiry", [-1.0, math.nan])
def test_expiry_must_be_non_negative(expiry):
    with pytest.raises(ValueError, match="expires_after"):
        arbiter().accept(40.0, -1, "m", expiry, now=0.0)


def test_settings_are_checked():
    a = arbiter()
    with pytest.raises(ValueError):
        a.update(mode="turbo")
    with pytest.raises(ValueError):
        a.update(skip_level=4)
    with pytest.raises(KeyError):
        a.update(colour="red")


class _Latency:
    def __init__(self, values):
        self.values, self.observed = values, []

    def predict_all(self, configs, input_hw):
        return self.values

    def observe(self, config, input_hw, ms):
        self.observed.append((config, ms))


def test_controller_skips_unusable_predictions():
    latency = _Latency([math.nan, -1.0, 30.0, 10.0])
    a = arbiter(budget_ms=50.0)
    c = Controller(latency, ["l0", "l1", "l2", "l3"], (8, 8), a, LevelSelector(4, 0))
    c.learn_tail = False  # compare medians directly here; test_budget_tail covers the tail
    plan = c.plan(0.0)
    assert plan.level == 2 and plan.predicted_ms[:2] == [math.inf, math.inf]
    assert c.unusable_predictions == 2
    c.observe(plan, 31.0)
    assert latency.observed == [("l2", 31.0)]
    latency.values = [math.nan] * 4
    assert c.plan(0.0).level == 3  # nothing known: the cheapest level
