"""Episode assembly for the trainer, without ROS: join observations, actions and rewards exactly.

Keys are (station, observation stamp). An observation is a camera frame and a
joint state carrying the same stamp, and the station's `episode_step` with that
stamp names its episode and step; the action answering it carries that stamp as
`observation_stamp`; the reward of that action arrives with the NEXT
observation (`StepsToGo.reward` at step t+1 is d(o_t) - d(o_t+1)). Nothing is
matched by arrival time or order, and an observation joins only the episode its
`episode_step` names.

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
    final: Key | None = None                      # the observation the last transition led to
    detections: list = field(default_factory=list)   # the detector's decision at each stored observation
    oracle_success: bool | None = None            # the simulator's verdict (measurement only; None: no simulator)

    @property
    def rewards(self) -> np.ndarray:
        return np.array([t.reward for t in self.transitions])


@dataclass
class EpisodeBuffer:
    """Everything one station has published for one episode, keyed by observation stamp."""
    task: object | None = None                    # the episode's Task, once it arrived
    steps: dict = field(default_factory=dict)     # stamp -> step index (the station's episode_step)
    images: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    actions: dict = field(default_factory=dict)   # stamp -> (tokens, values, log_prob, version)
    scores: dict = field(default_factory=dict)    # stamp -> (d, reward or None, detected)

    @property
    def instruction(self) -> str:
        return self.task.instruction if self.task is not None else ""


def latest_per_step(buffer: EpisodeBuffer) -> list[Key]:
    """The episode's announced observations in step order; a step announced twice (a station re-issues its
    current observation under a new stamp, e.g. after a resume) counts with its newest stamp: the one acted on."""
    newest: dict[int, Key] = {}
    for key, step in buffer.steps.items():
        newest[step] = max(key, newest.get(step, key))
    return [newest[step] for step in sorted(newest)]


def observed_steps(buffer: EpisodeBuffer, images=None, states=None) -> tuple[list[Key], int]:
    """The episode's observations from step 0 on, in step order, up to the first one not fully received (its
    frame and joint state in `images` and `states`, the buffer's own by default); and how many announced
    observations come after that gap."""
    images = buffer.images if images is None else images
    states = buffer.states if states is None else states
    order = latest_per_step(buffer)
    stamps = []
    for key in order:
        if buffer.steps[key] != len(stamps) or key not in images or key not in states:
            break
        stamps.append(key)
    return stamps, len(order) - len(stamps)


def assemble(station: str, episode_id: int, buffer: EpisodeBuffer, outcome: int, version: int) -> AssembledEpisode:
    stamps, missing = observed_steps(buffer)
    transitions: list[Transition] = []
    dropped: dict[str, int] = {}
    if not stamps:
        return AssembledEpisode(station, episode_id, buffer.instruction, [], outcome,
                                {"missed the episode's first observation": len(buffer.steps)})
    if missing:
        dropped["missing observation"] = missing
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
            # the transitions lost from here on (the final observation starts none)
            dropped[reason] = dropped.get(reason, 0) + max(len(stamps) - 1 - i, 1)
        break
    final = stamps[len(transitions)] if transitions else None
    kept = [t.stamp for t in transitions] + ([final] if final else [])
    detections = [bool(buffer.scores.get(k, (0, None, False))[2]) for k in kept]
    return AssembledEpisode(station, episode_id, buffer.instruction, transitions, outcome, dropped, None, final,
                            detections)
