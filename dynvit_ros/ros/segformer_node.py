# SPDX-License-Identifier: Apache-2.0
"""segformer_node: semantic segmentation whose skip level follows a compute budget.

A managed (lifecycle) node:
- configure: load the model, its level table and the latency model; create
  publishers and the budget subscription. A failure logs the reason and
  returns to unconfigured, so a corrected model_path can be tried again.
- activate: subscribe to images and start the worker; deactivate: unsubscribe
  and stop (frames are not queued), keeping the model; cleanup: free it.
With ``autostart`` (default) the node configures and activates itself, so
``ros2 run`` behaves like a plain node; launch files drive it through lifecycle
events instead.

Subscribes:  image (sensor_msgs/Image, or CompressedImage with input_type=compressed)
             compute_budget (dynvit_ros/ComputeBudget)
Publishes:   segmentation/mask (mono8 class ids), segmentation/color (rgb8),
             segmentation/overlay (rgb8, optional), segmentation/stats
             (dynvit_ros/InferenceStats), /diagnostics

Only the newest frame is processed: the image callback parks the message in
a one-slot mailbox (:class:`FrameSlot`) and the worker takes what is there
when it is free; a replaced frame is counted as dropped.
"""

from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from dynvit_ros.msg import ComputeBudget, InferenceStats
from dynvit_ros.ros import diagnostics as diag
from dynvit_ros.ros.entry import run_node
from dynvit_ros.ros.image_io import ImageFormatError, to_image_msg, to_rgb
from dynvit_ros.ros.params import NamedParameterErrors, check_changes, declare_all
from dynvit_ros.ros.qos import latched, qos_profile
from dynvit_ros.ros.segmenter import PARAMETERS, FrameSlot, Segmenter
from dynvit_ros.ros.stamps import to_ns


