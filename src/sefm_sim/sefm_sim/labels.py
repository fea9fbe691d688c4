"""LanguageTable's training label schema: what the simulator's privileged state says about a demo.

`sefm_core.sft` trains on whatever a `Labels` object gives it (`sefm_core.sft.Labels`); a real robot's
bags give none (`sefm_core.sft.NO_LABELS`). For data sets that `sefm collect` or the sim bridge's
`sim/ground_truth` recorded, `LANGUAGE_TABLE` reads the episode metadata (`goal`, `blocks`, `camera`)
and the per-step `block_xy` extra:

  aux            the named block's xy and where it should go, normalised to the board (T+1, 4)
  pointer        where the named block, its target and the effector appear in the camera image (T+1, 3, 2)
  scene_blocks   where every block of the scene appears in the image (T+1, B, 2), and the blocks' names
  goal_key       the structured goal, independent of its wording
  goal_object    the block the goal names, and whether the goal is to reach that block itself (point2block)

Labels are training targets only, never a model input. numpy only: no torch, no ROS.
"""
from __future__ import annotations

import json

import numpy as np

BOARD_CENTER, BOARD_SCALE = np.array([0.35, 0.0]), 0.3
POINTER_TARGETS = ("block", "target", "effector")  # what pointer head 0, 1, 2 is taught to find
GOAL_FIELDS = ("family", "block", "reference", "location", "fixed_target", "offset")


def goal_positions(episode) -> tuple[np.ndarray, np.ndarray] | None:
    """Per observation, from privileged state: the world xy of the instructed block and of where it
    should go ((T+1, 2) each; the target is nan where the family has no fixed target point), or None
    where the data set lacks the state (e.g. recorded on ROS)."""
    goal, names = episode.metadata.get("goal") or {}, episode.metadata.get("blocks")
    xy = episode.extras.get("block_xy")
    if xy is None or not names or goal.get("block") not in names:
        return None
    block = xy[:, names.index(goal["block"])].astype(np.float32)
    target = np.full_like(block, np.nan)
    if goal.get("family") == "block2block" and goal.get("reference") in names:
        target = xy[:, names.index(goal["reference"])]
    elif goal.get("family") == "point2block":
        target = block
    elif goal.get("fixed_target") is not None:
        target = np.broadcast_to(np.asarray(goal["fixed_target"], np.float32), block.shape)
    elif goal.get("family") == "block2block_relative" and goal.get("reference") in names:
        target = xy[:, names.index(goal["reference"])] + np.asarray(goal["offset"], np.float32)
    return block, np.asarray(target, np.float32)


def aux_labels(episode) -> np.ndarray:
    """Per observation: the instructed block's xy and where it should go, normalised to the board; nan
    where unknown (see `goal_positions`)."""
    out = np.full((episode.steps + 1, 4), np.nan, np.float32)
    positions = goal_positions(episode)
    if positions is not None:
        out[:, :2] = (positions[0] - BOARD_CENTER) / BOARD_SCALE
        out[:, 2:] = (positions[1] - BOARD_CENTER) / BOARD_SCALE
    return out


def pointer_labels(episode) -> np.ndarray:
    """Per observation: where the instructed block, its target and the effector appear in the camera
    image ((T+1, 3, 2), normalised to [-1, 1], x right, y down), from privileged state and the camera
    projection the collector stored (metadata "camera"); nan where unknown."""
    out = np.full((episode.steps + 1, len(POINTER_TARGETS), 2), np.nan, np.float32)
    camera, positions = episode.metadata.get("camera"), goal_positions(episode)
    if not camera or positions is None:
        return out
    heights = (camera["block_z"], camera["block_z"], camera["effector_z"])
    for j, (xy, z) in enumerate(zip((*positions, episode.proprio[:, :2]), heights)):
        out[:, j] = to_image(camera, xy, z)
    return out


def to_image(camera: dict, xy: np.ndarray, z: float) -> np.ndarray:
    """World points (..., 2) at height z -> their position in the camera image (..., 2), normalised to [-1, 1]."""
    world = np.concatenate([xy, np.full((*xy.shape[:-1], 1), z), np.ones((*xy.shape[:-1], 1))], axis=-1)
    image = world @ np.asarray(camera["projection"], np.float64).T
    return (image[..., :2] / image[..., 2:]).astype(np.float32)


def scene_block_labels(episode) -> tuple[np.ndarray, list[str]]:
    """Where every block of the scene appears in the camera image, per observation ((T+1, B, 2) in [-1, 1]),
    and the blocks' names; empty where the data set lacks the state or the camera."""
    camera, names, xy = episode.metadata.get("camera"), episode.metadata.get("blocks") or [], \
        episode.extras.get("block_xy")
    if not camera or xy is None or not names:
        return np.zeros((episode.steps + 1, 0, 2), np.float32), []
    return to_image(camera, xy, camera["block_z"]), list(names)


def goal_key(entry: dict) -> str:
    """What the goal is, independent of its wording: the structured goal if recorded, else the instruction."""
    goal = entry.get("metadata", {}).get("goal") or {}
    fields = {k: goal.get(k) for k in GOAL_FIELDS}
    return json.dumps(fields, sort_keys=True) if goal.get("family") else entry["instruction"]


def goal_object(episode) -> tuple[str | None, bool]:
    """The block the goal names (None: no structured goal), and whether the goal is to reach that block
    itself (point2block), so that the target is the block too."""
    goal = episode.metadata.get("goal") or {}
    return goal.get("block"), goal.get("family") == "point2block"


class LanguageTableLabels:
    """`sefm_core.sft.Labels` for LanguageTable / BananaTable data sets (the functions above)."""

    def aux(self, episode) -> np.ndarray:
        return aux_labels(episode)

    def pointer(self, episode) -> np.ndarray:
        return pointer_labels(episode)

    def scene_blocks(self, episode) -> tuple[np.ndarray, list[str]]:
        return scene_block_labels(episode)

    def goal_key(self, entry: dict) -> str:
        return goal_key(entry)

    def goal_object(self, episode) -> tuple[str | None, bool]:
        return goal_object(episode)


LANGUAGE_TABLE = LanguageTableLabels()
