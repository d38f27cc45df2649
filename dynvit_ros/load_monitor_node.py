"""load_monitor_node: turns system load into a per-frame compute budget.

Publishes:   compute_budget (dynvit_ros/ComputeBudget) at publish_rate_hz,
             /diagnostics (CPU total and per core, memory, temperatures, GPU)

Policy (dynvit_ros.budget_policy.LoadBudgetPolicy): the target frame rate
gives the frame period; the period is scaled by the CPU headroom that
processes *other than the perception node* leave (after a reserve), smoothed
(fast down, slow up) and clamped to [min_budget_ms, max_budget_ms]. The
perception node's own CPU use does not shrink its budget: it is found by PID
(perception_pid) or by a regular expression on process command lines.
manual_budget_ms and pinned_level override the policy.
"""
from __future__ import annotations

import glob
import math
import os
import re
import time

import psutil
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from dynvit_ros.budget_policy import LoadBudgetPolicy
from dynvit_ros.msg import ComputeBudget
from dynvit_ros.ros_params import Spec, check_changes, declare_all, spin_node, status


def _regex(text: str) -> str | None:
    try:
        re.compile(text)
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    return None


SPECS = {
    "publish_rate_hz": Spec(5.0, "How often the load is sampled and a budget published.",
                            read_only=True, low=0.1, high=100.0),
    "target_rate_hz": Spec(10.0, "Camera frame rate the perception node should keep up with; "
                                 "1000 / rate is the frame period.", low=0.1, high=1000.0),
    "min_budget_ms": Spec(5.0, "Smallest budget published.", low=0.01, high=1.0e5),
    "max_budget_ms": Spec(0.0, "Largest budget published; 0 = the frame period.", low=0.0, high=1.0e5),
    "reserve": Spec(0.1, "Share of the CPU kept free for everything else.", low=0.0, high=0.95),
    "alpha_down": Spec(0.6, "Smoothing weight of a new sample when the budget shrinks.", low=0.01, high=1.0),
    "alpha_up": Spec(0.15, "Smoothing weight of a new sample when the budget grows.", low=0.01, high=1.0),
    "budget_validity_s": Spec(2.0, "ComputeBudget.expires_after; 0 = no expiry.", low=0.0, high=3600.0),
    "manual_budget_ms": Spec(0.0, "Publish this budget instead of the policy's; 0 = off.",
                             low=0.0, high=1.0e5),
    "pinned_level": Spec(-1, "Skip level to pin in the published budget; -1 = none.", low=-1, high=1000),
    "perception_pid": Spec(0, "PID of the perception node; 0 = find it with perception_process_pattern.",
                           low=0, high=2**22),
    "perception_process_pattern": Spec(r"lib/dynvit_ros/segformer_node|segformer_node\.py",
                                       "Regular expression matched against command lines to find the "
                                       "perception node(s).", check=_regex),
    "source": Spec("load_monitor", "ComputeBudget.source of the published budgets."),
}
_POLICY_KEYS = ("target_rate_hz", "min_budget_ms", "max_budget_ms", "reserve", "alpha_down", "alpha_up")


def _policy(p: dict) -> LoadBudgetPolicy:
    return LoadBudgetPolicy(target_rate_hz=p["target_rate_hz"], min_budget_ms=p["min_budget_ms"],
                            max_budget_ms=p["max_budget_ms"] or None, reserve=p["reserve"],
                            alpha_down=p["alpha_down"], alpha_up=p["alpha_up"])


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
        self.nvml = _init_nvml()

    def find(self, pid: int, pattern: str, now: float) -> None:
        """Track the perception process(es): the given PID, or every command line matching ``pattern``.

        The process table is scanned again every 2 s while nothing matches and
        every 10 s otherwise (to pick up restarted or additional nodes).
        """
        if pattern != self._pattern:
            self._pattern, self._procs, self._looked_up = pattern, {}, -math.inf
        alive = {p: proc for p, proc in self._procs.items() if proc.is_running()}
        if pid:
            alive = {pid: alive[pid]} if pid in alive else self._start(pid)
        elif now - self._looked_up >= (10.0 if alive else 2.0):
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
            "cpu_total": total, "cpu_per_core": [c / 100.0 for c in per_core],
            "cpu_perception": perception, "cpu_other": max(0.0, total - perception),
            "perception_pids": sorted(self._procs), "mem_used_fraction": mem.percent / 100.0,
            "mem_available_mb": mem.available / 2**20,
        }
        out["temperatures_c"] = _temperatures()
        out["gpu_utilization"] = self._gpu()
        return out

    def _gpu(self) -> list[float]:
        if self.nvml is None:
            return []
        try:
            return [self.nvml.nvmlDeviceGetUtilizationRates(
                self.nvml.nvmlDeviceGetHandleByIndex(i)).gpu / 100.0
                for i in range(self.nvml.nvmlDeviceGetCount())]
        except Exception:  # a GPU that disappeared or a driver hiccup: report none
            return []


