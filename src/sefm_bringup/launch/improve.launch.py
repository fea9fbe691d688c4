"""Stage 2 on a fleet: the graph `sefm improve` starts, as a ROS 2 launch file.

    ros2 launch sefm_bringup improve.launch.py checkpoint:=runs/sft/checkpoints/final \
        [config:=<share>/sefm_bringup/config/improve_fleet_language_table.yaml] [namespace:=fleet_a] [stations:=4]

The node list and every parameter come from `sefm_bringup.graph.node_specs`, the function the graph runner
uses, so both start the same graph (tests/test_launch.py). `namespace` pushes the whole fleet under it.
`ros2 launch` is not available as a wheel, so on the project's machines `sefm improve --processes per_node`
starts the same nodes; the test loads this file with the launch API recorded.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = {
    "config": ("", "an ImproveConfig YAML (empty: the installed improve_fleet_language_table.yaml)"),
    "checkpoint": ("", "the Stage-1 checkpoint directory: policy version 0 (overrides the config's)"),
    "namespace": ("", "push the whole fleet under this namespace"),
    "stations": ("", "number of stations (overrides the config's)"),
}


def default_config() -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("sefm_bringup"), "config", "improve_fleet_language_table.yaml")


def nodes(context, config_path=None):
    from dataclasses import asdict

    from sefm_bringup.graph import load_config, node_specs

    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = {"checkpoint": value["checkpoint"] or None,
                 "stations": int(value["stations"]) if value["stations"] else None}
    cfg = load_config(value["config"] or config_path or default_config(), overrides)
    return [Node(package=s.package, executable=s.executable, name=s.name, namespace=s.namespace,
                 parameters=[asdict(s.params)], remappings=list(s.remappings), output="screen",
                 respawn=True, respawn_delay=2.0)   # a crashed node comes back; the lifecycle manager re-activates it
            for s in node_specs(cfg, value["namespace"])]


def generate_launch_description():
    from sefm_ros.dds import apply_localhost_defaults

    apply_localhost_defaults()   # this process and the nodes it starts: DDS on this host unless exported otherwise
    return LaunchDescription([*(DeclareLaunchArgument(name, default_value=default, description=text)
                                for name, (default, text) in ARGUMENTS.items()),
                              OpaqueFunction(function=nodes)])
