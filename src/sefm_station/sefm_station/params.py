"""The safety gate node's parameters (ROS-free: a launch file or the graph runner builds the same dataclass)."""
from __future__ import annotations

from dataclasses import dataclass

from sefm_core.config import setting


@dataclass(frozen=True)
class GateParams:
    profile: str = setting("sim_aloha", "robot profile: a shipped name (sim_aloha, aloha_ros2_interbotix, "
                                        "sim_language_table, ros2_control_arm) or a path to a .yaml file")
    station: str = setting("", "station name in the status (default: the node's namespace)")
    command_topic: str = setting("joint_command", "the policy's target (sensor_msgs/JointState: name + position)")
    status_period: float = setting(1.0, "publish safety_status (std_msgs/String, JSON counters) this often (s)",
                                   low=0.01)
    log_throttle: float = setting(2.0, "at most one log line per refusal reason this often (s)", low=0.0)
    autostart: bool = setting(False, "configure and activate at start (no lifecycle manager)")
