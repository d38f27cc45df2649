# SPDX-License-Identifier: Apache-2.0
"""What the launch_testing tests share: whether launch is importable, and a tiny model on disk."""

from __future__ import annotations

from pathlib import Path
import tempfile

LAUNCH_DIR = Path(__file__).resolve().parents[1] / "launch"

try:
    import launch  # noqa: F401
    import launch_ros  # noqa: F401
    import launch_testing  # noqa: F401
    import launch_testing.actions  # noqa: F401
    import launch_testing.asserts  # noqa: F401

    MISSING = None
except ImportError as exc:
    MISSING = (
        f"launch_testing is not available ({exc}); it ships with a ROS 2 install or "
        "../shared/ros-extras, not on PyPI"
    )


def tiny_model() -> tuple[str, str]:
    """A random-weight B0 checkpoint (3 classes, 120x160) and a two-level table."""
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
