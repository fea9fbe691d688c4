"""The simulated drivers as real processes, driven by clients that know only the hardware's contract.

The ALOHA client uses only what the Interbotix X-Series `xs_sdk` offers (the seven services, the three command
topics, joint_states); the simulator-only `sim/reset` puts the scene back between tests. Each driver runs on a
private namespace (conftest gives the test process its own ROS domain).
"""
import math
import uuid

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import TwistStamped
from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand, JointTrajectoryCommand
from interbotix_xs_msgs.srv import MotorGains, OperatingModes, Reboot, RegisterValues, RobotInfo, TorqueEnable
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectoryPoint

from helpers import Spinning, spawn
from sefm_interfaces.srv import ResetStation

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
STATE_NAMES = list(ARM) + ["gripper", "left_finger", "right_finger"]
SERVICES = {"get_robot_info": RobotInfo, "set_operating_modes": OperatingModes, "torque_enable": TorqueEnable,
            "reboot_motors": Reboot, "set_motor_pid_gains": MotorGains, "set_motor_registers": RegisterValues,
            "get_motor_registers": RegisterValues}
START = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0]
TARGET = [0.3, -0.6, 0.9, 0.2, -0.1, 0.3]    # within the vx300s limits


class Client(Spinning):
    """A ROS client on the driver's namespace: subscriptions, publishers and service calls by relative name."""
    poll = 0.02

    def __init__(self, namespace: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"client_{uuid.uuid4().hex[:6]}", namespace=namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.logs: list[Log] = []
        self.node.create_subscription(Log, "/rosout", self.logs.append, QoSProfile(depth=200))
        self.clients, self.pubs = {}, {}

    def subscribe(self, msg_type, topic: str) -> list:
        received = []
        self.node.create_subscription(msg_type, topic, received.append, RELIABLE)
        return received

    def publish(self, msg_type, topic: str, msg) -> None:
        if topic not in self.pubs:
            self.pubs[topic] = self.node.create_publisher(msg_type, topic, RELIABLE)
            self.spin_until(lambda: self.pubs[topic].get_subscription_count() > 0, 10)
        self.pubs[topic].publish(msg)

    def wait_for(self, srv_type, name: str, timeout: float = 20.0) -> bool:
        if name not in self.clients:
            self.clients[name] = self.node.create_client(srv_type, name)
        return self.clients[name].wait_for_service(timeout_sec=timeout)

    def call(self, srv_type, service: str, **fields):
        assert self.wait_for(srv_type, service), f"no service {service}"
        future = self.clients[service].call_async(srv_type.Request(**fields))
        self.executor.spin_until_future_complete(future, timeout_sec=10)
        assert future.done(), f"{service} did not answer"
        return future.result()


    def refusals(self, text: str = "refused") -> list[str]:
        return [m.msg for m in self.logs if text in m.msg]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def stop(proc) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    except Exception:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


# --- ALOHA ----------------------------------------------------------------------------------------------

def driver_and_client(module: str, params: tuple[str, ...], topics: dict):
    """A driver process on a private namespace and a client subscribed to `topics` ({attribute: (type, name)});
    stops both after the tests and fails on a traceback in the driver's output."""
    ns = f"/robot_{uuid.uuid4().hex[:6]}"
    proc = spawn(module, "-r", f"__ns:={ns}", *[a for p in params for a in ("-p", p)])
    client = Client(ns)
    for attribute, (msg_type, topic) in topics.items():
        setattr(client, attribute, client.subscribe(msg_type, topic))
    try:
        yield client
    finally:
        client.close()
        out = stop(proc)
        assert "Traceback" not in out, out


@pytest.fixture(scope="module")
def aloha():
    yield from driver_and_client("sefm_drivers.aloha_driver", ("image_width:=32", "image_height:=24",
                                                               "camera_rate:=5.0"),
                                 {"states": (JointState, "follower_left/joint_states"),
                                  "right_states": (JointState, "follower_right/joint_states"),
                                  "frames": (Image, "cam_high/camera/color/image_rect_raw")})


def arm_group(client, msg_type, topic, **fields):
    client.publish(msg_type, f"follower_left/commands/{topic}", msg_type(**fields))


def position(client) -> dict[str, float]:
    msg = client.states[-1]
    return dict(zip(msg.name, msg.position))


def reaches(client, target, tol=0.03, timeout=5.0) -> bool:
    return client.spin_until(lambda: client.states and all(
        abs(position(client)[j] - t) < tol for j, t in zip(ARM, target)), timeout)


def fresh_robot(client):
    """Scene and arms back to the start (the simulator-only reset), then the ALOHA follower setup."""
    assert client.call(ResetStation, "sim/reset", seed=0).success
    torque = "follower_left/torque_enable"
    client.call(TorqueEnable, torque, cmd_type="group", name="all", enable=True)
    client.call(OperatingModes, "follower_left/set_operating_modes", cmd_type="group", name="arm", mode="position",
                profile_type="velocity", profile_velocity=0, profile_acceleration=0)
    client.call(OperatingModes, "follower_left/set_operating_modes", cmd_type="single", name="gripper",
                mode="current_based_position", profile_type="velocity", profile_velocity=0, profile_acceleration=0)
    client.states.clear()
    assert reaches(client, START, tol=0.05)


def test_a_vendor_client_sets_up_the_arm_and_moves_it(aloha):
    c = aloha
    for name, srv in SERVICES.items():                  # the vendor client waits for all seven
        assert c.wait_for(srv, f"follower_left/{name}"), name
        assert c.wait_for(srv, f"follower_right/{name}"), name
    assert c.spin_until(lambda: c.states and c.right_states, 10), "no joint_states"
    first = c.states[-1]
    assert list(first.name) == STATE_NAMES and len(first.velocity) == 9
    assert first.position[8] == pytest.approx(-first.position[7])

    arm = c.call(RobotInfo, "follower_left/get_robot_info", cmd_type="group", name="arm")
    assert arm.num_joints == 6 and list(arm.joint_names) == list(ARM)
    assert len(arm.joint_lower_limits) == len(arm.joint_upper_limits) == len(arm.joint_velocity_limits) == 6
    assert all(lo < 0 < hi for lo, hi in zip(arm.joint_lower_limits, arm.joint_upper_limits))
    assert arm.joint_upper_limits[1] == pytest.approx(math.radians(72), abs=1e-3)      # shoulder, from the MJCF
    assert arm.joint_velocity_limits[0] == pytest.approx(math.pi)
    assert list(arm.joint_sleep_positions) == pytest.approx([0, -2.05, 1.7, 0, -2.0, 0])
    assert list(arm.joint_state_indices) == [0, 1, 2, 3, 4, 5]
    grip = c.call(RobotInfo, "follower_left/get_robot_info", cmd_type="single", name="gripper")
    assert list(grip.joint_names) == ["left_finger"] and list(grip.joint_state_indices) == [7]
    assert grip.joint_lower_limits[0] == pytest.approx(0.021) and grip.joint_upper_limits[0] == pytest.approx(0.057)
    assert c.call(RobotInfo, "follower_left/get_robot_info", cmd_type="group", name="all").num_joints == 7

    fresh_robot(c)
    assert c.call(RobotInfo, "follower_left/get_robot_info", cmd_type="single", name="gripper").mode == \
        "current_based_position"
    arm_group(c, JointGroupCommand, "joint_group", name="arm", cmd=TARGET)
    arm_group(c, JointSingleCommand, "joint_single", name="gripper", cmd=1.0)         # rad (the gripper motor)
    assert reaches(c, TARGET), f"arm at {position(c)}, target {TARGET}"
    assert c.spin_until(lambda: abs(position(c)["gripper"] - 1.0) < 0.1, 3), position(c)
    finger = 0.01844 + (1.0 + 0.6213) / (1.4910 + 0.6213) * (0.058 - 0.01844)          # the ACT profile
    assert position(c)["left_finger"] == pytest.approx(finger, abs=0.003)
    assert abs(c.right_states[-1].position[0] - START[0]) < 0.05                        # the other arm held
    ticks = c.call(RegisterValues, "follower_left/get_motor_registers", cmd_type="single", name="waist",
                   reg="Present_Position").values
    assert abs(ticks[0] - (2048 + TARGET[0] * 4096 / (2 * math.pi))) < 30


def test_b_a_torqued_off_arm_does_not_follow(aloha):
    c = aloha
    fresh_robot(c)
    c.call(TorqueEnable, "follower_left/torque_enable", cmd_type="group", name="arm", enable=False)
    before = position(c)["waist"]
    arm_group(c, JointGroupCommand, "joint_group", name="arm", cmd=TARGET)
    c.spin_for(1.5)
    assert abs(position(c)["waist"] - before) < 0.05, "a torqued-off waist followed the command"
    assert c.spin_until(lambda: any("torque is off" in m for m in c.refusals()), 3)
    regs = c.call(RegisterValues, "follower_left/get_motor_registers", cmd_type="group", name="arm",
                  reg="Torque_Enable").values
    assert list(regs) == [0] * 6
    # torque on again: it holds where it is (the refused command is not replayed), then follows new commands
    c.call(TorqueEnable, "follower_left/torque_enable", cmd_type="group", name="arm", enable=True)
    c.spin_for(0.5)
    assert abs(position(c)["waist"] - before) < 0.05
    arm_group(c, JointGroupCommand, "joint_group", name="arm", cmd=TARGET)
    assert reaches(c, TARGET)


def test_c_bad_commands_are_refused_and_do_not_move_the_arm(aloha):
    c = aloha
    fresh_robot(c)
    c.spin_for(0.5)
    before = position(c)
    bad = [(JointGroupCommand, "joint_group", {"name": "arm", "cmd": TARGET[:5]}),          # wrong length
           (JointGroupCommand, "joint_group", {"name": "arm", "cmd": [float("nan")] + TARGET[1:]}),
           (JointGroupCommand, "joint_group", {"name": "arms", "cmd": TARGET}),             # unknown group
           (JointSingleCommand, "joint_single", {"name": "elbow_joint", "cmd": 0.5}),       # unknown joint
           (JointSingleCommand, "joint_single", {"name": "waist", "cmd": float("inf")}),
           (JointSingleCommand, "joint_single", {"name": "shoulder", "cmd": 2.5})]          # beyond its limit
    n0 = len(c.refusals())
    for msg_type, topic, fields in bad:
        arm_group(c, msg_type, topic, **fields)
    assert c.spin_until(lambda: len(c.refusals()) - n0 >= len(bad), 5), c.refusals()[n0:]
    c.spin_for(1.0)
    after = position(c)
    assert all(abs(after[j] - before[j]) < 0.02 for j in ARM), (before, after)
    # and a service asked for a joint that does not exist answers empty, as xs_sdk does
    assert c.call(RobotInfo, "follower_left/get_robot_info", cmd_type="single", name="elbow_joint").num_joints == 0


def trajectory(points, times, cmd_type="group", name="arm"):
    msg = JointTrajectoryCommand(cmd_type=cmd_type, name=name)
    msg.traj.joint_names = list(ARM)
    msg.traj.points = [JointTrajectoryPoint(positions=list(p), time_from_start=Duration(
        sec=int(t), nanosec=int((t % 1) * 1e9))) for p, t in zip(points, times)]
    return msg


def test_d_trajectories_need_two_points_and_run_one_at_a_time(aloha):
    c = aloha
    fresh_robot(c)
    n0 = len(c.refusals("at least 2 points"))
    c.publish(JointTrajectoryCommand, "follower_left/commands/joint_trajectory", trajectory([TARGET], [1.0]))
    assert c.spin_until(lambda: len(c.refusals("at least 2 points")) > n0, 3)
    c.spin_for(1.0)
    assert abs(position(c)["waist"] - START[0]) < 0.02
    c.publish(JointTrajectoryCommand, "follower_left/commands/joint_trajectory",
              trajectory([START, TARGET], [0.0, 2.5]))
    c.publish(JointTrajectoryCommand, "follower_left/commands/joint_trajectory",
              trajectory([START, [0.0] * 6], [0.0, 1.0]))             # while the first runs: refused
    assert c.spin_until(lambda: any("already running" in m for m in c.refusals()), 3)
    assert c.spin_until(lambda: position(c)["waist"] > START[0] + 0.01, 2)
    assert position(c)["waist"] < TARGET[0] - 0.01, "the trajectory jumped to its end"
    assert reaches(c, TARGET, timeout=6)


def test_aloha_reset_gives_the_same_first_frame(aloha):
    c = aloha
    frames = lambda stamp: [f for f in c.frames if f.header.stamp.sec * 10**9 + f.header.stamp.nanosec == stamp]  # noqa: E731
    first = []
    for _ in range(2):
        stamp = c.call(ResetStation, "sim/reset", seed=4).episode_id
        assert c.spin_until(lambda: frames(stamp), 5)
        first.append(frames(stamp)[0])
        arm_group(c, JointGroupCommand, "joint_group", name="arm", cmd=TARGET)
        c.spin_for(0.5)
    assert (first[0].width, first[0].height, first[0].encoding) == (32, 24, "rgb8")
    assert bytes(first[0].data) == bytes(first[1].data)


# --- LanguageTable ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def language_table():
    yield from driver_and_client("sefm_drivers.language_table_driver",
                                 ("image_width:=64", "image_height:=36", "families:=block2block", "seed:=3"),
                                 {"frames": (Image, "camera/image_raw"), "states": (JointState, "joint_states")})


def delta(x, y):
    msg = TwistStamped()
    msg.twist.linear.x, msg.twist.linear.y = float(x), float(y)
    return msg


def test_e_language_table_moves_on_a_delta_and_streams_frames(language_table):
    c = language_table
    assert c.spin_until(lambda: len(c.frames) >= 2 and c.states, 15)
    frame = c.frames[-1]
    assert (frame.encoding, frame.width, frame.height, frame.step, len(frame.data)) == ("rgb8", 64, 36, 192,
                                                                                      64 * 36 * 3)
    assert list(c.states[-1].name) == ["effector_x", "effector_y", "target_x", "target_y"]
    key = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec)  # noqa: E731
    assert key(c.states[0]) in {key(f) for f in c.frames} or c.spin_until(  # one observation: one stamp
        lambda: key(c.states[0]) in {key(f) for f in c.frames}, 2)
    x0 = c.states[-1].position[0]
    dx = 0.02 if x0 < 0.375 else -0.02             # towards the middle of the workspace
    c.publish(TwistStamped, "commands/effector_delta", delta(dx, 0.0))
    assert c.spin_until(lambda: abs(c.states[-1].position[0] - x0) > 0.05, 5), "the effector did not move"
    c.publish(TwistStamped, "commands/effector_delta", delta(float("nan"), 0.0))     # refused: the robot stops
    assert c.spin_until(lambda: c.refusals("not finite"), 3)
    c.spin_for(0.5)
    held = c.states[-1].position[:2]
    c.spin_for(0.5)
    assert np.allclose(c.states[-1].position[:2], held, atol=1e-3)
    assert all(math.isfinite(v) for m in c.states for v in m.position)


