"""A minimal fake of the Interbotix xs_sdk contract, like the vendor's own xs_sdk_sim: per arm namespace
`joint_states` (the X-Series names and units) that follow `commands/joint_group` and `commands/joint_single` at
once (no physics, no limits, no services), and a RealSense-style camera. Written from the contract alone
(../shared/reference/drivers.md), so a graph that runs over it depends on nothing but the contract."""
import numpy as np
from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

ARM = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]
NAMES = ARM + ["gripper", "left_finger", "right_finger"]
OPEN_RAD, CLOSED_RAD, OPEN_M, CLOSED_M = 1.4910, -0.6213, 0.0580, 0.01844   # sim_aloha's gripper constants


class FakeXsSdk(Node):
    def __init__(self, namespace: str, context, width: int = 128, height: int = 96):
        super().__init__("fake_xs_sdk", namespace=namespace, context=context)
        self.width, self.height, self.frame = width, height, 0
        self.arms = {arm: np.zeros(7) for arm in ("follower_left", "follower_right")}
        self.pubs = {arm: self.create_publisher(JointState, f"{arm}/joint_states", 10) for arm in self.arms}
        for arm in self.arms:
            self.create_subscription(JointGroupCommand, f"{arm}/commands/joint_group",
                                     lambda m, a=arm: self.on_group(a, m), 10)
            self.create_subscription(JointSingleCommand, f"{arm}/commands/joint_single",
                                     lambda m, a=arm: self.on_single(a, m), 10)
        self.camera = self.create_publisher(Image, "cam_high/camera/color/image_rect_raw", 2)
        self.commands = 0
        self.create_timer(0.02, self.publish_states)   # 50 Hz
        self.create_timer(0.1, self.publish_frame)     # 10 Hz

    def on_group(self, arm, msg):
        if msg.name == "arm" and len(msg.cmd) == 6:
            self.arms[arm][:6] = msg.cmd
            self.commands += 1

    def on_single(self, arm, msg):
        if msg.name == "gripper":
            self.arms[arm][6] = msg.cmd

    def publish_states(self):
        stamp = self.get_clock().now().to_msg()
        for arm, q in self.arms.items():
            finger = CLOSED_M + (q[6] - CLOSED_RAD) / (OPEN_RAD - CLOSED_RAD) * (OPEN_M - CLOSED_M)
            msg = JointState(name=NAMES, position=[*map(float, q), float(finger), float(-finger)])
            msg.header.stamp = stamp
            self.pubs[arm].publish(msg)

    def publish_frame(self):
        rgb = np.full((self.height, self.width, 3), 40, np.uint8)
        rgb[: self.frame % self.height] = 200   # something that changes
        self.frame += 1
        msg = Image(height=self.height, width=self.width, encoding="rgb8", step=self.width * 3, data=rgb.tobytes())
        msg.header.stamp, msg.header.frame_id = self.get_clock().now().to_msg(), "cam_high_color_optical_frame"
        self.camera.publish(msg)
