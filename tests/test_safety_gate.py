"""The safety gate: its rules on unit cases (sefm_station.safety), the driver messages per output type, and the
lifecycle node for real (a process on a private namespace, a test-side fake Interbotix driver)."""
import dataclasses
import json
import math
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import rclpy
import yaml
from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from sefm_interfaces.msg import EStop
from sefm_station.profiles import PROFILE_DIR, load_profile
from sefm_station.safety import Gate
from sefm_station.safety_gate_node import command_messages
from helpers import LATCHED, RELIABLE

ARM = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]
STATE_NAMES = ARM + ["gripper", "left_finger", "right_finger"]


def profile(name="sim_aloha", **control):
    p = load_profile(name)
    return dataclasses.replace(p, control=dataclasses.replace(p.control, **control)) if control else p


def with_limit_mode(p, mode):
    return dataclasses.replace(p, command=dataclasses.replace(p.command, on_limit=mode))


def aloha_gate(measured=None, now=0.0, **control):
    p = profile(**{"ramp_in": 0.0, **control})
    gate = Gate(p)
    gate.set_measured(dict(zip(p.command.names, np.zeros(14) if measured is None else measured)))
    gate.activate(now)
    return gate


# --- the rules ------------------------------------------------------------------------------------------

def test_invalid_targets_are_refused_with_their_reason():
    gate = aloha_gate()
    names = list(gate.profile.command.names)
    assert gate.check([0.0] * 13, now=0.1).reason == "length"
    nan = np.zeros(14)
    nan[3] = np.nan
    d = gate.check(nan, now=0.1)
    assert not d.ok and d.reason == "non_finite" and "left_forearm_roll" in d.detail
    assert gate.check(np.full(14, np.inf), now=0.1).reason == "non_finite"
    assert gate.check(np.zeros(14), names[:-1] + ["right_pinky"], now=0.1).reason == "unknown_joint"
    assert gate.check(np.zeros(14), names[:-1] + ["left_waist"], now=0.1).reason == "missing_joint"
    assert gate.check(np.zeros(14), names[:-1], now=0.1).reason == "length"
    counts = gate.counts
    assert (counts["length"], counts["non_finite"], counts["unknown_joint"], counts["missing_joint"]) == (2, 2, 1, 1)
    assert counts["passed"] == 0 and gate.last_target == pytest.approx(np.zeros(14))


def test_names_in_another_order_are_reordered_to_the_profiles():
    gate = aloha_gate()
    names = list(gate.profile.command.names)
    values = np.arange(14) * 0.001
    d = gate.check(values[::-1], names[::-1], now=0.1)
    assert d.ok and d.target == pytest.approx(values)


def test_position_limits_clip_and_count_or_reject():
    gate = aloha_gate(rate_hz=1.0)   # a step of up to max_step = 0.1
    over = np.zeros(14)
    over[gate.profile.index("left_gripper")] = 1.5
    over[gate.profile.index("left_shoulder")] = -3.0
    gate.set_measured({"left_shoulder": -1.8})
    gate.activate(0.0)
    d = gate.check(over, now=0.1)
    assert d.ok and "position_clipped" in d.notes and gate.counts["position_clipped"] == 1
    assert d.target[gate.profile.index("left_shoulder")] == pytest.approx(-1.85005)   # the limit, within one step
    assert d.target[gate.profile.index("left_gripper")] == pytest.approx(0.1)       # clipped to 1, then rate limited

    strict = Gate(with_limit_mode(profile(ramp_in=0.0), "reject"))
    strict.set_measured(dict(zip(strict.profile.command.names, np.zeros(14))))
    strict.activate(0.0)
    d = strict.check(over, now=0.1)
    assert not d.ok and d.reason == "position_limit" and "left_shoulder=-3" in d.detail
    assert strict.counts["position_limit"] == 1 and strict.counts["passed"] == 0


def test_rate_limit_from_the_last_commanded_target():
    gate = aloha_gate()
    step = gate.profile.step_limit   # min(max_step, velocity / rate): pi / 50 for an arm joint
    assert step[0] == pytest.approx(math.pi / 50, rel=1e-4)
    far = np.full(14, 0.5)
    first = gate.check(far, now=0.02)
    assert first.ok and first.notes == ("rate_limited",) and first.target == pytest.approx(step)
    second = gate.check(far, now=0.04)
    assert second.target == pytest.approx(2 * step)
    near = second.target + 0.01
    assert gate.check(near, now=0.06).target == pytest.approx(near)
    assert gate.counts["rate_limited"] == 2 and gate.counts["passed"] == 3


