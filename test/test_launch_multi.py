# SPDX-License-Identifier: Apache-2.0
"""launch_testing test of launch/dynvit_multi.launch.py: two cameras, one load monitor.

launch, launch_ros and launch_testing are not on PyPI, so this runs only in a
ROS 2 install (`colcon test`, or `launch_test test/test_launch.py` /
`pytest test/test_launch.py` with the install sourced). Elsewhere it is
skipped; test_ros_*.py start the same executables the way launch_ros does.
"""

from __future__ import annotations

import array
from pathlib import Path
import tempfile
import time
import unittest

import pytest

try:
    import launch
    import launch_ros  # noqa: F401
    import launch_testing
    import launch_testing.actions
    import launch_testing.asserts
except ImportError as exc:
    launch_testing = None
    _MISSING = str(exc)

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "dynvit_multi.launch.py"


if launch_testing is None:

    def test_launch_file_is_valid_python():
        compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")

    def test_launch_testing():
        pytest.skip(
            f"launch_testing is not available ({_MISSING}); it ships only with a ROS 2 "
            "install, not on PyPI"
        )
else:
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    def _tiny_model() -> tuple[str, str]:
        from dynvit_ros.engine.checkpoint import ModelMetadata, save_checkpoint
        from dynvit_ros.engine.levels import LevelTable
        from dynvit_ros.engine.model import build_segformer
        from dynvit_ros.engine.skip import FULL, SkipConfig

        folder = Path(tempfile.mkdtemp(prefix="dynvit_launch_"))
        model = save_checkpoint(
            folder / "b0.safetensors",
            build_segformer("b0", 3),
            ModelMetadata(variant="b0", num_classes=3, input_size=[120, 160]),
        )
        levels = LevelTable.from_configs([FULL, SkipConfig(name="s0.5", input_scale=0.5)]).save(
            folder / "levels.yaml"
        )
        return str(model), str(levels)

    @pytest.mark.launch_test
    def generate_test_description():
        model, levels = _tiny_model()
        include = IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
            launch_arguments={
                "cameras": "mc_front,mc_rear",
                "weights": "mc_front=2,mc_rear=1",
                "model": model,
                "levels": levels,
            }.items(),
        )
        return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])

    class TestTwoCameras(unittest.TestCase):
        def test_each_camera_gets_masks_and_its_own_budget(self, proc_output):
            import rclpy
            from sensor_msgs.msg import Image

            from dynvit_ros.msg import ComputeBudget

            rclpy.init()
            node = rclpy.create_node("launch_multi_client")
            try:
                got, pubs = {}, {}
                for cam in ("mc_front", "mc_rear"):
                    got[cam] = {"masks": [], "budgets": []}
                    node.create_subscription(
                        Image, f"/{cam}/segmentation/mask", got[cam]["masks"].append, 10
                    )
                    node.create_subscription(
                        ComputeBudget, f"/{cam}/compute_budget", got[cam]["budgets"].append, 10
                    )
                    pubs[cam] = node.create_publisher(Image, f"/{cam}/image_raw", 10)
                msg = Image(height=120, width=160, encoding="rgb8", step=480)
                msg.data = array.array("B", bytes(120 * 160 * 3))

                def done():
                    return all(v["masks"] and v["budgets"] for v in got.values())

                deadline = time.monotonic() + 90
                while time.monotonic() < deadline and not done():
                    for pub in pubs.values():
                        pub.publish(msg)
                    rclpy.spin_once(node, timeout_sec=0.1)
                counts = {k: {n: len(x) for n, x in v.items()} for k, v in got.items()}
                self.assertTrue(done(), counts)
                proc_output.assertWaitFor("serving camera /mc_front (weight 2)", timeout=5)
            finally:
                node.destroy_node()
                rclpy.shutdown()

    @launch_testing.post_shutdown_test()
    class TestShutdown(unittest.TestCase):
        def test_exit_codes(self, proc_info):
            launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
