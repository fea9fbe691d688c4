"""Scripted ALOHA demonstrations, recorded as joint-space actions.

As in ACT: end-effector waypoints are computed from the first frame's object
poses and executed in the end-effector sim (mocap bodies welded to the two
grippers); the joint positions that rollout passes through, with the commanded
gripper openings, become the joint-space actions. Replaying them in the
joint-controlled `AlohaEnv` from the same seed reproduces the demo.

Waypoints (step, gripper position, gripper orientation, opening) follow ACT's
scripted policies for transfer cube and insertion.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sefm_sim.envs.aloha import AlohaEnv, AlohaSim, gripper_to_finger

TRANSFER_MEET = np.array([0.0, 0.5, 0.25])
# The left grasp point relative to the meeting point. ACT has it 2 cm lower; with
# these welds the cube then meets the lower finger and is knocked out of the
# right gripper (held at the end in 2 of 6 seeds, against 6 of 6 level).
TRANSFER_LEFT_GRASP = np.array([0.02, 0.0, 0.0])
INSERTION_MEET = np.array([0.0, 0.5, 0.15])
INSERTION_RIGHT_LIFT = 0.00715


@dataclass(frozen=True)
class Waypoint:
    t: int
    xyz: np.ndarray
    quat: np.ndarray
    gripper: float


@dataclass
class Demo:
    task: str
    seed: int
    actions: np.ndarray          # (T, 14) joint-space actions for AlohaEnv
    ee_max_stage: int            # best staged reward in the end-effector rollout
    objects: dict                # first-frame object poses the plan was made from


def _quat(axis, degrees: float) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, np.asarray(axis, dtype=np.float64), np.deg2rad(degrees))
    return q


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_mulQuat(q, a, b)
    return q


# Waypoints move the mocap bodies. Each is welded to its gripper so that it sits
# at the grasp point between the fingers, and with the identity orientation the
# gripper is level, pointing at the other arm; rotations below are in the world frame.
LEVEL = np.array([1.0, 0.0, 0.0, 0.0])


def plan(task: str, objects: dict, left0: np.ndarray, right0: np.ndarray):
    """Grasp-point waypoints for both arms. left0/right0: initial mocap (x y z qw qx qy qz)."""
    L, R = [], []
    lp, lq, rp, rq = left0[:3], left0[3:], right0[:3], right0[3:]
    if task == "transfer_cube":
        box = objects["box"][:3]
        pick = _mul(LEVEL, _quat([0, 1, 0], -60))   # the right gripper tipped 60 deg down
        meet_left = _quat([1, 0, 0], 90)             # the left gripper rolled 90 deg to take it
        level = LEVEL
        m = TRANSFER_MEET
        grasp = m + TRANSFER_LEFT_GRASP
        away = grasp + [-0.12, 0, 0]
        L = [Waypoint(0, lp, lq, 0), Waypoint(100, away, meet_left, 1),
             Waypoint(260, grasp, meet_left, 1), Waypoint(310, grasp, meet_left, 0),
             Waypoint(360, away, level, 0), Waypoint(400, away, level, 0)]
        R = [Waypoint(0, rp, rq, 0), Waypoint(90, box + [0, 0, 0.08], pick, 1),
             Waypoint(130, box + [0, 0, -0.015], pick, 1), Waypoint(170, box + [0, 0, -0.015], pick, 0),
             Waypoint(200, m + [0.05, 0, 0], pick, 0), Waypoint(220, m, pick, 0), Waypoint(310, m, pick, 1),
             Waypoint(360, m + [0.1, 0, 0], pick, 1), Waypoint(400, m + [0.1, 0, 0], pick, 1)]
    elif task == "insertion":
        peg, socket = objects["peg"][:3], objects["socket"][:3]
        pick_right = _mul(LEVEL, _quat([0, 1, 0], -60))
        pick_left = _mul(LEVEL, _quat([0, 1, 0], 60))
        m, lift = INSERTION_MEET, INSERTION_RIGHT_LIFT
        L = [Waypoint(0, lp, lq, 0), Waypoint(120, socket + [0, 0, 0.08], pick_left, 1),
             Waypoint(170, socket + [0, 0, -0.03], pick_left, 1), Waypoint(220, socket + [0, 0, -0.03], pick_left, 0),
             Waypoint(285, m + [-0.1, 0, 0], pick_left, 0), Waypoint(340, m + [-0.05, 0, 0], pick_left, 0),
             Waypoint(400, m + [-0.05, 0, 0], pick_left, 0)]
        R = [Waypoint(0, rp, rq, 0), Waypoint(120, peg + [0, 0, 0.08], pick_right, 1),
             Waypoint(170, peg + [0, 0, -0.03], pick_right, 1), Waypoint(220, peg + [0, 0, -0.03], pick_right, 0),
             Waypoint(285, m + [0.1, 0, lift], pick_right, 0), Waypoint(340, m + [0.05, 0, lift], pick_right, 0),
             Waypoint(400, m + [0.05, 0, lift], pick_right, 0)]
    else:
        raise ValueError(f"no scripted demonstrator for task {task!r}")
    return L, R


def interpolate(waypoints: list[Waypoint], t: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Linear in position and opening, normalised-linear in orientation; holds the last waypoint."""
    for a, b in zip(waypoints[:-1], waypoints[1:]):
        if a.t <= t <= b.t:
            f = (t - a.t) / (b.t - a.t)
            q = a.quat + (b.quat - a.quat) * f
            return a.xyz + (b.xyz - a.xyz) * f, q / np.linalg.norm(q), a.gripper + (b.gripper - a.gripper) * f
    last = waypoints[-1]
    return last.xyz, last.quat, last.gripper


