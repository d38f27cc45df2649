# SPDX-License-Identifier: Apache-2.0
"""launch_testing test of launch/dynvit.launch.py: both nodes start and the pipeline runs.

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

LAUNCH_FILE = LAUNCH_DIR / "dynvit.launch.py"

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
                "image_topic": "/launch_test/image",
                "namespace": "lt",
                "model": model,
                "levels": levels,
                "mode": "auto",
            }.items(),
        )
        return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])

    class TestPipeline(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            import rclpy

            rclpy.init()
            cls.node = rclpy.create_node("launch_test_client")

        @classmethod
        def tearDownClass(cls):
            import rclpy

            cls.node.destroy_node()
            rclpy.shutdown()

        def _spin_until(self, predicate, timeout, every=None):
            import rclpy

            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not predicate():
                if every:
                    every()
                rclpy.spin_once(self.node, timeout_sec=0.1)
            return predicate()

        def _change_state(self, transition_id):
            from lifecycle_msgs.msg import Transition
            from lifecycle_msgs.srv import ChangeState

            client = self.node.create_client(ChangeState, "/lt/segformer_node/change_state")
            self.assertTrue(self._spin_until(client.service_is_ready, 20))
            future = client.call_async(
                ChangeState.Request(transition=Transition(id=transition_id))
            )
            self.assertTrue(self._spin_until(future.done, 30))
            self.node.destroy_client(client)
            return future.result().success

        def test_image_gives_mask_budgets_labels_and_lifecycle_works(self, proc_output):
            from lifecycle_msgs.msg import Transition
            from sensor_msgs.msg import Image

            from dynvit_ros.msg import ComputeBudget
            from dynvit_ros.ros.qos import latched

            masks, budgets, labels = [], [], []
            self.node.create_subscription(Image, "/lt/segmentation/mask", masks.append, 10)
            self.node.create_subscription(ComputeBudget, "/lt/compute_budget", budgets.append, 10)
            try:
                from vision_msgs.msg import LabelInfo

                self.node.create_subscription(
                    LabelInfo, "/lt/segmentation/label_info", labels.append, latched()
                )
            except ImportError:
                labels.append(None)
            pub = self.node.create_publisher(Image, "/launch_test/image", 10)
            msg = Image(height=120, width=160, encoding="rgb8", step=480)
            msg.header.frame_id = "launch_cam"
            msg.data = array.array("B", bytes(120 * 160 * 3))
            got = self._spin_until(
                lambda: masks and budgets and labels, 60, every=lambda: pub.publish(msg)
            )
            self.assertTrue(masks, "no mask from segformer_node")
            self.assertTrue(budgets, "no budget from load_monitor_node")
            self.assertTrue(got, "no label_info")
            self.assertEqual(masks[0].header.frame_id, "launch_cam")
            if labels[0] is not None:
                self.assertEqual(len(labels[0].class_map), 3)
            proc_output.assertWaitFor("configured:", timeout=5)

            # Lifecycle through ~/change_state: deactivated, frames are not processed.
            self.assertTrue(self._change_state(Transition.TRANSITION_DEACTIVATE))
            self._spin_until(lambda: False, 0.5)
            masks.clear()
            self._spin_until(lambda: False, 2.0, every=lambda: pub.publish(msg))
            self.assertFalse(masks, "masks while inactive")
            self.assertFalse(self._change_state(Transition.TRANSITION_CONFIGURE))  # wrong state
            self.assertTrue(self._change_state(Transition.TRANSITION_ACTIVATE))
            self.assertTrue(self._spin_until(lambda: masks, 30, every=lambda: pub.publish(msg)))

    @launch_testing.post_shutdown_test()
    class TestShutdown(unittest.TestCase):
        def test_exit_codes(self, proc_info):
            launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
