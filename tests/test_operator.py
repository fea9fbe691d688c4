"""`sefm operator`: the supervisor's commands reach a real station."""
import os
import subprocess
import sys
import uuid

from helpers import Driver, stop

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")


def operator(*args):
    return subprocess.run([SEFM, "operator", *args], capture_output=True, text=True, timeout=60)


def test_operator_commands_reach_the_station():
    name = f"station_{uuid.uuid4().hex[:6]}"
    bridge = subprocess.Popen([sys.executable, "-m", "sefm_sim_bridge.bridge_node", "--ros-args", "-r",
                               f"__ns:=/{name}", "-p", "image_width:=64", "-p", "image_height:=36"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = Driver(f"/{name}", "/estop")
    try:
        assert d.spin_until(lambda: d.tasks)
        assert "ok" in operator("pause", name, "--reason", "inspect").stdout
        assert "ok" in operator("resume", name).stdout
        out = operator("reset", name, "--seed", "77").stdout
        assert "ok" in out
        assert d.spin_until(lambda: d.tasks[-1].seed == 77)
        assert "ok" in operator("abort", name).stdout
        assert "e-stop engaged" in operator("estop", "--reason", "test").stdout
        assert d.spin_until(lambda: d.status and d.status[-1].state == 3)  # STATE_ESTOPPED
        assert "refused" in operator("resume", name).stdout
        assert "released" in operator("release").stdout
        status = operator("status", "--stations", name, "--seconds", "2").stdout
        assert name in status and "policy version" in status
        missing = operator("pause", "station_that_does_not_exist")
        assert missing.returncode == 1 and "no pause service" in missing.stderr
    finally:
        operator("release")
        stop(d, bridge)
