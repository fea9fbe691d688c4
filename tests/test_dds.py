"""Every SEFM process keeps DDS on this host unless told otherwise: discovery and the participant's receive
sockets on the loopback interface."""
import os
import subprocess
import sys
import time

from sefm_ros.dds import LOCALHOST_PROFILE, apply_localhost_defaults


def test_the_defaults_are_defaults():
    env = {}
    apply_localhost_defaults(env)
    assert env == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "FASTDDS_DEFAULT_PROFILES_FILE": str(LOCALHOST_PROFILE)}
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}   # a fleet opened to a network on purpose
    apply_localhost_defaults(env)
    assert env == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}


def test_a_node_listens_for_discovery_on_loopback_only():
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE",
                                                            "FASTDDS_DEFAULT_PROFILES_FILE")}
    node = subprocess.Popen([sys.executable, "-m", "sefm_sim_bridge.bridge_node", "--ros-args", "-r",
                             "__ns:=/dds_probe", "-p", "image_width:=32", "-p", "image_height:=18"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        domain = int(os.environ["ROS_DOMAIN_ID"])
        ports = range(7400 + 250 * domain, 7400 + 250 * (domain + 1))   # the domain's RTPS discovery and data ports
        rtps = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not rtps:
            time.sleep(0.5)
            out = subprocess.run(["ss", "-ulpnH"], capture_output=True, text=True).stdout
            sockets = [line.split()[3].rsplit(":", 1) for line in out.splitlines() if f"pid={node.pid}," in line]
            rtps = [(host, int(port)) for host, port in sockets if int(port) in ports]
        assert rtps, "the node opened no RTPS socket for its domain"
        assert all(host == "127.0.0.1" for host, _ in rtps), rtps
    finally:
        node.terminate()
        node.wait(timeout=20)