def _init_nvml():
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml
    except Exception:  # not installed, or no NVIDIA driver
        return None


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


class LoadMonitorNode(Node):
    def __init__(self, **kwargs):
        super().__init__("load_monitor_node", **kwargs)
        self._p = declare_all(self, SPECS)
        self._policy = _policy(self._p)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.sampler = SystemSampler()
        self._last: dict = {}
        self._budget = math.nan
        # Latched, so a perception node that starts later gets a budget at once.
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_budget = self.create_publisher(ComputeBudget, "compute_budget", qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0 / self._p["publish_rate_hz"], self._tick)
        self.get_logger().info(
            f"publishing compute budgets at {self._p['publish_rate_hz']} Hz for a "
            f"{self._p['target_rate_hz']} Hz camera; {self.sampler.cores} CPU cores, "
            f"GPU load {'via NVML' if self.sampler.nvml else 'not available'}")

    def _check_parameters(self, params):
        result = check_changes(SPECS, params)
        if result.successful:
            merged = dict(self._p, **{p.name: p.value for p in params})
            try:
                _policy(merged)
            except ValueError as exc:
                result.successful, result.reason = False, str(exc)
        return result

    def _apply_parameters(self, params):
        self._p.update({p.name: p.value for p in params})
        if any(p.name in _POLICY_KEYS for p in params):
            previous = self._policy.budget_ms
            self._policy = _policy(self._p)
            if previous is not None:  # keep smoothing from where it was
                self._policy.budget_ms = min(max(previous, self._policy.min_budget_ms),
                                             self._policy.max_budget_ms)

    def _tick(self) -> None:
        p = self._p
        self.sampler.find(p["perception_pid"], p["perception_process_pattern"], time.monotonic())
        s = self._last = self.sampler.sample()
        if s["split_known"]:
            policy_budget = self._policy.update(s["cpu_other"])
        else:  # keep the last budget (at start: the largest) until the split is measured
            policy_budget = self._policy.budget_ms or self._policy.max_budget_ms
        manual = p["manual_budget_ms"] > 0
        budget = p["manual_budget_ms"] if manual else policy_budget
        self._budget = budget

        msg = ComputeBudget(budget_ms=float(budget), pinned_level=int(p["pinned_level"]),
                            source="manual" if manual else p["source"], valid=True,
                            other_cpu_fraction=float(s["cpu_other"]),
                            frame_period_ms=float(self._policy.period_ms))
        msg.header.stamp = self.get_clock().now().to_msg()
        validity = p["budget_validity_s"]
        msg.expires_after = Duration(sec=int(validity), nanosec=int((validity % 1.0) * 1e9))
        self.pub_budget.publish(msg)
        self._publish_diagnostics(s, budget, msg.source)

    def _publish_diagnostics(self, s: dict, budget: float, source: str) -> None:
        level, message = DiagnosticStatus.OK, "ok"
        if not s["perception_pids"] and not self._p["manual_budget_ms"]:
            level, message = DiagnosticStatus.WARN, "perception process not found: its load counts as other"
        if s["mem_used_fraction"] > 0.95:
            level, message = DiagnosticStatus.WARN, "memory nearly exhausted"
        temps = s["temperatures_c"]
        values = {"budget_ms": budget, "budget_source": source, "cpu_total": s["cpu_total"],
                  "cpu_other": s["cpu_other"], "cpu_perception": s["cpu_perception"],
                  "cpu_per_core": s["cpu_per_core"], "perception_pids": s["perception_pids"] or "none",
                  "mem_used_fraction": s["mem_used_fraction"], "mem_available_mb": s["mem_available_mb"],
                  "max_temperature_c": max(temps.values()) if temps else math.nan,
                  "gpu_utilization": s["gpu_utilization"] or "n/a"}
        values.update({f"temp/{k}": v for k, v in temps.items()})
        diag = DiagnosticArray(status=[status(f"{self.get_name()}: system load", level, message,
                                              os.uname().nodename, values)])
        diag.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(diag)


def main(args=None):
    return spin_node(LoadMonitorNode, "load_monitor_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
