"""LanguageTable instruction families: goal sampling, instruction text, success tests.

Six families, with the templates, synonyms and thresholds of the public
LanguageTable environment (summarised in ../shared/reference/environments.md).
Axes: "top/up" is -x (towards the robot), "left" is -y.

A sampler returns None when the board does not admit the family's task (the
env then resamples the board); every random choice uses the env's generator,
so a seed fixes the instruction as well as the poses.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from sefm_sim.envs import lt_constants as C

FAMILIES = ("block2block", "block2absolutelocation", "block2relativelocation",
            "block2block_relative", "separate", "point2block")

PUSH_VERBS = ("push the", "move the", "slide the", "put the")
PREPOSITIONS = ("to the", "towards the", "close to the", "next to the")
POINT_PHRASES = ("point next to the", "point close to the", "point to the", "point at the",
                 "move the arm next to the", "move the arm close to the", "move the arm to the",
                 "move your arm next to the", "move your arm close to the", "move your arm to the",
                 "move next to the", "move close to the", "move to the")

BLOCK_TARGET_DISTANCE = 0.05      # block2block and point2block success
# Target points must lie strictly inside the sampling box.
INSIDE_X, INSIDE_Y = C.SAMPLING_X, C.SAMPLING_Y

# block2absolutelocation: x range shifted to 0.125..0.575.
ABSOLUTE_LOCATIONS = {
    "top": (0.125, 0.0), "top_left": (0.125, -0.3048), "top_right": (0.125, 0.3048),
    "center": (0.35, 0.0), "center_left": (0.35, -0.3048), "center_right": (0.35, 0.3048),
    "bottom": (0.575, 0.0), "bottom_left": (0.575, -0.3048), "bottom_right": (0.575, 0.3048),
}
ABSOLUTE_SYNONYMS = {
    "top": ("top side", "top", "towards your base"),
    "top_left": ("top left of the board", "top left", "upper left corner", "top left corner"),
    "top_right": ("top right of the board", "top right", "upper right corner", "top right corner"),
    "center": ("middle of the board", "center of the board", "center", "middle"),
    "center_left": ("left side of the board", "center left", "left side"),
    "center_right": ("right side of the board", "center right", "right side"),
    "bottom": ("bottom side", "bottom"),
    "bottom_left": ("bottom left of the board", "bottom left", "lower left corner", "bottom left corner"),
    "bottom_right": ("bottom right of the board", "bottom right", "lower right corner", "bottom right corner"),
}
ABSOLUTE_RADIUS, ABSOLUTE_CENTER_RADIUS = 0.115, 0.10

# block2relativelocation: 8 directions x {near, far}.
_D = math.sqrt(0.5)
DIRECTIONS = {
    "up": (-1.0, 0.0), "down": (1.0, 0.0), "left": (0.0, -1.0), "right": (0.0, 1.0),
    "diagonal_up_left": (-_D, -_D), "diagonal_up_right": (-_D, _D),
    "diagonal_down_left": (_D, -_D), "diagonal_down_right": (_D, _D),
}
DIRECTION_WORDS = {"up": ("up", "upwards"), "down": ("down", "downwards"),
                   "left": ("to the left", "left"), "right": ("to the right", "right")}
DIAGONAL_PATTERNS = ("{} and {}", "{} and then {}", "diagonally {} and {}", "{} and {} diagonally")
RELATIVE_DISTANCES = {"near": 0.15, "far": 0.25}
SLIGHTLY = ("slightly", "a bit", "a little", "a little bit", "somewhat")
RELATIVE_RADIUS = 0.10

# block2block_relative: offsets from the reference block.
RELATIVE_OFFSETS = {
    "up": (-0.08, 0.0), "down": (0.08, 0.0), "left": (0.0, -0.08), "right": (0.0, 0.08),
    "diagonal_up_left": (-0.04, -0.04), "diagonal_up_right": (-0.04, 0.04),
    "diagonal_down_left": (0.04, -0.04), "diagonal_down_right": (0.04, 0.04),
}
RELATIVE_OFFSET_PHRASES = {
    "up": ("above the", "to the top side of the", "to the top of the"),
    "down": ("below the", "to the bottom side of the", "to the bottom of the"),
    "left": ("just left of the", "to the left of the", "left of the", "to the left side of the"),
    "right": ("just right of the", "to the right of the", "right of the", "to the right side of the"),
    "diagonal_up_left": ("to the top left side of the", "to the top left of the",
                         "diagonally up and to the left of the"),
    "diagonal_up_right": ("to the top right side of the", "to the top right of the",
                          "diagonally up and to the right of the"),
    "diagonal_down_left": ("to the bottom left side of the", "to the bottom left of the",
                           "diagonally down and to the left of the"),
    "diagonal_down_right": ("to the bottom right side of the", "to the bottom right of the",
                            "diagonally down and to the right of the"),
}
OFFSET_SEGMENT = np.linspace(0.5, 1.1, 10)   # success anywhere on 50%..110% of the offset
OFFSET_RADIUS = 0.04
REFERENCE_DRAG_LIMIT = 0.05

# separate: push the most crowded block 0.1 m away from its neighbours' centroid.
JOINED_DISTANCE = 0.08
SEPARATE_DISTANCE = 0.1
SEPARATE_RADIUS = 0.025
SEPARATE_TEMPLATES = ("pull the {} apart from the {}", "move the {} away from the {}", "separate the {} from the {}")
GROUP_WORDS = ("group", "clump", "group of blocks")


@dataclass(frozen=True)
class TableState:
    blocks: dict[str, tuple[float, float, float]]   # name -> (x, y, yaw)
    effector: tuple[float, float]
    target: tuple[float, float]                     # the effector target (what actions move)

    def xy(self, block: str) -> np.ndarray:
        x, y, _ = self.blocks[block]
        return np.array([x, y])


@dataclass(frozen=True)
class Goal:
    family: str
    instruction: str
    block: str                                   # the block to move (point2block: to point at)
    reference: str | None = None                 # block2block / block2block_relative: the other block
    location: str | None = None                  # absolute location or direction name
    fixed_target: tuple[float, float] | None = None   # absolute and relative locations
    offset: tuple[float, float] | None = None    # block2block_relative
    reference_start: tuple[float, float] | None = None
    neighbours: tuple[str, ...] = field(default=())  # separate: the blocks to move away from

    def target_point(self, state: TableState) -> np.ndarray:
        """Where `block` should end up (point2block: where the effector target should go)."""
        if self.family == "block2block":
            return state.xy(self.reference)
        if self.family == "block2block_relative":
            return state.xy(self.reference) + np.array(self.offset)
        if self.family == "separate":
            return _separate_target(state, self.block, self.neighbours)
        if self.family == "point2block":
            return state.xy(self.block)
        return np.array(self.fixed_target)

    def success(self, state: TableState) -> bool:
        block = state.xy(self.block)
        if self.family == "block2block":
            return _dist(block, state.xy(self.reference)) < BLOCK_TARGET_DISTANCE
        if self.family == "block2absolutelocation":
            radius = ABSOLUTE_CENTER_RADIUS if self.location == "center" else ABSOLUTE_RADIUS
            return _dist(block, self.fixed_target) < radius
        if self.family == "block2relativelocation":
            return _dist(block, self.fixed_target) < RELATIVE_RADIUS
        if self.family == "block2block_relative":
            reference = state.xy(self.reference)
            points = reference + OFFSET_SEGMENT[:, None] * np.array(self.offset)
            near_segment = bool(np.min(np.linalg.norm(points - block, axis=1)) < OFFSET_RADIUS)
            return near_segment and _dist(reference, self.reference_start) <= REFERENCE_DRAG_LIMIT
        if self.family == "separate":
            return _dist(block, _separate_target(state, self.block, self.neighbours)) < SEPARATE_RADIUS
        if self.family == "point2block":
            return _dist(block, state.target) < BLOCK_TARGET_DISTANCE
        raise ValueError(f"unknown family {self.family!r}")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# --- naming -------------------------------------------------------------------------

def block_name(rng, block: str, on_table: tuple[str, ...]) -> str:
    """How an instruction names a block: colour or shape alone when unique on the table."""
    color, shape = block.split("_", 1)
    names = []
    colors = [b.split("_", 1)[0] for b in on_table]
    shapes = [b.split("_", 1)[1] for b in on_table]
    if colors.count(color) == 1:
        names.append(f"{color} block")
    if shapes.count(shape) == 1:
        names.append(shape)
    names.append(f"{color} {shape}")
    return names[int(rng.integers(len(names)))]


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


# --- samplers -----------------------------------------------------------------------

def sample_goal(rng, family: str, state: TableState) -> Goal | None:
    sampler = {
        "block2block": _sample_block2block,
        "block2absolutelocation": _sample_absolute,
        "block2relativelocation": _sample_relative,
        "block2block_relative": _sample_block2block_relative,
        "separate": _sample_separate,
        "point2block": _sample_point2block,
    }.get(family)
    if sampler is None:
        raise ValueError(f"unknown instruction family {family!r}; valid: {', '.join(FAMILIES)}")
    return sampler(rng, state)


def _sample_block2block(rng, state):
    blocks = tuple(state.blocks)
    for _ in range(10):
        i, j = rng.choice(len(blocks), size=2, replace=False)
        start, target = blocks[i], blocks[j]
        if _dist(state.xy(start), state.xy(target)) >= BLOCK_TARGET_DISTANCE + 0.01:
            text = (f"{_pick(rng, PUSH_VERBS)} {block_name(rng, start, blocks)} "
                    f"{_pick(rng, PREPOSITIONS)} {block_name(rng, target, blocks)}")
            return Goal("block2block", text, start, reference=target)
    return None


def _sample_absolute(rng, state):
    blocks = tuple(state.blocks)
    block = _pick(rng, blocks)
    location = _pick(rng, sorted(ABSOLUTE_LOCATIONS))
    text = f"{_pick(rng, PUSH_VERBS)} {block_name(rng, block, blocks)} to the {_pick(rng, ABSOLUTE_SYNONYMS[location])}"
    return Goal("block2absolutelocation", text, block, location=location, fixed_target=ABSOLUTE_LOCATIONS[location])


def _direction_phrase(rng, direction: str) -> str:
    if not direction.startswith("diagonal_"):
        return _pick(rng, DIRECTION_WORDS[direction])
    _, vertical, horizontal = direction.split("_")
    return _pick(rng, DIAGONAL_PATTERNS).format(_pick(rng, DIRECTION_WORDS[vertical]),
                                                _pick(rng, DIRECTION_WORDS[horizontal]))


def _sample_relative(rng, state):
    blocks = tuple(state.blocks)
    for _ in range(100):
        block = _pick(rng, blocks)
        direction = _pick(rng, sorted(DIRECTIONS))
        distance = _pick(rng, sorted(RELATIVE_DISTANCES))
        target = state.xy(block) + RELATIVE_DISTANCES[distance] * np.array(DIRECTIONS[direction])
        if not _inside(target):
            continue
        verb = _pick(rng, ("move the", "push the", "slide the"))
        name, phrase = block_name(rng, block, blocks), _direction_phrase(rng, direction)
        if distance == "far":
            text = f"{verb} {name} {phrase}"
        else:
            text = _pick(rng, (f"slightly {verb} {name} {phrase}",
                               f"{verb} {name} {_pick(rng, SLIGHTLY)} {phrase}",
                               f"{verb} {name} {phrase} {_pick(rng, SLIGHTLY)}"))
        return Goal("block2relativelocation", text, block, location=f"{distance}_{direction}",
                    fixed_target=tuple(target.tolist()))
    return None


def _sample_block2block_relative(rng, state):
    blocks = tuple(state.blocks)
    for _ in range(100):
        i, j = rng.choice(len(blocks), size=2, replace=False)
        block, reference = blocks[i], blocks[j]
        direction = _pick(rng, tuple(RELATIVE_OFFSETS))
        offset = RELATIVE_OFFSETS[direction]
        if not _inside(state.xy(reference) + np.array(offset)):
            continue
        text = (f"{_pick(rng, PUSH_VERBS)} {block_name(rng, block, blocks)} "
                f"{_pick(rng, RELATIVE_OFFSET_PHRASES[direction])} {block_name(rng, reference, blocks)}")
        return Goal("block2block_relative", text, block, reference=reference, location=direction, offset=offset,
                    reference_start=tuple(state.xy(reference).tolist()))
    return None


def _sample_separate(rng, state):
    blocks = tuple(state.blocks)
    crowding = []
    for block in blocks:
        near = [other for other in blocks
                if other != block and _dist(state.xy(block), state.xy(other)) < JOINED_DISTANCE]
        mean = np.mean([_dist(state.xy(block), state.xy(o)) for o in near]) if near else math.inf
        crowding.append((mean, block, tuple(near)))
    mean, block, neighbours = min(crowding, key=lambda item: item[0])  # first of equals, in table order
    if not neighbours or not _inside(_separate_target(state, block, neighbours)):
        return None
    names = [block_name(rng, n, blocks) for n in neighbours]
    if len(names) == 1:
        avoid = names[0]
    elif len(names) == 2:
        avoid = f"{names[0]} and {names[1]}"
    elif len(names) == 3 and rng.random() < 0.5:
        avoid = f"{names[0]}, {names[1]}, and {names[2]}"
    else:
        avoid = _pick(rng, GROUP_WORDS)
    text = _pick(rng, SEPARATE_TEMPLATES).format(block_name(rng, block, blocks), avoid)
    return Goal("separate", text, block, neighbours=neighbours)


def _sample_point2block(rng, state):
    blocks = tuple(state.blocks)
    for _ in range(10):
        block = _pick(rng, blocks)
        if _dist(state.xy(block), state.target) >= BLOCK_TARGET_DISTANCE + 0.01:
            return Goal("point2block", f"{_pick(rng, POINT_PHRASES)} {block_name(rng, block, blocks)}", block)
    return None


# --- geometry -----------------------------------------------------------------------

def _separate_target(state: TableState, block: str, neighbours: tuple[str, ...]) -> np.ndarray:
    centroid = np.mean([state.xy(n) for n in neighbours], axis=0)
    away = state.xy(block) - centroid
    return centroid + SEPARATE_DISTANCE * away / max(float(np.linalg.norm(away)), 1e-7)


def _inside(xy) -> bool:
    return INSIDE_X[0] < xy[0] < INSIDE_X[1] and INSIDE_Y[0] < xy[1] < INSIDE_Y[1]


def _dist(a, b) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


# --- paraphrases ----------------------------------------------------------------------

def paraphrase(rng, goal: Goal, blocks: tuple[str, ...]) -> str:
    """Another instruction for the same goal, from the family's templates and synonyms.

    Training on several wordings of each goal (language augmentation) keeps a model
    from memorising scenes by their sentence; the goal, and so success, is unchanged.
    """
    name = lambda b: block_name(rng, b, blocks)  # noqa: E731
    if goal.family == "block2block":
        return f"{_pick(rng, PUSH_VERBS)} {name(goal.block)} {_pick(rng, PREPOSITIONS)} {name(goal.reference)}"
    if goal.family == "block2absolutelocation":
        return f"{_pick(rng, PUSH_VERBS)} {name(goal.block)} to the {_pick(rng, ABSOLUTE_SYNONYMS[goal.location])}"
    if goal.family == "block2relativelocation":
        distance, direction = goal.location.split("_", 1)
        verb, phrase = _pick(rng, ("move the", "push the", "slide the")), _direction_phrase(rng, direction)
        if distance == "far":
            return f"{verb} {name(goal.block)} {phrase}"
        return _pick(rng, (f"slightly {verb} {name(goal.block)} {phrase}",
                           f"{verb} {name(goal.block)} {_pick(rng, SLIGHTLY)} {phrase}",
                           f"{verb} {name(goal.block)} {phrase} {_pick(rng, SLIGHTLY)}"))
    if goal.family == "block2block_relative":
        return (f"{_pick(rng, PUSH_VERBS)} {name(goal.block)} "
                f"{_pick(rng, RELATIVE_OFFSET_PHRASES[goal.location])} {name(goal.reference)}")
    if goal.family == "point2block":
        return f"{_pick(rng, POINT_PHRASES)} {name(goal.block)}"
    return goal.instruction  # separate: its wording depends on the crowd; keep it
