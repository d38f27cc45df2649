# SPDX-License-Identifier: Apache-2.0
"""Run the installed nodes as launch_ros would, and talk to them over DDS with rclpy.

A node is started from the colcon install space as
``install/dynvit_ros/lib/dynvit_ros/<exe> --ros-args --params-file <yaml>``
``-r __node:=<name> -r ...``
in its own process; the test side is an rclpy node in its own context on the
same ROS_DOMAIN_ID.
"""

from __future__ import annotations

import array
import itertools
import math
import os
from pathlib import Path
import time
from typing import Callable

import numpy as np

from dynvit_ros.demo.node_process import NodeProcess

REPO = Path(__file__).resolve().parents[1]


def _exe_dir() -> Path:
    """lib/dynvit_ros of the sourced install (any colcon workspace), else of this checkout's."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        try:
            return Path(get_package_prefix("dynvit_ros")) / "lib" / "dynvit_ros"
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return REPO / "install" / "dynvit_ros" / "lib" / "dynvit_ros"


EXE_DIR = _exe_dir()
EXECUTABLES = ("segformer_node", "load_monitor_node")

_domain_ids = itertools.count()

# The tiny test model (see conftest.tiny_model).
INPUT_HW = (120, 160)
PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]]
H, W = INPUT_HW


def missing_install_reason() -> str | None:
    """Why the ROS tests cannot run here, or None."""
    for exe in EXECUTABLES:
        if not os.access(EXE_DIR / exe, os.X_OK):
            return f"{EXE_DIR / exe} is missing: run `make build` (colcon) first"
    try:
        import rclpy  # noqa: F401

        import dynvit_ros.msg  # noqa: F401
    except ImportError as exc:
        return (
            f"ROS Python packages not importable ({exc}): `source tools/env.sh` after `make build`"
        )
    return None


def next_domain_id() -> int:
    """A ROS_DOMAIN_ID per test, offset by PID so that parallel sessions rarely meet."""
    return 1 + (os.getpid() * 7 + next(_domain_ids)) % 200


def start_node(
    exe: str,
    name: str,
    params: dict,
    domain_id: int,
    workdir: Path,
    remaps: dict[str, str] | None = None,
) -> NodeProcess:
    """An installed node in its own process, exactly as launch_ros starts it."""
    if not os.access(EXE_DIR / exe, os.X_OK):
        raise FileNotFoundError(f"{EXE_DIR / exe} is missing: run `make build` first")
    return NodeProcess(exe, name, params, domain_id, workdir, remaps)


class RosClient:
    """The test's side: an rclpy node in its own context, spun on demand."""

    def __init__(self, domain_id: int):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(f"test_client_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()

    def collect(self, msg_type, topic: str, qos=10) -> list:
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def spin_until(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        every: tuple[float, Callable[[], None]] | None = None,
    ) -> bool:
        """Spin until ``predicate()``; ``every=(period, fn)`` calls fn periodically meanwhile."""
        deadline = time.monotonic() + timeout
        next_call = time.monotonic()
        while time.monotonic() < deadline:
            if every and time.monotonic() >= next_call:
                every[1]()
                next_call = time.monotonic() + every[0]
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return True
        return predicate()

    def _call(self, srv_type, name: str, request, timeout: float = 10.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not self.spin_until(client.service_is_ready, timeout):
                raise TimeoutError(f"service {name} not available")
            future = client.call_async(request)
            if not self.spin_until(future.done, timeout):
                raise TimeoutError(f"no reply from {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node: str, values: dict) -> list:
        """One SetParameters call per value (what `ros2 param set` does); returns the results."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        results = []
        for name, value in values.items():
            request = SetParameters.Request(
                parameters=[Parameter(name, value=value).to_parameter_msg()]
            )
            results.extend(self._call(SetParameters, f"/{node}/set_parameters", request).results)
        return results

    def get_parameters(self, node: str, names: list[str]) -> dict:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        reply = self._call(
            GetParameters, f"/{node}/get_parameters", GetParameters.Request(names=names)
        )
        return {n: parameter_value_to_python(v) for n, v in zip(names, reply.values)}

    def change_state(self, node: str, transition: str) -> bool:
        """Ask a lifecycle node for a transition by label (configure, activate, ...)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {
            "configure": Transition.TRANSITION_CONFIGURE,
            "activate": Transition.TRANSITION_ACTIVATE,
            "deactivate": Transition.TRANSITION_DEACTIVATE,
            "cleanup": Transition.TRANSITION_CLEANUP,
            "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
        }
        request = ChangeState.Request(transition=Transition(id=ids[transition]))
        return self._call(ChangeState, f"/{node}/change_state", request, timeout=60.0).success

    def lifecycle_state(self, node: str) -> str:
        from lifecycle_msgs.srv import GetState

        return self._call(GetState, f"/{node}/get_state", GetState.Request()).current_state.label

    def describe_parameters(self, node: str, names: list[str]) -> dict:
        from rcl_interfaces.srv import DescribeParameters

        reply = self._call(
            DescribeParameters,
            f"/{node}/describe_parameters",
            DescribeParameters.Request(names=names),
        )
        return dict(zip(names, reply.descriptors))


NODE = "seg"


def segformer_params(model: dict, **extra) -> dict:
    params = {
        "model_path": model["model_path"],
        "levels_path": model["levels_path"],
        "num_threads": 1,
        "latency_model": "accelerator",
        "hysteresis_frames": 0,
        "latency_safety": 1.0,
        "diagnostics_period_s": 0.2,
        "qos": "reliable",
    }
    params.update(extra)
    return params


class Rig:
    """One segformer_node and the test's publishers and subscribers."""

    def __init__(self, ros, model: dict, image_type: str = "raw", **params):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        from dynvit_ros.msg import ComputeBudget, InferenceStats

        self.ros, self.client = ros, ros.client
        self.proc = ros.start(
            "segformer_node",
            NODE,
            segformer_params(model, input_type=image_type, **params),
            remaps={"image": "/cam/image"},
        )
        node = self.client.node
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = node.create_publisher(
            CompressedImage if image_type == "compressed" else Image, "/cam/image", qos
        )
        self.budget_pub = node.create_publisher(ComputeBudget, "/compute_budget", qos)
        self.masks = self.client.collect(Image, "/segmentation/mask", qos)
        self.colors = self.client.collect(Image, "/segmentation/color", qos)
        self.overlays = self.client.collect(Image, "/segmentation/overlay", qos)
        self.stats = self.client.collect(InferenceStats, "/segmentation/stats", qos)
        self.diags = self.client.collect(DiagnosticArray, "/diagnostics", qos)
        self.frame_id = 0
        assert self.client.spin_until(lambda: self.image_pub.get_subscription_count() > 0, 60), (
            "segformer_node never subscribed to its image topic (model load failed?)"
        )

    def image_msg(self, rgb=None, encoding="rgb8"):
        from sensor_msgs.msg import Image

        rgb = make_frame(H, W) if rgb is None else rgb
        if encoding == "bgr8":
            rgb = rgb[..., ::-1]
        self.frame_id += 1
        msg = Image(
            height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rgb.shape[1] * 3
        )
        msg.header.frame_id = f"camera_{self.frame_id}"
        msg.header.stamp = stamp(1000 + self.frame_id, 123)
        msg.data = array.array("B", rgb.tobytes())
        return msg

    def send_frame(self) -> None:
        self.image_pub.publish(self.image_msg())

    def send_budget(self, budget_ms: float, pinned: int = -1) -> None:
        from dynvit_ros.msg import ComputeBudget

        self.budget_pub.publish(
            ComputeBudget(
                budget_ms=float(budget_ms), pinned_level=pinned, source="test", valid=True
            )
        )

    def diag(self) -> dict | None:
        return diagnostics_values(self.diags, f"{NODE}: segmentation")

    def counter(self, key: str) -> int:
        values = self.diag()
        return int(values[key]) if values else 0

    def frames_until(self, predicate, timeout=30.0, period=0.1, extra=None) -> bool:
        def tick():
            self.send_frame()
            if extra:
                extra()

        return self.client.spin_until(predicate, timeout, every=(period, tick))


def diagnostics_values(messages: list, status_prefix: str) -> dict | None:
    """Key/values of the newest DiagnosticStatus whose name starts with ``status_prefix``."""
    for diagnostics in reversed(messages):
        for status in diagnostics.status:
            if status.name.startswith(status_prefix):
                return {kv.key: kv.value for kv in status.values}
    return None


def parse_floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def make_frame(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """A reproducible RGB frame with some structure (gradients and a block)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1
    ).astype(np.uint8)
    rgb[height // 4 : height // 2, width // 4 : width // 2] = rng.integers(
        0, 256, 3, dtype=np.uint8
    )
    return rgb


def stamp(sec: int, nanosec: int):
    from builtin_interfaces.msg import Time

    return Time(sec=sec, nanosec=nanosec)


def isclose(a: float, b: float, rel: float = 1e-5) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-6)
