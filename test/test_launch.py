"""launch_testing test of launch/dynvit.launch.py: both nodes start and the pipeline runs.

launch, launch_ros and launch_testing are not on PyPI, so this runs only in a
ROS 2 install (`colcon test`, or `launch_test test/test_launch.py` /
`pytest test/test_launch.py` with the install sourced). Elsewhere it is
skipped; test_ros_*.py start the same executables the way launch_ros does.
"""
from __future__ import annotations

import array
import tempfile
import time
import unittest
from pathlib import Path

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

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "dynvit.launch.py"


if launch_testing is None:
    def test_launch_file_is_valid_python():
        compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")

    def test_launch_testing():
        pytest.skip(f"launch_testing is not available ({_MISSING}); it ships only with a ROS 2 "
                    "install, not on PyPI")
else:
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    def _tiny_model() -> tuple[str, str]:
        from dynvit_ros.checkpoint import ModelMetadata, save_checkpoint
        from dynvit_ros.model import build_segformer
        from dynvit_ros.skip import FULL, SkipConfig
        from dynvit_ros.skip_levels import LevelTable
        folder = Path(tempfile.mkdtemp(prefix="dynvit_launch_"))
        model = save_checkpoint(folder / "b0.safetensors", build_segformer("b0", 3),
                                ModelMetadata(variant="b0", num_classes=3, input_size=[120, 160]))
        levels = LevelTable.from_configs([FULL, SkipConfig(name="s0.5", input_scale=0.5)]).save(
            folder / "levels.yaml")
        return str(model), str(levels)

    @pytest.mark.launch_test
    def generate_test_description():
        model, levels = _tiny_model()
        include = IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
            launch_arguments={"image_topic": "/launch_test/image", "namespace": "lt", "model": model,
                              "levels": levels, "mode": "auto"}.items())
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

        def test_image_gives_mask_and_budgets_arrive(self, proc_output):
            import rclpy
            from sensor_msgs.msg import Image

            from dynvit_ros.msg import ComputeBudget
            masks, budgets = [], []
            self.node.create_subscription(Image, "/lt/segmentation/mask", masks.append, 10)
            self.node.create_subscription(ComputeBudget, "/lt/compute_budget", budgets.append, 10)
            pub = self.node.create_publisher(Image, "/launch_test/image", 10)
            msg = Image(height=120, width=160, encoding="rgb8", step=480)
            msg.header.frame_id = "launch_cam"
            msg.data = array.array("B", bytes(120 * 160 * 3))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (masks and budgets):
                pub.publish(msg)
                rclpy.spin_once(self.node, timeout_sec=0.2)
            self.assertTrue(masks, "no mask from segformer_node")
            self.assertTrue(budgets, "no budget from load_monitor_node")
            self.assertEqual(masks[0].header.frame_id, "launch_cam")
            proc_output.assertWaitFor("ready in", timeout=5)

    @launch_testing.post_shutdown_test()
    class TestShutdown(unittest.TestCase):
        def test_exit_codes(self, proc_info):
            launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])