def test_ramp_in_grows_the_step_from_zero_starting_at_the_measured_state():
    p = profile(ramp_in=1.0)
    gate = Gate(p)
    measured = np.linspace(-0.5, 0.5, 14)
    measured[[6, 13]] = 0.4   # grippers
    gate.set_measured(dict(zip(p.command.names, measured)))
    gate.activate(10.0)
    target = measured + 1.0
    target[[6, 13]] = 0.9
    at_start = gate.check(target, now=10.0)
    assert at_start.ok and at_start.target == pytest.approx(measured)         # step 0: stays where it is
    half = gate.check(target, now=10.5)
    assert half.target == pytest.approx(measured + 0.5 * p.step_limit)
    full = gate.check(target, now=11.5)
    assert full.target == pytest.approx(measured + 1.5 * p.step_limit)
    # re-activation starts again from the measured state, not the last target
    gate.deactivate()
    assert gate.check(target, now=12.0).reason == "inactive"
    gate.activate(20.0)
    assert gate.check(target, now=20.0).target == pytest.approx(measured)


def test_no_command_passes_before_the_measured_state():
    gate = Gate(profile(ramp_in=0.0))
    gate.activate(0.0)
    d = gate.check(np.zeros(14), now=0.1)
    assert d.reason == "no_state" and "left_waist" in d.detail
    assert gate.tick(1.0) is None and gate.state == "holding"   # nothing known to hold
    # activated before the state: the ramp-in starts when the state is complete
    late = Gate(profile(ramp_in=1.0))
    late.activate(0.0)
    late.set_measured(dict(zip(late.profile.command.names[:7], np.zeros(7))), now=3.0)
    late.set_measured(dict(zip(late.profile.command.names[7:], np.zeros(7))), now=5.0)
    assert late.check(np.full(14, 0.5), now=5.5).target == pytest.approx(0.5 * late.profile.step_limit)


def test_watchdog_holds_the_last_safe_target_once_per_lapse():
    gate = aloha_gate(watchdog_timeout=0.5)
    target = np.full(14, 0.05)
    assert gate.check(target, now=0.1).ok
    assert gate.tick(0.5) is None                     # fresh
    hold = gate.tick(0.7)
    assert hold == pytest.approx(target) and gate.state == "holding" and gate.counts["watchdog"] == 1
    assert gate.tick(0.8) is None and gate.counts["watchdog"] == 1    # once
    assert gate.check(target + 0.01, now=0.9).ok and gate.state == "active"
    assert gate.tick(1.5) == pytest.approx(target + 0.01) and gate.counts["watchdog"] == 2
    # no command since activation: hold the measured state
    fresh = aloha_gate(measured=np.full(14, 0.2), now=5.0, watchdog_timeout=0.5)
    assert fresh.tick(5.6) == pytest.approx(np.full(14, 0.2))


def test_estop_latches_holds_where_the_arm_is_and_keeps_the_grasp():
    gate = aloha_gate()
    p = gate.profile
    target = np.zeros(14)
    target[[6, 13]] = 0.05   # grippers closing on an object
    assert gate.check(target, now=0.1).ok
    measured = np.full(14, 0.01)
    measured[[6, 13]] = 0.3  # the fingers stopped on the object, wider than commanded
    gate.set_measured(dict(zip(p.command.names, measured)))
    hold = gate.estop(True, now=0.2)
    expected = measured.copy()
    expected[[6, 13]] = 0.05
    assert hold == pytest.approx(expected) and gate.state == "estopped"
    assert gate.estop(True, now=0.3) is None    # already latched: nothing new
    for t in (0.3, 0.4, 5.0):
        assert gate.check(target, now=t).reason == "estop"
    assert gate.tick(10.0) is None   # the watchdog does not act either
    assert gate.counts["estop"] == 3
    # released: re-armed, with a new ramp-in from the measured state
    gate.profile = dataclasses.replace(p, control=dataclasses.replace(p.control, ramp_in=1.0))
    assert gate.estop(False, now=6.0) is None and gate.state == "active"
    assert gate.check(target + 1.0, now=6.0).target == pytest.approx(measured)


