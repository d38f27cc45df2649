# SPDX-License-Identifier: Apache-2.0
"""segformer_node as a managed node over real DDS: transitions, refusals, retry, clean exit."""

from ros_harness import NODE, make_frame, segformer_params


def test_lifecycle_transitions_and_retry_after_a_failed_configure(ros, tiny_model):
    import array

    from sensor_msgs.msg import Image

    from dynvit_ros.msg import InferenceStats

    params = segformer_params(
        tiny_model, autostart=False, model_path="/nonexistent/model.safetensors"
    )
    proc = ros.start("segformer_node", NODE, params, remaps={"image": "/cam/image"})
    client = ros.client
    stats = client.collect(InferenceStats, "/segmentation/stats")
    pub = client.node.create_publisher(Image, "/cam/image", 5)
    rgb = make_frame()
    frame = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3)
    frame.data = array.array("B", rgb.tobytes())

    assert client.lifecycle_state(NODE) == "unconfigured"
    # A transition asked in the wrong state is refused, never an exception in the node.
    assert not client.change_state(NODE, "activate")
    # A missing model fails configure cleanly; fix the parameter and configure again.
    assert not client.change_state(NODE, "configure")
    assert client.lifecycle_state(NODE) == "unconfigured"
    assert (
        "configure failed" in proc.output() and "/nonexistent/model.safetensors" in proc.output()
    )
    (ok,) = client.set_parameters(NODE, {"model_path": tiny_model["model_path"]})
    assert ok.successful, ok.reason
    assert client.change_state(NODE, "configure")
    assert client.lifecycle_state(NODE) == "inactive"
    (refused,) = client.set_parameters(NODE, {"model_path": "/elsewhere.safetensors"})
    assert not refused.successful and "read-only" in refused.reason

    # Inactive: no image subscription, nothing processed.
    client.spin_for(1.0)
    assert pub.get_subscription_count() == 0 and not stats

    assert client.change_state(NODE, "activate")
    assert client.spin_until(lambda: stats, 30, every=(0.2, lambda: pub.publish(frame)))

    assert client.change_state(NODE, "deactivate")
    client.spin_for(0.5)
    stats.clear()
    client.spin_until(lambda: False, 1.5, every=(0.1, lambda: pub.publish(frame)))
    assert not stats, "frames were processed while inactive"

    assert client.change_state(NODE, "cleanup")
    assert client.lifecycle_state(NODE) == "unconfigured"
    assert client.change_state(NODE, "configure") and client.change_state(NODE, "activate")
    assert client.spin_until(lambda: stats, 30, every=(0.2, lambda: pub.publish(frame)))
    assert client.change_state(NODE, "deactivate") and client.change_state(NODE, "cleanup")
    assert client.change_state(NODE, "shutdown")
    assert client.lifecycle_state(NODE) == "finalized"
    assert proc.alive()


def test_sigterm_and_sigint_stop_cleanly_mid_stream(ros, tiny_model):
    import signal

    from ros_harness import Rig

    for sig in (signal.SIGTERM, signal.SIGINT):
        rig = Rig(ros, tiny_model)
        assert rig.frames_until(lambda: len(rig.stats) >= 2, period=0.05)
        for _ in range(5):
            rig.send_frame()
        rig.proc.proc.send_signal(sig)
        rc = rig.proc.wait(30)
        out = rig.proc.output()
        assert rc == 0, f"{sig!r}: exit {rc}\n{out[-3000:]}"
        assert "context is invalid" not in out and "[ERROR]" not in out, out[-3000:]
        ros.processes.remove(rig.proc)
        rig.client.node.destroy_publisher(rig.image_pub)
