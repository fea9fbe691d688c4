"""The DDS defaults every SEFM process applies before rclpy starts: discovery on this host only, and no DDS
socket on the network interfaces. Defaults only: a value the user exported wins."""
from __future__ import annotations

import os
import pathlib

LOCALHOST_PROFILE = pathlib.Path(__file__).with_name("fastdds_localhost.xml")


def apply_localhost_defaults(environ=os.environ) -> None:
    """ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless set; under it, Fast DDS on shared memory and loopback UDP
    (fastdds_localhost.xml) unless a profiles file is set. To open a fleet to a network on purpose: export
    ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET (or a discovery server), and a profiles file of your own if needed."""
    environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and LOCALHOST_PROFILE.exists():
        environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(LOCALHOST_PROFILE))
