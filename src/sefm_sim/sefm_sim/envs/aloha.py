"""ALOHA bimanual ViperX in MuJoCo: transfer cube and insertion.

The MJCF and meshes are loaded from the installed `gym-aloha` wheel (nothing
is copied into this repository); the env itself is ours, on plain `mujoco`.

Action (14): [left 6 joint targets (rad), left gripper (0 closed .. 1 open),
              right 6 joint targets, right gripper], at 50 Hz (10 physics steps
              of 2 ms). A gripper value maps linearly to the finger position
              0.01844 (closed) .. 0.058 (open) m.
Observation: qpos (14) and qvel (14) in the same layout (grippers normalised),
and the `top` camera image.
Reward: the staged contact reward 0..4 of ACT; success = stage 4.
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass


import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from sefm_sim.envs.rendering import Camera
from sefm_sim.envs.validation import checked_action, choice_error, with_overrides

CONTROL_DT = 0.02                      # 50 Hz
GRIPPER_CLOSED, GRIPPER_OPEN = 0.01844, 0.058   # finger position (m) at gripper 0 and 1
START_ARM = (0.0, -0.96, 1.16, 0.0, -0.3, 0.0)  # per arm, rad
START_FINGER = 0.02239
ARMS = ("left", "right")
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
MAX_REWARD = 4

# Object spawn boxes (x, y ranges; z fixed at 0.05).
SPAWN = {
    "transfer_cube": {"box": ((0.0, 0.2), (0.4, 0.6))},
    "insertion": {"peg": ((0.1, 0.2), (0.4, 0.6)), "socket": ((-0.2, -0.1), (0.4, 0.6))},
}
OBJECT_BODIES = {"transfer_cube": ("box",), "insertion": ("peg", "socket")}
TASKS = tuple(SPAWN)


def assets_dir() -> pathlib.Path:
    try:
        import gym_aloha
    except ImportError as exc:  # pragma: no cover - `make setup` installs it
        raise RuntimeError("the ALOHA model ships in the gym-aloha wheel: run `make setup`") from exc
    return pathlib.Path(gym_aloha.__file__).resolve().parent / "assets"


def gripper_to_finger(g: np.ndarray | float) -> np.ndarray | float:
    return GRIPPER_CLOSED + np.asarray(g) * (GRIPPER_OPEN - GRIPPER_CLOSED)


def finger_to_gripper(x: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(x) - GRIPPER_CLOSED) / (GRIPPER_OPEN - GRIPPER_CLOSED)


@dataclass(frozen=True)
class AlohaConfig:
    task: str = "transfer_cube"
    image_size: tuple[int, int] = (128, 96)     # (width, height) of the top camera
    render_images: bool = True
    max_steps: int = 400
    terminate_on_success: bool = True           # stage 4 ends the episode


class AlohaSim:
    """The physics shared by the joint-controlled env and the end-effector (mocap) sim."""

    def __init__(self, task: str, mocap_control: bool, image_size=(128, 96), render_images: bool = True):
        if task not in TASKS:
            raise choice_error("ALOHA task", task, TASKS)
        self.task = task
        prefix = "bimanual_viperx_end_effector_" if mocap_control else "bimanual_viperx_"
        self.model = mujoco.MjModel.from_xml_path(str(assets_dir() / f"{prefix}{task}.xml"))
        width, height = image_size
        # Small offscreen buffer, no shadows or multisampling: ~20x faster CPU rendering.
        self.model.vis.global_.offwidth, self.model.vis.global_.offheight = width, height
        self.model.vis.quality.shadowsize = 0
        self.model.vis.quality.offsamples = 0
        if mocap_control:
            # The file's welds are soft (solimp 0.25) and the arm joints carry 30-60 N m of
            # friction: in current MuJoCo the grippers then trail their mocap targets by
            # centimetres and miss the grasp. Stiff welds make the grippers follow exactly.
            self.model.eq_solimp[:] = [0.95, 0.99, 0.001, 0.5, 2.0]
            self.model.eq_solref[:] = [0.01, 1.0]
        self.data = mujoco.MjData(self.model)
        self.substeps = round(CONTROL_DT / self.model.opt.timestep)
        self.camera = Camera(self.model, self.data, "top", width, height, render_images)

        self._arm_qpos = np.array([self.model.joint(f"vx300s_{a}/{j}").qposadr[0] for a in ARMS for j in ARM_JOINTS])
        self._arm_dof = np.array([self.model.joint(f"vx300s_{a}/{j}").dofadr[0] for a in ARMS for j in ARM_JOINTS])
        self._finger_qpos = np.array([self.model.joint(f"vx300s_{a}/left_finger").qposadr[0] for a in ARMS])
        self._finger_dof = np.array([self.model.joint(f"vx300s_{a}/left_finger").dofadr[0] for a in ARMS])
        self._object_qpos = {b: self.model.jnt_qposadr[self.model.body(b).jntadr[0]] for b in OBJECT_BODIES[task]}
        geom = lambda name: self.model.geom(name).id  # noqa: E731
        self._g = {"table": geom("table"),
                   "left_finger": geom("vx300s_left/10_left_gripper_finger"),
                   "right_finger": geom("vx300s_right/10_right_gripper_finger")}
        if task == "transfer_cube":
            self._g["box"] = geom("red_box")
        else:
            self._g["peg"] = geom("red_peg")
            self._g["pin"] = geom("pin")
            self._sockets = {geom(f"socket-{i}") for i in range(1, 5)}

    # --- state -------------------------------------------------------------------------

    def reset(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Start pose, seeded object spawn; returns the object poses (x y z qw qx qy qz)."""
        mujoco.mj_resetData(self.model, self.data)
        start = np.array(START_ARM * 2)
        self.data.qpos[self._arm_qpos] = start
        for adr in self._finger_qpos:
            self.data.qpos[adr:adr + 2] = [START_FINGER, -START_FINGER]
        poses = {}
        for body, ((x0, x1), (y0, y1)) in SPAWN[self.task].items():
            pose = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), 0.05, 1.0, 0.0, 0.0, 0.0])
            adr = self._object_qpos[body]
            self.data.qpos[adr:adr + 7] = pose
            poses[body] = pose
        if self.model.nmocap == 0:  # joint control: hold the start pose
            self.set_joint_targets(np.concatenate([START_ARM, [finger_to_gripper(START_FINGER)]] * 2))
        mujoco.mj_forward(self.model, self.data)
        return poses

    def set_joint_targets(self, action14: np.ndarray) -> None:
        left, right = action14[:7], action14[7:]
        ctrl = []
        for arm in (left, right):
            finger = gripper_to_finger(arm[6])
            ctrl += [*arm[:6], finger, -finger]
        self.data.ctrl[:] = ctrl

    def qpos14(self) -> np.ndarray:
        arms = self.data.qpos[self._arm_qpos]
        grips = finger_to_gripper(self.data.qpos[self._finger_qpos])
        return np.concatenate([arms[:6], grips[:1], arms[6:], grips[1:]]).astype(np.float32)

    def qvel14(self) -> np.ndarray:
        arms = self.data.qvel[self._arm_dof]
        grips = self.data.qvel[self._finger_dof] / (GRIPPER_OPEN - GRIPPER_CLOSED)
        return np.concatenate([arms[:6], grips[:1], arms[6:], grips[1:]]).astype(np.float32)

    def object_poses(self) -> dict[str, np.ndarray]:
        return {b: self.data.qpos[a:a + 7].copy() for b, a in self._object_qpos.items()}

    def step(self) -> None:
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)

    def render(self) -> np.ndarray:
        return self.camera.render()

    def close(self) -> None:
        self.camera.close()

    # --- staged reward --------------------------------------------------------------

    def contacts(self) -> set[tuple[int, int]]:
        c = self.data.contact
        n = self.data.ncon
        return {(min(a, b), max(a, b)) for a, b in zip(c.geom1[:n], c.geom2[:n])}

    def reward(self) -> int:
        return staged_reward(self.task, self.contacts(), self._g, getattr(self, "_sockets", set()))


