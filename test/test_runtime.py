# SPDX-License-Identifier: Apache-2.0
"""The ROS-free runtime: one call per frame, masks at the frame's size, allocator tuning."""

import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

from dynvit_ros.engine.checkpoint import ModelMetadata
from dynvit_ros.engine.levels import LevelTable
from dynvit_ros.engine.model import build_segformer
from dynvit_ros.engine.runtime import SegmentationRuntime
from dynvit_ros.engine.skip import SkipConfig


@pytest.fixture(scope="module")
def runtime():
    torch.manual_seed(0)
    levels = LevelTable.from_configs(
        [SkipConfig(name="full"), SkipConfig(name="half", input_scale=0.5)]
    )
    return SegmentationRuntime(
        build_segformer("b0", 5), ModelMetadata("b0", 5, input_size=[64, 96]), levels
    )


def test_every_level_returns_a_mask_of_the_frame_size(runtime):
    rgb = np.random.default_rng(0).integers(0, 256, (45, 77, 3), dtype=np.uint8)
    for level in range(len(runtime.levels)):
        result = runtime.infer(rgb, level)
        assert (
            result.mask.shape == (45, 77)
            and result.mask.dtype == np.uint8
            and result.mask.max() < 5
        )
        assert result.level == level and result.infer_ms > 0 and result.macs == runtime.macs(level)
    assert runtime.macs(1) < runtime.macs(0)


def test_bad_frames_and_levels_are_refused(runtime):
    with pytest.raises(ValueError, match="uint8 RGB"):
        runtime.infer(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        runtime.infer(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        runtime.infer(np.zeros((10, 10, 3), np.uint8), 2)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_allocator_tuning_takes_effect_and_is_recorded():
    # In a child process: the setting is process-wide and must not leak into other tests' timings.
    code = (
        "from dynvit_ros.host import allocator_settings, tune_allocator\n"
        "assert allocator_settings() == {}\n"
        "assert tune_allocator(16 << 20, 64 << 20)\n"
        "assert allocator_settings() == {'mmap_threshold': 16 << 20, 'trim_threshold': 64 << 20}\n"
        "import torch; assert float(torch.ones(4096, 4096).sum()) == 4096.0 ** 2\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
