"""The simulated ALOHA: one MuJoCo ALOHA, exposed as one Interbotix `xs_sdk` driver per follower arm.

Names are relative, so the whole robot can be pushed under a namespace. Per arm (`follower_left`,
`follower_right`; parameters `left_arm`, `right_arm`):

  pub  <arm>/joint_states               sensor_msgs/JointState, reliable depth 10, `joint_state_rate` (100 Hz):
                                        waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate,
                                        gripper (rad), left_finger (m), right_finger (= -left_finger); velocity
                                        rad/s (fingers 0); effort 0 (no current model)
  sub  <arm>/commands/joint_group       interbotix_xs_msgs/JointGroupCommand (group `arm`: 6 values; `all`: 7)
       <arm>/commands/joint_single      interbotix_xs_msgs/JointSingleCommand (`gripper` or one arm joint)
       <arm>/commands/joint_trajectory  interbotix_xs_msgs/JointTrajectoryCommand (>= 2 points, one at a time,
                                        linearly interpolated by time_from_start)
  srv  <arm>/get_robot_info, set_operating_modes, torque_enable, reboot_motors, set_motor_pid_gains,
       set_motor_registers, get_motor_registers  (interbotix_xs_msgs; semantics in `sefm_drivers.xs_arm`)

  pub  cam_high/camera/color/image_rect_raw  sensor_msgs/Image rgb8, reliable depth 2, `camera_rate` (10 Hz),
                                        `image_width` x `image_height` (also cam_left_wrist, cam_right_wrist)

Simulator only (nothing a real robot has):
  srv  sim/reset                        sefm_interfaces/ResetStation: the scene to `seed` (-1: the next one),
                                        the arms to the start pose; `episode_id` in the answer is the header stamp
                                        (ns) of the first joint states and frames after the reset

The physics steps on a timer at `control_rate` (50 Hz = real time; 0.02 s of simulation a tick); commands only
change actuator targets. A refused command (see `xs_arm`) changes nothing and logs one error line. A torqued-off
motor goes limp (its actuator exerts no force; gravity and joint friction act) and ignores commands; torque on
makes it hold where it is. current and pwm modes are accepted but simulated as holding position. PID gains and
registers are stored and read back, not simulated.
"""
from __future__ import annotations

import sys

import numpy as np
from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand, JointTrajectoryCommand
from interbotix_xs_msgs.srv import MotorGains, OperatingModes, Reboot, RegisterValues, RobotInfo, TorqueEnable
from sensor_msgs.msg import Image, JointState

from sefm_drivers.images import rgb_image
from sefm_drivers.params import ALOHA_CAMERAS, AlohaDriverParams
from sefm_drivers.xs_arm import ARM_JOINTS, MOTORS, STATE_NAMES, GripperProfile, RequestError, XSArm
from sefm_interfaces.srv import ResetStation
from sefm_ros.common import SefmNode, reliable, spin_main, time_of
from sefm_sim.envs.aloha import CONTROL_DT, START_ARM, START_FINGER, AlohaEnv
from sefm_sim.envs.rendering import Camera

SIDES = ("left", "right")


class SimArm:
    """One arm of the MuJoCo model: where its joints and actuators are, and its X-Series motors."""

    def __init__(self, model, side: str, ns: str, profile: GripperProfile, torque: bool):
        self.ns = ns
        joint = lambda j: model.joint(f"vx300s_{side}/{j}")  # noqa: E731
        self.qpos = np.array([joint(j).qposadr[0] for j in ARM_JOINTS])
        self.dof = np.array([joint(j).dofadr[0] for j in ARM_JOINTS])
        finger = joint("left_finger")
        self.finger_qpos, self.finger_dof = finger.qposadr[0], finger.dofadr[0]
        by_joint = {int(model.actuator_trnid[a, 0]): a for a in range(model.nu)}
        self.arm_act = np.array([by_joint[joint(j).id] for j in ARM_JOINTS])
        self.finger_act = np.array([by_joint[finger.id], by_joint[joint("right_finger").id]])
        self.kp = model.actuator_gainprm[:, 0].copy()    # the position actuators' gains, for torque on again
        limits = {j: tuple(model.jnt_range[joint(j).id]) for j in ARM_JOINTS if model.jnt_limited[joint(j).id]}
        finger_limits = tuple(model.jnt_range[finger.id]) if model.jnt_limited[finger.id] else None
        self.profile = profile
        self.arm = XSArm(limits, *([finger_limits] if finger_limits else []), gripper=profile,
                         start=self.start_pose(), torque=torque)

    def start_pose(self) -> dict[str, float]:
        return {**dict(zip(ARM_JOINTS, START_ARM)), "gripper": self.profile.to_rad(START_FINGER)}

    def present(self, data) -> tuple[dict[str, float], dict[str, float]]:
        """(positions, velocities) of the 7 motors: rad and rad/s, the gripper as its motor angle."""
        pos = dict(zip(ARM_JOINTS, data.qpos[self.qpos].tolist()))
        vel = dict(zip(ARM_JOINTS, data.qvel[self.dof].tolist()))
        finger = float(data.qpos[self.finger_qpos])
        slope = (self.profile.open_rad - self.profile.closed_rad) / (self.profile.open_m - self.profile.closed_m)
        pos["gripper"] = self.profile.to_rad(finger)
        vel["gripper"] = float(data.qvel[self.finger_dof]) * slope
        return pos, vel

    def apply(self, model, data) -> None:
        """The motors' targets and torque into the actuators: ctrl = target; a limp motor's actuator has no gain."""
        arm, finger = self.arm.targets()
        data.ctrl[self.arm_act] = arm
        data.ctrl[self.finger_act] = [finger, -finger]
        for j, acts in [*zip(ARM_JOINTS, ([a] for a in self.arm_act)), ("gripper", self.finger_act)]:
            on = self.arm.torqued(j)
            for a in acts:
                model.actuator_gainprm[a, 0] = self.kp[a] if on else 0.0
                model.actuator_biasprm[a, 1] = -self.kp[a] if on else 0.0

    def joint_state(self, data, stamp) -> JointState:
        pos, vel = self.present(data)
        finger = float(data.qpos[self.finger_qpos])
        msg = JointState(name=list(STATE_NAMES), position=[pos[j] for j in MOTORS] + [finger, -finger],
                         velocity=[vel[j] for j in MOTORS] + [0.0, 0.0], effort=[0.0] * len(STATE_NAMES))
        msg.header.stamp = stamp
        return msg


