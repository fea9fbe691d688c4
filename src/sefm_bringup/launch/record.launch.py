"""ROS 2 launch file: record demonstrations of running stations (or a real robot's driver) as rosbag2.

    ros2 launch launch/record.launch.py stations:=station_0,station_1 output:=bags/session_1 [storage:=sqlite3]

Starts the recorder node (sefm_bags) with the same parameters the `sefm demos` command gives it. A real
robot whose driver publishes other topic names records them with topics:=... (relative to each station)
or extra_topics:=/abs/topic,... and imports through a topic map (docs/demonstrations.md).
Not executed on the project's CI machines (no `launch` package there).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from sefm_bags.recorder_node import PARAMETERS


def generate_launch_description():
    names = ("output", "storage", "stations", "topics", "extra_topics", "segment_seconds")
    arguments = [DeclareLaunchArgument(n, default_value=str(PARAMETERS[n][0]), description=PARAMETERS[n][1])
                 for n in names]
    recorder = Node(package="sefm_bags", executable="recorder",
                    parameters=[{n: LaunchConfiguration(n) for n in names}])
    return LaunchDescription([*arguments, recorder])