def test_estop_while_inactive_publishes_nothing_and_still_latches():
    gate = Gate(profile())
    gate.set_measured(dict(zip(gate.profile.command.names, np.zeros(14))))
    assert gate.estop(True, now=0.0) is None
    gate.activate(1.0)
    assert gate.check(np.zeros(14), now=1.5).reason == "estop"


def test_deactivate_returns_the_hold():
    gate = aloha_gate()
    assert gate.check(np.full(14, 0.03), now=0.1).ok
    assert gate.deactivate() == pytest.approx(np.full(14, 0.03))
    assert gate.deactivate() is None
    assert gate.status()["state"] == "inactive"


def test_effector_delta_is_boxed_ramped_and_kept_inside_the_workspace():
    p = profile("sim_language_table", ramp_in=0.0)
    gate = Gate(p)
    assert gate.check([0.05, 0.0], now=0.0).reason == "inactive"
    gate.activate(0.0)
    assert gate.check([0.05, 0.0], now=0.1).reason == "no_state"   # the workspace needs the effector target
    gate.set_measured(p.measured(p.arms[0], ["effector_x", "effector_y", "target_x", "target_y"],
                                 [0.3, 0.0, 0.58, 0.0]))
    d = gate.check([0.5, -0.05], now=0.2)
    assert d.ok and d.target == pytest.approx([0.02, -0.05])    # boxed to 0.1, then the workspace edge x = 0.6
    assert set(d.notes) == {"position_clipped", "workspace_clipped"}
    assert gate.tick(5.0) == pytest.approx([0.0, 0.0])          # a delta holds with zero
    assert gate.estop(True, now=5.1) == pytest.approx([0.0, 0.0])
    ramped = Gate(profile("sim_language_table", ramp_in=1.0))
    ramped.set_measured({"delta_x": 0.3, "delta_y": 0.0})
    ramped.activate(0.0)
    assert ramped.check([0.1, -0.1], now=0.25).target == pytest.approx([0.025, -0.025])


# --- the driver messages ----------------------------------------------------------------------------------

def test_messages_per_output_type():
    aloha = load_profile("sim_aloha")
    target = np.arange(14) * 0.01
    msgs = command_messages(aloha, target)
    assert [t for t, _ in msgs] == ["follower_left/commands/joint_group", "follower_left/commands/joint_single",
                                    "follower_right/commands/joint_group", "follower_right/commands/joint_single"]
    assert msgs[0][1].name == "arm" and list(msgs[0][1].cmd) == pytest.approx(target[:6])
    assert msgs[1][1].name == "gripper" and msgs[1][1].cmd == pytest.approx(-0.6213 + 0.06 * (1.491 + 0.6213))
    assert list(msgs[2][1].cmd) == pytest.approx(target[7:13])
    ros2 = command_messages(load_profile("aloha_ros2_interbotix"), target)
    assert ros2[3][1].cmd == pytest.approx(0.6197 + 0.13 * (1.6214 - 0.6197))   # its measured constants

    arm = load_profile("ros2_control_arm")
    [(topic, forward)] = command_messages(arm, np.arange(6) * 0.1)
    assert topic == "forward_position_controller/commands" and list(forward.data) == pytest.approx(np.arange(6) * 0.1)
    trajectory = dataclasses.replace(arm, output=dataclasses.replace(arm.output, type="joint_trajectory",
                                                                     topic="arm_controller/joint_trajectory"))
    [(topic, traj)] = command_messages(trajectory, np.arange(6) * 0.1)
    assert topic == "arm_controller/joint_trajectory" and list(traj.joint_names) == [f"joint{i}" for i in range(1, 7)]
    assert len(traj.points) == 1 and list(traj.points[0].positions) == pytest.approx(np.arange(6) * 0.1)
    assert (traj.points[0].time_from_start.sec, traj.points[0].time_from_start.nanosec) == (0, 10_000_000)

    [(topic, twist)] = command_messages(load_profile("sim_language_table"), [0.03, -0.02])
    assert topic == "commands/effector_delta" and twist.header.frame_id == "world"
    assert (twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z) == pytest.approx((0.03, -0.02, 0.0))


# --- the node, for real -----------------------------------------------------------------------------------

