# SPDX-License-Identifier: Apache-2.0
"""pip-installable distribution of dynvit_ros's pure-Python core.

Why this exists next to CMakeLists.txt: colcon builds the ROS package from
package.xml (build type ament_cmake, because an ament_python package cannot
generate the msg/ interfaces) and never runs this file. This file serves the
users who need the engine without ROS: `pip install .` gives the model, skip
levels, runtime, latency models and budget policy (import dynvit_ros.engine.runtime,
...), the command-line tools below, and the entry-point group
`dynvit_ros.latency_models`, through which other distributions register
latency-model plugins that the node then accepts by name. The ROS node modules
ship too but need rclpy and the generated dynvit_ros.msg, i.e. the colcon build.
"""

from pathlib import Path
import re

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(r"<version>([^<]+)</version>", (HERE / "package.xml").read_text()).group(1)

setup(
    name="dynvit-ros",
    version=VERSION,
    description="Dynamic SegFormer: skip levels chosen per frame from a compute budget",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["dynvit_ros", "dynvit_ros.*"]),
    install_requires=[
        # Pin a CPU build yourself first where an unpinned torch would fetch a CUDA one
        # (tools/setup_venv.sh does).
        "torch>=2.1",
        "numpy",
        "safetensors>=0.4",
        "PyYAML>=6",
        "opencv-python-headless>=4.9",
        "tqdm>=4.66",
    ],
    extras_require={
        "image": ["rosbags-image>=0.10"],
        "data": ["rosbags>=0.10", "matplotlib>=3.8"],
        "monitor": ["psutil>=5.9"],
    },
    entry_points={
        "console_scripts": [
            "dynvit-train = dynvit_ros.training.train:main",
            "dynvit-calibrate = dynvit_ros.training.calibrate:main",
            "calibrate = dynvit_ros.training.calibrate:main",
            "dynvit-sample-scene = dynvit_ros.demo.sample_scene:main",
            "dynvit-replay = dynvit_ros.bags.replay:main",
            "dynvit-export = dynvit_ros.engine.onnx_export:main",
        ],
        "dynvit_ros.latency_models": [
            "profiled = dynvit_ros.latency.profiled:ProfiledLatencyModel",
            "accelerator = dynvit_ros.latency.accelerator:AcceleratorLatencyModel",
        ],
    },
)
