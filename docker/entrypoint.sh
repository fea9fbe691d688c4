#!/usr/bin/env bash
# Source ROS 2 and the SEFM workspace, then run the given command.
set -e
source /opt/ros/kilted/setup.bash
source /sefm/ros2_ws/install/setup.bash
exec "$@"