def record(task: str, seed: int, steps: int = 400, noise: float = 0.0, rng: np.random.Generator | None = None) -> Demo:
    """Run the waypoint plan in the end-effector sim and return its joint-space actions.

    noise: uniform +-noise (m) added to both gripper positions each step, for diverse demos.
    """
    sim = AlohaSim(task, mocap_control=True, render_images=False)
    objects = sim.reset(_seeded_like_gym(seed))  # the same spawn AlohaEnv.reset(seed=seed) makes
    start = _mocap_holding_start(sim)
    for i in range(2):  # the welds now hold the arms in their start pose
        sim.data.mocap_pos[i], sim.data.mocap_quat[i] = start[i][:3], start[i][3:]
    sim.data.ctrl[:] = [gripper_to_finger(0.0), -gripper_to_finger(0.0)] * 2
    mujoco.mj_forward(sim.model, sim.data)
    left_plan, right_plan = plan(task, objects, start[0], start[1])
    rng = rng or np.random.default_rng(seed)
    actions, best = [], 0
    for t in range(steps):
        commands = []
        for i, waypoints in enumerate((left_plan, right_plan)):
            xyz, quat, opening = interpolate(waypoints, t + 1)
            if noise > 0:
                xyz = xyz + rng.uniform(-noise, noise, 3)
            sim.data.mocap_pos[i], sim.data.mocap_quat[i] = xyz, quat
            commands.append(opening)
        finger_left, finger_right = gripper_to_finger(commands[0]), gripper_to_finger(commands[1])
        sim.data.ctrl[:] = [finger_left, -finger_left, finger_right, -finger_right]
        sim.step()
        best = max(best, sim.reward())
        q = sim.qpos14().astype(np.float64)
        q[6], q[13] = commands  # the commanded opening, not the measured one (as ACT records)
        actions.append(q)
    sim.close()
    return Demo(task, seed, np.array(actions), best, objects)


def _mocap_holding_start(sim: AlohaSim) -> list[np.ndarray]:
    """Mocap poses (x y z qw qx qy qz) whose welds the grippers' current poses satisfy.

    A weld keeps body2 (the gripper) at the pose relative to body1 (the mocap)
    it had in the model's reference configuration qpos0: read that there, invert it here.
    """
    reference = mujoco.MjData(sim.model)
    mujoco.mj_forward(sim.model, reference)
    poses = []
    for i, arm in enumerate(("left", "right")):
        g = sim.model.body(f"vx300s_{arm}/gripper_link").id
        # gripper-from-mocap offset at qpos0 ...
        m_inv = np.zeros(4)
        mujoco.mju_negQuat(m_inv, reference.mocap_quat[i])
        rel_pos = np.zeros(3)
        mujoco.mju_rotVecQuat(rel_pos, reference.xpos[g] - reference.mocap_pos[i], m_inv)
        rel_inv = np.zeros(4)
        mujoco.mju_negQuat(rel_inv, _mul(m_inv, reference.xquat[g]))
        # ... undone from the gripper's pose now
        quat = _mul(sim.data.xquat[g], rel_inv)
        shift = np.zeros(3)
        mujoco.mju_rotVecQuat(shift, rel_pos, quat)
        poses.append(np.concatenate([sim.data.xpos[g] - shift, quat]))
    return poses


def _seeded_like_gym(seed: int) -> np.random.Generator:
    """The generator gymnasium's Env.reset(seed=seed) creates, so both sims spawn the same objects."""
    from gymnasium.utils import seeding

    rng, _ = seeding.np_random(seed)
    return rng


def replay(demo: Demo, env: AlohaEnv | None = None) -> tuple[int, int]:
    """Replay a demo's joint actions in the joint-controlled env (every action, no early stop).

    Returns (best stage reached, stage after the last action).
    """
    own = env is None
    env = env or AlohaEnv(task=demo.task, render_images=False, terminate_on_success=False)
    env.reset(seed=demo.seed)
    final = 0
    for action in demo.actions:
        _, reward, terminated, truncated, _ = env.step(action)
        final = int(reward)
        if terminated or truncated:
            break
    best = env.max_reward_seen
    if own:
        env.close()
    return best, final