def test_f_reset_with_a_seed_gives_the_same_first_frame_twice(language_table):
    c = language_table
    frames = lambda stamp: [f for f in c.frames if f.header.stamp.sec * 10**9 + f.header.stamp.nanosec == stamp]  # noqa: E731
    first = []
    for seed in (11, 11, 12):
        answer = c.call(ResetStation, "sim/reset", seed=seed)
        assert answer.success, answer.message
        assert c.spin_until(lambda: frames(answer.episode_id), 5)
        first.append(bytes(frames(answer.episode_id)[0].data))
        c.publish(TwistStamped, "commands/effector_delta", delta(0.05, 0.05))   # move things about in between
        c.spin_for(0.5)
    assert first[0] == first[1]
    assert first[0] != first[2]


# --- the command line -------------------------------------------------------------------------------------

def test_the_cli_takes_flags_and_refuses_bad_ones():
    from sefm_core.config import ConfigError
    from sefm_drivers import cli

    params = cli.params_from(cli.parser().parse_args(["aloha", "--rate", "25", "--image-size", "64x48",
                                                      "--cameras", "cam_high,cam_left_wrist"]))
    assert (params.control_rate, params.image_width, params.image_height) == (25.0, 64, 48)
    assert cli.params_from(cli.parser().parse_args(["language_table", "--rate", "5"])).rate == 5.0
    with pytest.raises(ConfigError):
        cli.params_from(cli.parser().parse_args(["aloha", "--cameras", "cam_low"]))
    with pytest.raises(ConfigError):
        cli.params_from(cli.parser().parse_args(["language_table", "--rate", "0"]))
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["aloha", "--image-size", "64"])
    assert cli.namespace_of("robot/") == "/robot" and cli.namespace_of("") == ""
    assert cli.main(["aloha", "--image-size", "4x4"]) == 2          # one line, exit 2, before rclpy starts
    assert cli.main(["language_table", "--namespace", "bad name"]) == 2