class FakeDriver:
    """A test-side Interbotix driver for two follower arms: joint states at 50 Hz, records the left arm's commands."""

    def __init__(self, namespace, estop_topic, finger=0.03):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"fake_xs_{uuid.uuid4().hex[:6]}", namespace=namespace, context=self.context)
        self.group, self.single, self.status = [], [], []
        self.node.create_subscription(JointGroupCommand, "follower_left/commands/joint_group", self.group.append,
                                      RELIABLE)
        self.node.create_subscription(JointSingleCommand, "follower_left/commands/joint_single", self.single.append,
                                      RELIABLE)
        self.node.create_subscription(String, "safety_status", lambda m: self.status.append(json.loads(m.data)),
                                      LATCHED)
        self.states = {arm: self.node.create_publisher(JointState, f"{arm}/joint_states", RELIABLE)
                       for arm in ("follower_left", "follower_right")}
        self.command = self.node.create_publisher(JointState, "joint_command", RELIABLE)
        self.estop = self.node.create_publisher(EStop, estop_topic, LATCHED)
        self.position = [0.0] * 6 + [0.0, finger, -finger]
        self.node.create_timer(0.02, self.publish_states)
        self.change = self.node.create_client(ChangeState, "safety_gate/change_state")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def publish_states(self):
        for pub in self.states.values():
            msg = JointState(name=STATE_NAMES, position=self.position)
            msg.header.stamp = self.node.get_clock().now().to_msg()
            pub.publish(msg)

    def spin_until(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate():
            self.executor.spin_once(timeout_sec=0.02)
        return predicate()

    def transition(self, transition_id):
        assert self.change.wait_for_service(timeout_sec=15)
        future = self.change.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        self.executor.spin_until_future_complete(future, timeout_sec=10)
        return future.result().success

    def send(self, values):
        self.command.publish(JointState(name=list(load_profile("sim_aloha").command.names),
                                        position=[float(v) for v in values]))

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def gate_process(tmp_path):
    data = yaml.safe_load((PROFILE_DIR / "sim_aloha.yaml").read_text())
    data["control"].update(ramp_in=0.0, watchdog_timeout=30.0)   # the test sends few commands
    data["command"]["on_limit"] = "reject"
    path = tmp_path / "gate_profile.yaml"
    path.write_text(yaml.safe_dump(data))
    namespace, estop = f"/gate_{uuid.uuid4().hex[:6]}", f"/estop_{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen([sys.executable, "-m", "sefm_station.safety_gate_node", "--ros-args",
                             "-r", f"__ns:={namespace}", "-r", f"/estop:={estop}", "-p", f"profile:={path}",
                             "-p", "status_period:=0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    driver = FakeDriver(namespace, estop)
    yield driver, proc
    driver.close()
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    print(out)


def left_target(arm, gripper):
    """A 14-command target: the left arm's 6 joints and gripper, the right arm at rest."""
    return list(arm) + [gripper] + [0.0] * 6 + [0.29]


def test_the_gate_node_passes_checked_targets_and_stops_on_estop(gate_process):
    driver, proc = gate_process
    g0 = (0.03 - 0.01844) / (0.058 - 0.01844)       # the measured gripper, normalised
    assert driver.transition(Transition.TRANSITION_CONFIGURE), "configure failed"
    assert driver.transition(Transition.TRANSITION_ACTIVATE), "activate failed"
    assert driver.spin_until(lambda: driver.status and driver.status[-1]["has_state"]), driver.status

    # a checked target arrives translated: 6 arm joints (rad), the gripper in rad via the ACT constants
    arm = [0.03, -0.02, 0.01, 0.0, 0.04, -0.05]
    driver.send(left_target(arm, g0 + 0.05))
    assert driver.spin_until(lambda: driver.group and driver.single), "no command reached the driver"
    assert driver.group[-1].name == "arm" and list(driver.group[-1].cmd) == pytest.approx(arm, abs=1e-6)
    assert driver.single[-1].name == "gripper"
    assert driver.single[-1].cmd == pytest.approx(-0.6213 + (g0 + 0.05) * (1.491 + 0.6213), abs=1e-5)

    # a NaN and an over-limit target do not arrive
    n = len(driver.group)
    driver.send(left_target([float("nan")] + arm[1:], g0))
    driver.send(left_target([0.03, 2.5] + arm[2:], g0))    # shoulder above 72 deg: rejected by this profile
    assert driver.spin_until(lambda: driver.status[-1]["counts"]["non_finite"] == 1
                             and driver.status[-1]["counts"]["position_limit"] == 1), driver.status[-1]
    assert len(driver.group) == n

    # deactivate holds (the last safe target, once) and nothing passes while inactive
    assert driver.transition(Transition.TRANSITION_DEACTIVATE)
    assert driver.spin_until(lambda: len(driver.group) == n + 1)
    assert list(driver.group[-1].cmd) == pytest.approx(arm, abs=1e-6)
    driver.send(left_target([0.01] * 6, g0))
    assert driver.spin_until(lambda: driver.status[-1]["counts"]["inactive"] == 1)
    assert len(driver.group) == n + 1

    # active again: passes; then the e-stop holds where the arm is (measured: zeros) and latches
    assert driver.transition(Transition.TRANSITION_ACTIVATE)
    driver.send(left_target([0.02] * 6, g0))
    assert driver.spin_until(lambda: len(driver.group) == n + 2)
    assert list(driver.group[-1].cmd) == pytest.approx([0.02] * 6, abs=1e-6)
    driver.estop.publish(EStop(engaged=True, source="test", reason="stop"))
    assert driver.spin_until(lambda: len(driver.group) == n + 3)
    assert list(driver.group[-1].cmd) == pytest.approx([0.0] * 6, abs=1e-6)   # the measured arm
    driver.send(left_target([0.04] * 6, g0))
    assert driver.spin_until(lambda: driver.status[-1]["counts"]["estop"] >= 1
                             and driver.status[-1]["state"] == "estopped")
    driver.spin_until(lambda: False, timeout=0.5)
    assert len(driver.group) == n + 3 and not any(list(m.cmd) == pytest.approx([0.04] * 6) for m in driver.group)
    assert proc.poll() is None


def test_a_bad_profile_fails_configure_and_autostart_serves_language_table():
    from geometry_msgs.msg import TwistStamped

    from sefm_station.safety_gate_node import SafetyGateNode

    context = rclpy.Context()
    rclpy.init(context=context)
    namespace = f"/lt_{uuid.uuid4().hex[:6]}"
    try:
        bad = SafetyGateNode(namespace=namespace + "_bad", context=context, profile="no_such_robot")
        assert bad.trigger_configure().name == "FAILURE"
        bad.destroy_node()
        gate = SafetyGateNode(namespace=namespace, context=context, profile="sim_language_table", autostart=True)
        peer = rclpy.create_node("peer", namespace=namespace, context=context)
        got = []
        peer.create_subscription(TwistStamped, "commands/effector_delta", got.append, RELIABLE)
        state = peer.create_publisher(JointState, "joint_states", RELIABLE)
        command = peer.create_publisher(JointState, "joint_command", RELIABLE)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(gate)
        executor.add_node(peer)

        def passed():
            return [m for m in got if m.twist.linear.x == pytest.approx(0.03)]

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not passed():
            state.publish(JointState(name=["effector_x", "effector_y", "target_x", "target_y"],
                                     position=[0.3, 0.0, 0.3, 0.0]))
            if gate.gate is not None and gate.gate.active and gate.gate.ramp(time.monotonic()) >= 1.0:
                command.publish(JointState(name=["delta_x", "delta_y"], position=[0.03, -0.2]))
            executor.spin_once(timeout_sec=0.02)
        # (the watchdog's zero hold may come first: the ramp-in lasts 1 s); the command arrives, boxed to 0.1
        assert passed(), [m.twist.linear for m in got]
        assert passed()[0].twist.linear.y == pytest.approx(-0.1)
        # the driver repeats its last delta: a refused command sends the zero hold at once (before the watchdog)
        n = len(got)
        command.publish(JointState(name=["delta_x", "delta_y"], position=[float("nan"), 0.0]))
        def stopped():
            return any((m.twist.linear.x, m.twist.linear.y) == (0.0, 0.0) for m in got[n:])

        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline and not stopped():
            executor.spin_once(timeout_sec=0.02)
        assert stopped(), [m.twist.linear for m in got[n:]]
        assert gate.gate.counts["non_finite"] == 1 and gate.gate.counts["watchdog"] <= 1
        executor.shutdown()
        gate.destroy_node()
        peer.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
