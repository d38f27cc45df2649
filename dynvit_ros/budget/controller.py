# SPDX-License-Identifier: Apache-2.0
"""Per frame: which budget is in force, what each level is predicted to take, which level runs.

Ties the pieces the node would otherwise juggle: the :class:`BudgetArbiter`
(which budget), a latency model (a median per level), the
:class:`TailEstimator` (the quantile that meets the miss target) and the
:class:`LevelSelector` (the most accurate level whose quantile fits). Pure: the
caller passes the time, so it runs in benchmarks and unit tests without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

from dynvit_ros.budget.arbiter import BudgetArbiter, Decision
from dynvit_ros.budget.policy import LevelSelector
from dynvit_ros.budget.tail import TailEstimator


@dataclass(frozen=True)
class Plan:
    level: int
    decision: Decision
    predicted_ms: list[float]  # per level; inf where the latency model gave no usable number
    quantile_ms: list[float]  # per level: the (1 - miss target) quantile the selector used
    feasible: bool = True  # some level's quantile fits the budget


class Controller:
    def __init__(
        self,
        latency_model,
        configs,
        input_hw,
        arbiter: BudgetArbiter,
        selector: LevelSelector,
        tail: TailEstimator | None = None,
    ):
        self.latency_model, self.configs, self.input_hw = latency_model, list(configs), input_hw
        self.arbiter, self.selector = arbiter, selector
        self.tail = tail or TailEstimator()
        # A model of another chip: host frame times are not samples of its predictions.
        self.learn_tail = bool(getattr(latency_model, "predicts_this_host", True))
        self.unusable_predictions = 0
        self.infeasible_frames = 0

    def predictions(self) -> list[float]:
        """Per-level predictions; a NaN, negative or missing one becomes inf (ineligible)."""
        raw = list(self.latency_model.predict_all(self.configs, self.input_hw))
        out = []
        for i in range(len(self.configs)):
            value = float(raw[i]) if i < len(raw) else math.nan
            if not (math.isfinite(value) and value >= 0):
                self.unusable_predictions += 1
                value = math.inf
            out.append(value)
        return out

    def plan(self, now: float) -> Plan:
        predicted = self.predictions()
        quantiles = self.tail.quantiles(predicted) if self.learn_tail else list(predicted)
        decision = self.arbiter.decide(now)
        safety = self.selector.safety
        feasible = any(q * safety <= decision.budget_ms for q in quantiles)
        if decision.level is not None:
            level = decision.level
        elif all(math.isinf(p) for p in predicted):
            level = len(predicted) - 1  # nothing is known: the cheapest level
        else:
            level = self.selector.select(quantiles, decision.budget_ms)
            self.infeasible_frames += not feasible
        return Plan(level, decision, predicted, quantiles, feasible)

    def observe(self, plan: Plan, measured_ms: float) -> None:
        """Learn from the frame run as ``plan``: the latency model, then the tail."""
        level = plan.level
        self.latency_model.observe(self.configs[level], self.input_hw, measured_ms)
        if not self.learn_tail:
            self.tail.record_miss(measured_ms > plan.decision.budget_ms)
            return
        self.tail.observe(
            level,
            plan.predicted_ms[level],
            plan.quantile_ms[level],
            measured_ms,
            plan.decision.budget_ms,
        )
