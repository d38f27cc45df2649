# SPDX-License-Identifier: Apache-2.0
"""load_monitor_node: turns system load into a per-frame compute budget.

Subscribes:  battery_state (sensor_msgs/BatteryState; parameter battery_topic)
Publishes:   compute_budget (dynvit_ros/ComputeBudget) at publish_rate_hz,
             /diagnostics (CPU total and per core, memory, temperatures, GPU, power, battery)

Policy (dynvit_ros.budget.policy.LoadBudgetPolicy): the target frame rate
gives the frame period; the period is scaled by the CPU headroom that
processes *other than the perception node* leave (after a reserve), smoothed
(fast down, slow up) and clamped to [min_budget_ms, max_budget_ms]. The
perception node's own CPU use does not shrink its budget: it is found by PID
(perception_pid) or by a regular expression on process command lines.
manual_budget_ms and pinned_level override the policy.

Energy budget per frame (dynvit_ros.budget.battery.BatteryEnergyPolicy): none
while the battery is above battery_low_fraction, charging, or silent; below it,
a cap that shrinks with the charge left. manual_energy_budget_mj overrides it.
With several cameras each gets the cap times its weight's share.
"""

from __future__ import annotations

import math
import os
import time

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState

from dynvit_ros.budget.share import CameraShares, parse_cameras, parse_weights
from dynvit_ros.budget.system_load import SystemSampler
from dynvit_ros.msg import ComputeBudget, InferenceStats
from dynvit_ros.ros import diagnostics as diag
from dynvit_ros.ros.entry import run_node
from dynvit_ros.ros.monitor_params import (
    BATTERY_KEYS,
    POLICY_KEYS,
    SPECS,
    make_battery_policy,
    make_policy,
)
from dynvit_ros.ros.params import NamedParameterErrors, check_changes, declare_all
from dynvit_ros.ros.qos import latched
from dynvit_ros.ros.stamps import seconds_to_fields

SINGLE = ""  # the key of the one camera served on the relative topics


