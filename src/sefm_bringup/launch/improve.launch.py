"""ROS 2 launch file for Stage 2 on a native ROS 2 install (`ros2 launch` is not available as a wheel).

    ros2 launch launch/improve.launch.py config:=path/to/improve.yaml

Reads the same YAML as `sefm improve` and takes every node's parameters from
`sefm_bringup.graph.node_parameters`, so both start the same graph.
Not executed on the project's CI machines (no `launch` package there).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from sefm_bringup.graph import load_config, node_parameters


def nodes(context):
    cfg = load_config(LaunchConfiguration("config").perform(context), {})
    params = node_parameters(cfg)
    graph = [Node(package="sefm_trainer", executable="trainer", parameters=[params["trainer"]]),
             Node(package="sefm_reward", executable="reward", parameters=[params["reward"]]),
             Node(package="sefm_policy", executable="policy", parameters=[params["policy"]])]
    graph += [Node(package="sefm_sim_bridge", executable="sim_bridge", namespace=station, parameters=[params[station]])
              for station in cfg.station_names()]
    return graph


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("config", description="ImproveConfig YAML (as for `sefm improve --config`)"),
        OpaqueFunction(function=nodes),
    ])
