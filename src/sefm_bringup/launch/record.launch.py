"""Record demonstrations of running stations (or a real robot's driver) as rosbag2.

    ros2 launch sefm_bringup record.launch.py stations:=station_0,station_1 output:=bags/session_1 [storage:=sqlite3]

Starts the recorder node (sefm_bags) with the parameters `sefm demos` gives it; every launch argument is a
field of `sefm_bags.params.RecorderParams`, with its default and help. A real robot whose driver publishes
other topic names records them with topics:=... (relative to each station) or extra_topics:=/abs/topic,...
and imports through a topic map (docs/demonstrations.md). Not executed on the project's machines (no
`launch` package there); tests/test_launch.py loads it with the launch API recorded.
"""
import dataclasses

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from sefm_bags.params import RecorderParams


def generate_launch_description():
    from sefm_ros.dds import apply_localhost_defaults

    apply_localhost_defaults()   # this process and the nodes it starts: DDS on this host unless exported otherwise
    fields = dataclasses.fields(RecorderParams)
    arguments = [DeclareLaunchArgument(f.name, default_value=str(f.default).lower() if isinstance(f.default, bool)
                                       else str(f.default), description=f.metadata["help"]) for f in fields]
    recorder = Node(package="sefm_bags", executable="recorder", name="recorder",
                    parameters=[{f.name: ParameterValue(LaunchConfiguration(f.name), value_type=type(f.default))
                                 for f in fields}])
    return LaunchDescription([*arguments, recorder])
