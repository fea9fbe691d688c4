"""How good is a steps-to-go model as a reward and a success detector?

- rank correlation of d(o, g) with the true remaining steps: per episode over the
  approach (what the reward d_t - d_t+1 relies on: d must fall as the episode
  progresses), per episode over every state, and pooled over all held-out states
  (also needs d comparable across episodes). The approach runs from the first
  observation to the first one at which the goal held: after it the demo rests at
  the goal and every label is 0, and ranking noise among those tied states says
  nothing about progress (with 6 approach steps and 10 resting frames, a perfect
  ordering of the approach scores only about 0.87 over every state);
- mean absolute error in steps;
- precision / recall / F1 of the success detector d <= s against the simulator's
  own success predicate, over every held-out state.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their average rank."""
    return scipy.stats.rankdata(x) - 1.0


def spearman(a, b) -> float:
    """Spearman rank correlation; nan when either side is constant."""
    if np.ptp(np.asarray(a, float)) == 0 or np.ptp(np.asarray(b, float)) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(a, b).statistic)


@dataclass(frozen=True)
class StepsToGoQuality:
    per_episode_spearman: float    # mean over episodes, every state (resting frames included)
    pooled_spearman: float
    mae: float
    threshold: float
    precision: float
    recall: float
    f1: float
    episodes: int
    states: int
    swapped_goal_detected: float = float("nan")  # at-goal states paired with another demo's goal, detected
    swapped_pairs: int = 0
    approach_spearman: float = float("nan")  # mean over episodes, first observation .. first at-goal one


def detector_scores(d: np.ndarray, goal_holds: np.ndarray, threshold: float) -> tuple[float, float, float]:
    predicted = d <= threshold
    tp = float(np.sum(predicted & goal_holds))
    precision = tp / max(predicted.sum(), 1)
    recall = tp / max(goal_holds.sum(), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return precision, recall, f1


def best_threshold(d: np.ndarray, goal_holds: np.ndarray, candidates=None) -> float:
    """The success threshold s with the best F1 (chosen on validation data, then fixed)."""
    candidates = np.linspace(0.0, 10.0, 101) if candidates is None else candidates
    return float(max(candidates, key=lambda s: detector_scores(d, goal_holds, s)[2]))


def steps_to_go_quality(d: np.ndarray, labels: np.ndarray, episode: np.ndarray, goal_holds: np.ndarray,
                        threshold: float) -> StepsToGoQuality:
    d, labels, episode, goal_holds = map(np.asarray, (d, labels, episode, goal_holds))
    goal_holds = goal_holds.astype(bool)
    per, approach = [], []
    for e in np.unique(episode):
        rows = episode == e
        per.append(spearman(d[rows], labels[rows]))
        approach.append(spearman(*approach_states(d[rows], labels[rows])))
    precision, recall, f1 = detector_scores(d, goal_holds, threshold)
    return StepsToGoQuality(float(np.nanmean(per)), spearman(d, labels), float(np.abs(d - labels).mean()),
                            threshold, precision, recall, f1, len(np.unique(episode)), len(d),
                            approach_spearman=float(np.nanmean(approach)) if approach else float("nan"))


def approach_states(d: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One episode's states up to and including the first labelled 0 (the success observation)."""
    zero = np.flatnonzero(labels == 0)
    end = int(zero[0]) + 1 if len(zero) else len(labels)
    return d[:end], labels[:end]


@dataclass(frozen=True)
class DetectorOnPractice:
    """The learned detector judged against the simulator's verdict at each practice episode's end.
    false end: the detector ended it and the goal did not hold; miss: the goal held at the end (the step
    cap, or the operator) and the detector had not ended it. Episodes without a verdict are not counted."""
    episodes: int
    detected: int
    false_ends: int
    goal_at_end: int
    missed: int

    @property
    def false_end_rate(self) -> float:
        return self.false_ends / self.detected if self.detected else float("nan")

    @property
    def miss_rate(self) -> float:
        return self.missed / self.goal_at_end if self.goal_at_end else float("nan")


def detector_on_practice(records) -> DetectorOnPractice:
    """records: (detector ended it, the simulator's verdict at its end or None) per episode."""
    judged = [(bool(d), bool(o)) for d, o in records if o is not None]
    return DetectorOnPractice(len(judged), sum(d for d, _ in judged), sum(d and not o for d, o in judged),
                              sum(o for _, o in judged), sum(o and not d for d, o in judged))
