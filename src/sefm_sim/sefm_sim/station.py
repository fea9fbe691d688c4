"""A simulated station without ROS: one env, its episodes, and the observation/command conventions.

The bridge node is a thin adapter around this class; tests and benchmarks can
drive a station directly. An observation is the camera frame plus the robot
state published as `sensor_msgs/JointState`:

  LanguageTable  names effector_x, effector_y, target_x, target_y (m); command names delta_x, delta_y
  ALOHA          the 14 joint/gripper names of the action layout; command = the 14 joint targets
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from sefm_core.config import setting

LT_STATE_NAMES = ("effector_x", "effector_y", "target_x", "target_y")
LT_COMMAND_NAMES = ("delta_x", "delta_y")
ALOHA_NAMES = tuple(f"{arm}_{j}" for arm in ("left", "right")
                    for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"))


def language_table_proprio(obs: dict) -> np.ndarray:
    """A LanguageTable observation's robot state as the models read it: float32, in the order of
    LT_STATE_NAMES (the effector's position, then its target's)."""
    return np.concatenate([obs["effector_translation"], obs["effector_target_translation"]]).astype(np.float32)


Env = Literal["language_table", "aloha"]
BlockMode = Literal["BLOCK_4", "BLOCK_8", "N_CHOOSE_K", "BANANA"]
AlohaTask = Literal["transfer_cube", "insertion"]


@dataclass(frozen=True)
class StationConfig:
    """What a simulated station is: the one definition the bridge node's parameters and `sefm improve`'s
    config extend."""
    env: Env = setting("language_table", "simulated robot")
    block_mode: BlockMode = setting("BLOCK_4", "LanguageTable blocks (BANANA: BananaTable)")
    families: str = setting("", "comma-separated LanguageTable instruction families (empty: all)")
    task: AlohaTask = setting("transfer_cube", "ALOHA task")
    image_width: int = setting(128, "camera image width (px)", low=1)
    image_height: int = setting(72, "camera image height (px)", low=1)
    max_steps: int = setting(200, "step cap of an episode", low=1)

    def family_list(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.families.split(",") if f.strip())


class Station:
    def __init__(self, config: StationConfig, seed: int = 0):
        """`seed`: the first episode's reset seed; episode k uses seed + k."""
        self.config, self.first_seed = config, seed
        if config.env == "language_table":
            from sefm_sim.envs.language_table import LanguageTableEnv

            self.env = LanguageTableEnv(block_mode=config.block_mode, image_size=(config.image_width,
                                        config.image_height), max_steps=config.max_steps,
                                        **({"families": config.family_list()} if config.families else {}))
            self.state_names, self.command_names = LT_STATE_NAMES, LT_COMMAND_NAMES
        elif config.env == "aloha":
            from sefm_sim.envs.aloha import AlohaEnv

            self.env = AlohaEnv(task=config.task, image_size=(config.image_width, config.image_height),
                                max_steps=config.max_steps)
            self.state_names = self.command_names = ALOHA_NAMES
        else:
            raise ValueError(f"unknown station env {config.env!r}; valid: language_table, aloha")
        self.episode = -1
        self.obs: dict | None = None
        self.info: dict = {}

    @property
    def env_id(self) -> str:
        if self.config.env == "language_table":
            return f"sefm/LanguageTable-{self.config.block_mode}-v0"
        return f"sefm/Aloha-{self.config.task}-v0"

    def reset(self, seed: int | None = None) -> dict:
        self.episode += 1
        self.seed = self.first_seed + self.episode if seed is None or seed < 0 else seed
        self.obs, self.info = self.env.reset(seed=self.seed)
        self.camera = self.env.image_geometry() if self.has_ground_truth else None   # a fixed camera
        return self.obs

    def step(self, command: np.ndarray):
        """Apply one command (validated and clipped by the env); returns (obs, terminated, truncated, info)."""
        self.obs, _, terminated, truncated, self.info = self.env.step(command)
        return self.obs, terminated, truncated, self.info

    def hold_command(self) -> np.ndarray:
        """The command that keeps the robot where it is (the watchdog's choice)."""
        if self.config.env == "language_table":
            return np.zeros(2)
        return self.obs["qpos"].astype(np.float64)

    def state_vector(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(positions, velocities or None) in the order of `state_names`."""
        if self.config.env == "language_table":
            return (np.concatenate([self.obs["effector_translation"], self.obs["effector_target_translation"]])
                    .astype(np.float64), None)
        return self.obs["qpos"].astype(np.float64), self.obs["qvel"].astype(np.float64)

    @property
    def has_ground_truth(self) -> bool:
        return self.config.env == "language_table"

    def ground_truth(self) -> dict | None:
        """The simulator's privileged state at the current observation (training labels for recorded demos:
        the blocks' table positions, whether the goal holds, the camera); None where there is none (ALOHA)."""
        if not self.has_ground_truth:
            return None
        state, names = self.info["state"], list(self.env.blocks)   # the env's own state and verdict of this step
        return {"names": names, "xy": np.array([state.xy(b) for b in names], np.float64),
                "goal_holds": bool(self.info["success"]), "camera": self.camera}

    @property
    def instruction(self) -> str:
        return self.obs["instruction"] if "instruction" in self.obs else self.env.instruction

    @property
    def goal_json(self) -> str:
        if self.config.env == "language_table":
            return self.env.goal.to_json()
        return "{}"

    @property
    def family(self) -> str:
        return self.env.goal.family if self.config.env == "language_table" else self.config.task

    def close(self) -> None:
        self.env.close()
