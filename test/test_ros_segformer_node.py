# SPDX-License-Identifier: Apache-2.0
"""segformer_node over real DDS: started from the colcon install in its own process."""

from __future__ import annotations

import array
import math

from ros_harness import (
    INPUT_HW,
    NODE,
    PALETTE,
    Rig,
    isclose,
    make_frame,
    parse_floats,
    segformer_params,
)

H, W = INPUT_HW


def test_image_in_mask_colour_and_stats_out(ros, tiny_model):
    rig = Rig(ros, tiny_model, publish_overlay=True, mode="fixed", skip_level=0)
    sent = rig.image_msg(encoding="bgr8")
    got = rig.client.spin_until(
        lambda: rig.stats and rig.masks and rig.colors and rig.overlays,
        30,
        every=(0.5, lambda: rig.image_pub.publish(sent)),
    )
    assert got, "no mask/colour/overlay/stats for a published image"

    mask, colour, stats = rig.masks[0], rig.colors[0], rig.stats[0]
    for out in (mask, colour, rig.overlays[0], stats):
        assert out.header.frame_id == sent.header.frame_id
        assert (out.header.stamp.sec, out.header.stamp.nanosec) == (sent.header.stamp.sec, 123)
    assert (mask.encoding, mask.height, mask.width, mask.step) == ("mono8", H, W, W)
    assert len(mask.data) == H * W
    assert (colour.encoding, colour.height, colour.width, colour.step) == ("rgb8", H, W, 3 * W)
    classes = set(bytes(mask.data))
    assert classes <= set(range(len(PALETTE)))
    # The colour mask is the palette applied to the class ids.
    pixel = bytes(colour.data[:3])
    assert list(pixel) == PALETTE[mask.data[0]]

    assert stats.skip_level == 0 and stats.mode == "fixed" and stats.config_name == "full"
    assert stats.measured_ms > 0 and stats.total_ms >= stats.measured_ms
    assert stats.predicted_ms > 0 and stats.macs > 0
    assert stats.budget_source == "fallback"
    assert rig.client.spin_until(
        lambda: rig.diag() and int(rig.diag()["frames_processed"]) >= 1, 10
    )
    values = rig.diag()
    for key in (
        "input_rate_hz",
        "output_rate_hz",
        "frames_dropped",
        "deadline_misses",
        "rejected_images",
        "rejected_budgets",
        "last_error",
    ):
        assert key in values
    assert rig.proc.alive()


def test_compressed_input(ros, tiny_model):
    from dynvit_ros.ros.image_io import rgb_to_compressed_msg

    rig = Rig(ros, tiny_model, image_type="compressed")
    msg = rgb_to_compressed_msg(make_frame(H, W), fmt="png")
    msg.header.frame_id = "compressed_cam"
    assert rig.client.spin_until(
        lambda: rig.masks, 30, every=(0.5, lambda: rig.image_pub.publish(msg))
    )
    mask = rig.masks[0]
    assert (mask.header.frame_id, mask.encoding, mask.height, mask.width) == (
        "compressed_cam",
        "mono8",
        H,
        W,
    )