class AlohaDriver(SefmNode):
    PARAMETERS = AlohaDriverParams

    def __init__(self, namespace: str = "", context=None, **overrides):
        super().__init__("aloha_driver", namespace, context, **overrides)
        p = self.params
        cameras = p.camera_list()
        self.env = AlohaEnv(task=p.task, image_size=(p.image_width, p.image_height), render_images=bool(cameras))
        self.seed = p.seed
        self.env.reset(seed=self.seed)
        self.sim = self.env.sim
        profile = GripperProfile(p.gripper_open_rad, p.gripper_closed_rad, p.finger_open_m, p.finger_closed_m)
        self.arms = [SimArm(self.sim.model, side, ns.strip("/"), profile, p.torque_on_start)
                     for side, ns in zip(SIDES, (p.left_arm, p.right_arm))]
        self.cameras = {}
        for cam in cameras:
            camera = self.sim.camera if ALOHA_CAMERAS[cam] == "top" else \
                Camera(self.sim.model, self.sim.data, ALOHA_CAMERAS[cam], p.image_width, p.image_height)
            self.cameras[cam] = (camera, self.create_publisher(Image, f"{cam}/camera/color/image_rect_raw",
                                                               reliable(2)))
        self.held_notes: set[str] = set()
        self.last_stamp_ns = 0
        for arm in self.arms:
            self._serve(arm)
            arm.apply(self.sim.model, self.sim.data)
        self.create_service(ResetStation, "sim/reset", self.on_reset)
        self.create_timer(1.0 / p.control_rate, self.tick)
        self.create_timer(1.0 / p.joint_state_rate, self.publish_states)
        if cameras:
            self.create_timer(1.0 / p.camera_rate, self.publish_frames)
        self.get_logger().info(f"ALOHA ({p.task}): arms {', '.join(a.ns for a in self.arms)}, cameras "
                               f"{', '.join(cameras) or 'none'}; physics at {p.control_rate:g} Hz")

    # --- the contract, per arm ---------------------------------------------------------------

    def _serve(self, arm: SimArm) -> None:
        ns = arm.ns
        arm.state_pub = self.create_publisher(JointState, f"{ns}/joint_states", reliable(10))
        self.create_subscription(JointGroupCommand, f"{ns}/commands/joint_group",
                                 lambda m: self._command(arm, "group", m.name, lambda: arm.arm.group_command(
                                     m.name, list(m.cmd))), reliable(10))
        self.create_subscription(JointSingleCommand, f"{ns}/commands/joint_single",
                                 lambda m: self._command(arm, "single", m.name, lambda: arm.arm.single_command(
                                     m.name, m.cmd)), reliable(10))
        self.create_subscription(JointTrajectoryCommand, f"{ns}/commands/joint_trajectory",
                                 lambda m: self._trajectory(arm, m), reliable(10))
        for srv, name, handler in ((RobotInfo, "get_robot_info", self._robot_info),
                                   (OperatingModes, "set_operating_modes", self._modes),
                                   (TorqueEnable, "torque_enable", self._torque),
                                   (Reboot, "reboot_motors", self._reboot),
                                   (MotorGains, "set_motor_pid_gains", self._gains),
                                   (RegisterValues, "set_motor_registers", self._set_register),
                                   (RegisterValues, "get_motor_registers", self._get_register)):
            self.create_service(srv, f"{ns}/{name}",
                                lambda req, res, h=handler, name=name: self._service(arm, name, h, req, res))

    def _refused(self, arm: SimArm, what: str, exc: Exception) -> None:
        self.get_logger().error(f"{arm.ns}: refused {what}: {exc}")

    def _command(self, arm: SimArm, kind: str, name: str, run) -> None:
        try:
            notes = run()
        except RequestError as exc:
            self._refused(arm, f"joint {kind} command {name!r}", exc)
            return
        except (TypeError, ValueError) as exc:   # e.g. a value that is no number
            self._refused(arm, f"joint {kind} command {name!r}", exc)
            return
        for note in notes:
            if f"{arm.ns}/{note}" not in self.held_notes:
                self.held_notes.add(f"{arm.ns}/{note}")
                self.get_logger().warn(f"{arm.ns}: {note}")

    def _trajectory(self, arm: SimArm, msg: JointTrajectoryCommand) -> None:
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.traj.points]
        points = [list(p.positions) for p in msg.traj.points]
        try:
            arm.arm.start_trajectory(msg.cmd_type, msg.name, times, points)
        except RequestError as exc:
            self._refused(arm, f"trajectory for {msg.cmd_type} {msg.name!r}", exc)

    def _service(self, arm: SimArm, name: str, handler, request, response):
        try:
            return handler(arm, request, response)
        except RequestError as exc:   # as xs_sdk: an error line and an empty answer
            self._refused(arm, f"{name}({request.cmd_type}, {request.name!r})", exc)
            return response

    def _robot_info(self, arm: SimArm, request, response):
        for key, value in arm.arm.robot_info(request.cmd_type, request.name).items():
            setattr(response, key, value)
        return response

    def _modes(self, arm: SimArm, request, response):
        arm.arm.set_operating_modes(request.cmd_type, request.name, request.mode, request.profile_type,
                                    request.profile_velocity, request.profile_acceleration)
        self.get_logger().info(f"{arm.ns}: {request.cmd_type} {request.name}: mode {request.mode}, profile "
                               f"{request.profile_type or 'velocity'} {request.profile_velocity}/"
                               f"{request.profile_acceleration}")
        return response

    def _torque(self, arm: SimArm, request, response):
        arm.arm.torque_enable(request.cmd_type, request.name, request.enable, arm.present(self.sim.data)[0])
        arm.apply(self.sim.model, self.sim.data)
        self.get_logger().info(f"{arm.ns}: torque {'on' if request.enable else 'off'} for "
                               f"{request.cmd_type} {request.name}")
        return response

    def _reboot(self, arm: SimArm, request, response):
        # Simulated motors never enter an error state: a smart reboot has nothing to do; a full one restarts
        # the motors, which come back torqued off unless `enable` asks for torque.
        arm.arm.resolve(request.cmd_type, request.name)
        if not request.smart_reboot:
            arm.arm.torque_enable(request.cmd_type, request.name, request.enable, arm.present(self.sim.data)[0])
            arm.apply(self.sim.model, self.sim.data)
        return response

    def _gains(self, arm: SimArm, request, response):
        arm.arm.set_gains(request.cmd_type, request.name, **{k: getattr(request, k) for k in (
            "kp_pos", "ki_pos", "kd_pos", "k1", "k2", "kp_vel", "ki_vel")})
        return response

    def _set_register(self, arm: SimArm, request, response):
        arm.arm.set_register(request.cmd_type, request.name, request.reg, request.value,
                             arm.present(self.sim.data)[0])
        arm.apply(self.sim.model, self.sim.data)
        return response

    def _get_register(self, arm: SimArm, request, response):
        response.values = arm.arm.get_register(request.cmd_type, request.name, request.reg,
                                               *arm.present(self.sim.data))
        return response

    # --- physics and sensors ---------------------------------------------------------------

    def tick(self) -> None:
        for arm in self.arms:
            arm.arm.tick(CONTROL_DT)
            arm.apply(self.sim.model, self.sim.data)
        self.sim.step()

    def next_stamp(self):
        self.last_stamp_ns = max(self.get_clock().now().nanoseconds, self.last_stamp_ns + 1)
        return time_of(self.last_stamp_ns)

    def publish_states(self, stamp=None) -> None:
        stamp = stamp or self.next_stamp()
        for arm in self.arms:
            arm.state_pub.publish(arm.joint_state(self.sim.data, stamp))

    def publish_frames(self, stamp=None) -> None:
        stamp = stamp or self.next_stamp()
        for cam, (camera, pub) in self.cameras.items():
            pub.publish(rgb_image(camera.render(), stamp, f"{cam}_color_optical_frame"))

    def on_reset(self, request, response):
        self.seed = self.seed + 1 if request.seed < 0 else int(request.seed)
        self.env.reset(seed=self.seed)
        for arm in self.arms:
            arm.arm.reset(arm.start_pose())
            arm.apply(self.sim.model, self.sim.data)
        stamp = self.next_stamp()
        self.publish_states(stamp)
        self.publish_frames(stamp)
        response.success, response.episode_id = True, self.last_stamp_ns
        response.message = f"scene reset with seed {self.seed}" + (f" ({request.reason})" if request.reason else "")
        self.get_logger().info(response.message)
        return response

    def destroy_node(self):
        for camera, _ in self.cameras.values():
            if camera is not self.sim.camera:
                camera.close()
        self.env.close()
        return super().destroy_node()


def main(argv=None) -> int:
    return spin_main(AlohaDriver, argv)


if __name__ == "__main__":
    sys.exit(main())
