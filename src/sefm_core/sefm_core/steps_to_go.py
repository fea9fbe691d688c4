"""Steps-to-go: hindsight labels, the expected value d(o, g), the reward and the success detector.

Paper (Stage 1): p_stg(k | o_t, g) is a categorical over k = 0..K; for a
language goal the label of o_t is t' - t, t' the step at which the episode
succeeded. Stage 2 uses a frozen copy:
    d(o, g)        = E_{p_stg}[k]
    r(o_t, o_t+1)  = d(o_t, g) - d(o_t+1, g)
    success(o, g)  = d(o, g) <= s
"""
from __future__ import annotations

import numpy as np
import torch


def hindsight_labels(num_observations: int, success_index: int | None, max_steps: int) -> np.ndarray:
    """Label of each observation 0..T-1: steps until the success observation, capped at max_steps.

    success_index: index of the first observation at which the goal held; None
    for an episode that never succeeded (its labels are -1: no hindsight target).
    """
    if success_index is None:
        return np.full(num_observations, -1, dtype=np.int64)
    if not 0 <= success_index < num_observations:
        raise ValueError(f"success_index {success_index} outside 0..{num_observations - 1}")
    labels = success_index - np.arange(num_observations)
    labels[success_index + 1:] = 0  # after success the goal still holds (if anything was recorded)
    return np.minimum(labels, max_steps).astype(np.int64)


def expected_steps(logits: torch.Tensor) -> torch.Tensor:
    """d(o, g): the expected value of the steps-to-go categorical, from logits (..., K+1)."""
    k = torch.arange(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    return (torch.softmax(logits, dim=-1) * k).sum(-1)


def reward(d_before: torch.Tensor | float, d_after: torch.Tensor | float):
    """r(o_t, a_t, o_t+1, g) = d(o_t, g) - d(o_t+1, g): progress made towards the goal."""
    return d_before - d_after


def detect_success(d, threshold: float):
    """success(o, g) = 1[d(o, g) <= s]."""
    return d <= threshold
