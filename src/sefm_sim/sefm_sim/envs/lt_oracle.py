"""Scripted LanguageTable demonstrator: an oriented-push state machine on privileged state.

Phases (as in the public LanguageTable oracle):
  to_pre_block  go 5 cm behind the block on the block->target line (0.3 m/s),
                detouring around every block on the way;
  to_block      close in to 3 cm behind it (0.35 m/s);
  push          drive through a point 1 cm behind the block centre (0.35 m/s),
                slowing down as the block nears its target, and always pressing
                forward a little (the real arm lags its target, which keeps it
                pressing; a kinematic pusher has to be told);
  orient        orbit the block (0.15 m/s) when its yaw error exceeds 0.2 rad,
                so a flat face meets the pusher (cubes mod 90 deg, moons mod 180;
                stars and pentagons are pushed as they lie);
                after 15 steps without success, or near the workspace edge,
                push as it is.

Avoiding other blocks, a documented simpler scheme than the RRT* planner the
released data sets used: the travelling pusher circles the block it is about to
push when that block is in its way, and passes other blocks through one via
point beside the first one in its way; the pushed block likewise heads for a
via point beside a block its straight path would hit. point2block drives the
target straight at the block.
"""
from __future__ import annotations

import math

import numpy as np

from sefm_sim.envs import lt_constants as C
from sefm_sim.envs.lt_tasks import Goal, TableState

PRE_BLOCK, NEXT_TO_BLOCK, TOUCHING = 0.05, 0.03, 0.01
MIN_PRESS = 0.004            # m per step the pusher always advances while pushing
MAX_OFF_LINE = 0.015         # pusher this far off the block->goal line: set up again
SPEED_APPROACH, SPEED_PUSH, SPEED_ORIENT = 0.30, 0.35, 0.15
ORIENT_START, ORIENT_DONE = 0.2, 0.03
MOON_ORIENT_START, MOON_ORIENT_DONE = 0.25, 0.02
ORBIT_STEP = 0.2
ORBIT_DEPTH = 0.004          # how far inside the contact distance the orbit runs, so it turns the block
ORIENT_PATIENCE = 15
ORIENT_EDGE_MARGIN = 0.06    # no orienting this close to the workspace edge: it could shove the block out
SLOWDOWN = ((0.02, 0.2), (0.04, 0.3), (0.06, 0.4), (0.08, 0.5), (0.10, 0.6))
PUSHER_CLEARANCE = 0.045     # pusher centre to another block's centre while travelling
BLOCK_CLEARANCE = 0.065      # pushed block's centre to another block's centre
SUBGOAL_REACHED = 0.025
SEPARATE_AIM = 0.1           # separate: distance from the neighbours' centroid to aim for
REACH_MARGIN = 0.06
REACH_LOW = np.array([C.WORKSPACE_X[0] + REACH_MARGIN, C.WORKSPACE_Y[0] + REACH_MARGIN])
REACH_HIGH = np.array([C.WORKSPACE_X[1] - REACH_MARGIN, C.WORKSPACE_Y[1] - REACH_MARGIN])
POINT_STOP = 0.03            # point2block: stop this close to the block