def test_budget_moves_level_then_stale_budget_falls_back(ros, tiny_model):
    default = 5000.0
    rig = Rig(ros, tiny_model, budget_timeout_s=1.0, default_budget_ms=default)
    budget = {"ms": 1.0e4}
    send = lambda: rig.send_budget(budget["ms"])  # noqa: E731
    # Budgets first, so that no frame is ever processed without one before the stale phase.
    assert rig.client.spin_until(
        lambda: rig.counter("budgets_received") > 0, 20, every=(0.1, send)
    )

    assert rig.frames_until(
        lambda: rig.stats and rig.stats[-1].budget_source == "topic", extra=send
    )
    assert rig.stats[-1].skip_level == 0
    assert rig.client.spin_until(lambda: rig.diag() and rig.diag()["predicted_ms"] != "", 10)
    predicted = parse_floats(rig.diag()["predicted_ms"])
    assert len(predicted) == 3
    fastest = min(range(3), key=predicted.__getitem__)
    assert fastest != 0, f"the test levels should be faster than the full model: {predicted}"

    def expect(ms: float) -> int:  # most accurate level that fits, else the fastest
        return next((i for i, p in enumerate(predicted) if p <= ms), fastest)

    # Downwards at once; back up (with the selector's 10% margin) to level 0.
    for ms in (sorted(predicted)[1] * 1.001, min(predicted) * 0.5, 1.0e4):
        budget["ms"] = ms
        want = expect(ms)

        def settled():
            s = rig.stats[-1] if rig.stats else None
            return s is not None and isclose(s.budget_ms, ms) and s.skip_level == want

        assert rig.frames_until(settled, extra=send), (
            f"budget {ms:.4f} ms: expected level {want} (predictions {predicted}), "
            f"got {[(s.skip_level, s.budget_ms) for s in rig.stats[-3:]]}"
        )
        last = rig.stats[-1]
        assert last.budget_source == "topic"
        if predicted[want] <= ms:
            assert last.predicted_ms <= ms

    # Budgets stop: after budget_timeout_s the default applies, and it is logged once.
    budget["ms"] = min(predicted) * 0.5
    assert rig.frames_until(lambda: rig.stats[-1].skip_level == fastest, extra=send)
    assert rig.frames_until(lambda: rig.stats[-1].budget_source == "fallback", timeout=10)
    fallback = rig.stats[-1]
    assert isclose(fallback.budget_ms, default)
    assert rig.frames_until(lambda: rig.stats[-1].skip_level == expect(default), timeout=10)
    rig.frames_until(lambda: False, timeout=1.5)  # more stale frames: no more warnings
    assert rig.proc.output().count("using default_budget_ms") == 1, rig.proc.output()
    # A pinned level in the budget message wins over selection.
    assert rig.frames_until(
        lambda: rig.stats[-1].mode == "pinned" and rig.stats[-1].skip_level == 1,
        extra=lambda: rig.send_budget(1.0e4, pinned=1),
    )


def test_parameters_through_services(ros, tiny_model):
    rig = Rig(ros, tiny_model)
    client = rig.client
    described = client.describe_parameters(
        NODE, ["skip_level", "budget_ms", "diagnostics_period_s", "mode"]
    )
    assert all(d.description for d in described.values())
    level_range = described["skip_level"].integer_range[0]
    assert (level_range.from_value, level_range.to_value) == (0, 2)  # the three test levels
    assert described["budget_ms"].floating_point_range[0].from_value == 0.0
    assert described["diagnostics_period_s"].read_only and not described["mode"].read_only
    assert "auto" in described["mode"].additional_constraints

    results = client.set_parameters(NODE, {"mode": "fixed", "skip_level": 2})
    assert all(r.successful for r in results), [r.reason for r in results]
    assert rig.frames_until(
        lambda: rig.stats and rig.stats[-1].skip_level == 2 and rig.stats[-1].mode == "fixed"
    )

    refused = {
        "skip_level": 7,  # only 3 levels
        "mode": "turbo",
        "budget_ms": math.nan,
        "latency_safety": -1.0,
        "model_path": "/elsewhere.safetensors",  # read-only while configured
        "default_budget_ms": 50,  # an integer for a double parameter
        "no_such_parameter": 1.0,
        "deadline_miss_target": 0.6,
    }
    for name, value in refused.items():
        (result,) = client.set_parameters(NODE, {name: value})
        assert not result.successful, f"{name}={value!r} was accepted"
        assert result.reason, f"{name}={value!r} refused without a reason"
    reasons = {n: client.set_parameters(NODE, {n: v})[0].reason for n, v in refused.items()}
    assert "0, 2" in reasons["skip_level"] or "range" in reasons["skip_level"].lower(), reasons
    assert "auto" in reasons["mode"] and "fixed" in reasons["mode"], reasons
    assert "finite" in reasons["budget_ms"] or "range" in reasons["budget_ms"].lower(), reasons
    assert "read-only" in reasons["model_path"].lower(), reasons
    assert "no parameter 'no_such_parameter'" in reasons["no_such_parameter"], reasons
    assert "(0, 0.5]" in reasons["deadline_miss_target"], reasons

    current = client.get_parameters(
        NODE,
        ["mode", "skip_level", "budget_ms", "latency_safety", "model_path", "default_budget_ms"],
    )
    assert (
        current["mode"] == "fixed" and current["skip_level"] == 2 and current["budget_ms"] == 0.0
    )
    assert current["latency_safety"] == 1.0 and current["model_path"] == tiny_model["model_path"]
    rig.stats.clear()
    rig.frames_until(lambda: len(rig.stats) >= 2, timeout=10)
    assert all(s.skip_level == 2 for s in rig.stats)

    # budget_ms overrides the topic; back in auto mode a big budget allows level 0.
    results = client.set_parameters(NODE, {"mode": "auto", "budget_ms": 9000.0})
    assert all(r.successful for r in results), [r.reason for r in results]
    assert rig.frames_until(
        lambda: rig.stats[-1].budget_source == "parameter" and rig.stats[-1].skip_level == 0,
        extra=lambda: rig.send_budget(0.001),
    )
    assert isclose(rig.stats[-1].budget_ms, 9000.0)
    assert rig.proc.alive()