# --- the X-Series motor model without ROS -------------------------------------------------------------------

def test_operating_modes_set_the_units_of_commands():
    from sefm_drivers.xs_arm import RequestError, XSArm

    arm = XSArm(start=dict(zip(ARM, START)))
    arm.set_operating_modes("single", "gripper", "linear_position")
    arm.single_command("gripper", 0.08)                      # finger separation (m): 0.04 m per finger
    assert arm.targets()[1] == pytest.approx(0.04)
    arm.single_command("gripper", 1.0)                       # beyond the fingers' travel: at the stop
    assert arm.targets()[1] == pytest.approx(0.057)
    with pytest.raises(RequestError):
        arm.set_operating_modes("single", "waist", "linear_position")   # an arm joint has no linear mode
    arm.set_operating_modes("single", "waist", "velocity")
    arm.single_command("waist", 0.5)                         # rad/s
    for _ in range(50):
        arm.tick(0.02)
    assert arm.targets()[0][0] == pytest.approx(START[0] + 0.5, abs=1e-6)
    with pytest.raises(RequestError):
        arm.single_command("waist", 4.0)                     # above the velocity limit (pi rad/s)
    arm.set_operating_modes("group", "arm", "position", "time", 1000)   # every move takes 1 s
    arm.group_command("arm", TARGET)
    for _ in range(25):
        arm.tick(0.02)
    assert arm.targets()[0][2] == pytest.approx(START[2] + 0.5 * (TARGET[2] - START[2]), abs=1e-6)
    arm.set_operating_modes("group", "arm", "pwm")
    held = arm.targets()[0].copy()
    assert arm.group_command("arm", START)                  # accepted, with a note: pwm is not simulated
    arm.tick(0.02)
    assert np.allclose(arm.targets()[0], held)


def test_registers_and_torque():
    from sefm_drivers.xs_arm import RequestError, XSArm

    arm = XSArm(start=dict(zip(ARM, START)))
    present = {**dict(zip(ARM, TARGET)), "gripper": 0.0}
    velocity = dict.fromkeys(present, 0.0)
    arm.set_register("group", "arm", "Profile_Velocity", 100, present)
    assert arm.get_register("group", "arm", "Profile_Velocity", present, velocity) == [100] * 6
    arm.set_gains("single", "elbow", kp_pos=640, ki_pos=0, kd_pos=3600, k1=0, k2=0,
                  kp_vel=100, ki_vel=1920)
    assert arm.get_register("single", "elbow", "Position_D_Gain", present, velocity) == [3600]
    for reg in ("Present_Position", "No_Such_Register"):
        with pytest.raises(RequestError):
            arm.set_register("single", "waist", reg, 1, present)
    arm.set_register("single", "waist", "Torque_Enable", 0, present)
    with pytest.raises(RequestError, match="torque is off"):
        arm.single_command("waist", 0.1)
    arm.torque_enable("single", "waist", True, present)      # holds where it is now
    assert arm.targets()[0][0] == pytest.approx(TARGET[0])
