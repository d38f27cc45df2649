# SPDX-License-Identifier: Apache-2.0
"""segformer_node with backend onnxruntime, over real DDS: graphs exported into the cache at
configure, masks and stats published as with torch."""

from __future__ import annotations

from ros_harness import Rig


def test_node_runs_the_onnxruntime_backend(ros, tiny_model, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))  # the node process inherits it
    rig = Rig(ros, tiny_model, backend="onnxruntime", mode="fixed", skip_level=1)
    # Configured (it subscribed): the graphs are already there, before any frame.
    graphs = sorted((cache / "dynvit_ros" / "onnx").glob("*/level*.onnx"))
    assert [g.name for g in graphs] == ["level0.onnx", "level1.onnx", "level2.onnx"]
    assert rig.client.spin_until(
        lambda: rig.stats and rig.masks, 30, every=(0.5, rig.send_frame)
    ), "no mask/stats from the onnxruntime backend"
    stats = rig.stats[0]
    assert stats.skip_level == 1 and stats.config_name == "attn-last" and stats.measured_ms > 0
    assert rig.proc.alive()
