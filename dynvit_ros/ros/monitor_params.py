# SPDX-License-Identifier: Apache-2.0
"""load_monitor_node's parameters and how they make a :class:`LoadBudgetPolicy` and a
:class:`BatteryEnergyPolicy`.

Kept apart from the node so the node file only wires ROS; no rclpy import
beyond the parameter descriptors.
"""

from __future__ import annotations

import re

from dynvit_ros.budget.battery import BatteryEnergyPolicy
from dynvit_ros.budget.policy import LoadBudgetPolicy
from dynvit_ros.budget.share import parse_cameras, parse_weights
from dynvit_ros.ros.params import Spec


def _regex(text: str) -> str | None:
    try:
        re.compile(text)
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    return None


SPECS = {
    "publish_rate_hz": Spec(
        5.0,
        "How often the load is sampled and a budget published.",
        read_only=True,
        low=0.1,
        high=100.0,
    ),
    "target_rate_hz": Spec(
        10.0,
        "Camera frame rate the perception node should keep up with; "
        "1000 / rate is the frame period.",
        low=0.1,
        high=1000.0,
    ),
    "min_budget_ms": Spec(5.0, "Smallest budget published.", low=0.01, high=1.0e5),
    "max_budget_ms": Spec(
        0.0, "Largest budget published; 0 = the frame period.", low=0.0, high=1.0e5
    ),
    "reserve": Spec(0.1, "Share of the CPU kept free for everything else.", low=0.0, high=0.95),
    "alpha_down": Spec(
        0.6, "Smoothing weight of a new sample when the budget shrinks.", low=0.01, high=1.0
    ),
    "alpha_up": Spec(
        0.15, "Smoothing weight of a new sample when the budget grows.", low=0.01, high=1.0
    ),
    "budget_validity_s": Spec(
        2.0, "ComputeBudget.expires_after; 0 = no expiry.", low=0.0, high=3600.0
    ),
    "manual_budget_ms": Spec(
        0.0, "Publish this budget instead of the policy's; 0 = off.", low=0.0, high=1.0e5
    ),
    "pinned_level": Spec(
        -1, "Skip level to pin in the published budget; -1 = none.", low=-1, high=1000
    ),
    "perception_pid": Spec(
        0,
        "PID of the perception node; 0 = find it with perception_process_pattern.",
        low=0,
        high=2**22,
    ),
    "perception_process_pattern": Spec(
        r"lib/dynvit_ros/segformer_node|segformer_node\.py",
        "Regular expression matched against command lines to find the perception node(s).",
        check=_regex,
    ),
    "pipeline_process_pattern": Spec(
        r"lib/dynvit_ros/replay|dynvit-replay",
        "Regular expression for the camera pipeline that feeds perception (driver, decoder, "
        "bag replay): its CPU counts with perception, not as other load, so the node's own "
        "camera does not shrink its budget (default: this package's bag player); with or "
        "without perception_pid. '' = none.",
        check=_regex,
    ),
    "source": Spec("load_monitor", "ComputeBudget.source of the published budgets."),
    "cameras": Spec(
        "",
        "Cameras served (namespaces, comma-separated, e.g. 'front,rear'), each sent "
        "<ns>/compute_budget; '*' discovers every namespace whose compute_budget has a "
        "subscriber; '' = one camera on the relative topic compute_budget.",
        check=lambda v: _refuse(parse_cameras, v),
    ),
    "camera_weights": Spec(
        "",
        "Share of the compute per camera, e.g. 'front=2,rear=1' (unlisted: 1).",
        check=lambda v: _refuse(parse_weights, v),
    ),
    "perception_threads": Spec(
        0,
        "CPU threads each perception node uses (its num_threads); cores / threads nodes can "
        "run a frame at once. 0 = every core (the cameras share the machine in time).",
        low=0,
        high=1024,
    ),
    "camera_timeout_s": Spec(
        3.0,
        "A camera without a processed frame for this long frees its share.",
        low=0.1,
        high=3600.0,
    ),
    "feasibility_margin": Spec(
        1.1,
        "A camera's budget is never below this times the smallest budget it reports it can "
        "meet (InferenceStats.fastest_quantile_ms); 0 = no floor.",
        low=0.0,
        high=3.0,
        check=lambda v: None if v == 0 or v >= 1 else "must be 0 (no floor) or >= 1",
    ),
    "battery_topic": Spec(
        "battery_state",
        "sensor_msgs/BatteryState topic the energy budget is derived from; '' = none.",
        read_only=True,
    ),
    "battery_low_fraction": Spec(
        0.2,
        "Below this state of charge the energy per frame is capped; 0 = never.",
        low=0.0,
        high=1.0,
    ),
    "battery_capacity_wh": Spec(
        0.0,
        "Battery energy when full, Wh; 0 = the message's capacity (or design_capacity) x voltage.",
        low=0.0,
        high=1.0e6,
    ),
    "battery_perception_share": Spec(
        0.1,
        "Share of the energy left in the battery that perception may spend over "
        "battery_horizon_s.",
        low=1.0e-6,
        high=1.0,
    ),
    "battery_horizon_s": Spec(
        3600.0,
        "How long the remaining charge must last: cap = share x energy left / (horizon x "
        "target_rate_hz).",
        low=1.0,
        high=1.0e7,
    ),
    "min_energy_budget_mj": Spec(
        0.1, "Smallest energy budget per frame published.", low=1.0e-6, high=1.0e6
    ),
    "battery_timeout_s": Spec(
        30.0, "A battery state older than this sets no cap.", low=0.1, high=86400.0
    ),
    "manual_energy_budget_mj": Spec(
        0.0,
        "Publish this energy budget per frame (mJ) instead of the battery policy's; 0 = off.",
        low=0.0,
        high=1.0e6,
    ),
}
POLICY_KEYS = (
    "target_rate_hz",
    "min_budget_ms",
    "max_budget_ms",
    "reserve",
    "alpha_down",
    "alpha_up",
)


def _refuse(parse, value) -> str | None:
    try:
        parse(value)
    except ValueError as exc:
        return str(exc)
    return None


BATTERY_KEYS = (
    "battery_low_fraction",
    "battery_capacity_wh",
    "battery_perception_share",
    "battery_horizon_s",
    "min_energy_budget_mj",
    "battery_timeout_s",
)


def make_battery_policy(p: dict) -> BatteryEnergyPolicy:
    return BatteryEnergyPolicy(
        low_fraction=p["battery_low_fraction"],
        share=p["battery_perception_share"],
        horizon_s=p["battery_horizon_s"],
        capacity_wh=p["battery_capacity_wh"],
        min_energy_mj=p["min_energy_budget_mj"],
        timeout_s=p["battery_timeout_s"],
    )


def make_policy(p: dict) -> LoadBudgetPolicy:
    return LoadBudgetPolicy(
        target_rate_hz=p["target_rate_hz"],
        min_budget_ms=p["min_budget_ms"],
        max_budget_ms=p["max_budget_ms"] or None,
        reserve=p["reserve"],
        alpha_down=p["alpha_down"],
        alpha_up=p["alpha_up"],
    )
