# SPDX-License-Identifier: Apache-2.0
"""Which budget is in force for the next frame, and which level it imposes.

Precedence, highest first:
1. ``mode == "fixed"``: the ``skip_level`` setting, whatever the budget;
2. ``budget_ms > 0`` (a parameter): that budget, the level chosen by the selector;
3. the newest valid topic budget, while it is fresh (younger than
   ``timeout_s``) and not past its own ``expires_after``; its
   ``pinned_level >= 0`` pins the level;
4. otherwise ``default_budget_ms`` (fallback).

The energy budget per frame (mJ, 0 = none) is resolved on its own: the
``energy_budget_mj`` setting when > 0, else the fresh topic budget's, else none
(a stale topic leaves no energy budget rather than an invented one).

Pure and clock-free: the caller passes ``now`` (monotonic seconds), so every
rule is unit-tested without ROS. Topic budgets are checked on arrival and a
refused one leaves the previous budget in force.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

from dynvit_ros.budget.policy import validate_budget, validate_energy_budget

MODES = ("auto", "fixed")


@dataclass(frozen=True)
class Decision:
    budget_ms: float
    source: str  # "parameter" | "topic" | "fallback"
    mode: str  # "auto" | "pinned" | "fixed"
    level: int | None  # the level imposed (fixed or pinned); None: choose by budget
    notice: str | None = None  # a change worth one log line (the topic went stale)
    energy_mj: float = 0.0  # energy budget per frame; 0 = none
    energy_source: str = "none"  # "parameter" | "topic" | "none"


class BudgetArbiter:
    def __init__(
        self,
        num_levels: int,
        default_budget_ms: float = 100.0,
        timeout_s: float = 2.0,
        mode: str = "auto",
        skip_level: int = 0,
        budget_ms: float = 0.0,
        energy_budget_mj: float = 0.0,
    ):
        if num_levels < 1:
            raise ValueError("num_levels must be >= 1")
        self.num_levels = int(num_levels)
        self.default_budget_ms = validate_budget(default_budget_ms)
        self.timeout_s = float(timeout_s)
        self.mode = mode
        self.skip_level = int(skip_level)
        self.budget_ms = float(budget_ms)
        self.energy_budget_mj = validate_energy_budget(energy_budget_mj)
        # (budget ms, pinned level, source, energy budget mJ)
        self._topic: tuple[float, int, str, float] | None = None
        self._received = -math.inf
        self._expires = math.inf
        self._stale = False
        self.accepted = 0

    def update(self, **settings) -> None:
        """Change settings (the node's parameters of the same names), each checked first."""
        for name in settings:
            if name not in (
                "default_budget_ms",
                "timeout_s",
                "mode",
                "skip_level",
                "budget_ms",
                "energy_budget_mj",
            ):
                raise KeyError(name)
        if "mode" in settings and settings["mode"] not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if "energy_budget_mj" in settings:
            validate_energy_budget(settings["energy_budget_mj"])
        if "skip_level" in settings:
            self.check_level(settings["skip_level"], "skip_level", allow_none=False)
        for name, value in settings.items():
            setattr(self, name, value)

    def check_level(self, level: int, what: str, allow_none: bool = True) -> int:
        level = int(level)
        if allow_none and level == -1:
            return level
        if not 0 <= level < self.num_levels:
            none = "-1 (none) or " if allow_none else ""
            raise ValueError(f"{what} {level} is not {none}a skip level 0..{self.num_levels - 1}")
        return level

    def accept(
        self,
        budget_ms: float,
        pinned_level: int,
        source: str,
        expires_after_s: float,
        now: float,
        energy_budget_mj: float = 0.0,
    ) -> str | None:
        """Take a topic budget, or raise ValueError with the reason it was refused.

        Returns a notice when the topic is back after being stale.
        """
        budget = validate_budget(budget_ms)
        pinned = self.check_level(pinned_level, "pinned_level")
        expiry = float(expires_after_s)
        if not math.isfinite(expiry) or expiry < 0:
            raise ValueError(f"expires_after must be >= 0 s, got {expiry}")
        energy = validate_energy_budget(energy_budget_mj)
        self._topic = (budget, pinned, source, energy)
        self._received = now
        self._expires = now + expiry if expiry > 0 else math.inf
        self.accepted += 1
        if self._stale:
            self._stale = False
            return f"budget topic is back ({budget:.1f} ms)"
        return None

    def stale(self, now: float) -> bool:
        """No fresh topic budget is in force (whatever the parameters say)."""
        return self._topic is None or now - self._received > self.timeout_s or now > self._expires

    def topic_in_force(self, now: float) -> bool:
        """The topic's budget decides (no budget_ms parameter overrides it, and it is fresh)."""
        return self.budget_ms <= 0 and not self.stale(now)

    def energy(self, now: float) -> tuple[float, str]:
        """The energy budget in force (mJ, 0 = none) and where it came from."""
        if self.energy_budget_mj > 0:
            return self.energy_budget_mj, "parameter"
        if not self.stale(now) and self._topic[3] > 0:
            return self._topic[3], "topic"
        return 0.0, "none"

    def decide(self, now: float) -> Decision:
        energy = self.energy(now)
        if self.budget_ms > 0:
            budget, source, pinned = self.budget_ms, "parameter", -1
            notice = None
        elif self.topic_in_force(now):
            budget, pinned, _, _ = self._topic
            source, notice = "topic", None
        else:
            budget, source, pinned = self.default_budget_ms, "fallback", -1
            notice = None
            if not self._stale:
                self._stale = True
                if self._topic is None:
                    why = "no budget received yet"
                elif now > self._expires:
                    why = "last budget expired"
                else:
                    why = f"last budget is {now - self._received:.1f} s old"
                notice = (
                    f"{why} (timeout {self.timeout_s:g} s): using default_budget_ms = "
                    f"{self.default_budget_ms:g} ms"
                )
        if self.mode == "fixed":
            mode, level = "fixed", min(self.skip_level, self.num_levels - 1)
        elif pinned >= 0:
            mode, level = "pinned", pinned
        else:
            mode, level = "auto", None
        return Decision(budget, source, mode, level, notice, *energy)
