"""LanguageTable geometry and blocks (metres, robot base at the origin, +x away from the robot).

Numbers follow the public LanguageTable environment (see
../shared/reference/environments.md); the MuJoCo scene is our own.
"""
from __future__ import annotations

import enum
import itertools
import random
from dataclasses import dataclass

# Board: 18" x 24" centred at (0.35, 0); its top surface is z = 0.
BOARD_CENTER = (0.35, 0.0)
BOARD_SIZE = (0.4572, 0.6096)
BOARD_FRICTION = 1.0

# The effector target is clipped to this box.
WORKSPACE_X = (0.15, 0.60)
WORKSPACE_Y = (-0.3048, 0.3048)
WORKSPACE_CENTER = (0.375, 0.0)
# Reset sampling uses the workspace shrunk by this buffer.
SAMPLING_BUFFER = 0.08
SAMPLING_X = (WORKSPACE_X[0] + SAMPLING_BUFFER, WORKSPACE_X[1] - SAMPLING_BUFFER)
SAMPLING_Y = (WORKSPACE_Y[0] + SAMPLING_BUFFER, WORKSPACE_Y[1] - SAMPLING_BUFFER)

# Pusher: a cylinder pointing down, tracking the target xy at a fixed height.
PUSHER_RADIUS = 0.0127
PUSHER_HALF_LENGTH = 0.0675       # the real tip is 0.135 m long
PUSHER_CLEARANCE = 0.0075         # gap between the pusher tip and the board (as on the real robot)
MAX_ACTION = 0.1                  # 2-D delta on the target, per step, box [-0.1, 0.1]^2
CONTROL_HZ = 10
PUSHER_MAX_SPEED = 0.5            # m/s the effector can follow its target with

# Blocks: ~4 cm footprints, 1.5" tall, 10 g, friction 0.5.
BLOCK_HEIGHT = 0.0381
BLOCK_MASS = 0.01
BLOCK_FRICTION = 0.5
# PyBullet multiplies the two surfaces' coefficients (block 0.5 x board 1.0 =
# 0.5); MuJoCo takes the larger. Every contact gets the product directly.
CONTACT_FRICTION = BLOCK_FRICTION * BOARD_FRICTION
COLORS = ("red", "blue", "green", "yellow")
SHAPES = ("moon", "cube", "star", "pentagon")
FOOTPRINTS = {  # bounding box (length x width) of each shape's footprint
    "cube": (0.040, 0.040),
    "moon": (0.053, 0.026),
    "star": (0.044, 0.041),
    "pentagon": (0.044, 0.041),
}
RGBA = {
    "red": (1.0, 0.4, 0.4, 1.0),
    "blue": (0.4, 0.4, 1.0, 1.0),
    "green": (0.4, 1.0, 0.4, 1.0),
    "yellow": (1.0, 1.0, 0.4, 1.0),
}
BANANA_RGBA = (0.95, 0.80, 0.20, 1.0)
ALL_BLOCKS = tuple(f"{c}_{s}" for c in COLORS for s in SHAPES)

# Reset rejection rules, as in the original: 0.0175 m between block *centres*
# (so spawned blocks may overlap; settling pushes them apart until at rest).
MIN_BLOCK_GAP = 0.0175
MIN_PUSHER_GAP = 0.06             # between the effector target and any block centre


BANANA_FOOTPRINT = (0.11, 0.035)
# Settling after a reset: step until every block is at rest, or give up on the board.
SETTLE_CHUNK_SECONDS = 0.1
SETTLE_MAX_SECONDS = 1.5
AT_REST_SPEED = 0.02             # m/s (and rad/s) below which a block counts as at rest


class BlockMode(str, enum.Enum):
    BLOCK_4 = "BLOCK_4"
    BLOCK_8 = "BLOCK_8"
    N_CHOOSE_K = "N_CHOOSE_K"
    BANANA = "BANANA"          # BananaTable: a banana among BLOCK_4's blocks


BLOCK_4 = ("red_moon", "blue_cube", "green_star", "yellow_pentagon")
BLOCK_8 = ("red_moon", "red_pentagon", "blue_moon", "blue_cube",
           "green_cube", "green_star", "yellow_star", "yellow_pentagon")
N_CHOOSE_K_SIZES = range(4, 11)   # 4..10 blocks of the 16
N_CHOOSE_K_TEST_FRACTION = 0.1
N_CHOOSE_K_SPLIT_SEED = 20250915  # fixes the train/test split of combinations for everyone


@dataclass(frozen=True)
class NChooseKSplit:
    train: tuple[tuple[str, ...], ...]
    test: tuple[tuple[str, ...], ...]


_SPLIT_CACHE: dict[int, NChooseKSplit] = {}


def n_choose_k_split(k: int) -> NChooseKSplit:
    """All k-block combinations of the 16 blocks, split 90/10 train/test by a fixed seed."""
    if k not in N_CHOOSE_K_SIZES:
        raise ValueError(f"N_CHOOSE_K takes 4..10 blocks, got {k}")
    if k not in _SPLIT_CACHE:
        combos = list(itertools.combinations(ALL_BLOCKS, k))
        random.Random(N_CHOOSE_K_SPLIT_SEED + k).shuffle(combos)
        n_test = max(1, round(len(combos) * N_CHOOSE_K_TEST_FRACTION))
        _SPLIT_CACHE[k] = NChooseKSplit(train=tuple(sorted(combos[n_test:])), test=tuple(sorted(combos[:n_test])))
    return _SPLIT_CACHE[k]
