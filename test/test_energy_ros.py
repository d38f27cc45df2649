# SPDX-License-Identifier: Apache-2.0
"""Energy budgets through the nodes over real DDS: an energy budget on compute_budget changes
segformer_node's level; load_monitor_node derives one from sensor_msgs/BatteryState."""

from __future__ import annotations

import math

from ros_harness import Rig, diagnostics_values, isclose, parse_floats
from test_ros_load_monitor import MONITOR, _monitor


def test_an_energy_budget_on_the_topic_changes_the_level(ros, tiny_model):
    from dynvit_ros.msg import ComputeBudget

    rig = Rig(ros, tiny_model)  # the accelerator latency model: magnet_5nm, with energy
    budget = {"mj": 0.0}

    def send():
        rig.budget_pub.publish(
            ComputeBudget(
                budget_ms=1.0e4, energy_budget_mj=budget["mj"], source="test", valid=True
            )
        )

    assert rig.frames_until(
        lambda: rig.stats and rig.stats[-1].budget_source == "topic", extra=send
    )
    assert rig.stats[-1].skip_level == 0 and rig.stats[-1].energy_budget_mj == 0.0
    assert rig.client.spin_until(lambda: rig.diag() and rig.diag()["predicted_mj"] != "", 10)
    energies = parse_floats(rig.diag()["predicted_mj"])
    assert len(energies) == 3 and energies[0] > energies[1] > energies[2] > 0, energies
    assert isclose(rig.stats[-1].predicted_mj, energies[0], rel=1e-4)

    budget["mj"] = (energies[1] + energies[2]) / 2  # only the last level fits

    def settled():
        s = rig.stats[-1] if rig.stats else None
        return s is not None and s.skip_level == 2 and isclose(s.energy_budget_mj, budget["mj"])

    assert rig.frames_until(settled, extra=send), [
        (s.skip_level, s.energy_budget_mj) for s in rig.stats[-3:]
    ]
    assert rig.stats[-1].predicted_mj <= budget["mj"]
    assert rig.client.spin_until(lambda: rig.diag()["energy_source"] == "topic", 5)
    assert "magnet_5nm" in rig.diag()["energy_prediction"]


def test_monitor_caps_energy_from_a_low_battery_and_ignores_bad_states(ros):
    from sensor_msgs.msg import BatteryState

    proc, budgets, diags = _monitor(
        ros,
        battery_capacity_wh=100.0,
        battery_low_fraction=0.2,
        battery_perception_share=0.1,
        battery_horizon_s=3600.0,
    )
    client = ros.client
    pub = client.node.create_publisher(BatteryState, "/battery_state", 10)
    charge = {"value": 0.5}

    def send():
        pub.publish(BatteryState(percentage=charge["value"], power_supply_status=2))

    assert client.spin_until(lambda: len(budgets) >= 2, 60, every=(0.1, send)), proc.output()
    assert budgets[-1].energy_budget_mj == 0.0  # above the threshold: no cap
    charge["value"] = 0.1  # 10 Wh left; a tenth of it over an hour at 10 Hz: 100 mJ per frame
    assert client.spin_until(
        lambda: isclose(budgets[-1].energy_budget_mj, 100.0, rel=1e-4), 10, every=(0.1, send)
    ), [b.energy_budget_mj for b in budgets[-3:]]
    charge["value"] = math.nan

    def values():
        return diagnostics_values(diags, f"{MONITOR}: system load")

    assert client.spin_until(
        lambda: values() and int(values()["battery_messages_ignored"]) >= 3,
        10,
        every=(0.1, send),
    )
    assert "state of charge" in values()["battery_last_refusal"]
    assert isclose(budgets[-1].energy_budget_mj, 100.0, rel=1e-4)  # the last good state holds
    assert "energy capped" in values()["battery_state"] and values()["power_sensors"]
    assert proc.alive()
