"""Start segformer_node and load_monitor_node with parameters from config/dynvit.yaml.

    ros2 launch dynvit_ros dynvit.launch.py image_topic:=/camera/image_raw \
        namespace:=front model:=/path/to/model.safetensors mode:=auto
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _segformer(context):
    overrides = {}
    for arg, param in (("model", "model_path"), ("levels", "levels_path"), ("mode", "mode"),
                       ("input_type", "input_type")):
        value = LaunchConfiguration(arg).perform(context)
        if value:  # empty: keep the value from the parameters file
            overrides[param] = value
    return [Node(
        package="dynvit_ros",
        executable="segformer_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", LaunchConfiguration("image_topic"))],
        output="screen",
    )]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="Input image topic (Image, or CompressedImage with "
                                          "input_type:=compressed)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of both nodes and their topics"),
        DeclareLaunchArgument("model", default_value="",
                              description="Checkpoint; empty uses model_path from params_file"),
        DeclareLaunchArgument("levels", default_value="",
                              description="Skip-level table; empty uses levels_path from params_file"),
        DeclareLaunchArgument("mode", default_value="",
                              description="auto or fixed; empty uses mode from params_file"),
        DeclareLaunchArgument("input_type", default_value="",
                              description="raw or compressed; empty uses input_type from params_file"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution(
                                  [FindPackageShare("dynvit_ros"), "config", "dynvit.yaml"]),
                              description="Parameters of both nodes"),
        DeclareLaunchArgument("load_monitor", default_value="true",
                              description="Start load_monitor_node to publish compute budgets"),
        OpaqueFunction(function=_segformer),
        Node(
            package="dynvit_ros",
            executable="load_monitor_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file")],
            condition=IfCondition(LaunchConfiguration("load_monitor")),
            output="screen",
        ),
    ])
