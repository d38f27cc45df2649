# SPDX-License-Identifier: Apache-2.0
"""What segformer_node does, without the node: parameters, loading, per-frame work, counters.

The node only wires ROS to this: it declares :data:`PARAMETERS`, hands frames
to :class:`FrameSlot` and budgets to :meth:`Segmenter.take_budget`, and
publishes what :meth:`Segmenter.run` and :meth:`Segmenter.diagnostics` return.
No rclpy import, so everything here is unit-tested without a ROS graph.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math
import os
from pathlib import Path
import threading
import time
from typing import Callable

import numpy as np
import yaml

from dynvit_ros.budget.arbiter import MODES, BudgetArbiter
from dynvit_ros.budget.controller import Controller
from dynvit_ros.budget.policy import LevelSelector
from dynvit_ros.budget.streaming import ArrivalPeriod, SceneChange, StreamingChoice
from dynvit_ros.budget.tail import TailEstimator
from dynvit_ros.engine.backends import BACKENDS
from dynvit_ros.engine.levels import LevelTable, generic_ladder
from dynvit_ros.engine.masks import UPSAMPLING, colorize, overlay
from dynvit_ros.engine.runtime import SegmentationRuntime
from dynvit_ros.engine.threads import (
    ThreadChoice,
    ThreadChooser,
    free_cores,
    thread_candidates,
)
from dynvit_ros.host import tune_allocator
from dynvit_ros.latency.base import LatencyContext, load_latency_model
from dynvit_ros.ros.diagnostics import OK, WARN, ErrorLog, quote
from dynvit_ros.ros.input_stream import InputStream
from dynvit_ros.ros.params import Spec
from dynvit_ros.ros.qos import QOS_CHOICES
from dynvit_ros.ros.stamps import to_ns
from dynvit_ros.share import resolve_path

DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096


def _yaml_mapping(text: str) -> str | None:
    try:
        value = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        return f"not valid YAML: {quote(exc)}"
    return (
        None if isinstance(value, dict) else "must be a YAML mapping, e.g. '{cache_dir: /tmp/x}'"
    )


def _miss_target(value) -> str | None:
    if not (isinstance(value, float) and 0.0 < value <= 0.5):
        return f"must be a fraction in (0, 0.5], got {value!r}"
    return None


PARAMETERS = {
    "autostart": Spec(
        True,
        "Configure and activate at start (a plain node). false: wait for lifecycle "
        "transitions (launch files, a lifecycle manager).",
        read_only=True,
    ),
    "model_path": Spec(
        "",
        "Checkpoint to load (.safetensors, .pth or a Hugging Face folder). Relative "
        "paths: working directory, then this package's share directory. Changeable "
        "only while unconfigured.",
    ),
    "levels_path": Spec(
        "",
        "Skip-level table (YAML). Empty: a generic ladder of input scales. Relative "
        "paths are resolved like model_path. Changeable only while unconfigured.",
    ),
    "num_threads": Spec(
        0,
        "Most CPU threads a frame uses; 0 keeps torch's default (one per core).",
        low=0,
        high=256,
    ),
    "adaptive_threads": Spec(
        True,
        "Never more threads than the cores the load monitor's budget says other programs "
        "leave free (at most num_threads): beside a program that holds a core, a thread "
        "that shares its core waits at every operator and takes that program's time. "
        "torch backend only (onnxruntime sessions fix their threads).",
    ),
    "thread_trials": Spec(
        False,
        "With adaptive_threads: also try other thread counts (num_threads, one fewer, half, "
        "one) now and then, and keep one that is faster. Off by default: in the node on a "
        "2-core host the trials never found a faster count and cost accuracy at 30 Hz.",
    ),
    "tune_allocator": Spec(
        True,
        "Raise glibc's mmap/trim thresholds so tensor memory is reused across "
        "frames instead of page-faulted in each time (faster frames, RSS stays at its "
        "peak).",
    ),
    "mask_upsampling": Spec(
        "logits",
        "logits: bilinear upsampling of the logits, then argmax (accurate); "
        "mask: argmax at the model's output resolution, then nearest "
        "upsampling (much cheaper, blockier edges).",
        choices=UPSAMPLING,
    ),
    "input_type": Spec("raw", "Input message type on 'image'.", choices=("raw", "compressed")),
    "qos": Spec("sensor_data", "Input QoS (depth 1).", choices=QOS_CHOICES),
    "max_image_pixels": Spec(
        DEFAULT_MAX_IMAGE_PIXELS,
        "Frames with more pixels are refused before decoding (compressed: from the header).",
        low=1,
        high=2**31 - 1,
    ),
    "latency_model": Spec(
        "profiled",
        "Latency model: a built-in name (profiled, accelerator), an entry "
        "point name, or 'package.module:Class'.",
    ),
    "latency_options": Spec(
        "{}",
        "Options for the latency model as a YAML mapping, e.g. "
        "'{cache_dir: /tmp/dynvit, hardware: magnet_5nm}'.",
        check=_yaml_mapping,
    ),
    "backend": Spec(
        "torch",
        "What runs the network: torch (eager PyTorch, the reference) or onnxruntime (one "
        "ONNX graph per skip level, exported and checked against torch into a cache at "
        "configure). Changeable only while unconfigured.",
        choices=BACKENDS,
    ),
    "diagnostics_period_s": Spec(
        1.0, "Period of /diagnostics messages.", read_only=True, low=0.05, high=60.0
    ),
    "mode": Spec(
        "auto",
        "auto: most accurate level whose predicted latency fits the budget; fixed: skip_level.",
        choices=MODES,
    ),
    "selection": Spec(
        "streaming",
        "How auto mode chooses: streaming = the level whose masks are most accurate when used, "
        "at the camera's measured rate (slower levels may process every other frame, within "
        "the same compute budget; needs a level table with accuracies); deadline = the most "
        "accurate level whose frame time fits the budget on every frame.",
        choices=("deadline", "streaming"),
    ),
    "streaming_spread": Spec(
        True,
        "With selection streaming: judge each level's freshness over how frame times "
        "scatter (recent measured / predicted), not at its median alone: a level whose "
        "median lies just under the camera period publishes many masks a frame late.",
    ),
    "skip_level": Spec(
        0,
        "Skip level used in fixed mode (0 = full model); its range is the loaded table's.",
        low=0,
        high=255,
    ),
    "budget_ms": Spec(
        0.0,
        "Per-frame budget in ms; overrides the compute_budget topic. 0 = use the topic.",
        low=0.0,
        high=6.0e4,
    ),
    "energy_budget_mj": Spec(
        0.0,
        "Per-frame energy budget in mJ; > 0 overrides the compute_budget topic's. 0 = the "
        "topic's (none when it sends 0). Needs a latency model that predicts energy "
        "(accelerator; profiled where a power sensor exists).",
        low=0.0,
        high=1.0e6,
    ),
    "default_budget_ms": Spec(
        100.0,
        "Budget in ms used when no valid budget arrived within budget_timeout_s.",
        low=0.1,
        high=6.0e4,
    ),
    "budget_timeout_s": Spec(
        2.0, "A topic budget older than this is stale.", low=0.01, high=3600.0
    ),
    "hysteresis_frames": Spec(
        3,
        "Frames a more accurate level must keep fitting (with margin) before "
        "the node moves up to it.",
        low=0,
        high=1000,
    ),
    "deadline_miss_target": Spec(
        0.03,
        "Share of frames allowed to miss their budget: the selector compares the "
        "(1 - target) quantile of each level's frame time with the budget.",
        check=_miss_target,
    ),
    "miss_feedback": Spec(
        0.1,
        "Step per frame of the slack that follows the realised misses (0 = off): while "
        "frames miss less often than deadline_miss_target, levels are compared at a "
        "quantile closer to their median (at most halfway), and each miss moves it back.",
        low=0.0,
        high=0.5,
    ),
    "latency_safety": Spec(
        1.0,
        "Extra multiplier on the predicted quantile before comparing with the budget.",
        low=0.1,
        high=10.0,
    ),
    "publish_color": Spec(True, "Publish segmentation/color."),
    "publish_overlay": Spec(
        False, "Publish segmentation/overlay (colour mask blended on the input)."
    ),
    "overlay_alpha": Spec(0.5, "Weight of the colour mask in the overlay.", low=0.0, high=1.0),
}
# What configure reads: changing it needs cleanup and configure again.
UNCONFIGURED_ONLY = frozenset(
    {
        "model_path",
        "levels_path",
        "num_threads",
        "tune_allocator",
        "mask_upsampling",
        "input_type",
        "qos",
        "max_image_pixels",
        "latency_model",
        "latency_options",
        "backend",
    }
)
_ARBITER_KEYS = ("mode", "skip_level", "budget_ms", "default_budget_ms", "energy_budget_mj")


class FrameSlot:
    """A one-frame mailbox and the worker thread that empties it.

    ``put`` (the subscription callback) replaces what is waiting, counting it
    as dropped; the worker calls ``process(msg, dropped_since_last)`` on the
    newest frame whenever it is free. ``hold_until`` is the streaming choice's
    gate: a frame that arrives after the gate opens is taken at once; one that
    arrived before it is skipped (replaced by the next, and counted as dropped),
    and taken only if nothing newer has come ``grace`` seconds after the gate
    opened (a camera that stopped or slowed down). Waiting for the next frame
    rather than taking an older one late is what makes a stride a stride: a
    level that needs less than the camera period would otherwise run on every
    frame, each taken up to half a period late. ``stop`` joins the worker and
    discards a waiting frame, so nothing is processed (or published) after it
    returns.
    """

    def __init__(self, process: Callable[[object, int], None]):
        self._process = process
        self._wake = threading.Condition()
        self._msg = None
        self._arrived = 0.0
        self._dropped_since = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self.received = 0
        self.dropped = 0
        self._not_before = 0.0
        self._stale_after = 0.0

    def hold_until(self, t: float, grace: float = 0.0) -> None:
        """Take no frame that arrived before monotonic time ``t``, unless nothing newer
        has come by ``t + grace``.
        """
        with self._wake:
            self._not_before = float(t)
            self._stale_after = float(t) + max(0.0, float(grace))

    def start(self) -> None:
        with self._wake:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._loop, name="segformer-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._wake:
            self._running = False
            if self._msg is not None:
                self.dropped += 1
            self._msg = None
            self._wake.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def put(self, msg, arrived: float | None = None) -> None:
        """Offer a frame that arrived at monotonic time ``arrived`` (default: now)."""
        with self._wake:
            if not self._running:
                return
            self.received += 1
            if self._msg is not None:
                self.dropped += 1
                self._dropped_since += 1
            self._msg = msg
            self._arrived = time.monotonic() if arrived is None else float(arrived)
            self._wake.notify()

    def counts(self) -> dict[str, int]:
        with self._wake:
            return {"frames_received": self.received, "frames_dropped": self.dropped}

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._running:
                    if self._msg is None:
                        self._wake.wait()
                        continue
                    if self._arrived >= self._not_before:
                        break
                    wait = self._stale_after - time.monotonic()
                    if wait <= 0:
                        break
                    self._wake.wait(wait)
                if not self._running:
                    return
                msg, self._msg = self._msg, None
                dropped, self._dropped_since = self._dropped_since, 0
            self._process(msg, dropped)


@dataclass
class FrameOutput:
    mask: np.ndarray
    colour: np.ndarray | None
    overlay: np.ndarray | None
    stats: dict  # InferenceStats fields
    hold_until: float = 0.0  # frames that arrive before this monotonic time are skipped
    hold_grace: float = 0.0  # ... unless nothing newer comes this many seconds after it


class Segmenter:
    """A loaded model with its budget control, counters and diagnostics."""

    def __init__(
        self, runtime: SegmentationRuntime, latency_model, params: dict, levels_kind: str
    ):
        self.runtime = runtime
        self.configs = runtime.levels.configs
        self.latency_model = latency_model
        self.levels_kind = levels_kind
        self.p = dict(params)
        self.variant = runtime.metadata.variant
        self.palette = runtime.palette
        self.max_image_pixels = int(params["max_image_pixels"])
        self.arbiter = BudgetArbiter(
            len(self.configs),
            params["default_budget_ms"],
            params["budget_timeout_s"],
            params["mode"],
            min(params["skip_level"], len(self.configs) - 1),
            params["budget_ms"],
            params.get("energy_budget_mj", 0.0),
        )
        self.selector = LevelSelector(
            len(self.configs), params["hysteresis_frames"], params["latency_safety"]
        )
        self.tail = TailEstimator(quantile=1.0 - params["deadline_miss_target"])
        self.controller = Controller(
            latency_model, self.configs, runtime.input_hw, self.arbiter, self.selector, self.tail
        )
        accuracy = [lv.accuracy for lv in runtime.levels]
        self._streaming = (
            StreamingChoice(
                [float(a) for a in accuracy], hysteresis_frames=params["hysteresis_frames"]
            )
            if all(a is not None and math.isfinite(float(a)) for a in accuracy)
            else None
        )
        self.scene = SceneChange()
        # The machine's cores, as the load monitor counts them (its shares are of all).
        self.cores = max(1, os.cpu_count() or 1)
        self.threads = self._thread_chooser()
        self._wire_selection()
        self.arrivals = ArrivalPeriod()
        self._arrived_frames = 0
        self._last_arrival = 0.0
        self._published_frame: int | None = None  # arrival count of the newest mask's frame
        self.errors = ErrorLog()
        self.stream = InputStream()
        self._budget_period_ms = 0.0
        self._budget_other_cpu = 0.0
        self._rate_warned = False
        self._lock = threading.Lock()
        self.processed = 0
        self.deadline_misses = 0
        self.invalid_budgets = 0
        self._recent_ms: deque[float] = deque(maxlen=100)
        self._overhead_ms: deque[float] = deque(maxlen=30)
        self._last: dict = {
            "level": 0,
            "mode": params["mode"],
            "budget": (params["default_budget_ms"], "fallback"),
            "predicted": [],
        }
        self._rates = (-math.inf, 0, 0)

    @classmethod
    def load(cls, params: dict, warn: Callable[[str], None]) -> "Segmenter":
        if not params["model_path"]:
            raise ValueError("parameter model_path is empty: set it to a checkpoint")
        if params["tune_allocator"] and not tune_allocator():
            warn("tune_allocator: not a glibc C library, allocator left as it is")
        model_path = resolve_path(params["model_path"])
        if params["levels_path"]:
            levels, kind = LevelTable.load(resolve_path(params["levels_path"])), "table"
        else:
            levels, kind = generic_ladder(), "generic"
            warn(
                "no levels_path: using a generic ladder of input scales "
                f"({', '.join(c.name for c in levels.configs)}). Calibrate levels for this model "
                "with `calibrate --model M --bag B --topic T --levels-out L` and set levels_path."
            )
        runtime = SegmentationRuntime.load(
            model_path,
            levels,
            params["num_threads"] or None,
            params["mask_upsampling"],
            backend=params.get("backend", "torch"),
            warn=warn,
        )
        options = yaml.safe_load(params["latency_options"]) or {}
        options.setdefault("upsample", params["mask_upsampling"])  # time what the runtime runs
        context = latency_context(runtime, model_path, options)
        latency = load_latency_model(params["latency_model"], context)
        seg = cls(runtime, latency, params, kind)
        seg.model_path = model_path
        return seg

    def _thread_chooser(self) -> ThreadChooser | None:
        if not (self.p.get("adaptive_threads") and self.runtime.adjustable_threads):
            return None
        counts = thread_candidates(self.runtime.num_threads)
        trials = bool(self.p.get("thread_trials"))
        return ThreadChooser(counts, trials=trials) if len(counts) > 1 else None

    def _thread_state(self) -> dict:
        if self.threads is not None:
            return {"thread_choice": "adaptive", **self.threads.state()}
        why = "fixed"
        if self.p.get("adaptive_threads") and not self.runtime.adjustable_threads:
            why = f"fixed ({self.runtime.backend.name} sessions fix their threads)"
        return {"thread_choice": why, "threads": self.runtime.num_threads}

    def summary(self) -> str:
        meta, hw = self.runtime.metadata, self.runtime.input_hw
        target = getattr(self.latency_model, "target", "") or "this host"
        return (
            f"configured: SegFormer-{meta.variant.upper()} ({meta.num_classes} classes, input "
            f"{hw[1]}x{hw[0]}) from {self.model_path}, {len(self.configs)} skip levels "
            f"({self.levels_kind}), latency model {self.p['latency_model']} ({target}), "
            f"mode {self.p['mode']}"
        )

    def label_info(self):
        """The class map as a vision_msgs/LabelInfo, or None where vision_msgs is missing."""
        try:
            from vision_msgs.msg import LabelInfo, VisionClass
        except ImportError:
            return None
        meta = self.runtime.metadata
        names = list(meta.class_names) or [f"class_{i}" for i in range(meta.num_classes)]
        return LabelInfo(
            class_map=[VisionClass(class_id=i, class_name=n) for i, n in enumerate(names)],
            threshold=0.0,
        )

    # -- parameters ---------------------------------------------------------------
    def check(self, params) -> tuple[bool, str]:
        """Whether a configured node takes these parameter changes, and why not."""
        for param in params:
            if param.name in UNCONFIGURED_ONLY:
                return False, (
                    f"{param.name} is read-only while the node is configured: "
                    "deactivate and clean up first"
                )
            if param.name == "skip_level":
                try:
                    self.arbiter.check_level(param.value, "skip_level", allow_none=False)
                except ValueError as exc:
                    return False, str(exc)
        return True, ""

    def apply(self, changes: dict) -> None:
        with self._lock:
            self.p.update(changes)
            self.arbiter.update(**{k: v for k, v in changes.items() if k in _ARBITER_KEYS})
            if "budget_timeout_s" in changes:
                self.arbiter.timeout_s = float(changes["budget_timeout_s"])
            self.selector.hysteresis_frames = int(self.p["hysteresis_frames"])
            self.selector.safety = float(self.p["latency_safety"])
            self.tail.set_quantile(1.0 - float(self.p["deadline_miss_target"]))
            if "mode" in changes or "selection" in changes:
                self.selector.reset()
                if self._streaming is not None:
                    self._streaming.reset()
            if self._streaming is not None:
                self._streaming.hysteresis_frames = int(self.p["hysteresis_frames"])
            self._wire_selection()
            if "adaptive_threads" in changes or "thread_trials" in changes:
                self.threads = self._thread_chooser()

    # -- inputs -------------------------------------------------------------------
    def take_budget(self, msg, now: float) -> tuple[str, str] | str | None:
        """Apply a ComputeBudget message; returns a line to log (or None)."""
        if not msg.valid:
            with self._lock:
                self.invalid_budgets += 1
            return None
        try:
            with self._lock:
                notice = self.arbiter.accept(
                    msg.budget_ms,
                    msg.pinned_level,
                    msg.source,
                    to_ns(msg.expires_after) / 1e9,
                    now,
                    getattr(msg, "energy_budget_mj", 0.0),
                )
                period = float(msg.frame_period_ms)
                self._budget_period_ms = period if period > 0 and period < 1e6 else 0.0
                other = float(msg.other_cpu_fraction)
                self._budget_other_cpu = other if 0.0 <= other <= 1.0 else 0.0  # NaN: 0
        except ValueError as exc:
            return self.report(
                "rejected_budgets",
                f"rejected budget from {quote(msg.source or 'unknown', 64)}: {exc}",
                "warning",
            )
        return f"{notice} from {quote(msg.source or '?', 64)}" if notice else None

    def _selection_state(self) -> str:
        if self.p["selection"] != "streaming":
            return "deadline"
        if self._streaming is None:
            return "deadline (streaming needs a level table with accuracies)"
        return "streaming" if self.camera_period_ms() > 0 else "deadline (camera rate unknown)"

    def streaming_on(self) -> bool:
        return self.p["selection"] == "streaming" and self._streaming is not None

    def _wire_selection(self) -> None:
        """Hand the controller the streaming choice (or none) and the selection settings."""
        self.controller.streaming = self._streaming if self.streaming_on() else None
        self.controller.spread = bool(self.p["streaming_spread"])
        self.controller.miss_feedback = float(self.p["miss_feedback"])

    def camera_period_ms(self) -> float:
        """The camera's frame period: from arrival times, else the budgets' (0: unknown)."""
        return self.arrivals.period_ms() or self._budget_period_ms

    def arrived(self, stamp, now: float) -> tuple[str, str] | None:
        """Note a frame's arrival at monotonic time ``now`` (any frame, dropped or not; the
        same instant the frame slot's gate compares); returns a line to log once when the
        camera is clearly faster than the frame period the budgets assume.
        """
        with self._lock:
            self.stream.arrived(to_ns(stamp))
            self._last_arrival = float(now)
            self.arrivals.arrived(self._last_arrival)
            self._arrived_frames += 1
            if self._published_frame is not None and self.streaming_on():
                # What the robot has for the frame before this one: the streaming choice
                # learns from it how far each level's masks fall behind its promise.
                age = self._arrived_frames - 1 - self._published_frame
                self._streaming.realised(age, self.scene.rate)
            if self._rate_warned or not self.stream.faster_than(self._budget_period_ms):
                return None
            self._rate_warned = True
            rate = self.stream.rate_hz()
        return (
            "warning",
            (
                f"the camera delivers {rate:.1f} Hz but budgets assume a "
                f"{self._budget_period_ms:.0f} ms frame period "
                f"({1000.0 / self._budget_period_ms:.1f} Hz): frames the node cannot keep up with "
                "are dropped; set load_monitor_node's target_rate_hz to the camera rate"
            ),
        )

    def report(self, kind: str, text: str, severity: str) -> tuple[str, str] | None:
        """Count an error of ``kind``; return (severity, line) to log, or None (rate-limited)."""
        with self._lock:
            line = self.errors.report(kind, text, time.monotonic())
        return (severity, line) if line else None

    # -- per frame ----------------------------------------------------------------
    def frame_done(self, total_ms: float, infer_ms: float) -> None:
        """The node's whole time for a frame: what it takes beyond the model (decode,
        colourise, publish) adds to each level's cycle in the streaming choice.
        """
        extra = float(total_ms) - float(infer_ms)
        if math.isfinite(extra) and extra >= 0:
            with self._lock:
                self._overhead_ms.append(extra)

    def _frame_overhead_ms(self) -> float:
        """Median of the recent frames' time outside the model (the caller holds the lock)."""
        return float(np.median(self._overhead_ms)) if self._overhead_ms else 0.0

    def run(self, rgb: np.ndarray, now: float) -> FrameOutput:
        with self._lock:
            period_ms = self.camera_period_ms()
            overhead = self._frame_overhead_ms()
            other_cpu = self._budget_other_cpu
            chooser = self.threads
            if chooser is not None:
                monitored = self.arbiter.topic_in_force(now)
                chooser.limit(free_cores(other_cpu if monitored else 0.0, self.cores), now)
            choice = chooser.choose(now) if chooser else ThreadChoice(self.runtime.num_threads)
            # Planned for the count in force: a trial frame measures another, it does not
            # move the choice of level.
            threads = chooser.current if chooser else choice.threads
            plan = self.controller.plan(
                now,
                period_ms,
                self.scene.rate,
                overhead,
                other_cpu,
                min(max(threads, 1), self.cores) / self.cores,
            )
            p = dict(self.p)
            frame_index, arrival = self._arrived_frames, self._last_arrival
        # The streaming gate: skip to the frame min_stride periods after this one.
        hold = arrival + (plan.min_stride - 0.5) * period_ms / 1e3 if plan.min_stride > 1 else 0.0
        grace = period_ms / 1e3
        result = self.runtime.infer(rgb, plan.level, choice.threads)
        with self._lock:
            if choice.probe:  # not a sample of the count the latency model describes
                self.tail.record_miss(result.infer_ms > plan.frame_deadline_ms)
            else:
                self.controller.observe(plan, result.infer_ms)
            if chooser is not None:
                chooser.observe(choice, result.infer_ms, plan.predicted_ms[plan.level], now)
            miss_rate, quantile = self.tail.miss_rate, self.tail.quantile
            if self.streaming_on():
                self.scene.observe(plan.level, frame_index, result.mask)
            self._published_frame = frame_index
        colour = blended = None
        if p["publish_color"] or p["publish_overlay"]:
            colour = colorize(result.mask, self.palette)
            if p["publish_overlay"]:
                blended = overlay(rgb, colour, p["overlay_alpha"])
        decision = plan.decision
        deadline = plan.frame_deadline_ms
        met = result.infer_ms <= deadline
        with self._lock:
            self.processed += 1
            self.deadline_misses += 0 if met else 1
            self._recent_ms.append(result.infer_ms)
            self._last = {
                "level": plan.level,
                "mode": decision.mode,
                "budget": (decision.budget_ms, decision.source),
                "energy": (decision.energy_mj, decision.energy_source),
                "predicted": plan.predicted_ms,
                "predicted_mj": plan.predicted_mj,
                "quantiles": plan.quantile_ms,
                "feasible": plan.feasible,
                "notice": decision.notice,
            }
        predicted_mj = plan.predicted_mj[plan.level] if plan.predicted_mj else math.nan
        stats = dict(
            skip_level=plan.level,
            config_name=result.config.name,
            mode=decision.mode,
            predicted_ms=float(plan.predicted_ms[plan.level]),
            predicted_quantile_ms=float(plan.quantile_ms[plan.level]),
            fastest_quantile_ms=float(plan.fastest_quantile_ms * self.selector.safety),
            quantile=float(quantile),
            miss_rate=float(miss_rate),
            measured_ms=float(result.infer_ms),
            budget_ms=float(decision.budget_ms),
            deadline_ms=float(deadline),
            budget_source=decision.source,
            energy_budget_mj=float(decision.energy_mj),
            predicted_mj=float(predicted_mj),
            deadline_met=met,
            threads=int(choice.threads),
            thread_probe=bool(choice.probe),
            macs=int(result.macs),
        )
        return FrameOutput(
            result.mask, colour if p["publish_color"] else None, blended, stats, hold, grace
        )

    def take_notice(self) -> tuple[str, str] | None:
        """The budget notice of the last frame (the topic went stale), once."""
        with self._lock:
            notice = self._last.pop("notice", None)
        return ("warning", notice) if notice else None

    # -- diagnostics --------------------------------------------------------------
    def diagnostics(self, slot_counts: dict, now: float) -> tuple[int, str, dict]:
        with self._lock:
            last, recent = dict(self._last), list(self._recent_ms)
            overhead = self._frame_overhead_ms()
            processed, misses = self.processed, self.deadline_misses
            errors, last_error = dict(self.errors.counts), self.errors.last_error
            stale = self.arbiter.stale(now) and self.arbiter.budget_ms <= 0
            unenforced = self.controller.energy_unknown_frames
            threads = self._thread_state()
        t0, received0, processed0 = self._rates
        received = slot_counts.get("frames_received", 0)
        dt = now - t0
        self._rates = (now, received, processed)
        in_rate = (received - received0) / dt if math.isfinite(dt) and dt > 0 else 0.0
        out_rate = (processed - processed0) / dt if math.isfinite(dt) and dt > 0 else 0.0
        level, message = OK, "ok"
        if processed and misses / processed > 0.2:
            level, message = WARN, "many missed deadlines"
        if last.get("feasible") is False and last["mode"] == "auto":
            level, message = WARN, "budget infeasible: no level's frame-time quantile fits it"
        if self.stream.faster_than(self._budget_period_ms):
            level, message = WARN, "camera faster than the budgets' frame period: frames dropped"
        energy_budget, energy_source = last.get("energy", (0.0, "none"))
        unknown = any(math.isnan(e) for e in last.get("predicted_mj", []))
        if energy_budget > 0 and unknown and last["mode"] == "auto":
            level, message = WARN, "energy budget not held: the latency model predicts no energy"
        if stale:
            level, message = WARN, "budget topic stale: using default budget"
        budget, source = last["budget"]
        values = {
            "input_rate_hz": in_rate,
            "output_rate_hz": out_rate,
            **slot_counts,
            "frames_processed": processed,
            "deadline_misses": misses,
            "rejected_images": errors.get("rejected_images", 0),
            "rejected_budgets": errors.get("rejected_budgets", 0),
            "invalid_budgets_ignored": self.invalid_budgets,
            "budgets_received": self.arbiter.accepted,
            "processing_errors": errors.get("errors", 0),
            "unusable_predictions": self.controller.unusable_predictions,
            "infeasible_budget_frames": self.controller.infeasible_frames,
            "quantile": self.tail.quantile,
            "quantile_coverage": self.tail.coverage,
            "running_miss_rate": self.tail.miss_rate,
            "miss_slack": self.controller.slack,
            "predicted_quantile_ms": last.get("quantiles", []),
            "log_lines_suppressed": self.errors.suppressed,
            "frames_lost_before_node": self.stream.frames_lost,
            "camera_rate_hz": self.stream.rate_hz(),
            "arrival_period_ms": self.camera_period_ms(),
            "selection": self._selection_state(),
            "scene_change_per_frame": self.scene.rate,
            "streaming_correction": (
                [round(c, 3) for c in self._streaming.correction] if self._streaming else []
            ),
            "frame_overhead_ms": overhead,
            **threads,
            "load_factor": float(getattr(self.latency_model, "load_factor", math.nan)),
            "budget_other_cpu": self._budget_other_cpu,
            "budget_frame_period_ms": self._budget_period_ms,
            "levels": self.levels_kind,
            "skip_level": last["level"],
            "config_name": self.configs[last["level"]].name,
            "level_mode": last["mode"],
            "budget_ms": budget,
            "budget_source": source,
            "mean_infer_ms": sum(recent) / len(recent) if recent else math.nan,
            "predicted_ms": last["predicted"],
            "energy_budget_mj": energy_budget,
            "energy_source": energy_source,
            "predicted_mj": last.get("predicted_mj", []),
            "energy_unknown_frames": unenforced,
            "energy_prediction": getattr(self.latency_model, "energy_source", "none"),
            "latency_model": self.p["latency_model"],
            "last_error": last_error,
        }
        return level, message, values


def latency_context(runtime: SegmentationRuntime, model_path: Path, options: dict):
    """What a latency model is told about ``runtime``: its model, levels and input size, the
    backend it runs on (timings of one do not hold for another) and the checkpoint's
    identity (path and modification time) for cache keys.
    """
    options = dict(options)
    options.setdefault("backend", runtime.backend)
    return LatencyContext(
        runtime.model,
        runtime.levels.configs,
        runtime.input_hw,
        options,
        model_id=f"{Path(model_path).resolve()}:{_mtime(Path(model_path))}",
    )


def _mtime(path: Path) -> int:
    try:
        return int(path.stat().st_mtime)
    except OSError:
        return 0
