"""The recorder node's parameters (ROS-free: `sefm demos` and the launch files build the same dataclass)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sefm_core.config import setting

DRIVER_TOPICS = "camera/image_raw,joint_states,joint_command,task,episode_event,episode_step,sim/ground_truth"


@dataclass(frozen=True)
class RecorderParams:
    output: str = setting("", "bag folder to create (default: bags/session_<date>_<time>); never overwritten")
    storage: Literal["mcap", "sqlite3"] = setting("mcap", "rosbag2 storage")
    stations: str = setting("station_0", "comma-separated station namespaces to record")
    topics: str = setting(DRIVER_TOPICS, "comma-separated topics recorded under every station namespace")
    extra_topics: str = setting("", "comma-separated absolute topics recorded as well (e.g. /estop)")
    segment_seconds: float = setting(5.0, "close a bag segment at least this often (s): the most a killed "
                                          "recorder loses", low=0.1)
    compression: Literal["none", "zstd"] = setting("none", "MCAP chunk compression (mcap storage only)")
    image_format: Literal["raw", "jpeg", "png"] = setting(
        "raw", "store each sensor_msgs/Image topic as it came (raw), or encoded as sensor_msgs/CompressedImage "
               "on <topic>/compressed (the image_transport name), which the importer reads in its place")
    jpeg_quality: int = setting(90, "JPEG quality with image_format jpeg", low=1, high=100)
    acknowledge: bool = setting(True, "publish <station>/recorded (std_msgs/Header, the observation's stamp) "
                                      "once a camera frame, its joint state and (simulated stations) its ground "
                                      "truth are in the bag, so a teleoperator can wait for it")
