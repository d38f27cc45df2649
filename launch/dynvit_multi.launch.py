# SPDX-License-Identifier: Apache-2.0
"""Several cameras on one computer: one managed segformer_node per camera, one load monitor.

    ros2 launch dynvit_ros dynvit_multi.launch.py cameras:=front,rear \
        image_topics:=/front/image_raw,/rear/image_raw weights:=front=2,rear=1

Each camera runs in its own namespace and gets <ns>/compute_budget from the
single load_monitor_node, which divides the compute that other processes
leave between the active cameras by weight (see dynvit_ros/budget/share.py).
"""

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    IncludeLaunchDescription,
    OpaqueFunction,
    SetEnvironmentVariable,
)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, NotEqualsSubstitution, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

SHARED_ARGS = ("params_file", "autostart", "model", "levels", "mode", "selection", "input_type")


def _cameras(context):
    share = FindPackageShare("dynvit_ros")
    names = [c.strip() for c in LaunchConfiguration("cameras").perform(context).split(",")]
    names = [c for c in names if c]
    topics = [t.strip() for t in LaunchConfiguration("image_topics").perform(context).split(",")]
    if topics == [""]:
        topics = [f"/{name}/image_raw" for name in names]
    if len(topics) != len(names):
        raise ValueError(f"{len(names)} cameras but {len(topics)} image_topics")
    actions = []
    for name, topic in zip(names, topics):
        arguments = {arg: LaunchConfiguration(arg) for arg in SHARED_ARGS}
        arguments.update(namespace=name, image_topic=topic)
        actions.append(
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(
                    PathJoinSubstitution([share, "launch", "camera.launch.py"])
                ),
                launch_arguments=arguments.items(),
            )
        )
    actions.append(
        Node(
            package="dynvit_ros",
            executable="load_monitor_node",
            parameters=[
                LaunchConfiguration("params_file"),
                {
                    "cameras": ",".join(names),
                    "camera_weights": LaunchConfiguration("weights").perform(context),
                },
            ],
            output="screen",
        )
    )
    return actions


def generate_launch_description():
    share = FindPackageShare("dynvit_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "cameras",
                default_value="front,rear",
                description="Camera namespaces, comma-separated",
            ),
            DeclareLaunchArgument(
                "image_topics",
                default_value="",
                description="Image topic per camera, comma-separated; empty: /<camera>/image_raw",
            ),
            DeclareLaunchArgument(
                "weights",
                default_value="",
                description="Compute share per camera, e.g. front=2,rear=1",
            ),
            DeclareLaunchArgument(
                "params_file", default_value=PathJoinSubstitution([share, "config", "dynvit.yaml"])
            ),
            DeclareLaunchArgument("autostart", default_value="true"),
            DeclareLaunchArgument("model", default_value=""),
            DeclareLaunchArgument("levels", default_value=""),
            DeclareLaunchArgument("mode", default_value=""),
            # Several cameras share the machine by weight; each should still see every frame
            # (a skipped frame is one the robot did not see), so the per-frame deadline
            # choice by default. streaming trades frames for the freshest accurate mask.
            DeclareLaunchArgument(
                "selection", default_value="deadline", description="deadline or streaming"
            ),
            DeclareLaunchArgument("input_type", default_value=""),
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
            OpaqueFunction(function=_cameras),
        ]
    )