def _touching(pairs: set[tuple[int, int]], a: int, b: int) -> bool:
    return (min(a, b), max(a, b)) in pairs


def staged_reward(task: str, pairs: set[tuple[int, int]], g: dict[str, int], sockets: set[int] = frozenset()) -> int:
    """ACT's staged contact reward from a set of touching geom-id pairs."""
    if task == "transfer_cube":
        right = _touching(pairs, g["box"], g["right_finger"])
        left = _touching(pairs, g["box"], g["left_finger"])
        on_table = _touching(pairs, g["box"], g["table"])
        if left and not on_table:
            return 4          # the left gripper holds the cube in the air: transferred
        if left:
            return 3          # the left gripper touches it
        if right and not on_table:
            return 2          # the right gripper lifted it
        return 1 if right else 0
    peg_right = _touching(pairs, g["peg"], g["right_finger"])
    socket_left = any(_touching(pairs, s, g["left_finger"]) for s in sockets)
    peg_table = _touching(pairs, g["peg"], g["table"])
    socket_table = any(_touching(pairs, s, g["table"]) for s in sockets)
    peg_socket = any(_touching(pairs, g["peg"], s) for s in sockets)
    if _touching(pairs, g["peg"], g["pin"]):
        return 4              # the peg reached the pin inside the socket: inserted
    if peg_socket and not peg_table and not socket_table:
        return 3
    if peg_right and socket_left and not peg_table and not socket_table:
        return 2
    return 1 if peg_right and socket_left else 0


