# SPDX-License-Identifier: Apache-2.0
"""load_monitor_node over real DDS, alone and driving segformer_node."""

from __future__ import annotations

import os

from ros_harness import Rig, diagnostics_values, isclose

MONITOR = "monitor"


def _monitor(ros, **params):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from dynvit_ros.msg import ComputeBudget

    defaults = {"publish_rate_hz": 10.0, "target_rate_hz": 10.0, "min_budget_ms": 5.0}
    defaults.update(params)
    proc = ros.start("load_monitor_node", MONITOR, defaults)
    # Volatile: test_monitor_drives_segformer_node also publishes (volatile) budgets here.
    budgets = ros.client.collect(
        ComputeBudget,
        "/compute_budget",
        QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
    )
    diags = ros.client.collect(DiagnosticArray, "/diagnostics", 10)
    return proc, budgets, diags


def test_load_monitor_publishes_budgets_and_obeys_overrides(ros):
    proc, budgets, diags = _monitor(ros, perception_pid=os.getpid(), budget_validity_s=1.5)
    client = ros.client
    assert client.spin_until(lambda: len(budgets) >= 3, 60), proc.output()
    for msg in budgets:
        assert msg.valid and msg.source == "load_monitor" and msg.pinned_level == -1
        assert 5.0 <= msg.budget_ms <= 100.0 + 1e-3
        assert isclose(msg.frame_period_ms, 100.0)
        assert 0.0 <= msg.other_cpu_fraction <= 1.0
        assert (msg.expires_after.sec, msg.expires_after.nanosec) == (1, 500_000_000)
        assert msg.header.stamp.sec > 0

    def diag():
        return diagnostics_values(diags, f"{MONITOR}: system load")

    assert client.spin_until(lambda: diag() is not None, 10)
    values = diag()
    assert values["perception_pids"] == str(os.getpid())
    assert len(values["cpu_per_core"].split(",")) == (os.cpu_count() or 1)
    for key in (
        "cpu_total",
        "cpu_other",
        "cpu_perception",
        "mem_used_fraction",
        "max_temperature_c",
        "gpu_utilization",
        "budget_ms",
    ):
        assert key in values

    results = client.set_parameters(MONITOR, {"manual_budget_ms": 42.0, "pinned_level": 1})
    assert all(r.successful for r in results), [r.reason for r in results]
    assert client.spin_until(
        lambda: budgets[-1].source == "manual" and budgets[-1].pinned_level == 1, 10
    )
    assert isclose(budgets[-1].budget_ms, 42.0)
    assert budgets[-1].other_cpu_fraction == 0.0  # nothing left out: not counted as contention

    (refused,) = client.set_parameters(
        MONITOR, {"min_budget_ms": 500.0}
    )  # above the 100 ms period
    assert not refused.successful and "min_budget_ms" in refused.reason, refused.reason
    (refused,) = client.set_parameters(MONITOR, {"perception_process_pattern": "(unclosed"})
    assert not refused.successful and "regular expression" in refused.reason, refused.reason
    results = client.set_parameters(MONITOR, {"manual_budget_ms": 0.0, "target_rate_hz": 20.0})
    assert all(r.successful for r in results), [r.reason for r in results]
    assert client.spin_until(
        lambda: (
            budgets[-1].source == "load_monitor" and isclose(budgets[-1].frame_period_ms, 50.0)
        ),
        10,
    )
    assert budgets[-1].budget_ms <= 50.0 + 1e-3
    assert proc.alive()


def test_monitor_drives_segformer_node(ros, tiny_model):
    _monitor(ros, manual_budget_ms=37.5)
    rig = Rig(ros, tiny_model)
    assert rig.frames_until(lambda: rig.stats and rig.stats[-1].budget_source == "topic"), (
        rig.proc.output()
    )
    assert isclose(rig.stats[-1].budget_ms, 37.5)
    # Still the user's number once the monitor has seen the node's threads (1 of the cores).
    seen = len(rig.stats)
    assert rig.frames_until(lambda: len(rig.stats) >= seen + 10), rig.proc.output()
    assert all(isclose(s.budget_ms, 37.5) for s in rig.stats[seen:] if s.budget_source == "topic")


def _busy(seconds: float, *marker: str):
    """A busy process; ``marker`` words go on its command line (sys.argv, unused)."""
    import subprocess
    import sys

    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time\nt = time.time() + {seconds}\nwhile time.time() < t: pass",
            *marker,
        ]
    )


def test_perception_load_is_not_counted_as_other_load(ros):
    """A busy 'perception' process shows as cpu_perception, not as other load eating the budget."""
    perception = _busy(30)
    try:
        _, _, diags = _monitor(ros, perception_pid=perception.pid)

        def values():
            return diagnostics_values(diags, f"{MONITOR}: system load")

        # One busy core is 1/cores of the machine; allow for a loaded test host.
        share = 1.0 / (os.cpu_count() or 1)
        assert ros.client.spin_until(
            lambda: values() and float(values()["cpu_perception"]) > 0.5 * share, 20
        ), values()
    finally:
        perception.kill()
        perception.wait()


def test_the_camera_pipeline_is_not_counted_as_other_load(ros):
    """A busy process matching pipeline_process_pattern counts with perception, PID set or not."""
    camera = _busy(30, "dynvit_test_camera_driver")
    try:
        _, _, diags = _monitor(
            ros,
            perception_pid=os.getpid(),
            pipeline_process_pattern="dynvit_test_camera_driver",
        )

        def values():
            return diagnostics_values(diags, f"{MONITOR}: system load")

        share = 1.0 / (os.cpu_count() or 1)
        assert ros.client.spin_until(
            lambda: (
                values()
                and str(camera.pid) in values()["perception_pids"]
                and float(values()["cpu_perception"]) > 0.5 * share
            ),
            20,
        ), values()
    finally:
        camera.kill()
        camera.wait()


def test_a_camera_is_not_budgeted_below_what_it_reports_it_can_meet(ros):
    from dynvit_ros.msg import InferenceStats

    # reserve 0.95: the policy's own budget is the 5 ms minimum on any host.
    proc, budgets, _ = _monitor(ros, perception_pid=os.getpid(), reserve=0.95)
    client = ros.client
    # The first budgets are the largest, until the CPU split has been measured once.
    assert client.spin_until(lambda: budgets and budgets[-1].budget_ms < 10.0, 60), proc.output()
    stats = client.node.create_publisher(InferenceStats, "/segmentation/stats", 10)

    def report():
        stats.publish(InferenceStats(fastest_quantile_ms=40.0))

    # feasibility_margin 1.1 x the reported 40 ms
    assert client.spin_until(
        lambda: isclose(budgets[-1].budget_ms, 44.0, rel=1e-3), 15, every=(0.1, report)
    ), [b.budget_ms for b in budgets[-5:]]
    results = client.set_parameters(MONITOR, {"feasibility_margin": 0.0})
    assert all(r.successful for r in results), [r.reason for r in results]
    assert client.spin_until(lambda: budgets[-1].budget_ms < 10.0, 10)
    (refused,) = client.set_parameters(MONITOR, {"feasibility_margin": 0.5})
    assert not refused.successful and "feasibility_margin" in refused.reason, refused.reason
    assert proc.alive()
