"""Steps-to-go quality on held-out demonstrations: d(o, g) of every observation, the success threshold
chosen on other demos, the detector's precision and recall, and whether it is grounded in the words
(at-goal states paired with another demo's goal). `sefm eval --dataset` reports these; diagnosis scripts
use the pieces. Knows no simulator: the data set's label schema is passed in (`sft.Labels`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from sefm_core.data import EpisodeDataset
from sefm_core.metrics import best_threshold, steps_to_go_quality
from sefm_core.sft import NO_LABELS, Labels, flatten, tower_cache
from sefm_core.steps_to_go import expected_steps, hindsight_labels


def held_out_states(model, dataset: EpisodeDataset, episode_ids: list[int], labels: Labels = NO_LABELS):
    """Every observation of the episodes with its labels (`sft.Arrays`; tower outputs cached beside the
    data set), and the simulator's goal-holds flag of each. `labels`: what the data set's privileged state
    says (`sft.Labels`; LanguageTable: `sefm_sim.labels.LANGUAGE_TABLE`); the goal ids that pair states with
    other goals come from it (without labels, a goal is its instruction)."""
    fmap, texts, vectors = tower_cache(model, dataset, log=lambda *a, **k: None)
    data = flatten(model, dataset, episode_ids, fmap, texts, vectors, labels=labels)
    holds = np.concatenate([_goal_holds(dataset[i], model) for i in episode_ids]).astype(bool)
    return data, holds


@torch.no_grad()
def _steps_to_go(model, fmap: torch.Tensor, text: torch.Tensor, proprio: torch.Tensor) -> np.ndarray:
    model.eval()
    return torch.cat([expected_steps(model.heads(fmap[i:i + 512].float(), text[i:i + 512], proprio[i:i + 512])[1])
                      for i in range(0, len(fmap), 512)]).numpy()


def observation_steps_to_go(model, data) -> np.ndarray:
    """d(o, g) of every observation of `held_out_states` data, with the episode's own goal."""
    return _steps_to_go(model, data.fmap, data.text_vectors[data.text_index], data.proprio)


def swapped_goal_detections(model, data, holds: np.ndarray, threshold: float, seed: int = 0) -> tuple[float, int]:
    """Is the detector grounded in the words? Every at-goal state of the demos, paired with the goal of
    another demo (a different block or target), should NOT be detected. Returns (share detected, pairs)."""
    rng = np.random.default_rng(seed)
    goal = data.goal.numpy()
    rows = np.flatnonzero(holds)
    others = rng.integers(len(goal), size=len(rows))
    keep = goal[rows] != goal[others]
    if not keep.any():
        return float("nan"), 0
    rows, others = torch.from_numpy(rows[keep]), torch.from_numpy(others[keep])
    d = _steps_to_go(model, data.fmap[rows], data.text_vectors[data.text_index[others]], data.proprio[rows])
    return float((d <= threshold).mean()), len(rows)


def _goal_holds(episode, model) -> np.ndarray:
    """The simulator's per-observation success flags, or (data without them) the states labelled 0."""
    if "goal_holds" in episode.extras:
        return episode.extras["goal_holds"]
    labels = hindsight_labels(episode.steps + 1, episode.success_index, model.config.max_steps_to_go)
    return (labels == 0).astype(np.uint8)


def steps_to_go_report(model, dataset: EpisodeDataset, train_ids: list[int], val_ids: list[int],
                       test: EpisodeDataset | None = None, by_family: bool = False, labels: Labels = NO_LABELS):
    """Quality on held-out successful demos, at a success threshold s chosen on other demos.

    Without `test`: measured on the split's val demos, s chosen on the training demos (optimistic
    there: the heads fit them, so d sits near 0 at success and s comes out too low).
    With `test` (a separate data set, all of its episodes): s is chosen on the val demos, which
    training never saw, and everything is measured on `test`.
    by_family: also {family: quality} for each instruction family among the measured demos.
    labels: the data sets' label schema (`held_out_states`).
    """
    calibrate = train_ids if test is None else val_ids
    data, holds = held_out_states(model, dataset, [i for i in calibrate if dataset.index[i]["success"]], labels)
    threshold = best_threshold(observation_steps_to_go(model, data), holds)
    held, ids = (dataset, val_ids) if test is None else (test, list(range(len(test))))
    data, holds = held_out_states(model, held, [i for i in ids if held.index[i]["success"]], labels)
    d, labels, episode = observation_steps_to_go(model, data), data.stg.numpy(), data.episode.numpy()
    swapped, pairs = swapped_goal_detections(model, data, holds, threshold)
    overall = dataclasses.replace(steps_to_go_quality(d, labels, episode, holds, threshold),
                                  swapped_goal_detected=swapped, swapped_pairs=pairs)
    if not by_family:
        return overall
    family = np.array([held.index[i].get("metadata", {}).get("family", "?") for i in episode])
    per = {f: steps_to_go_quality(d[family == f], labels[family == f], episode[family == f], holds[family == f],
                                  threshold) for f in sorted(set(family))}
    return overall, per
