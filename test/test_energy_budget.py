# SPDX-License-Identifier: Apache-2.0
"""Two budgets: the selector, the arbiter's energy budget and the controller that joins them."""

import math

import pytest

from dynvit_ros.budget.arbiter import BudgetArbiter
from dynvit_ros.budget.controller import Controller
from dynvit_ros.budget.policy import MAX_ENERGY_BUDGET_MJ, LevelSelector, validate_energy_budget
from dynvit_ros.latency.base import Prediction

MS = [100.0, 70.0, 50.0, 20.0]
MJ = [10.0, 8.0, 3.0, 1.0]


def selector(**kw) -> LevelSelector:
    kw.setdefault("hysteresis_frames", 0)
    kw.setdefault("up_margin", 1.0)
    return LevelSelector(4, **kw)


def test_most_accurate_level_that_fits_both_budgets():
    sel = selector()
    assert sel.select(MS, 120.0, MJ, 0.0) == 0  # no energy budget: time alone
    assert sel.select(MS, 120.0, MJ, 9.0) == 1  # energy rules out level 0
    assert sel.select(MS, 120.0, MJ, 5.0) == 2
    assert sel.select(MS, 60.0, MJ, 9.0) == 2  # time rules out 0 and 1
    assert sel.select(MS, 30.0, MJ, 9.0) == 3
    assert sel.select(MS, 120.0) == 0  # the old signature still works


def test_nothing_fits_runs_the_level_that_overruns_its_budgets_least():
    sel = selector()
    assert sel.select(MS, 120.0, MJ, 0.5) == 3  # energy ratios 20, 16, 6, 2
    # A level that is slow but frugal vs fast but hungry: the smaller worst ratio wins.
    two = LevelSelector(2, hysteresis_frames=0)
    assert two.select([40.0, 30.0], 20.0, [1.0, 8.0], 2.0) == 0  # max(2, .5)=2 vs max(1.5, 4)=4
    assert two.select([40.0, 30.0], 20.0) == 1  # time only: the fastest


def test_levels_with_unknown_energy_are_not_held_back():
    sel = selector()
    nan = math.nan
    assert sel.select(MS, 120.0, [nan] * 4, 0.1) == 0
    assert sel.select(MS, 120.0, [10.0, nan, 3.0, 1.0], 5.0) == 1


def test_hysteresis_applies_to_the_energy_budget_too():
    sel = LevelSelector(4, hysteresis_frames=2, up_margin=0.9)
    assert sel.select(MS, 500.0, MJ, 5.0) == 2
    # Level 1 fits 8.5 mJ but not with the 10% margin: stay; 12 mJ lets level 0 in, after 2.
    assert [sel.select(MS, 500.0, MJ, 8.5) for _ in range(4)] == [2] * 4
    assert [sel.select(MS, 500.0, MJ, 12.0) for _ in range(3)] == [2, 0, 0]
    assert sel.select(MS, 500.0, MJ, 2.0) == 3  # down at once


def test_fits_reports_both_budgets():
    assert selector().fits(MS, 60.0, MJ, 2.0) == [False, False, False, True]
    assert selector().fits(MS, 60.0) == [False, False, True, True]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, MAX_ENERGY_BUDGET_MJ * 2, "x", None])
def test_bad_energy_budgets_are_refused(bad):
    with pytest.raises(ValueError, match="energy budget"):
        validate_energy_budget(bad)


def arbiter(**kw) -> BudgetArbiter:
    return BudgetArbiter(num_levels=4, default_budget_ms=100.0, timeout_s=2.0, **kw)


def test_arbiter_energy_budget_precedence_and_staleness():
    a = arbiter()
    d = a.decide(0.0)
    assert (d.energy_mj, d.energy_source) == (0.0, "none")
    a.accept(40.0, -1, "m", 0.0, now=1.0, energy_budget_mj=5.0)
    d = a.decide(1.1)
    assert (d.budget_ms, d.energy_mj, d.energy_source) == (40.0, 5.0, "topic")
    a.update(energy_budget_mj=7.5)  # the parameter wins
    assert (a.decide(1.2).energy_mj, a.decide(1.2).energy_source) == (7.5, "parameter")
    a.update(energy_budget_mj=0.0)
    assert a.decide(1.3).energy_source == "topic"
    stale = a.decide(3.5)  # the topic went stale: no energy budget rather than an invented one
    assert (stale.source, stale.energy_mj, stale.energy_source) == ("fallback", 0.0, "none")
    with pytest.raises(ValueError, match="energy budget"):
        a.update(energy_budget_mj=-1.0)


def test_arbiter_refuses_a_bad_topic_energy_and_keeps_the_previous_budget():
    a = arbiter()
    a.accept(40.0, -1, "m", 0.0, now=0.0, energy_budget_mj=5.0)
    for bad in (math.nan, -3.0, math.inf, 1e9):
        with pytest.raises(ValueError, match="energy budget"):
            a.accept(30.0, -1, "evil", 0.0, now=0.1, energy_budget_mj=bad)
    d = a.decide(0.2)
    assert (d.budget_ms, d.energy_mj) == (40.0, 5.0)


class Model:
    """A latency model returning fixed predictions (with or without energy)."""

    predicts_this_host = False

    def __init__(self, energies=None):
        self.energies = energies

    def predict_all(self, configs, input_hw):
        if self.energies is None:
            return list(MS)
        return [Prediction(ms, mj) for ms, mj in zip(MS, self.energies)]

    def observe(self, config, input_hw, measured_ms):
        pass


def controller(model, **arbiter_kw) -> Controller:
    return Controller(model, list("abcd"), (8, 8), arbiter(**arbiter_kw), selector())


def test_an_energy_budget_on_the_topic_changes_the_level():
    c = controller(Model(MJ))
    c.arbiter.accept(500.0, -1, "m", 0.0, now=0.0)
    plan = c.plan(0.1)
    assert plan.level == 0 and plan.predicted_mj == MJ and plan.feasible
    c.arbiter.accept(500.0, -1, "m", 0.0, now=0.2, energy_budget_mj=4.0)
    plan = c.plan(0.3)
    assert plan.level == 2 and plan.decision.energy_mj == 4.0
    c.arbiter.accept(500.0, -1, "m", 0.0, now=0.4, energy_budget_mj=0.1)
    plan = c.plan(0.5)
    assert plan.level == 3 and not plan.feasible and c.infeasible_frames == 1
    assert c.energy_unknown_frames == 0


def test_a_latency_only_plugin_cannot_hold_an_energy_budget_and_says_so():
    c = controller(Model(None), energy_budget_mj=1.0)
    c.arbiter.accept(500.0, -1, "m", 0.0, now=0.0)
    plan = c.plan(0.1)
    assert plan.level == 0  # chosen by time alone
    assert all(math.isnan(e) for e in plan.predicted_mj)
    assert c.energy_unknown_frames == 1
