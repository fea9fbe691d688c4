"""Test-session environment: keep DDS on this host and away from other runs."""
import os
import random

# Before any test imports rclpy: localhost discovery, and a domain of our own so
# two test runs (or a run and a live fleet) on one machine never see each other.
from sefm_ros.dds import apply_localhost_defaults   # noqa: E402 (imports no rclpy)

apply_localhost_defaults()   # as every SEFM process: discovery and DDS sockets on this host only
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
if "PYTEST_XDIST_WORKER" in os.environ:   # `pytest -n`: the workers inherit the controller's domain; give each
    worker = int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw"))   # its own, or their stations talk
    os.environ["ROS_DOMAIN_ID"] = str(1 + (int(os.environ["ROS_DOMAIN_ID"]) + 1 + worker) % 200)
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
