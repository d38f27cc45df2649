# SPDX-License-Identifier: Apache-2.0
"""How many CPU threads a frame's forward pass uses, chosen from what frames take.

On a computer another program shares, more intra-op threads can be slower than
fewer: every operator ends at a barrier that waits for the thread sharing a core
with the other program. On this project's 2-core host (``make bench-contention``,
one process, no ROS) two threads were 1.5-3.4x slower than one beside a process
holding one core, and 1.1-1.5x faster than one on a quiet host. No fixed count is
right for both, and which one holds is only known by trying (inside the running
node the difference was smaller: README, streaming section).

:class:`ThreadChooser` runs frames at one count (``current``) and now and then tries
another count, alternating like a benchmark does: a trial frame at the other count,
then a reference frame at the current one, up to ``confirm`` pairs. Each frame's
time is divided by the latency model's prediction for its level, and a pair's
ratio is the trial's over its reference's, so a latency model that lags a load
change, or a burst that starts mid-series, hits both sides alike. Frame times in a
busy node scatter by a third from one frame to the next, so one pair decides
nothing: a series goes on while the median of its pairs wins by ``min_gain``, and
the count becomes current when the median of ``confirm`` pairs does. Series start:

- when frames drift from their predictions (an EMA of ``log(measured / predicted)``
  beyond ``log(1 + drift)`` either way): the load changed, so the best count may
  have; every other count is tried;
- otherwise every ``probe_period_s`` per other count; the period doubles (up to
  ``max_period_s``) each time that count loses by ``min_gain`` or more, and is reset
  when the load drifts or the count changes.

Other programs' cores: a frame uses no more threads than the cores other programs
leave free (:meth:`ThreadChooser.limit`, from the load monitor's share of the machine
they take), as OpenMP's dynamic thread adjustment does. A thread on a core another
program holds waits at every barrier and takes that program's time; in the node the
one-thread frames beside a busy core took 0-20% longer than two-thread frames did
(README, streaming section), at half the CPU. A count is given up only when others
take most of a core (70%), and comes back below half, so a load near the line and a
fast node's own kernel time (loopback DDS, counted as other load) do not flap it.

Trials can be switched off (``trials=False``), leaving the ceiling alone: in the node
on this project's host they never found a faster count and cost accuracy at 30 Hz.

The caller keeps trial frames from the latency model (they would move its load
factor, which describes the current count); reference frames are ordinary
frames. After a switch, ``settle_frames`` frames pass before drift is judged
again: the latency model needs them to learn the new count. Pure: the caller
passes the time and applies the count.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import statistics
from typing import Sequence


def free_cores(other_cpu: float, cores: int) -> float:
    """Cores other programs leave free, from their share of the machine (NaN: none taken)."""
    other = float(other_cpu)
    other = min(max(other, 0.0), 1.0) if math.isfinite(other) else 0.0
    return max(1, int(cores)) * (1.0 - other)


def thread_candidates(most: int) -> tuple[int, ...]:
    """The counts worth trying with ``most`` threads: all, one fewer, half, one."""
    most = max(1, int(most))
    return tuple(sorted({most, most - 1, most // 2, 1} - {0}, reverse=True))


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    probe: bool = False  # a trial of another count: not a sample of the current one


class ThreadChooser:
    def __init__(
        self,
        counts: Sequence[int],
        min_gain: float = 0.15,
        drift: float = 0.3,
        drift_alpha: float = 0.5,
        probe_period_s: float = 3.0,
        max_period_s: float = 20.0,
        settle_frames: int = 5,
        min_gap_s: float = 1.0,
        confirm: int = 3,
        keep: float = 0.7,
        regain: float = 0.5,
        trials: bool = True,
    ):
        counts = tuple(dict.fromkeys(int(c) for c in counts if int(c) >= 1))
        if not counts:
            raise ValueError("ThreadChooser needs at least one thread count >= 1")
        if not 0.0 < min_gain < 1.0:
            raise ValueError(f"min_gain must be in (0, 1), got {min_gain!r}")
        self.counts = counts
        self.current = counts[0]
        self.trials = bool(trials)  # False: the ceiling only, no trial frames
        self.ceiling = max(counts)  # the most threads frames may use now (limit)
        if not 0.0 <= regain <= keep < 1.0:
            raise ValueError(f"need 0 <= regain <= keep < 1, got {regain!r}, {keep!r}")
        self._keep, self._regain = float(keep), float(regain)
        self.ceiling_changes = 0
        self.min_gain = float(min_gain)
        self._drift_limit = math.log1p(float(drift))
        self._alpha = float(drift_alpha)
        self._base_period = float(probe_period_s)
        self._max_period = max(float(max_period_s), self._base_period)
        self._settle_frames = int(settle_frames)
        self._min_gap = float(min_gap_s)
        self._confirm = max(1, int(confirm))
        self._drift = 0.0
        self._settle = self._settle_frames
        self._period = {c: self._base_period for c in counts}
        self._due: dict[int, float | None] = {c: None for c in counts}
        self._pending: list[int] = []  # counts whose series start on the next frames
        self._trying: int | None = None  # the count of the series under way
        self._trial_ratio = math.nan  # its last trial frame, waiting for a reference frame
        self._pairs: list[float] = []
        self._last_probe = -math.inf
        self.probes = 0
        self.switches = 0
        # Per count: the median pair ratio of its last series (trial / reference).
        self.last_ratio = {c: math.nan for c in counts}

    def _others(self) -> list[int]:
        return [c for c in self.counts if c != self.current and c <= self.ceiling]

    def limit(self, free: float, now: float) -> int | None:
        """Use no more threads than ``free`` cores: a count is given up once other programs
        take most of a core it needs (free < count - ``keep``) and comes back once they
        leave half of it (free >= count - ``regain``); between the two it holds, so a load
        near a threshold does not flap. Frames move to the most threads allowed whenever
        the ceiling moves. Returns the new count on a change.
        """
        most = max(self.counts)
        free = float(free) if math.isfinite(free) else float(most)
        wanted = min(most, max(1, math.floor(free + self._keep + 1e-9)))
        if wanted > self.ceiling:
            regained = math.floor(free + self._regain + 1e-9)
            wanted = min(most, max(self.ceiling, regained))
        if wanted == self.ceiling:
            return None
        self.ceiling = wanted
        self.ceiling_changes += 1
        allowed = max((c for c in self.counts if c <= wanted), default=min(self.counts))
        self._end_series()
        self._pending = []
        self._drift = 0.0
        self._settle = self._settle_frames
        self._reset_periods(now)
        if allowed == self.current:
            return None
        self.current = allowed
        return allowed

    def _reset_periods(self, now: float) -> None:
        for c in self.counts:
            self._period[c] = self._base_period
            self._due[c] = now + self._base_period

    def choose(self, now: float) -> ThreadChoice:
        """The count for a frame starting at monotonic time ``now``."""
        others = self._others()
        if not (others and self.trials):
            return ThreadChoice(self.current)
        for c in others:
            if self._due[c] is None:
                self._due[c] = now + self._period[c]
        if self._trying is not None:
            if not math.isnan(self._trial_ratio):
                return ThreadChoice(self.current)  # the reference frame of the pair
            count = self._trying
        elif self._pending:
            count = self._trying = self._pending.pop(0)
        else:
            due = [c for c in others if now >= self._due[c]]
            if not due:
                return ThreadChoice(self.current)
            count = self._trying = min(due, key=lambda c: self._due[c])
        self._last_probe = now
        self._due[count] = now + self._period[count]
        self.probes += 1
        return ThreadChoice(count, probe=True)

    def observe(self, choice: ThreadChoice, measured_ms: float, predicted_ms: float, now: float):
        """Learn from a frame run as ``choice`` that took ``measured_ms``; ``predicted_ms`` is
        the latency model's median for its level. Returns the new current count on a switch.
        """
        measured, predicted = float(measured_ms), float(predicted_ms)
        if not (measured > 0 and predicted > 0 and math.isfinite(measured + predicted)):
            if choice.probe:
                self._end_series()  # a pair without its trial: start again later
            return None
        ratio = measured / predicted
        if choice.probe:
            if choice.threads == self._trying:
                self._trial_ratio = ratio
            return None
        if choice.threads != self.current:
            return None  # a frame started before a switch
        if self._trying is not None and not math.isnan(self._trial_ratio):
            self._pairs.append(self._trial_ratio / ratio)
            self._trial_ratio = math.nan
            return self._judge(now)
        if self._settle > 0:
            self._settle -= 1
            return None
        self._drift += self._alpha * (math.log(ratio) - self._drift)
        idle = self._trying is None and not self._pending
        if (
            abs(self._drift) > self._drift_limit
            and idle
            and now - self._last_probe >= self._min_gap
        ):
            self._drift = 0.0
            self._pending = self._others()
            self._reset_periods(now)
        return None

    def _end_series(self) -> None:
        self._trying, self._trial_ratio, self._pairs = None, math.nan, []

    def _judge(self, now: float):
        count, verdict = self._trying, statistics.median(self._pairs)
        self.last_ratio[count] = verdict
        winning = verdict <= 1.0 - self.min_gain
        if winning and len(self._pairs) < self._confirm:
            return None  # promising: another pair
        self._end_series()
        if winning:
            self.current = count
            self.switches += 1
            self._settle = self._settle_frames
            self._drift = 0.0
            self._pending = []
            self._reset_periods(now)
            return count
        if verdict >= 1.0 + self.min_gain:
            self._period[count] = min(self._max_period, 2.0 * self._period[count])
        self._due[count] = now + self._period[count]
        return None

    def state(self) -> dict:
        """For diagnostics."""
        return {
            "threads": self.current,
            "thread_counts": list(self.counts),
            "thread_probes": self.probes,
            "thread_switches": self.switches,
            "thread_ceiling": self.ceiling,
            "thread_ceiling_changes": self.ceiling_changes,
            "thread_probe_ratio": [self.last_ratio[c] for c in self.counts],
        }
