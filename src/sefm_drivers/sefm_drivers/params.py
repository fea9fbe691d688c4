"""The drivers' parameters (ROS-free dataclasses; `sefm_ros.parameters.declare` makes them typed, read-only ROS
parameters, and `sefm driver` builds the same ones from its flags)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sefm_core.config import setting

# ALOHA's RealSense namespaces -> the MuJoCo model's cameras (cam_low has no counterpart in the model)
ALOHA_CAMERAS = {"cam_high": "top", "cam_left_wrist": "left_wrist", "cam_right_wrist": "right_wrist"}


@dataclass(frozen=True)
class AlohaDriverParams:
    task: Literal["transfer_cube", "insertion"] = setting("transfer_cube", "the scene on the table (objects only: "
                                                          "the driver knows no task)")
    seed: int = setting(0, "reset seed of the scene at start; sim/reset with seed -1 uses the next one", low=0)
    control_rate: float = setting(50.0, "physics ticks per second of wall time; each tick simulates 0.02 s "
                                        "(ALOHA's 50 Hz control period), so 50 is real time", low=1.0, high=1000.0)
    joint_state_rate: float = setting(100.0, "joint_states per arm per second (the real xs_sdk: 100 Hz); above "
                                             "control_rate the same physics state is sent again with a new stamp",
                                      low=1.0, high=1000.0)
    camera_rate: float = setting(10.0, "camera frames per second (rendering costs milliseconds a frame on CPU); "
                                       "0: no cameras", low=0.0, high=60.0)
    cameras: str = setting("cam_high", "comma-separated RealSense namespaces to simulate: "
                                       + ", ".join(ALOHA_CAMERAS))
    image_width: int = setting(128, "camera image width (px)", low=8, high=1920)
    image_height: int = setting(96, "camera image height (px)", low=8, high=1080)
    left_arm: str = setting("follower_left", "namespace of the left arm's driver (ROS 1 ALOHA: puppet_left)")
    right_arm: str = setting("follower_right", "namespace of the right arm's driver (ROS 1 ALOHA: puppet_right)")
    torque_on_start: bool = setting(True, "torque every motor on at start (as xs_sdk does by default)")
    # The gripper profile (ACT / ROS 1 ALOHA defaults; Interbotix's ROS 2 ALOHA measured 1.6214 / 0.6197 rad and
    # 0.0579 / 0.0440 m): the gripper motor's angle maps linearly to the finger position between these points.
    gripper_open_rad: float = setting(1.4910, "gripper motor angle when open (rad)")
    gripper_closed_rad: float = setting(-0.6213, "gripper motor angle when closed (rad)")
    finger_open_m: float = setting(0.05800, "left_finger position when open (m)", low=0.0)
    finger_closed_m: float = setting(0.01844, "left_finger position when closed (m)", low=0.0)

    def camera_list(self) -> tuple[str, ...]:
        return tuple(c.strip().strip("/") for c in self.cameras.split(",") if c.strip()) if self.camera_rate else ()

    def check(self) -> None:
        unknown = [c for c in self.camera_list() if c not in ALOHA_CAMERAS]
        if unknown:
            raise ValueError(f"cameras: unknown {unknown}; valid: {', '.join(ALOHA_CAMERAS)}")
        if math.isclose(self.gripper_open_rad, self.gripper_closed_rad) or \
                math.isclose(self.finger_open_m, self.finger_closed_m):
            raise ValueError("the gripper profile needs distinct open and closed values")
        if not self.left_arm.strip("/") or not self.right_arm.strip("/") or \
                self.left_arm.strip("/") == self.right_arm.strip("/"):
            raise ValueError("left_arm and right_arm must be two different, non-empty names")


@dataclass(frozen=True)
class LanguageTableDriverParams:
    block_mode: Literal["BLOCK_4", "BLOCK_8", "N_CHOOSE_K", "BANANA"] = setting(
        "BLOCK_4", "blocks on the board (BANANA: BananaTable)")
    families: str = setting("", "comma-separated instruction families the scene's start states are sampled for "
                                "(empty: all); the driver itself publishes no instruction")
    seed: int = setting(0, "reset seed of the scene at start; sim/reset with seed -1 uses the next one", low=0)
    rate: float = setting(10.0, "control steps per second of wall time; each step simulates 0.1 s (the "
                                "robot's 10 Hz period), so 10 is real time", low=0.1, high=1000.0)
    image_width: int = setting(128, "camera image width (px)", low=8, high=1920)
    image_height: int = setting(72, "camera image height (px)", low=8, high=1080)
    lockstep: bool = setting(False, "simulator only: no timer; each command advances the physics one control "
                                    "period and publishes its observation, so the simulation stands still while "
                                    "the learning graph thinks (fast, deterministic practice; a real robot has "
                                    "no such mode)")

    def family_list(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.families.split(",") if f.strip())
