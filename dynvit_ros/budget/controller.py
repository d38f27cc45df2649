# SPDX-License-Identifier: Apache-2.0
"""Per frame: which budget is in force, what each level is predicted to take, which level runs.

Ties the pieces the node would otherwise juggle: the :class:`BudgetArbiter`
(which budget), a latency model (a median per level, and the energy per frame
where the model knows it), the :class:`TailEstimator` (the quantile that meets
the miss target) and the :class:`LevelSelector` (the most accurate level whose
quantile fits the time budget and whose energy fits the energy budget). Energy
predictions are taken as they come (no tail): the energy budget is an average
to hold, the deadline a bound on each frame. With a :class:`StreamingChoice`
and a known camera period, the level is chosen by its streaming value instead
(:mod:`dynvit_ros.budget.streaming`), unless an energy budget is in force.
Pure: the caller passes the time, so it runs in benchmarks and unit tests
without ROS.

The miss target bounds the share of late frames; a calibrated quantile is
only an estimate of where that share falls, and from a few hundred frames
its sampling error alone can rule out a level that in fact misses less than
the target (at 10 Hz on the shipped table, L3's predicted p97 lay above the
period on 18% of its frames while it missed 1-3%). With ``miss_feedback``
the choice also follows the misses themselves: each frame the level was
chosen for (not fixed or pinned) moves a slack ``k`` by
``miss_feedback * (target - missed)``, within [0, ``MAX_SLACK``], and levels
are compared at ``median + (quantile - median) * (1 - k)``: while misses stay
under the target the margin above the median shrinks, and every miss widens
it again, so the realised miss rate settles at the target (a stochastic
approximation, as the tail's own adaptive quantile). The quantiles reported
and learned from stay the calibrated ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

from dynvit_ros.budget.arbiter import BudgetArbiter, Decision
from dynvit_ros.budget.policy import LevelSelector
from dynvit_ros.budget.streaming import StreamingChoice
from dynvit_ros.budget.tail import TailEstimator
from dynvit_ros.latency.base import energy_of

MAX_SLACK = 0.5  # at most half the tail's margin above the median is given back


@dataclass(frozen=True)
class Plan:
    level: int
    decision: Decision
    predicted_ms: list[float]  # per level; inf where the latency model gave no usable number
    quantile_ms: list[float]  # per level: the (1 - miss target) quantile the selector used
    feasible: bool = True  # some level fits the budget(s)
    predicted_mj: list[float] = field(default_factory=list)  # per level; NaN where unknown
    deadline_ms: float = math.nan  # what the frame may take; NaN: the budget in force
    streaming: bool = False  # chosen by streaming value
    min_stride: int = 1  # camera frames from this frame to the next one to take

    @property
    def frame_deadline_ms(self) -> float:
        return self.decision.budget_ms if math.isnan(self.deadline_ms) else self.deadline_ms

    @property
    def fastest_quantile_ms(self) -> float:
        """The least quantile over the levels: the smallest budget that can be met now."""
        return min((q for q in self.quantile_ms if math.isfinite(q)), default=math.nan)


class Controller:
    def __init__(
        self,
        latency_model,
        configs,
        input_hw,
        arbiter: BudgetArbiter,
        selector: LevelSelector,
        tail: TailEstimator | None = None,
        streaming: StreamingChoice | None = None,
    ):
        self.latency_model, self.configs, self.input_hw = latency_model, list(configs), input_hw
        self.arbiter, self.selector = arbiter, selector
        self.tail = tail or TailEstimator()
        self.streaming = streaming
        # The streaming choice averages freshness over how frame times scatter (the tail's).
        self.spread = True
        # A model of another chip: host frame times are not samples of its predictions.
        self.learn_tail = bool(getattr(latency_model, "predicts_this_host", True))
        self.unusable_predictions = 0
        self.infeasible_frames = 0
        # Frames with an energy budget in force that some level's energy could not be checked
        # against (the latency model predicts no energy for it).
        self.energy_unknown_frames = 0
        self._energies: list[float] = []
        self.miss_feedback = 0.0  # step of the slack per frame; 0: off
        self.slack = 0.0

    def selection_quantiles(self, predicted: list[float], quantiles: list[float]) -> list[float]:
        """The quantiles levels are compared at: the tail margin shrunk by the slack."""
        keep = 1.0 - self.slack if self.miss_feedback > 0 else 1.0
        return [
            m + (q - m) * keep if math.isfinite(q) else q for m, q in zip(predicted, quantiles)
        ]

    def predictions(self) -> list[float]:
        """Per-level predictions; a NaN, negative or missing one becomes inf (ineligible).

        The energies the predictions carry are kept for :meth:`plan` (NaN where unknown).
        """
        raw = list(self.latency_model.predict_all(self.configs, self.input_hw))
        out, energies = [], []
        for i in range(len(self.configs)):
            value = float(raw[i]) if i < len(raw) else math.nan
            if not (math.isfinite(value) and value >= 0):
                self.unusable_predictions += 1
                value = math.inf
            out.append(value)
            energies.append(energy_of(raw[i]) if i < len(raw) else math.nan)
        self._energies = energies
        return out

    def plan(
        self,
        now: float,
        period_ms: float = 0.0,
        change: float = 0.0,
        overhead_ms: float = 0.0,
        other_cpu: float = 0.0,
        cpu_share: float = 1.0,
    ) -> Plan:
        """The level for a frame at ``now``; for the streaming choice: ``period_ms``, the
        camera's frame period (0 = unknown), ``change``, the share of the scene changing per
        frame, ``overhead_ms``, the node's time per frame outside the model, and
        ``other_cpu``, the share of the machine the budget topic's sender left out for other
        processes, and ``cpu_share``, the share of the machine the frame's threads can use
        (threads / cores: threads that fit in the cores others leave are not slowed by them).
        """
        predicted = self.predictions()
        energies = self._energies
        quantiles = self.tail.quantiles(predicted) if self.learn_tail else list(predicted)
        compared = self.selection_quantiles(predicted, quantiles)
        decision = self.arbiter.decide(now)
        budgets = (decision.budget_ms, energies, decision.energy_mj)
        feasible = any(self.selector.fits(compared, *budgets))
        deadline, streaming, min_stride = math.nan, False, 1
        if decision.level is not None:
            level = decision.level
        elif all(math.isinf(p) for p in predicted):
            level = len(predicted) - 1  # nothing is known: the cheapest level
        elif self.streaming is not None and period_ms > 0 and decision.energy_mj <= 0:
            safe = [q * self.selector.safety for q in compared]
            stretch = self.contention(decision, other_cpu, cpu_share)
            spread = self.tail.spread() if self.spread and self.learn_tail else []
            budget = decision.budget_ms
            chosen = self.streaming.plan(
                predicted, safe, budget, period_ms, change, stretch, overhead_ms, spread
            )
            level, feasible, deadline = chosen.level, chosen.feasible, chosen.deadline_ms
            streaming, min_stride = True, chosen.min_stride
            self.infeasible_frames += not feasible
        else:
            level = self.selector.select(compared, *budgets)
            self.infeasible_frames += not feasible
            if decision.energy_mj > 0 and any(math.isnan(e) for e in energies):
                self.energy_unknown_frames += 1
        return Plan(
            level,
            decision,
            predicted,
            quantiles,
            feasible,
            energies,
            deadline,
            streaming,
            min_stride,
        )

    def contention(self, decision: Decision, other_cpu: float, cpu_share: float = 1.0) -> float:
        """How much of the slowdown of this node's frames the budget has already paid for.

        A budget from the topic (the load monitor) leaves out the share ``u`` of the machine
        that other processes take. Threads that fit in the cores they leave
        (``cpu_share``, threads / cores, at most ``1 - u``) wait for nobody: nothing to pay
        for (1). Threads that do not fit wait for those processes, which the latency
        model's load factor measures: counted once, the smaller of the two, at most
        ``1 / (1 - u)``. A budget set by parameter or the fallback left nothing out (1), and
        only a model of this host measures the slowdown.
        """
        u = float(other_cpu) if decision.source == "topic" else 0.0
        if not (self.learn_tail and math.isfinite(u) and u > 0):
            return 1.0
        share = float(cpu_share)
        if math.isfinite(share) and share <= 1.0 - min(u, 1.0) + 1e-9:
            return 1.0
        factor = float(getattr(self.latency_model, "load_factor", 1.0))
        if not math.isfinite(factor):
            return 1.0
        return max(1.0, min(factor, 1.0 / (1.0 - min(u, 0.9))))

    def observe(self, plan: Plan, measured_ms: float) -> None:
        """Learn from the frame run as ``plan``: the latency model, then the tail."""
        level = plan.level
        if self.miss_feedback > 0 and plan.decision.level is None and math.isfinite(measured_ms):
            missed = measured_ms > plan.frame_deadline_ms
            step = self.miss_feedback * ((1.0 - self.tail.quantile) - missed)
            self.slack = min(max(self.slack + step, 0.0), MAX_SLACK)
        self.latency_model.observe(self.configs[level], self.input_hw, measured_ms)
        if not self.learn_tail:
            self.tail.record_miss(measured_ms > plan.frame_deadline_ms)
            return
        self.tail.observe(
            level,
            plan.predicted_ms[level],
            plan.quantile_ms[level],
            measured_ms,
            plan.frame_deadline_ms,
        )
