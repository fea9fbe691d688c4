"""LanguageTable in MuJoCo: a pusher, a board and blocks, with language goals.

The robot is a kinematic (mocap) cylinder at a fixed height that follows an
effector target; an action is a 2-D delta on that target at 10 Hz, clipped to
[-0.1, 0.1] m and to the workspace. Physics runs in substeps between actions.
BananaTable is the same env with block_mode="BANANA".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from sefm_sim.envs import lt_constants as C
from sefm_sim.envs import lt_scene, lt_tasks
from sefm_sim.envs.rendering import Camera
from sefm_sim.envs.validation import checked_action, choice_error, with_overrides

INSTRUCTION_CHARSET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.'-"


@dataclass(frozen=True)
class LanguageTableConfig:
    block_mode: str = "BLOCK_4"
    families: tuple[str, ...] = lt_tasks.FAMILIES      # instruction families to sample from
    image_size: tuple[int, int] = (128, 72)            # (width, height) of the camera image
    render_images: bool = True                         # False: no "rgb" in observations (fast)
    max_steps: int = 200                               # step cap (20 s at 10 Hz)
    physics_timestep: float = 0.005                    # 20 substeps per 10 Hz control step
    n_choose_k_split: str = "train"                    # N_CHOOSE_K: "train" or "test" combinations
    success_reward: float = 1.0                        # sparse env reward on success (steps-to-go replaces it)
    extra: dict = field(default_factory=dict, compare=False)


class LanguageTableEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": C.CONTROL_HZ}

    def __init__(self, config: LanguageTableConfig | None = None, **overrides):
        self.config = config = with_overrides(config or LanguageTableConfig(), overrides, "LanguageTable")
        try:
            self.mode = C.BlockMode(config.block_mode)
        except ValueError:
            raise choice_error("block mode", config.block_mode, [m.value for m in C.BlockMode]) from None
        for family in config.families:
            if family not in lt_tasks.FAMILIES:
                raise choice_error("instruction family", family, lt_tasks.FAMILIES)
        if config.n_choose_k_split not in ("train", "test"):
            raise choice_error("N_CHOOSE_K split", config.n_choose_k_split, ("train", "test"))
        width, height = config.image_size
        if width < 8 or height < 8:
            raise ValueError(f"image_size {config.image_size} is too small (at least 8x8)")

        # The scene holds every block the mode can use; unused ones are parked off the board.
        self.scene_blocks = _scene_blocks(self.mode)
        self.model = mujoco.MjModel.from_xml_string(
            lt_scene.scene_xml(self.scene_blocks, width, height, config.physics_timestep))
        self.data = mujoco.MjData(self.model)
        self.substeps = max(1, round(1.0 / (C.CONTROL_HZ * config.physics_timestep)))
        self._qpos_adr = {b: self.model.joint(f"{b}_joint").qposadr[0] for b in self.scene_blocks}
        self._qvel_adr = {b: self.model.joint(f"{b}_joint").dofadr[0] for b in self.scene_blocks}
        self.camera = Camera(self.model, self.data, "overhead", width, height, config.render_images)
        self._pusher_z = float(self.model.body("pusher").pos[2])
        self._mocap = self.data.mocap_pos  # a view into MjData: writes move the pusher

        self.action_space = spaces.Box(-C.MAX_ACTION, C.MAX_ACTION, shape=(2,), dtype=np.float32)
        obs = {
            "effector_translation": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            "effector_target_translation": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            "instruction": spaces.Text(max_length=256, charset=INSTRUCTION_CHARSET),
        }
        if config.render_images:
            obs["rgb"] = spaces.Box(0, 255, shape=(height, width, 3), dtype=np.uint8)
        self.observation_space = spaces.Dict(obs)
        self._action_low = self.action_space.low.astype(np.float64)
        self._action_high = self.action_space.high.astype(np.float64)

        self.blocks: tuple[str, ...] = ()
        self.goal: lt_tasks.Goal | None = None
        self.target = np.zeros(2)
        self.steps = 0
        self.episode_seed: int | None = None

    # --- gymnasium API --------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        families = options.pop("families", None) or ([options.pop("family")] if "family" in options else None)
        families = tuple(families or self.config.families)
        for family in families:
            if family not in lt_tasks.FAMILIES:
                raise choice_error("instruction family", family, lt_tasks.FAMILIES)
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; valid: family, families")
        self.episode_seed = seed
        rng = self.np_random
        for _attempt in range(1000):
            self.blocks = self._choose_blocks(rng)
            family = families[int(rng.integers(len(families)))]
            poses, effector = self._sample_poses(rng)
            # Cheap pre-check on the unsettled poses (e.g. `separate` needs two blocks
            # within 8 cm), so physics only runs for boards that can pass.
            unsettled = lt_tasks.TableState({b: (*xy, 0.0) for b, xy, _ in poses}, tuple(effector), tuple(effector))
            if lt_tasks.sample_goal(rng, family, unsettled) is None:
                continue
            if not self._apply_and_settle(poses, effector):
                continue
            state = self.state()
            goal = lt_tasks.sample_goal(rng, family, state)
            if goal is not None and not goal.success(state):
                break
        else:
            raise RuntimeError(f"no start state with an unsolved {family} task in 1000 boards")
        self.goal = goal
        self.steps = 0
        return self._observation(), self._info(state, self.goal.success(state))

    def step(self, action):
        if self.goal is None:
            raise RuntimeError("call reset() before step()")
        delta = checked_action(action, self._action_low, self._action_high)
        self.target = _clip_to_workspace(self.target + delta)
        self._advance(self.target)
        self.steps += 1
        state = self.state()
        success = self.goal.success(state)
        truncated = not success and self.steps >= self.config.max_steps
        reward = self.config.success_reward if success else 0.0
        return self._observation(), reward, success, truncated, self._info(state, success)

    def render(self):
        return self.camera.render()

    def close(self):
        self.camera.close()

    # --- state ------------------------------------------------------------------------

    def state(self) -> lt_tasks.TableState:
        """Privileged state: poses of the blocks in play, effector and its target."""
        poses = {}
        for block in self.blocks:
            a = self._qpos_adr[block]
            x, y = self.data.qpos[a:a + 2]
            poses[block] = (float(x), float(y), _yaw(self.data.qpos[a + 3:a + 7]))
        return lt_tasks.TableState(blocks=poses, effector=tuple(self._mocap[0, :2].tolist()),
                                   target=tuple(self.target.tolist()))

    def image_geometry(self) -> dict:
        """Where things appear in the camera image: its projection (see `Camera.projection`) and the
        heights at which block centres and the pusher sit. Training labels only (data set metadata)."""
        return {"projection": self.camera.projection().round(6).tolist(), "block_z": C.BLOCK_HEIGHT / 2,
                "effector_z": self._pusher_z}

    # --- internals -----------------------------------------------------------------

    def _choose_blocks(self, rng) -> tuple[str, ...]:
        if self.mode is C.BlockMode.BLOCK_4:
            return C.BLOCK_4
        if self.mode is C.BlockMode.BLOCK_8:
            return C.BLOCK_8
        if self.mode is C.BlockMode.BANANA:
            return C.BLOCK_4 + ("yellow_banana",)
        k = int(rng.integers(min(C.N_CHOOSE_K_SIZES), max(C.N_CHOOSE_K_SIZES) + 1))
        split = C.n_choose_k_split(k)
        combos = split.train if self.config.n_choose_k_split == "train" else split.test
        return combos[int(rng.integers(len(combos)))]

    def _sample_poses(self, rng) -> tuple[list[tuple[str, np.ndarray, float]], np.ndarray]:
        """Effector and block poses, uniform in the sampling box, with the rejection rules."""
        effector = _uniform_xy(rng)
        placed: list[tuple[str, np.ndarray, float]] = []
        for block in self.blocks:
            for _ in range(1000):
                xy = _uniform_xy(rng)
                if np.linalg.norm(xy - effector) < C.MIN_PUSHER_GAP:
                    continue
                if any(np.linalg.norm(xy - other) < C.MIN_BLOCK_GAP for name, other, _ in placed):
                    continue
                placed.append((block, xy, float(rng.uniform(-math.pi, math.pi))))
                break
            else:
                raise RuntimeError(f"no free spot for {block} among {len(placed)} placed blocks")
        return placed, effector

    def _apply_and_settle(self, poses, effector: np.ndarray) -> bool:
        """Put the poses into the physics and step until the blocks rest; False if they never do."""
        mujoco.mj_resetData(self.model, self.data)
        for index, block in enumerate(self.scene_blocks):  # park the blocks not in play
            self._set_block(block, np.array([-1.0 - 0.2 * index, 0.0]), 0.0)
        for block, xy, yaw in poses:
            self._set_block(block, xy, yaw)
        self.target = effector.copy()
        self._mocap[0] = [effector[0], effector[1], self._pusher_z]
        mujoco.mj_forward(self.model, self.data)
        chunk = max(1, round(C.SETTLE_CHUNK_SECONDS / self.config.physics_timestep))
        for _ in range(round(C.SETTLE_MAX_SECONDS / C.SETTLE_CHUNK_SECONDS)):
            mujoco.mj_step(self.model, self.data, nstep=chunk)
            if float(np.abs(self.data.qvel).max(initial=0.0)) < C.AT_REST_SPEED:
                return True
        return False

    def _set_block(self, block: str, xy: np.ndarray, yaw: float) -> None:
        a, v = self._qpos_adr[block], self._qvel_adr[block]
        self.data.qpos[a:a + 3] = [xy[0], xy[1], C.BLOCK_HEIGHT / 2 + 1e-4]
        self.data.qpos[a + 3:a + 7] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
        self.data.qvel[v:v + 6] = 0.0

    def _advance(self, target: np.ndarray) -> None:
        """Move the pusher towards `target` at its speed limit over one control period."""
        start = self._mocap[0, :2].copy()
        delta = target - start
        dist = float(np.hypot(*delta))
        max_move = C.PUSHER_MAX_SPEED * self.config.physics_timestep
        moving = min(self.substeps, int(np.ceil(dist / max_move))) if dist > 1e-9 else 0
        for k in range(1, moving + 1):
            self._mocap[0, :2] = start + delta * min(1.0, k * max_move / dist)
            mujoco.mj_step(self.model, self.data)
        if self.substeps > moving:  # arrived: the rest of the period in one call
            mujoco.mj_step(self.model, self.data, nstep=self.substeps - moving)

    def _observation(self) -> dict:
        obs = {
            "effector_translation": self._mocap[0, :2].astype(np.float32),
            "effector_target_translation": self.target.astype(np.float32),
            "instruction": self.goal.instruction,
        }
        if self.camera.enabled:
            obs["rgb"] = self.camera.render()
        return obs

    def _info(self, state: lt_tasks.TableState, success: bool) -> dict:
        return {"goal": self.goal.to_dict(), "family": self.goal.family, "success": success,
                "steps": self.steps, "seed": self.episode_seed, "blocks": self.blocks, "state": state}


def _scene_blocks(mode: C.BlockMode) -> tuple[str, ...]:
    if mode is C.BlockMode.BLOCK_4:
        return C.BLOCK_4
    if mode is C.BlockMode.BLOCK_8:
        return C.BLOCK_8
    if mode is C.BlockMode.BANANA:
        return C.BLOCK_4 + ("yellow_banana",)
    return C.ALL_BLOCKS


def _uniform_xy(rng) -> np.ndarray:
    return np.array([rng.uniform(*C.SAMPLING_X), rng.uniform(*C.SAMPLING_Y)])


def _clip_to_workspace(xy: np.ndarray) -> np.ndarray:
    return np.array([np.clip(xy[0], *C.WORKSPACE_X), np.clip(xy[1], *C.WORKSPACE_Y)])


def _yaw(quat: np.ndarray) -> float:
    w, x, y, z = quat
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
