"""Episode assembly for the trainer, without ROS: join observations, actions and rewards exactly.

Keys are (station, observation stamp). An observation is a camera frame and a
joint state carrying the same stamp; the action answering it carries that
stamp as `observation_stamp`; the reward of that action arrives with the NEXT
observation (`StepsToGo.reward` at step t+1 is d(o_t) - d(o_t+1)). Nothing is
matched by arrival time or order.

An assembled episode keeps the transitions t = 0..T-1 that have all three:
observation, action and the reward of the step out of it, up to the first one
that does not (a timeout's last action has no next observation to be scored;
a lost message ends the usable part). A transition acted by another policy
version than the one being trained is stale: it and the rest of the episode
are dropped. What is dropped is counted by reason, never silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Key = tuple[int, int]  # (sec, nanosec) of the observation stamp
STALE = "stale policy version"   # the drop reason of transitions acted by another version


@dataclass
class Transition:
    stamp: Key
    image: np.ndarray
    proprio: np.ndarray
    tokens: np.ndarray
    action: np.ndarray
    log_prob: float
    policy_version: int
    reward: float
    d: float


@dataclass
class AssembledEpisode:
    station: str
    episode_id: int
    instruction: str
    transitions: list[Transition]
    outcome: int
    dropped: dict = field(default_factory=dict)   # reason -> count
    features: tuple | None = None                 # the trainer's frozen-tower features of the transitions

    @property
    def rewards(self) -> np.ndarray:
        return np.array([t.reward for t in self.transitions])


@dataclass
class EpisodeBuffer:
    """Everything one station has published for one episode, keyed by observation stamp."""
    instruction: str = ""
    start: Key = (0, 0)
    images: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    actions: dict = field(default_factory=dict)   # stamp -> (tokens, values, log_prob, version)
    scores: dict = field(default_factory=dict)    # stamp -> (d, reward or None)


def assemble(station: str, episode_id: int, buffer: EpisodeBuffer, outcome: int, version: int) -> AssembledEpisode:
    stamps = sorted(k for k in set(buffer.images) & set(buffer.states) if k >= buffer.start)
    transitions: list[Transition] = []
    dropped: dict[str, int] = {}
    if not stamps or stamps[0] != buffer.start:  # the first observation (stamped like the task) is missing
        return AssembledEpisode(station, episode_id, buffer.instruction, [], outcome,
                                {"missed the episode's first observation": len(stamps)})
    for i, (here, after) in enumerate(zip(stamps, stamps[1:] + [None])):
        action = buffer.actions.get(here)
        score_after = buffer.scores.get(after) if after is not None else None
        if action is None:
            reason = "no action"
        elif action[3] != version:
            reason = STALE
        elif score_after is None or score_after[1] is None:
            reason = "no reward"
        else:
            tokens, values, log_prob, acted_by = action
            transitions.append(Transition(here, buffer.images[here], buffer.states[here], np.asarray(tokens),
                                          np.asarray(values), float(log_prob), acted_by, float(score_after[1]),
                                          float(buffer.scores.get(here, (np.nan, None))[0])))
            continue
        last_observation = after is None and reason in ("no action", "no reward")
        if not last_observation:  # the final observation has nothing after it: not a loss
            dropped[reason] = len(stamps) - i
        break
    return AssembledEpisode(station, episode_id, buffer.instruction, transitions, outcome, dropped)