class AlohaEnv(gym.Env):
    """Joint-position-controlled ALOHA (the robot interface the policy sees)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(1 / CONTROL_DT)}

    def __init__(self, config: AlohaConfig | None = None, **overrides):
        self.config = config = with_overrides(config or AlohaConfig(), overrides, "ALOHA")
        self.sim = AlohaSim(config.task, mocap_control=False, image_size=config.image_size,
                            render_images=config.render_images)
        # Actuators: left arm 0-5, left fingers 6-7, right arm 8-13, right fingers 14-15.
        ctrl_range = self.sim.model.actuator_ctrlrange
        low = np.concatenate([ctrl_range[0:6, 0], [0.0], ctrl_range[8:14, 0], [0.0]])
        high = np.concatenate([ctrl_range[0:6, 1], [1.0], ctrl_range[8:14, 1], [1.0]])
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        obs = {"qpos": spaces.Box(-np.inf, np.inf, shape=(14,), dtype=np.float32),
               "qvel": spaces.Box(-np.inf, np.inf, shape=(14,), dtype=np.float32)}
        if config.render_images:
            width, height = config.image_size
            obs["rgb"] = spaces.Box(0, 255, shape=(height, width, 3), dtype=np.uint8)
        self.observation_space = spaces.Dict(obs)
        self._low, self._high = low, high
        self.steps = 0
        self.max_reward_seen = 0
        self.object_start: dict[str, np.ndarray] = {}
        self._ready = False

    @property
    def instruction(self) -> str:
        return {"transfer_cube": "transfer the red cube from the right gripper to the left gripper",
                "insertion": "insert the red peg into the blue socket"}[self.config.task]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; ALOHA takes none")
        self.object_start = self.sim.reset(self.np_random)
        self.steps, self.max_reward_seen, self._ready = 0, 0, True
        return self._observation(), self._info(0)

    def step(self, action):
        if not self._ready:
            raise RuntimeError("call reset() before step()")
        self.sim.set_joint_targets(checked_action(action, self._low, self._high))
        self.sim.step()
        self.steps += 1
        reward = self.sim.reward()
        self.max_reward_seen = max(self.max_reward_seen, reward)
        success = reward == MAX_REWARD
        terminated = success and self.config.terminate_on_success
        truncated = not terminated and self.steps >= self.config.max_steps
        return self._observation(), float(reward), terminated, truncated, self._info(reward)

    def render(self):
        return self.sim.render()

    def close(self):
        self.sim.close()

    def _observation(self) -> dict:
        obs = {"qpos": self.sim.qpos14(), "qvel": self.sim.qvel14()}
        if self.sim.camera.enabled:
            obs["rgb"] = self.sim.render()
        return obs

    def _info(self, reward: int) -> dict:
        return {"stage": reward, "success": reward == MAX_REWARD, "max_stage": self.max_reward_seen,
                "steps": self.steps, "objects": self.sim.object_poses(), "instruction": self.instruction}
