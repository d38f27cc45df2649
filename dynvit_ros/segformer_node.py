"""segformer_node: semantic segmentation whose skip level follows a compute budget.

Subscribes:  image (sensor_msgs/Image, or CompressedImage with input_type=compressed)
             compute_budget (dynvit_ros/ComputeBudget)
Publishes:   segmentation/mask (mono8 class ids), segmentation/color (rgb8),
             segmentation/overlay (rgb8, optional), segmentation/stats
             (dynvit_ros/InferenceStats), /diagnostics

Only the newest frame is ever processed: the subscription keeps one message,
its callback only parks the message in a one-slot mailbox, and a worker
thread takes whatever is there when it is free. A frame replaced in the slot
before the worker got to it is counted as dropped. The model (and the latency
model) load before the subscription exists, so a node that takes images is
ready; a load failure ends the process with a non-zero status.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from pathlib import Path

import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from dynvit_ros.budget_policy import LevelSelector, validate_budget
from dynvit_ros.image_io import ImageFormatError, to_image_msg, to_rgb
from dynvit_ros.latency.base import LatencyContext, load_latency_model
from dynvit_ros.msg import ComputeBudget, InferenceStats
from dynvit_ros.ros_params import QOS_CHOICES, Spec, check_changes, declare_all, input_qos, spin_node, status
from dynvit_ros.model import UPSAMPLING
from dynvit_ros.runtime import SegmentationRuntime, colorize, overlay, tune_allocator
from dynvit_ros.share import resolve_path


def _yaml_mapping(text: str) -> str | None:
    try:
        value = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        return f"not valid YAML: {exc}"
    return None if isinstance(value, dict) else "must be a YAML mapping, e.g. '{cache_dir: /tmp/x}'"


# Parameters known before the model is loaded. skip_level is declared after
# loading, when the number of levels (its range) is known.
STATIC = {
    "model_path": Spec("", "Checkpoint to load (.safetensors, .pth or a Hugging Face folder). "
                           "Relative paths are looked up in the working directory, then in this "
                           "package's share directory.", read_only=True),
    "levels_path": Spec("", "Skip-level table (YAML). Empty: only the full model (level 0). Relative "
                            "paths are resolved like model_path.", read_only=True),
    "num_threads": Spec(0, "Torch CPU threads; 0 keeps torch's default.", read_only=True, low=0, high=256),
    "tune_allocator": Spec(True, "Raise glibc's mmap/trim thresholds so tensor memory is reused across "
                           "frames instead of page-faulted in each time (faster frames, RSS stays at its peak).",
                           read_only=True),
    "mask_upsampling": Spec("logits", "logits: bilinear upsampling of the logits, then argmax (accurate); "
                                      "mask: argmax at the model's output resolution, then nearest "
                                      "upsampling (much cheaper, blockier edges).", read_only=True,
                            choices=UPSAMPLING),
    "input_type": Spec("raw", "Input message type on 'image'.", read_only=True, choices=("raw", "compressed")),
    "qos": Spec("sensor_data", "Input QoS (always depth 1).", read_only=True, choices=QOS_CHOICES),
    "latency_model": Spec("profiled", "Latency model: a built-in name (profiled, accelerator), an entry "
                                      "point name, or 'package.module:Class'.", read_only=True),
    "latency_options": Spec("{}", "Options for the latency model as a YAML mapping, e.g. "
                                  "'{cache_dir: /tmp/dynvit, hardware: magnet_5nm}'.", read_only=True,
                            check=_yaml_mapping),
    "diagnostics_period_s": Spec(1.0, "Period of /diagnostics messages.", read_only=True, low=0.05, high=60.0),
    "mode": Spec("auto", "auto: most accurate level whose predicted latency fits the budget; fixed: "
                         "skip_level.", choices=("auto", "fixed")),
    "budget_ms": Spec(0.0, "Per-frame budget in ms; overrides the compute_budget topic. 0 = use the "
                           "topic.", low=0.0, high=1.0e5),
    "default_budget_ms": Spec(100.0, "Budget in ms used when no valid budget arrived within "
                                     "budget_timeout_s.", low=0.01, high=1.0e5),
    "budget_timeout_s": Spec(2.0, "A topic budget older than this is stale.", low=0.01, high=3600.0),
    "hysteresis_frames": Spec(3, "Frames a more accurate level must keep fitting (with margin) before "
                                 "the node moves up to it.", low=0, high=1000),
    "latency_safety": Spec(1.1, "Predictions are multiplied by this before comparing with the budget.",
                           low=0.1, high=10.0),
    "publish_color": Spec(True, "Publish segmentation/color."),
    "publish_overlay": Spec(False, "Publish segmentation/overlay (colour mask blended on the input)."),
    "overlay_alpha": Spec(0.5, "Weight of the colour mask in the overlay.", low=0.0, high=1.0),
}


class _Budget:
    """The latest valid ComputeBudget and when it arrived (monotonic seconds)."""

    def __init__(self):
        self.ms: float | None = None
        self.pinned = -1
        self.source = ""
        self.received = -math.inf
        self.expires = math.inf


class SegformerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("segformer_node", **kwargs)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._worker = None
        self._specs = dict(STATIC)
        p = declare_all(self, self._specs)
        if not p["model_path"]:
            raise ValueError("parameter model_path is empty: set it to a checkpoint")

        started = time.perf_counter()
        if p["tune_allocator"] and not tune_allocator():
            self.get_logger().warning("tune_allocator: not a glibc C library, allocator left as it is")
        model_path = resolve_path(p["model_path"])
        levels_path = resolve_path(p["levels_path"]) if p["levels_path"] else None
        self.runtime = SegmentationRuntime.load(model_path, levels_path, p["num_threads"] or None,
                                                p["mask_upsampling"])
        self.configs = self.runtime.levels.configs
        options = yaml.safe_load(p["latency_options"]) or {}
        options.setdefault("upsample", p["mask_upsampling"])  # time what the runtime runs
        context = LatencyContext(self.runtime.model, self.configs, self.runtime.input_hw, options,
                                 model_id=f"{model_path.resolve()}:{_mtime(model_path)}")
        self.latency = load_latency_model(p["latency_model"], context)
        self.palette = self.runtime.palette

        levels = len(self.configs)
        self._specs["skip_level"] = Spec(0, f"Skip level used in fixed mode (0 = full model, "
                                            f"{levels - 1} = fastest).", low=0, high=levels - 1)
        p.update(declare_all(self, {"skip_level": self._specs["skip_level"]}))
        self._p = p
        self.selector = LevelSelector(levels, hysteresis_frames=p["hysteresis_frames"],
                                      safety=p["latency_safety"])
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._slot = None                  # newest unprocessed frame
        self._dropped_since_stats = 0
        self._budget = _Budget()
        self._stale_logged = False
        self._c = dict(received=0, processed=0, dropped=0, deadline_misses=0, rejected_images=0,
                       rejected_budgets=0, budgets_received=0, errors=0)
        self._last_error = ""
        self._logged = ("", -math.inf)    # last error logged and when
        self._recent_ms = deque(maxlen=100)
        self._level = 0
        self._level_mode = p["mode"]
        self._budget_now = (p["default_budget_ms"], "fallback")
        self._diag_prev = (time.monotonic(), 0, 0)
        self._predicted: list[float] = []

        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_mask = self.create_publisher(Image, "segmentation/mask", reliable)
        self.pub_color = self.create_publisher(Image, "segmentation/color", reliable)
        self.pub_overlay = self.create_publisher(Image, "segmentation/overlay", reliable)
        self.pub_stats = self.create_publisher(InferenceStats, "segmentation/stats", 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Best effort is compatible with every publisher's reliability.
        self.create_subscription(ComputeBudget, "compute_budget", self._on_budget,
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)

        self._worker = threading.Thread(target=self._run, name="segformer-worker", daemon=True)
        self._worker.start()
        kind = CompressedImage if p["input_type"] == "compressed" else Image
        self.create_subscription(kind, "image", self._on_image, input_qos(p["qos"]))
        meta = self.runtime.metadata
        self.get_logger().info(
            f"ready in {time.perf_counter() - started:.1f} s: SegFormer-{meta.variant.upper()} "
            f"({meta.num_classes} classes, input {self.runtime.input_hw[1]}x{self.runtime.input_hw[0]}) "
            f"from {model_path}, {levels} skip levels, latency model {p['latency_model']} "
            f"({getattr(self.latency, 'target', '') or 'this host'}), mode {p['mode']}")

    # -- parameters ---------------------------------------------------------------
    def _check_parameters(self, params):
        return check_changes(self._specs, params)

    def _apply_parameters(self, params):
        with self._lock:
            for param in params:
                self._p[param.name] = param.value
            self.selector.hysteresis_frames = int(self._p["hysteresis_frames"])
            self.selector.safety = float(self._p["latency_safety"])
            if any(param.name == "mode" for param in params):
                self.selector.reset()

    # -- inputs -------------------------------------------------------------------
    def _on_image(self, msg) -> None:
        with self._lock:
            self._c["received"] += 1
            if self._slot is not None:
                self._c["dropped"] += 1
                self._dropped_since_stats += 1
            self._slot = msg
            self._wake.notify()

    def _on_budget(self, msg: ComputeBudget) -> None:
        if not msg.valid:
            return
        try:
            budget = validate_budget(msg.budget_ms)
            if msg.pinned_level >= len(self.configs):
                raise ValueError(f"pinned_level {msg.pinned_level} is not a skip level "
                                 f"(0..{len(self.configs) - 1})")
        except ValueError as exc:
            self._count_error("rejected_budgets", f"rejected budget from {msg.source or 'unknown'}: {exc}",
                              warn=True)
            return
        now = time.monotonic()
        expiry = msg.expires_after.sec + msg.expires_after.nanosec * 1e-9
        with self._lock:
            b = self._budget
            b.ms, b.pinned, b.source, b.received = budget, int(msg.pinned_level), msg.source, now
            b.expires = now + expiry if expiry > 0 else math.inf
            self._c["budgets_received"] += 1
            if self._stale_logged:
                self._stale_logged = False
                self.get_logger().info(f"budget topic is back ({budget:.1f} ms from {msg.source or '?'})")

    # -- per frame ----------------------------------------------------------------
    def _current_budget(self, now: float) -> tuple[float, str, int]:
        """(budget ms, where it came from, pinned level or -1); called with the lock held."""
        p, b = self._p, self._budget
        if p["budget_ms"] > 0:
            return p["budget_ms"], "parameter", -1
        if b.ms is not None and now - b.received <= p["budget_timeout_s"] and now <= b.expires:
            return b.ms, "topic", b.pinned
        if not self._stale_logged:
            self._stale_logged = True
            why = "no budget received yet" if b.ms is None else (
                f"last budget is {now - b.received:.1f} s old" if now <= b.expires else "last budget expired")
            self.get_logger().warning(f"{why} (timeout {p['budget_timeout_s']} s): using default_budget_ms "
                                      f"= {p['default_budget_ms']} ms")
        return p["default_budget_ms"], "fallback", -1

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._slot is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                msg, self._slot = self._slot, None
                dropped, self._dropped_since_stats = self._dropped_since_stats, 0
            try:
                self._process(msg, dropped)
            except ImageFormatError as exc:
                self._count_error("rejected_images", f"rejected image: {exc}")
            except Exception as exc:  # keep serving frames; the error is reported in diagnostics
                self._count_error("errors", f"{type(exc).__name__}: {exc}")

    def _count_error(self, counter: str, text: str, warn: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self._c[counter] += 1
            self._last_error = text
            # A new kind of error is always logged; a repeated one at most every 5 s.
            if text == self._logged[0] and now - self._logged[1] < 5.0:
                return
            self._logged = (text, now)
        # Separate calls: rclpy ties one severity to each logging call site.
        if warn:
            self.get_logger().warning(text)
        else:
            self.get_logger().error(text)

    def _process(self, msg, dropped: int) -> None:
        start = time.perf_counter()
        rgb = to_rgb(msg)
        predicted = self.latency.predict_all(self.configs, self.runtime.input_hw)
        with self._lock:
            p = dict(self._p)
            budget, source, pinned = self._current_budget(time.monotonic())
            if p["mode"] == "fixed":
                level, mode = p["skip_level"], "fixed"
            elif pinned >= 0:
                level, mode = pinned, "pinned"
            else:
                level, mode = self.selector.select(predicted, budget), "auto"
        result = self.runtime.infer(rgb, level)
        self.latency.observe(result.config, self.runtime.input_hw, result.infer_ms)

        self.pub_mask.publish(to_image_msg(result.mask, "mono8", msg.header))
        if p["publish_color"] or p["publish_overlay"]:
            colour = colorize(result.mask, self.palette)
            if p["publish_color"]:
                self.pub_color.publish(to_image_msg(colour, "rgb8", msg.header))
            if p["publish_overlay"]:
                blended = overlay(rgb, colour, p["overlay_alpha"])
                self.pub_overlay.publish(to_image_msg(blended, "rgb8", msg.header))

        met = result.infer_ms <= budget
        stats = InferenceStats(header=msg.header, skip_level=level, config_name=result.config.name,
                               mode=mode, predicted_ms=float(predicted[level]),
                               measured_ms=float(result.infer_ms), budget_ms=float(budget),
                               budget_source=source, deadline_met=met, frames_dropped=dropped,
                               macs=int(result.macs))
        stats.total_ms = float((time.perf_counter() - start) * 1e3)
        stamp = msg.header.stamp
        if stamp.sec or stamp.nanosec:
            age = self.get_clock().now().nanoseconds - (stamp.sec * 10**9 + stamp.nanosec)
            stats.latency_ms = float(age / 1e6)
        else:
            stats.latency_ms = math.nan
        self.pub_stats.publish(stats)
        with self._lock:
            self._c["processed"] += 1
            self._c["deadline_misses"] += 0 if met else 1
            self._recent_ms.append(result.infer_ms)
            self._level, self._level_mode, self._budget_now = level, mode, (budget, source)
            self._predicted = predicted

    # -- diagnostics --------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._lock:
            c = dict(self._c)
            last_error, level, mode = self._last_error, self._level, self._level_mode
            budget, source = self._budget_now
            recent = list(self._recent_ms)
            predicted = list(self._predicted)
            stale = self._stale_logged and self._p["budget_ms"] <= 0
        t0, received0, processed0 = self._diag_prev
        dt = max(now - t0, 1e-6)
        self._diag_prev = (now, c["received"], c["processed"])
        in_rate, out_rate = (c["received"] - received0) / dt, (c["processed"] - processed0) / dt
        level_ok = DiagnosticStatus.OK
        message = "ok"
        if c["processed"] and c["deadline_misses"] / c["processed"] > 0.2:
            level_ok, message = DiagnosticStatus.WARN, "many missed deadlines"
        if stale:
            level_ok, message = DiagnosticStatus.WARN, "budget topic stale: using default budget"
        values = {
            "input_rate_hz": in_rate, "output_rate_hz": out_rate,
            "frames_received": c["received"], "frames_processed": c["processed"],
            "frames_dropped": c["dropped"], "deadline_misses": c["deadline_misses"],
            "rejected_images": c["rejected_images"], "rejected_budgets": c["rejected_budgets"],
            "budgets_received": c["budgets_received"], "processing_errors": c["errors"],
            "skip_level": level, "config_name": self.configs[level].name, "level_mode": mode,
            "budget_ms": budget, "budget_source": source,
            "mean_infer_ms": sum(recent) / len(recent) if recent else math.nan,
            "predicted_ms": predicted, "latency_model": self._p["latency_model"],
            "last_error": last_error,
        }
        name = f"{self.get_name()}: segmentation"
        diag = DiagnosticArray(status=[status(name, level_ok, message,
                                              f"segformer-{self.runtime.metadata.variant}", values)])
        diag.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(diag)

    def destroy_node(self):
        with self._wake:
            self._stop = True
            self._wake.notify()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        return super().destroy_node()


def _mtime(path: Path) -> int:
    try:
        return int(path.stat().st_mtime)
    except OSError:
        return 0


def main(args=None):
    return spin_node(SegformerNode, "segformer_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