class OrientedPushOracle:
    def __init__(self, noise_std: float = 0.0, rng: np.random.Generator | None = None, speed_scale: float = 1.0):
        if not 0 < speed_scale * SPEED_PUSH / C.CONTROL_HZ <= 0.1:
            raise ValueError(f"speed_scale={speed_scale}: must be > 0 and keep steps within the 0.1 m action bound")
        self.noise_std = noise_std
        self.speed_scale = speed_scale   # < 1: a slower demonstrator (longer demos, finer steps-to-go)
        self.rng = rng or np.random.default_rng(0)
        self.reset()

    def reset(self) -> None:
        self.phase = "to_pre_block"
        self.orbit_sign = 0.0
        self.orient_steps = 0
        self.skip_orient = False   # gave up orienting until the next approach

    def act(self, state: TableState, goal: Goal) -> np.ndarray:
        """The next 2-D delta action for the effector target."""
        target_now = np.array(state.target)
        if goal.family == "point2block":
            aim = _stop_short(target_now, state.xy(goal.block), POINT_STOP)
            action = self._towards(target_now, aim, SPEED_APPROACH)
        else:
            action = self._push_action(state, goal, target_now)
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, size=2)
        return np.clip(action, -C.MAX_ACTION, C.MAX_ACTION)

    # --- pushing ---------------------------------------------------------------------

    def _towards(self, current: np.ndarray, aim: np.ndarray, speed: float) -> np.ndarray:
        """One step towards `aim` at `speed` (m/s), scaled by this oracle's speed_scale."""
        return _step_towards(current, aim, self.speed_scale * speed)

    def _push_action(self, state: TableState, goal: Goal, ee: np.ndarray) -> np.ndarray:
        block = state.xy(goal.block)
        # Locations on the board's edge (corners, "top") lie beyond where the pusher can
        # get behind a block; aim at the nearest point well inside, still within the
        # success radius, so the block is never shoved out of reach.
        goal_point = np.clip(self._aim(state, goal), REACH_LOW, REACH_HIGH)
        others = {name: state.xy(name) for name in state.blocks if name != goal.block}
        # The pushed block heads for a via point when its straight path would hit a block.
        obstacles = [xy for name, xy in others.items() if name != goal.reference or goal.family != "block2block"]
        subgoal = _via_point(block, goal_point, obstacles, BLOCK_CLEARANCE) if goal.family != "block2block" else None
        if subgoal is not None and np.linalg.norm(block - subgoal) < SUBGOAL_REACHED:
            subgoal = None
        aim_block_at = goal_point if subgoal is None else subgoal
        direction = _unit(aim_block_at - block)
        error = self._yaw_error(state.blocks[goal.block][2], direction, goal.block)
        start_limit, done_limit = self._orient_limits(goal.block)
        remaining = float(np.linalg.norm(goal_point - block))

        if self.phase == "to_pre_block":
            pre = block - PRE_BLOCK * direction
            if np.linalg.norm(ee - pre) < 0.005:
                self.phase, self.orient_steps = "to_block", 0
            else:
                aim = _around_block(ee, pre, block, _clearance(goal.block))
                if aim is None:  # the pushed block is not in the way: mind the others
                    aim = _via_point(ee, pre, list(others.values()), PUSHER_CLEARANCE)
                return self._towards(ee, pre if aim is None else aim, SPEED_APPROACH)
        if self.phase == "to_block":
            if abs(error) > start_limit and not self.skip_orient and _away_from_edge(block) and _has_faces(goal.block):
                self.phase, self.orbit_sign = "orient", math.copysign(1.0, error)
            else:
                near = block - NEXT_TO_BLOCK * direction
                if np.linalg.norm(ee - near) < 0.01:
                    self.phase = "push"
                else:
                    return self._towards(ee, near, SPEED_PUSH * _slowdown(remaining))
        if self.phase == "orient":
            self.orient_steps += 1
            gave_up = self.orient_steps > ORIENT_PATIENCE
            if abs(error) < done_limit or math.copysign(1.0, error) != self.orbit_sign or gave_up:
                self.phase, self.skip_orient = "to_pre_block", gave_up
                return self._push_action(state, goal, ee)
            around = _unit(ee - block)
            c, s = math.cos(ORBIT_STEP * self.orbit_sign), math.sin(ORBIT_STEP * self.orbit_sign)
            radius = _contact_distance(goal.block) - ORBIT_DEPTH
            orbit = block + radius * np.array([c * around[0] - s * around[1], s * around[0] + c * around[1]])
            return self._towards(ee, orbit, SPEED_ORIENT)
        # push
        turned = abs(error) > start_limit and not self.skip_orient and _has_faces(goal.block)
        behind = ee - block
        off_line = abs(behind[0] * direction[1] - behind[1] * direction[0]) > MAX_OFF_LINE
        if turned or off_line or float(behind @ direction) > 0.0:
            self.phase, self.skip_orient = "to_pre_block", False  # turned away or slipped off: set up again
            return self._push_action(state, goal, ee)
        action = self._towards(ee, block - TOUCHING * direction, SPEED_PUSH * _slowdown(remaining))
        forward = float(action @ direction)
        return action if forward >= MIN_PRESS else action + (MIN_PRESS - forward) * direction

    @staticmethod
    def _aim(state: TableState, goal: Goal) -> np.ndarray:
        """Where to push the block. `separate` succeeds anywhere 7.5-12.5 cm from the neighbours'
        centroid; straight away from them would put the pusher among them, so pick the heading
        (straight, or 50 deg to either side) whose pushing spot is freest."""
        if goal.family != "separate":
            return goal.target_point(state)
        block = state.xy(goal.block)
        neighbours = [state.xy(n) for n in goal.neighbours]
        centroid = np.mean(neighbours, axis=0)
        away = block - centroid
        best, best_room = None, -1.0
        for angle in (0.0, 0.87, -0.87):
            c, s = math.cos(angle), math.sin(angle)
            heading = _unit(np.array([c * away[0] - s * away[1], s * away[0] + c * away[1]]))
            aim = centroid + SEPARATE_AIM * heading
            spot = block - PRE_BLOCK * _unit(aim - block)
            room = min(float(np.linalg.norm(spot - n)) for n in neighbours)
            if room > best_room + 0.01 and np.all(aim > REACH_LOW) and np.all(aim < REACH_HIGH):
                best, best_room = aim, room
        return goal.target_point(state) if best is None else best

    @staticmethod
    def _orient_limits(block: str) -> tuple[float, float]:
        if block.endswith("_moon"):
            return MOON_ORIENT_START, MOON_ORIENT_DONE
        return ORIENT_START, ORIENT_DONE

    @staticmethod
    def _yaw_error(yaw: float, direction: np.ndarray, block: str) -> float:
        """Angle from the push direction to the nearest face normal (4-fold; a moon's short axis, 2-fold)."""
        heading = math.atan2(direction[1], direction[0])
        if block.endswith("_moon"):
            return _wrap(heading - yaw + math.pi / 2, math.pi)
        return _wrap(heading - yaw, math.pi / 2)


