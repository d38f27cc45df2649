# SPDX-License-Identifier: Apache-2.0
"""launch_testing test of launch/dynvit_multi.launch.py: two cameras, one load monitor.

launch, launch_ros and launch_testing are not on PyPI, so this runs only in a
ROS 2 install (`colcon test`, or `launch_test test/test_launch.py` /
`pytest test/test_launch.py` with the install sourced). Elsewhere it is
skipped; test_ros_*.py start the same executables the way launch_ros does.
"""

from __future__ import annotations

import array
import time
import unittest

from launch_common import LAUNCH_DIR, MISSING, tiny_model
import pytest

LAUNCH_FILE = LAUNCH_DIR / "dynvit_multi.launch.py"

if MISSING:

    def test_launch_file_is_valid_python():
        compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")

    def test_launch_testing():
        pytest.skip(MISSING)
else:
    import launch
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    import launch_testing.actions
    import launch_testing.asserts

    @pytest.mark.launch_test
    def generate_test_description():
        model, levels = tiny_model()
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
