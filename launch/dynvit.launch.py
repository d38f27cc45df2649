# SPDX-License-Identifier: Apache-2.0
"""One camera: segformer_node (managed) and load_monitor_node, parameters from config/dynvit.yaml.

    ros2 launch dynvit_ros dynvit.launch.py image_topic:=/camera/image_raw \
        namespace:=front model:=/path/to/model.safetensors mode:=auto autostart:=true
"""

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    IncludeLaunchDescription,
    SetEnvironmentVariable,
)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, NotEqualsSubstitution, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

CAMERA_ARGS = (
    "namespace",
    "image_topic",
    "params_file",
    "autostart",
    "model",
    "levels",
    "mode",
    "selection",
    "input_type",
)


def generate_launch_description():
    share = FindPackageShare("dynvit_ros")
    camera = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "camera.launch.py"])),
        launch_arguments={name: LaunchConfiguration(name) for name in CAMERA_ARGS}.items(),
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "image_topic", default_value="/camera/image_raw", description="Input image topic"
            ),
            DeclareLaunchArgument(
                "namespace",
                default_value="",
                description="Namespace of both nodes and their topics",
            ),
            DeclareLaunchArgument(
                "model",
                default_value="",
                description="Checkpoint; empty uses model_path from params_file",
            ),
            DeclareLaunchArgument(
                "levels",
                default_value="",
                description="Skip-level table; empty uses params_file's",
            ),
            DeclareLaunchArgument("mode", default_value="", description="auto or fixed"),
            DeclareLaunchArgument(
                "selection", default_value="", description="streaming or deadline (auto mode)"
            ),
            DeclareLaunchArgument("input_type", default_value="", description="raw or compressed"),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="Configure and activate segformer_node at launch; "
                "false leaves it to a lifecycle manager",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([share, "config", "dynvit.yaml"]),
                description="Parameters of both nodes",
            ),
            DeclareLaunchArgument(
                "load_monitor",
                default_value="true",
                description="Start load_monitor_node to publish compute budgets",
            ),
            DeclareLaunchArgument(
                "dds_profile",
                default_value=PathJoinSubstitution(
                    [share, "config", "dds", "fastdds_large_frames.xml"]
                ),
                description="Fast DDS profile for camera-sized frames on one host (set for every "
                "process this launch starts; start your camera driver from here or export "
                "FASTDDS_DEFAULT_PROFILES_FILE for it too); '' keeps Fast DDS's defaults",
            ),
            SetEnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                LaunchConfiguration("dds_profile"),
                condition=IfCondition(
                    NotEqualsSubstitution(LaunchConfiguration("dds_profile"), "")
                ),
            ),
            camera,
            Node(
                package="dynvit_ros",
                executable="load_monitor_node",
                namespace=LaunchConfiguration("namespace"),
                parameters=[LaunchConfiguration("params_file")],
                condition=IfCondition(LaunchConfiguration("load_monitor")),
                output="screen",
            ),
        ]
    )