def _has_faces(block: str) -> bool:
    """Blocks with faces at 90 deg (cube) or 180 deg (moon). Stars and pentagons have 5-fold
    symmetry, so a yaw error mod 90 deg means nothing for them: they are pushed as they lie."""
    return block.endswith(("_cube", "_moon"))


def _contact_distance(block: str) -> float:
    """Pusher centre to block centre when the pusher touches the block's narrow side."""
    length, width = C.FOOTPRINTS.get(block.split("_", 1)[1], C.BANANA_FOOTPRINT)
    return min(length, width) / 2 + C.PUSHER_RADIUS


def _away_from_edge(xy: np.ndarray) -> bool:
    m = ORIENT_EDGE_MARGIN
    return C.WORKSPACE_X[0] + m < xy[0] < C.WORKSPACE_X[1] - m and C.WORKSPACE_Y[0] + m < xy[1] < C.WORKSPACE_Y[1] - m


def _wrap(angle: float, period: float) -> float:
    """Wrap into [-period/2, period/2)."""
    return (angle + period / 2) % period - period / 2


def _slowdown(distance_to_goal: float) -> float:
    for limit, factor in SLOWDOWN:
        if distance_to_goal < limit:
            return factor
    return 1.0


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.array([1.0, 0.0])


def _step_towards(current: np.ndarray, aim: np.ndarray, speed: float) -> np.ndarray:
    delta = aim - current
    limit = speed / C.CONTROL_HZ
    n = float(np.linalg.norm(delta))
    return delta if n <= limit else delta * (limit / n)


def _stop_short(current: np.ndarray, point: np.ndarray, gap: float) -> np.ndarray:
    away = current - point
    n = float(np.linalg.norm(away))
    return point if n <= gap else point + away * (gap / n)


def _clearance(block: str) -> float:
    """Pusher centre to block centre that clears the block whatever its yaw."""
    length, width = C.FOOTPRINTS.get(block.split("_", 1)[1], C.BANANA_FOOTPRINT)
    return max(length, width) / 2 + C.PUSHER_RADIUS + 0.008


def _around_block(ee: np.ndarray, goal: np.ndarray, block: np.ndarray, clearance: float) -> np.ndarray | None:
    """A step around `block` when the straight way from ee to goal passes through it; else None."""
    path = goal - ee
    length = float(np.linalg.norm(path))
    if length < 1e-6:
        return None
    along = float(np.clip((block - ee) @ path / length, 0.0, length))
    if np.linalg.norm(block - ee - along * path / length) >= clearance or along >= length - 1e-6:
        return None
    radial = ee - block
    if np.linalg.norm(radial) < clearance:  # too close: back straight out first
        return block + _unit(radial) * (clearance + 0.005)
    here = math.atan2(radial[1], radial[0])
    there = math.atan2(goal[1] - block[1], goal[0] - block[0])
    angle = here + math.copysign(0.5, _wrap(there - here, 2 * math.pi))  # the shorter way round
    return block + (clearance + 0.005) * np.array([math.cos(angle), math.sin(angle)])


def _via_point(start: np.ndarray, end: np.ndarray, obstacles, clearance: float) -> np.ndarray | None:
    """A point beside the first obstacle that the segment start->end passes within `clearance` of.

    Obstacles at the start or the end themselves are ignored (the pusher may
    start next to a block, and a target may be next to one).
    """
    path = end - start
    length = float(np.linalg.norm(path))
    if length < 1e-6:
        return None
    along_unit = path / length
    normal = np.array([-along_unit[1], along_unit[0]])
    hits = []
    for obstacle in obstacles:
        rel = obstacle - start
        along = float(rel @ along_unit)
        if along <= 0.0 or along >= length:
            continue
        if np.linalg.norm(obstacle - start) < clearance * 0.8 or np.linalg.norm(obstacle - end) < clearance * 0.8:
            continue
        off = float(rel @ normal)
        if abs(off) < clearance:
            hits.append((along, off, obstacle))
    if not hits:
        return None
    along, off, obstacle = min(hits, key=lambda h: h[0])
    side = -1.0 if off > 0 else 1.0  # pass on the side the path already leans to
    candidate = obstacle + side * normal * (clearance + 0.01)
    lo = np.array([C.WORKSPACE_X[0] + 0.02, C.WORKSPACE_Y[0] + 0.02])
    hi = np.array([C.WORKSPACE_X[1] - 0.02, C.WORKSPACE_Y[1] - 0.02])
    if np.any(candidate < lo) or np.any(candidate > hi):
        candidate = obstacle - side * normal * (clearance + 0.01)
    return np.clip(candidate, lo, hi)
