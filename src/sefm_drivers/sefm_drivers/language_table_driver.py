"""The simulated LanguageTable robot: a 2-D end-effector delta robot on standard messages.

Relative names (push the robot under a namespace from outside):

  sub  commands/effector_delta  geometry_msgs/TwistStamped: `twist.linear.x`, `.y` = the move of the effector
                                target in m per control period (0.1 s; the LanguageTable action), clipped to
                                +-0.1 m per axis; the target is clipped to the workspace (x 0.15..0.6 m,
                                y +-0.3048 m). Equivalently a velocity of 10 x that in m/s at 10 Hz. linear.z and
                                angular are ignored (height and orientation are fixed). Zero-order hold: the
                                last command is applied again every period until the next one. A NaN or
                                infinite command is refused with a log line and the robot stops (the held
                                command becomes zero); no watchdog (the safety gate's job).
  pub  joint_states             sensor_msgs/JointState: effector_x, effector_y, target_x, target_y (m)
       effector_pose            geometry_msgs/PoseStamped (frame `world`, robot base at the origin): the effector
       camera/image_raw         sensor_msgs/Image rgb8, image_width x image_height, reliable depth 2
                                (one frame, joint state and pose per control period, with one header stamp)

Simulator only:
  srv  sim/reset                sefm_interfaces/ResetStation: a new scene from `seed` (-1: the next one); the held
                                command becomes zero; `episode_id` in the answer is the header stamp (ns) of the
                                first observation after the reset
  pub  sim/ground_truth         sefm_interfaces/SimGroundTruth per observation (the same stamp), only while
                                someone subscribes: block positions, the scene's goal predicate, the camera

The physics steps on a timer at `rate` (10 Hz = real time; 0.1 s of simulation a step), or, with `lockstep`
(simulator only), once per command received: every command (the safety gate's holds included) advances the
simulation one period and publishes its observation, and between commands simulated time stands still. A
command stamped before the last reset's first observation answers the previous scene and is dropped.
"""
from __future__ import annotations

import math
import sys

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import Image, JointState

from sefm_drivers.images import rgb_image
from sefm_drivers.params import LanguageTableDriverParams
from sefm_interfaces.msg import SimGroundTruth
from sefm_interfaces.srv import ResetStation
from sefm_ros.common import SefmNode, ns_of, reliable, spin_main, time_of
from sefm_sim.envs.language_table import LanguageTableEnv
from sefm_sim.station import LT_STATE_NAMES


class LanguageTableDriver(SefmNode):
    PARAMETERS = LanguageTableDriverParams

    def __init__(self, namespace: str = "", context=None, **overrides):
        super().__init__("language_table_driver", namespace, context, **overrides)
        p = self.params
        families = p.family_list()
        self.env = LanguageTableEnv(block_mode=p.block_mode, image_size=(p.image_width, p.image_height),
                                    **({"families": families} if families else {}))
        self.image_pub = self.create_publisher(Image, "camera/image_raw", reliable(2))
        self.state_pub = self.create_publisher(JointState, "joint_states", reliable(10))
        self.pose_pub = self.create_publisher(PoseStamped, "effector_pose", reliable(10))
        self.truth_pub = self.create_publisher(SimGroundTruth, "sim/ground_truth", reliable(10))
        self.create_subscription(TwistStamped, "commands/effector_delta", self.on_command, reliable(10))
        self.create_service(ResetStation, "sim/reset", self.on_reset)
        self.delta = np.zeros(2)
        self.last_stamp_ns = 0
        self.reset_ns = 0   # the stamp of the first observation after the last sim/reset
        self.seed = p.seed
        self._reset(self.seed)
        if not p.lockstep:
            self.create_timer(1.0 / p.rate, self.tick)
        self.get_logger().info(f"LanguageTable ({p.block_mode}): {p.image_width}x{p.image_height} camera, "
                               + ("lockstep: one step per command" if p.lockstep else f"{p.rate:g} steps/s"))

    def on_command(self, msg: TwistStamped) -> None:
        if self.params.lockstep and 0 < ns_of(msg.header.stamp) < self.reset_ns:
            return   # answers an observation of the scene before the last reset
        delta = (msg.twist.linear.x, msg.twist.linear.y)
        if not all(math.isfinite(v) for v in delta):
            self.delta = np.zeros(2)
            self.get_logger().error(f"refused effector delta {delta}: not finite; holding still")
            return
        self.delta = np.asarray(delta, dtype=np.float64)
        if self.params.lockstep:
            self.tick()

    def tick(self) -> None:
        self.obs, _, _, _, self.info = self.env.step(self.delta)   # clipped to +-0.1 and the workspace there
        self.publish(self.next_stamp())

    def next_stamp(self):
        self.last_stamp_ns = max(self.get_clock().now().nanoseconds, self.last_stamp_ns + 1)
        return time_of(self.last_stamp_ns)

    def publish(self, stamp) -> None:
        rgb = self.obs["rgb"]
        self.image_pub.publish(rgb_image(rgb, stamp, "camera"))
        effector, target = self.obs["effector_translation"], self.obs["effector_target_translation"]
        state = JointState(name=list(LT_STATE_NAMES),
                           position=[float(v) for v in (*effector, *target)])
        state.header.stamp = stamp
        self.state_pub.publish(state)
        if self.pose_pub.get_subscription_count():   # (nothing in the learning graph reads it)
            pose = PoseStamped()
            pose.header.stamp, pose.header.frame_id = stamp, "world"
            pose.pose.position.x, pose.pose.position.y = float(effector[0]), float(effector[1])
            pose.pose.position.z = float(self.geometry["effector_z"])
            pose.pose.orientation.w = 1.0
            self.pose_pub.publish(pose)
        if self.truth_pub.get_subscription_count():
            state_ = self.info["state"]
            names = list(self.env.blocks)
            msg = SimGroundTruth(object_names=names,
                                 object_xy=[float(v) for b in names for v in state_.xy(b)],
                                 goal_holds=bool(self.info["success"]),
                                 world_to_image=np.ravel(self.geometry["projection"]).tolist(),
                                 object_z=float(self.geometry["block_z"]),
                                 effector_z=float(self.geometry["effector_z"]))
            msg.header.stamp, msg.header.frame_id = stamp, "world"
            self.truth_pub.publish(msg)

    def _reset(self, seed: int) -> None:
        self.obs, self.info = self.env.reset(seed=seed)
        self.geometry = self.env.image_geometry()   # a fixed camera
        self.delta = np.zeros(2)

    def on_reset(self, request, response):
        self.seed = self.seed + 1 if request.seed < 0 else int(request.seed)
        try:
            self._reset(self.seed)
        except (RuntimeError, ValueError) as exc:
            response.success, response.message = False, f"reset failed: {exc}"
            return response
        stamp = self.next_stamp()
        self.reset_ns = self.last_stamp_ns
        self.publish(stamp)
        response.success, response.episode_id = True, self.last_stamp_ns
        response.message = f"scene reset with seed {self.seed}" + (f" ({request.reason})" if request.reason else "")
        self.get_logger().info(response.message)
        return response

    def destroy_node(self):
        self.env.close()
        return super().destroy_node()


def main(argv=None) -> int:
    return spin_main(LanguageTableDriver, argv)


if __name__ == "__main__":
    sys.exit(main())
