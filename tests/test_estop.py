"""The fleet e-stop on the station layer: the operator's connected path stops a running gate at once, the one-shot
command confirms each station (and names those that do not), and the latched state outlives the operator's process
(sefm_station.estop_latch_node). Real gate processes on private namespaces and e-stop topics."""
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import rclpy
from geometry_msgs.msg import TwistStamped
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from sefm_bringup.graph import terminate
from sefm_cli.operator_cli import EStopPath
from helpers import LATCHED, RELIABLE

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")
LT_STATE = ["effector_x", "effector_y", "target_x", "target_y"]


def operator(*args, timeout=60):
    return subprocess.run([SEFM, "operator", *args], capture_output=True, text=True, timeout=timeout)


class Station:
    """A LanguageTable safety gate (a process, autostart) with the test as its driver and its policy: joint states
    and a non-zero delta command at 10 Hz in, the driver's commands (arrival wall clock, x, y) recorded."""

    def __init__(self, topic):
        self.ns = f"estop_gate_{uuid.uuid4().hex[:6]}"
        self.proc = subprocess.Popen([sys.executable, "-m", "sefm_station.safety_gate_node", "--ros-args",
                                      "-r", f"__ns:=/{self.ns}", "-r", f"/estop:={topic}",
                                      "-p", "profile:=sim_language_table", "-p", "autostart:=true",
                                      "-p", "status_period:=0.2"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"test_{uuid.uuid4().hex[:6]}", namespace=f"/{self.ns}", context=self.context)
        self.got, self.status = [], []
        self.node.create_subscription(TwistStamped, "commands/effector_delta",
                                      lambda m: self.got.append((time.time(), m.twist.linear.x, m.twist.linear.y)),
                                      RELIABLE)
        self.node.create_subscription(String, "safety_status", lambda m: self.status.append(json.loads(m.data)),
                                      LATCHED)
        state = self.node.create_publisher(JointState, "joint_states", RELIABLE)
        command = self.node.create_publisher(JointState, "joint_command", RELIABLE)

        def tick():
            state.publish(JointState(name=LT_STATE, position=[0.3, 0.0, 0.3, 0.0]))
            command.publish(JointState(name=["delta_x", "delta_y"], position=[0.02, 0.01]))

        self.node.create_timer(0.1, tick)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate():
            self.executor.spin_once(timeout_sec=0.01)
        return predicate()

    def moving(self, since=0.0):
        return [g for g in self.got if g[0] >= since and (g[1], g[2]) != (0.0, 0.0)]

    def state(self):
        return self.status[-1]["state"] if self.status else None

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def topic():
    return f"/estop_{uuid.uuid4().hex[:6]}"


def test_the_connected_estop_stops_a_running_gate_and_nothing_passes_after_it(topic):
    station = Station(topic)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        console = EStopPath(rclpy.create_node("sefm_operator", context=context), topic)   # created at start
        assert station.spin_until(lambda: console.connected([station.ns])), "the gate never matched the operator"
        assert station.spin_until(lambda: station.moving()), "no command passed before the e-stop"
        pressed = console.publish(True, "test")
        station.spin_until(lambda: False, timeout=1.0)     # ten control periods of policy commands
        after = [g for g in station.got if g[0] >= pressed]
        holds = [i for i, g in enumerate(after) if (g[1], g[2]) == (0.0, 0.0)]
        assert holds, f"the hold never reached the driver: {after}"
        # a policy command already on its way may arrive just before the hold; after the hold nothing moves
        assert holds[0] <= 1 and all((g[1], g[2]) == (0.0, 0.0) for g in after[holds[0]:]), after
        assert max(g[0] for g in after) - pressed <= 0.1, "the last command came later than one period (100 ms)"
        assert station.spin_until(lambda: station.state() == "estopped"
                                  and station.status[-1]["counts"]["estop"] >= 5), station.status[-1:]
        assert station.proc.poll() is None
    finally:
        rclpy.try_shutdown(context=context)
        station.close()


def test_the_one_shot_estop_waits_for_confirmation_and_names_a_station_that_never_confirms(topic):
    station = Station(topic)
    try:
        assert station.spin_until(lambda: station.moving())
        out = operator("estop", "--topic", topic, "--stations", f"{station.ns},ghost_station", "--wait", "3")
        assert out.returncode == 1, out
        assert "ghost_station" in out.stderr and station.ns not in out.stderr, out.stderr
        assert "confirmed by 1/2" in out.stdout, out.stdout
        assert station.spin_until(lambda: station.state() == "estopped")   # the one that confirmed did stop
        out = operator("release", "--topic", topic, "--stations", station.ns, "--wait", "5")
        assert out.returncode == 0, out
        released = time.time()
        assert station.spin_until(lambda: station.moving(released))
        nobody = operator("estop", "--topic", f"/estop_nobody_{uuid.uuid4().hex[:6]}", "--wait", "1")
        assert nobody.returncode == 1 and "no station" in nobody.stderr, nobody
    finally:
        station.close()


def test_a_gate_started_after_the_estop_with_the_operator_gone_does_not_pass_commands(topic):
    latch = subprocess.Popen([sys.executable, "-m", "sefm_station.estop_latch_node", "--ros-args",
                              "-r", f"/estop:={topic}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    station = None
    try:
        out = operator("estop", "--topic", topic, "--wait", "10")   # discovers the latch: it confirms by ack
        assert out.returncode == 0 and "estop_latch" in out.stdout, out
        # the operator's process is gone; a station starts now
        station = Station(topic)
        assert station.spin_until(lambda: station.state() == "estopped"), station.status[-1:]
        assert station.spin_until(lambda: station.status[-1]["counts"]["estop"] >= 10)   # commands came: refused
        assert not station.moving(), station.moving()
        out = operator("release", "--topic", topic, "--stations", station.ns, "--wait", "5")
        assert out.returncode == 0, out
        assert station.spin_until(lambda: station.moving()), "released, but no command passed"
        assert latch.poll() is None
    finally:
        if station is not None:
            station.close()
        terminate([latch])