class LoadMonitorNode(NamedParameterErrors, Node):
    def __init__(self, **kwargs):
        super().__init__("load_monitor_node", **kwargs)
        self._p = declare_all(self, SPECS)
        self.sampler = SystemSampler()
        self._policy = make_policy(self._p)
        self._battery = make_battery_policy(self._p)
        self._errors = diag.ErrorLog()
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._last: dict = {}
        self._budget = math.nan
        self.shares = CameraShares(
            parse_weights(self._p["camera_weights"]),
            self._p["camera_timeout_s"],
            self._parallel(),
            self.sampler.cores,
        )
        self._cameras: dict[str, tuple] = {}  # namespace -> (budget publisher, stats subscription)
        self._looked_up = -math.inf
        # Latched, so a perception node that starts later gets a budget at once.
        self.pub_budget = self.create_publisher(ComputeBudget, "compute_budget", latched())
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # One camera on the relative topics: its stats carry the floor of its budget.
        self.create_subscription(
            InferenceStats, "segmentation/stats", self._stats_callback(SINGLE), 10
        )
        if self._p["battery_topic"]:
            # Best effort accepts reliable and best-effort battery drivers alike.
            qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
            self.create_subscription(BatteryState, self._p["battery_topic"], self._on_battery, qos)
        self.create_timer(1.0 / self._p["publish_rate_hz"], self._tick)
        self.get_logger().info(
            f"publishing compute budgets at {self._p['publish_rate_hz']} Hz for a "
            f"{self._p['target_rate_hz']} Hz camera; {self.sampler.cores} CPU cores, "
            f"GPU load {'via NVML' if self.sampler.nvml else 'not available'}, "
            f"power: {self.sampler.power.describe()}"
        )

    def _check_parameters(self, params):
        result = check_changes(SPECS, params)
        if result.successful:
            merged = dict(self._p, **{p.name: p.value for p in params})
            try:
                make_policy(merged)
                make_battery_policy(merged)
            except ValueError as exc:
                result.successful, result.reason = False, str(exc)
        return result

    def _apply_parameters(self, params):
        self._p.update({p.name: p.value for p in params})
        self.shares.weights = parse_weights(self._p["camera_weights"])
        self.shares.timeout_s = float(self._p["camera_timeout_s"])
        self.shares.parallel = self._parallel()
        self._looked_up = -math.inf
        if any(p.name in BATTERY_KEYS for p in params):
            battery = make_battery_policy(self._p)
            battery.reading, battery.ignored = self._battery.reading, self._battery.ignored
            battery.last_refusal = self._battery.last_refusal
            self._battery = battery
        if any(p.name in POLICY_KEYS for p in params):
            previous = self._policy.budget_ms
            self._policy = make_policy(self._p)
            if previous is not None:  # keep smoothing from where it was
                self._policy.budget_ms = min(
                    max(previous, self._policy.min_budget_ms), self._policy.max_budget_ms
                )

    def _parallel(self) -> float:
        """How many perception nodes can run a frame at once on this machine."""
        threads = self._p["perception_threads"] or self.sampler.cores
        return max(1.0, self.sampler.cores / threads)

    def _on_battery(self, msg: BatteryState) -> None:
        if not self._battery.take(msg, time.monotonic()):
            line = self._errors.report(
                "battery",
                f"ignored BatteryState: {self._battery.last_refusal}",
                time.monotonic(),
            )
            diag.log_line(self.get_logger(), ("warning", line) if line else None)

    def _energy_budget(self, now: float) -> tuple[float, str]:
        """Energy budget per frame in mJ (0 = none) and what it comes from."""
        if self._p["manual_energy_budget_mj"] > 0:
            return self._p["manual_energy_budget_mj"], "manual"
        energy = self._battery.energy_budget_mj(now, self._p["target_rate_hz"])
        return energy, "battery" if energy > 0 else "none"

    def _tick(self) -> None:
        p = self._p
        # A PID pins the perception node; the pipeline pattern is scanned for either way.
        patterns = [p["pipeline_process_pattern"]]
        if not p["perception_pid"]:
            patterns.append(p["perception_process_pattern"])
        pattern = "|".join(f"(?:{x})" for x in patterns if x)
        self.sampler.find(p["perception_pid"], pattern, time.monotonic())
        s = self._last = self.sampler.sample()
        if s["split_known"]:
            policy_budget = self._policy.update(s["cpu_other"])
        else:  # keep the last budget (at start: the largest) until the split is measured
            policy_budget = self._policy.budget_ms or self._policy.max_budget_ms
        manual = p["manual_budget_ms"] > 0
        budget = p["manual_budget_ms"] if manual else policy_budget
        self._budget = budget

        source = "manual" if manual else p["source"]
        now = time.monotonic()
        energy, energy_source = self._energy_budget(now)
        cameras = self._update_cameras(now)
        limits = dict(
            min_budget_ms=self._policy.min_budget_ms,
            now=now,
            max_budget_ms=self._policy.max_budget_ms,
            # A manual budget is the user's time per frame: no floor, not sized for threads.
            margin=0.0 if manual else p["feasibility_margin"],
            machine_share=not manual,
        )
        if cameras is None:
            budget = self.shares.budgets([SINGLE], budget, **limits)[SINGLE]
            self.pub_budget.publish(self._message(budget, source, s, energy))
            per_camera = {}
        else:
            per_camera = self.shares.budgets(cameras, budget, **limits)
            for camera, camera_budget in per_camera.items():
                camera_energy = energy * self.shares.share(camera, now)
                self._cameras[camera][0].publish(
                    self._message(camera_budget, source, s, camera_energy)
                )
        self._publish_diagnostics(s, budget, source, per_camera, (energy, energy_source))

    def _message(self, budget: float, source: str, s: dict, energy_mj: float) -> ComputeBudget:
        msg = ComputeBudget(
            budget_ms=float(budget),
            energy_budget_mj=float(energy_mj),
            pinned_level=int(self._p["pinned_level"]),
            source=source,
            valid=True,
            # A budget set by hand left nothing out for other processes.
            other_cpu_fraction=0.0 if source == "manual" else float(s["cpu_other"]),
            frame_period_ms=float(self._policy.period_ms),
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        sec, nanosec = seconds_to_fields(self._p["budget_validity_s"])
        msg.expires_after = Duration(sec=sec, nanosec=nanosec)
        return msg

    def _update_cameras(self, now: float) -> list[str] | None:
        """The cameras served now (None: one camera on the relative topic)."""
        wanted = parse_cameras(self._p["cameras"])
        if wanted == []:
            return None
        if wanted is None and now - self._looked_up >= 1.0:
            self._looked_up = now
            found = [
                name[: -len("/compute_budget")] or "/"
                for name, _ in self.get_topic_names_and_types()
                if name.endswith("/compute_budget") and self.count_subscribers(name) > 0
            ]
            wanted = found
        elif wanted is None:
            wanted = list(self._cameras)
        for camera in wanted:
            if camera not in self._cameras:
                self._add_camera(camera)
        for camera in [c for c in self._cameras if c not in wanted]:
            pub, sub = self._cameras.pop(camera)
            self.destroy_publisher(pub)
            self.destroy_subscription(sub)
            self.shares.forget(camera)
            self.get_logger().info(f"camera {camera} is gone: its share is freed")
        return sorted(self._cameras)

    def _stats_callback(self, camera: str):
        def seen(msg: InferenceStats) -> None:
            if camera == SINGLE and self._p["cameras"].strip():
                return  # serving named cameras: a root-namespace node is not one of them
            # A trial frame's thread count is not the node's.
            threads = 0 if msg.thread_probe else int(msg.threads)
            self.shares.seen(camera, time.monotonic(), msg.fastest_quantile_ms, threads)

        return seen

    def _add_camera(self, camera: str) -> None:
        base = camera.rstrip("/")
        pub = self.create_publisher(ComputeBudget, f"{base}/compute_budget", latched())
        sub = self.create_subscription(
            InferenceStats, f"{base}/segmentation/stats", self._stats_callback(camera), 10
        )
        self._cameras[camera] = (pub, sub)
        self.get_logger().info(f"serving camera {camera} (weight {self.shares.weight(camera):g})")

    def _publish_diagnostics(
        self, s: dict, budget: float, source: str, per_camera: dict, energy: tuple
    ) -> None:
        level, message = diag.OK, "ok"
        if not s["perception_pids"] and not self._p["manual_budget_ms"]:
            level, message = diag.WARN, "perception process not found: its load counts as other"
        if s["mem_used_fraction"] > 0.95:
            level, message = diag.WARN, "memory nearly exhausted"
        temps = s["temperatures_c"]
        values = {
            "budget_ms": budget,
            "budget_source": source,
            "cpu_total": s["cpu_total"],
            "cpu_other": s["cpu_other"],
            "cpu_perception": s["cpu_perception"],
            "cpu_per_core": s["cpu_per_core"],
            "perception_pids": s["perception_pids"] or "none",
            "mem_used_fraction": s["mem_used_fraction"],
            "mem_available_mb": s["mem_available_mb"],
            "max_temperature_c": max(temps.values()) if temps else math.nan,
            "gpu_utilization": s["gpu_utilization"] or "n/a",
            "power_sensors": s["power_sensors"],
            "energy_budget_mj": energy[0],
            "energy_budget_source": energy[1],
            "battery_state": self._battery.state(time.monotonic()),
            "battery_charge": self._battery.reading.soc if self._battery.reading else math.nan,
            "battery_messages_ignored": self._battery.ignored,
            "battery_last_refusal": self._battery.last_refusal or "none",
        }
        # A measured figure where a sensor exists; the sensor line says so where none does.
        values.update({f"power_w/{k}": v for k, v in s["power_w"].items()})
        values.update({f"temp/{k}": v for k, v in temps.items()})
        now = time.monotonic()
        if not per_camera:
            values["floor_ms"] = self.shares.floor(SINGLE, now)
        active = set(self.shares.active(now))
        for camera, camera_budget in per_camera.items():
            values[f"camera{camera}/budget_ms"] = camera_budget
            values[f"camera{camera}/active"] = camera in active
            values[f"camera{camera}/weight"] = self.shares.weight(camera)
            values[f"camera{camera}/floor_ms"] = self.shares.floor(camera, now)
        self.pub_diag.publish(
            diag.diagnostic_array(
                self.get_clock().now().to_msg(),
                f"{self.get_name()}: system load",
                level,
                message,
                os.uname().nodename,
                values,
            )
        )


def main(args=None):
    return run_node(LoadMonitorNode, "load_monitor_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