def test_bad_inputs_are_counted_and_the_node_keeps_going(ros, tiny_model):
    from sensor_msgs.msg import Image

    rig = Rig(ros, tiny_model)
    good = rig.image_msg()

    def bad(**fields):
        msg = rig.image_msg()
        for key, value in fields.items():
            setattr(msg, key, value)
        return msg

    cases = [
        (bad(step=W * 3 - 1), "step"),
        (bad(data=array.array("B", bytes(H * W * 3 // 2))), "truncated"),
        (
            bad(encoding="32FC1", step=W * 4, data=array.array("B", bytes(H * W * 4))),
            "unsupported encoding",
        ),
        (Image(height=0, width=0, encoding="rgb8", step=0), "zero-size"),
        (bad(encoding="x" * 65536), "unsupported encoding"),  # quoted, not echoed whole
    ]
    for i, (msg, text) in enumerate(cases, 1):
        assert rig.client.spin_until(
            lambda: rig.counter("rejected_images") >= i,
            15,
            every=(0.5, lambda: rig.image_pub.publish(msg)),
        ), (i, rig.diag())
        assert text in rig.diag()["last_error"], (text, rig.diag()["last_error"])
        assert len(rig.diag()["last_error"]) < 300
    for i, (ms, text) in enumerate(((math.nan, "finite"), (-5.0, "must be in")), 1):
        assert rig.client.spin_until(
            lambda: rig.counter("rejected_budgets") >= i,
            15,
            every=(0.5, lambda: rig.send_budget(ms)),
        ), (ms, rig.diag())
        assert text in rig.diag()["last_error"]

    values = rig.diag()
    assert int(values["rejected_images"]) == 5 and int(values["rejected_budgets"]) == 2
    assert "budget" in values["last_error"]
    assert int(values["frames_processed"]) == 0
    assert rig.proc.alive()
    assert rig.client.spin_until(
        lambda: rig.masks and rig.stats, 15, every=(0.5, lambda: rig.image_pub.publish(good))
    )
    assert rig.masks[-1].header.frame_id == good.header.frame_id
    assert rig.stats[-1].budget_source == "fallback"  # the rejected budgets changed nothing
    # One line per kind of error, the rest rate-limited; no line echoes the 64 KB encoding.
    output = rig.proc.output()
    for text in ("step", "finite"):
        assert text in output, f"{text!r} not logged"
    assert "truncated" not in output
    assert max(len(line) for line in output.splitlines()) < 1000


def test_model_load_failure_is_fatal(ros, tiny_model):
    proc = ros.start(
        "segformer_node",
        "broken",
        segformer_params(tiny_model, model_path="/nonexistent/model.safetensors"),
    )
    rc = proc.wait(60)
    assert rc is not None and rc != 0, f"exit status {rc}"
    out = proc.output()
    assert "cannot start" in out and "/nonexistent/model.safetensors" in out, out
