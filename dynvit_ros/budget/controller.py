# SPDX-License-Identifier: Apache-2.0
"""Per frame: which budget is in force, what each level is predicted to take, which level runs.

Ties the pieces the node would otherwise juggle: the :class:`BudgetArbiter`
(which budget), a latency model (how long each level takes) and the
:class:`LevelSelector` (the most accurate level that fits). Pure: the caller
passes the time, so it runs in benchmarks and unit tests without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

from dynvit_ros.budget.arbiter import BudgetArbiter, Decision
from dynvit_ros.budget.policy import LevelSelector


@dataclass(frozen=True)
class Plan:
    level: int
    decision: Decision
    predicted_ms: list[float]  # per level; inf where the latency model gave no usable number


class Controller:
    def __init__(
        self, latency_model, configs, input_hw, arbiter: BudgetArbiter, selector: LevelSelector
    ):
        self.latency_model, self.configs, self.input_hw = latency_model, list(configs), input_hw
        self.arbiter, self.selector = arbiter, selector
        self.unusable_predictions = 0

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
        decision = self.arbiter.decide(now)
        if decision.level is not None:
            level = decision.level
        elif all(math.isinf(p) for p in predicted):
            level = len(predicted) - 1  # nothing is known: the cheapest level
        else:
            level = self.selector.select(predicted, decision.budget_ms)
        return Plan(level, decision, predicted)

    def observe(self, level: int, measured_ms: float) -> None:
        self.latency_model.observe(self.configs[level], self.input_hw, measured_ms)