class SegformerNode(NamedParameterErrors, LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("segformer_node", **kwargs)
        self._p = declare_all(self, PARAMETERS)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.seg: Segmenter | None = None
        self.slot = FrameSlot(self._process)
        self._image_sub = None
        self._budget_sub = self._label_pub = None
        self.pub_mask = self.pub_color = self.pub_overlay = self.pub_stats = None
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self._p["diagnostics_period_s"], self._publish_diagnostics)

    @property
    def autostart(self) -> bool:
        return bool(self._p["autostart"])

    # -- lifecycle ----------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.seg = Segmenter.load(self._p, self.get_logger().warning)
        except Exception as exc:  # a missing/corrupt model or table, a bad plugin: fix, retry
            self.get_logger().error(
                f"configure failed: {type(exc).__name__}: {diag.quote(exc, 1000)}"
            )
            return TransitionCallbackReturn.FAILURE
        self._redeclare_skip_level(len(self.seg.configs))
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_mask = self.create_lifecycle_publisher(Image, "segmentation/mask", reliable)
        self.pub_color = self.create_lifecycle_publisher(Image, "segmentation/color", reliable)
        self.pub_overlay = self.create_lifecycle_publisher(Image, "segmentation/overlay", reliable)
        self.pub_stats = self.create_lifecycle_publisher(InferenceStats, "segmentation/stats", 10)
        # Best effort is compatible with every publisher's reliability.
        best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._budget_sub = self.create_subscription(
            ComputeBudget, "compute_budget", self._on_budget, best_effort
        )
        self._label_pub = self._publish_label_info()
        self.get_logger().info(self.seg.summary())
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        kind = CompressedImage if self._p["input_type"] == "compressed" else Image
        self.slot.start()
        self._image_sub = self.create_subscription(
            kind, "image", self._on_image, qos_profile(self._p["qos"])
        )
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_processing()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self.get_logger().error("lifecycle error: releasing the model; the node is unconfigured")
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _publish_label_info(self):
        """The class map as vision_msgs/LabelInfo, latched, where vision_msgs is installed."""
        msg = self.seg.label_info()
        if msg is None:
            self.get_logger().info("vision_msgs not installed: no segmentation/label_info")
            return None
        msg.header.stamp = self.get_clock().now().to_msg()
        pub = self.create_publisher(type(msg), "segmentation/label_info", latched())
        pub.publish(msg)
        return pub

    def _stop_processing(self) -> None:
        if self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
        self.slot.stop()

    def _release(self) -> None:
        self._stop_processing()
        for pub in (self.pub_mask, self.pub_color, self.pub_overlay, self.pub_stats):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        if self._budget_sub is not None:
            self.destroy_subscription(self._budget_sub)
        if self._label_pub is not None:
            self.destroy_publisher(self._label_pub)
        self.pub_mask = self.pub_color = self.pub_overlay = self.pub_stats = None
        self._budget_sub = self._label_pub = self.seg = None

    def _redeclare_skip_level(self, levels: int) -> None:
        """skip_level's range is the loaded table's: declare it again with that range."""
        spec = PARAMETERS["skip_level"].with_range(0, levels - 1)
        value = min(int(self._p["skip_level"]), levels - 1)
        if self.has_parameter("skip_level"):
            self.undeclare_parameter("skip_level")
        self._p["skip_level"] = self.declare_parameter(
            "skip_level", value, spec.descriptor("skip_level")
        ).value
        self.seg.arbiter.update(skip_level=self._p["skip_level"])

    # -- parameters ---------------------------------------------------------------
    def _check_parameters(self, params):
        result = check_changes(PARAMETERS, params)
        if result.successful and self.seg is not None:
            result.successful, result.reason = self.seg.check(params)
        return result

    def _apply_parameters(self, params):
        self._p.update({p.name: p.value for p in params})
        if self.seg is not None:
            self.seg.apply({p.name: p.value for p in params})

    # -- inputs -------------------------------------------------------------------
    def _on_image(self, msg) -> None:
        now = time.monotonic()  # one arrival instant for the gate and the camera period
        seg = self.seg
        if seg is not None:
            self._log(seg.arrived(msg.header.stamp, now))
        self.slot.put(msg, now)

    def _on_budget(self, msg: ComputeBudget) -> None:
        seg = self.seg
        if seg is None:
            return
        notice = seg.take_budget(msg, time.monotonic())
        if notice:
            self._log(notice)

    def _log(self, line: tuple[str, str] | str | None) -> None:
        diag.log_line(self.get_logger(), line)

    # -- per frame (worker thread) -------------------------------------------------
    def _process(self, msg, dropped: int) -> None:
        seg = self.seg
        if seg is None:
            return
        start = time.perf_counter()
        try:
            rgb = to_rgb(msg, seg.max_image_pixels)
            out = seg.run(rgb, time.monotonic())
        except ImageFormatError as exc:
            self._log(seg.report("rejected_images", f"rejected image: {exc}", "error"))
            return
        except Exception as exc:  # keep serving frames; the error is reported in diagnostics
            self._log(seg.report("errors", f"{type(exc).__name__}: {exc}", "error"))
            return
        header = msg.header
        self.pub_mask.publish(to_image_msg(out.mask, "mono8", header))
        if out.colour is not None:
            self.pub_color.publish(to_image_msg(out.colour, "rgb8", header))
        if out.overlay is not None:
            self.pub_overlay.publish(to_image_msg(out.overlay, "rgb8", header))
        stats = InferenceStats(header=header, frames_dropped=dropped, **out.stats)
        stats.total_ms = float((time.perf_counter() - start) * 1e3)
        stamp = to_ns(header.stamp)
        stats.latency_ms = (
            (self.get_clock().now().nanoseconds - stamp) / 1e6 if stamp else float("nan")
        )
        self.pub_stats.publish(stats)
        seg.frame_done(stats.total_ms, stats.measured_ms)
        self.slot.hold_until(out.hold_until, out.hold_grace)
        self._log(seg.take_notice())

    # -- diagnostics --------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        state = self._state_machine.current_state[1]
        counts = self.slot.counts()
        if self.seg is None:
            level, message, values = (
                diag.OK,
                f"{state}: no model loaded",
                {"lifecycle_state": state, **counts},
            )
        else:
            level, message, values = self.seg.diagnostics(counts, time.monotonic())
            values = {"lifecycle_state": state, **values}
            if state != "active":
                message = f"{state}: {message}"
        hardware = f"segformer-{self.seg.variant}" if self.seg else "segformer"
        self.pub_diag.publish(
            diag.diagnostic_array(
                self.get_clock().now().to_msg(),
                f"{self.get_name()}: segmentation",
                level,
                message,
                hardware,
                values,
            )
        )

    def destroy_node(self):
        self.slot.stop()
        return super().destroy_node()


def main(args=None):
    return run_node(SegformerNode, "segformer_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
