# SPDX-License-Identifier: Apache-2.0
"""One camera's segformer_node as a managed (lifecycle) node: the reusable piece.

    IncludeLaunchDescription(camera.launch.py, namespace:=front, image_topic:=/front/image_raw)

With autostart:=true (default) launch emits configure, then activate once the
node is inactive; with autostart:=false a lifecycle manager (e.g. Nav2's
lifecycle_manager with node_names: [front/segformer_node]) drives it.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

# Launch argument -> node parameter; an empty argument keeps the params file's value.
OVERRIDES = (
    ("model", "model_path"),
    ("levels", "levels_path"),
    ("mode", "mode"),
    ("selection", "selection"),
    ("input_type", "input_type"),
)


def _segformer(context):
    overrides = {"autostart": False}  # launch drives the transitions
    for arg, param in OVERRIDES:
        value = LaunchConfiguration(arg).perform(context)
        if value:
            overrides[param] = value
    node = LifecycleNode(
        package="dynvit_ros",
        executable="segformer_node",
        name=LaunchConfiguration("node_name"),
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", LaunchConfiguration("image_topic"))],
        output="screen",
    )
    autostart = IfCondition(LaunchConfiguration("autostart"))

    def transition(transition_id):
        return EmitEvent(
            event=ChangeState(
                lifecycle_node_matcher=matches_action(node), transition_id=transition_id
            )
        )

    activate = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            goal_state="inactive",
            entities=[transition(Transition.TRANSITION_ACTIVATE)],
            handle_once=True,
        ),
        condition=autostart,
    )
    configure = EmitEvent(
        event=ChangeState(
            lifecycle_node_matcher=matches_action(node),
            transition_id=Transition.TRANSITION_CONFIGURE,
        ),
        condition=autostart,
    )
    return [node, activate, configure]


def generate_launch_description():
    default_params = PathJoinSubstitution(
        [FindPackageShare("dynvit_ros"), "config", "dynvit.yaml"]
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument("namespace", default_value="", description="Camera namespace"),
            DeclareLaunchArgument(
                "image_topic",
                default_value="/camera/image_raw",
                description="Input image topic (Image, or CompressedImage with "
                "input_type:=compressed)",
            ),
            DeclareLaunchArgument("node_name", default_value="segformer_node"),
            DeclareLaunchArgument("params_file", default_value=default_params),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="Configure and activate through lifecycle events",
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
            OpaqueFunction(function=_segformer),
        ]
    )
