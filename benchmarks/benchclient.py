# SPDX-License-Identifier: Apache-2.0
"""What the node benchmarks share: an rclpy client in its own context, CamVid frames as JPEG,
and a competing process pinned to one core."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import threading
import time

REPO = Path(__file__).resolve().parents[1]


def model_parser(description: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser with ``--model`` and ``--levels`` (the shipped pair)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--model", type=Path, default=REPO / "models" / "segformer_b0_camvid.safetensors"
    )
    p.add_argument(
        "--levels", type=Path, default=REPO / "config" / "segformer_b0_camvid.levels.yaml"
    )
    return p


def camera_segformer_node(params: dict, domain: int, logs: Path):
    """The installed segformer_node, its image input on the compressed camera topic."""
    from dynvit_ros.demo.node_process import NodeProcess

    return NodeProcess(
        "segformer_node",
        "segformer_node",
        params,
        domain,
        logs,
        remaps={"image": "/camera/image_raw/compressed"},
    )


class BenchClient:
    """An rclpy node on ``domain`` in a context of its own, spun on demand."""

    def __init__(self, domain: int, name: str):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.005)

    def wait_for_publisher(self, topic: str, procs, timeout: float = 240.0) -> None:
        """Until ``topic`` has a publisher; SystemExit with the logs if a process died."""
        deadline = time.monotonic() + timeout
        while not self.node.get_publishers_info_by_topic(topic):
            if time.monotonic() > deadline or not all(p.alive() for p in procs):
                for p in procs:
                    print(p.output()[-2000:], file=sys.stderr)
                raise SystemExit(f"nothing publishes {topic}: the nodes did not start")
            self.spin(0.2)

    def set_params(self, node: str, values: dict) -> None:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, f"/{node}/set_parameters")
        while not client.service_is_ready():
            self.spin(0.05)
        future = client.call_async(
            SetParameters.Request(
                parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
            )
        )
        while not future.done():
            self.spin(0.02)
        self.node.destroy_client(client)
        for result in future.result().results:
            if not result.successful:
                raise RuntimeError(f"{node} refused {values}: {result.reason}")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def camvid_val_jpegs():
    """CamVid val as (JPEG bytes per frame, labels, frame size): what the camera sends."""
    import cv2

    from dynvit_ros.training import camvid

    val = camvid.load_split(camvid.require_root(), "val")
    frames = [
        cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
        for rgb in val.images
    ]
    return frames, val.labels, val.images[0].shape[:2]


def camera_node_params(model: Path, levels: Path, frame_hw, **extra) -> dict:
    """segformer_node parameters for a compressed camera of ``frame_hw``: the shipped
    defaults, the given model and table, the profiled latency timing that frame size."""
    cache = (Path(__file__).resolve().parents[1] / "outputs" / "cache").resolve()
    params = {
        "model_path": str(Path(model).resolve()),
        "levels_path": str(Path(levels).resolve()),
        "input_type": "compressed",
        "publish_color": False,
        "latency_options": json.dumps({"cache_dir": str(cache), "frame_hw": list(frame_hw)}),
    }
    params.update(extra)
    return params


def pinned_burst(seconds: float) -> subprocess.Popen:
    """One busy process pinned to the first allowed core (a competing program)."""
    core = sorted(os.sched_getaffinity(0))[0]
    code = (
        f"import os, time\nos.sched_setaffinity(0, {{{core}}})\nt = time.time() + {seconds}\n"
        "while time.time() < t:\n    pass\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


class OnOffDisturbance:
    """A competing process pinned to one core that runs for ``period_s``, stops for
    ``period_s``, and so on while the context is open (the disturbance of issue 13)."""

    def __init__(self, period_s: float = 2.0):
        self.period_s = float(period_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            proc = pinned_burst(self.period_s)
            while proc.poll() is None and not self._stop.is_set():
                time.sleep(0.05)
            proc.kill()
            proc.wait()
            self._stop.wait(self.period_s)

    def __enter__(self) -> "OnOffDisturbance":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
