# SPDX-License-Identifier: Apache-2.0
"""System load sampling for the load monitor: CPU (total, per core, perception vs the rest),
memory, temperatures (psutil, else /sys/class/thermal), GPU utilisation (NVML, where present)
and measured power (NVML, RAPL; :mod:`dynvit_ros.power`).

Pure Python on psutil; no ROS import.
"""

from __future__ import annotations

import glob
import math
import os
import re
import time

import psutil

from dynvit_ros.power import PowerMeter


class SystemSampler:
    """CPU (total, per core, perception vs. the rest), memory, temperatures and GPU load."""

    def __init__(self):
        self.cores = psutil.cpu_count() or 1
        self._procs: dict[int, psutil.Process] = {}
        self._primed: set[int] = set()
        self._pattern = None
        self._looked_up = -math.inf
        self._me = os.getpid()
        psutil.cpu_percent(percpu=True)
        self.power = PowerMeter()
        self.nvml = self.power.nvml

    def find(self, pid: int, pattern: str, now: float) -> None:
        """Track the perception process(es): the PID (if not 0) and every command line matching
        ``pattern`` (if not empty).

        The process table is scanned again every 2 s while nothing matches and
        every 10 s otherwise (to pick up restarted or additional nodes).
        """
        if (pid, pattern) != self._pattern:
            self._pattern, self._procs, self._looked_up = (pid, pattern), {}, -math.inf
        alive = {p: proc for p, proc in self._procs.items() if proc.is_running()}
        if pid and pid not in alive:
            alive.update(self._start(pid))
        if pattern and now - self._looked_up >= (10.0 if alive else 2.0):
            self._looked_up = now
            rx = re.compile(pattern)
            for proc in psutil.process_iter(["cmdline"]):
                if proc.pid == self._me or proc.pid in alive:
                    continue
                if rx.search(" ".join(proc.info.get("cmdline") or [])):
                    alive.update(self._start(proc.pid))
        self._primed = set(alive) - set(self._procs)
        self._procs = alive

    @staticmethod
    def _start(pid: int) -> dict:
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent()  # the first call only starts the measurement
            return {pid: proc}
        except psutil.Error:
            return {}

    def sample(self) -> dict:
        per_core = psutil.cpu_percent(percpu=True)
        total = sum(per_core) / (100.0 * max(len(per_core), 1))
        perception = 0.0
        for proc in list(self._procs.values()):
            try:
                perception += proc.cpu_percent() / (100.0 * self.cores)
            except psutil.Error:
                pass
        perception = min(perception, total)
        mem = psutil.virtual_memory()
        out = {
            # A process primed this tick reads ~0 CPU: the split is not known yet.
            "split_known": not self._primed,
            "cpu_total": total,
            "cpu_per_core": [c / 100.0 for c in per_core],
            "cpu_perception": perception,
            "cpu_other": max(0.0, total - perception),
            "perception_pids": sorted(self._procs),
            "mem_used_fraction": mem.percent / 100.0,
            "mem_available_mb": mem.available / 2**20,
        }
        out["temperatures_c"] = _temperatures()
        out["gpu_utilization"] = self._gpu()
        out["power_w"] = self.power.power_w(time.monotonic())  # {} without a sensor
        out["power_sensors"] = self.power.describe()
        return out

    def _gpu(self) -> list[float]:
        if self.nvml is None:
            return []
        try:
            return [
                self.nvml.nvmlDeviceGetUtilizationRates(
                    self.nvml.nvmlDeviceGetHandleByIndex(i)
                ).gpu
                / 100.0
                for i in range(self.nvml.nvmlDeviceGetCount())
            ]
        except Exception:  # a GPU that disappeared or a driver hiccup: report none
            return []


def _temperatures() -> dict[str, float]:
    temps = {}
    try:
        for chip, readings in (psutil.sensors_temperatures() or {}).items():
            for i, reading in enumerate(readings):
                temps[f"{chip}/{reading.label or i}"] = float(reading.current)
    except (AttributeError, OSError):
        pass
    if not temps:
        for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
            try:
                with open(f"{zone}/type") as f:
                    kind = f.read().strip()
                with open(f"{zone}/temp") as f:
                    temps[f"{os.path.basename(zone)}/{kind}"] = int(f.read().strip()) / 1000.0
            except (OSError, ValueError):
                continue
    return temps
