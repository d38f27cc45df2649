# SPDX-License-Identifier: Apache-2.0
"""How busy the rest of the host was while a benchmark or a calibration ran.

Timings on a shared machine depend on what else runs there; benchmarks and
``calibrate`` print this next to their figures so two runs can be compared.
What the run itself starts (the nodes it runs, the load it injects) is its
own, not other load, whether it has ended or still runs: this process, its
reaped children and its live process tree. Linux only (reads ``/proc/stat``);
elsewhere the report is empty.

psutil (the ``monitor`` extra) finds the live process tree. ``calibrate`` is part
of the base install and starts no processes, so without psutil live descendants
are simply not counted rather than making psutil a dependency of calibration.
"""

from __future__ import annotations

import os
from pathlib import Path
import time

_STAT = Path("/proc/stat")


def _live_tree_cpu() -> float:
    """CPU seconds of this process's live descendants (and of their reaped children)."""
    try:
        import psutil
    except ImportError:  # see the module doc
        return 0.0
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # ended meanwhile: counted once its parent reaps it
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _snapshot() -> tuple[float, float, float, float] | None:
    """(wall s, busy CPU s of the whole host, steal s, CPU s of this process and everything
    it started).
    """
    try:
        fields = [int(v) for v in _STAT.read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    own = os.times()
    return (
        time.monotonic(),
        (user + nice + system + irq + softirq) / tick,
        steal / tick,
        own.user + own.system + own.children_user + own.children_system + _live_tree_cpu(),
    )


class HostLoad:
    """``with HostLoad() as load: ...``; then ``load.report()``."""

    def __enter__(self) -> "HostLoad":
        self._start, self._end = _snapshot(), None
        return self

    def __exit__(self, *exc) -> None:
        self._end = _snapshot()

    def report(self) -> dict[str, float]:
        """``other_cpu_pct``: CPU used by other processes, in % of all cores over the run;
        ``steal_pct``: time the hypervisor gave this VM's CPUs to others, same unit.
        """
        if self._start is None or self._end is None:
            return {}
        wall, busy, steal, own = (b - a for a, b in zip(self._start, self._end))
        capacity = max(wall, 1e-9) * (os.cpu_count() or 1)
        return {
            "other_cpu_pct": round(100.0 * max(0.0, busy - own) / capacity, 1),
            "steal_pct": round(100.0 * steal / capacity, 1),
        }
