"""Batched rollouts: N envs stepped in lockstep, one batched policy call per step.

The one loop behind `sefm eval` (policy success), `sefm practice` (Stage 2 without ROS) and the bare-loop
baseline of `sefm bench graph`. It knows no model and no rule set: the policy and the episode rules are
callables (the callers pass `sefm_core.episode_rules`), so this module needs neither torch nor ROS.

    policy(observations) -> actions, or Decision(actions, d, extras)    one call per step, a batch
    end(env, episode) -> outcome or None     after each action (default: the env's terminated / truncated)
    detect(d, step) -> outcome or None       at each scored observation (the learned success detector;
                                             d: the episode's d so far, the newest last)
    reward(d_before, d_after) -> r           per transition of a scored episode

A scored rollout is one whose policy returns d (the reward model's steps-to-go): then every observation is
scored, each episode's last one included, so that an episode of T actions has T + 1 values of d and T
rewards. That last observation rides along in the next step's batch, and the action the policy returns for
it is not applied: one forward pass gives d and the action for the same rows, so the batch is what is scored.
Without d, an episode leaves the batch as soon as an action ends it.

`rollout` runs a list of (seed, reset options) with at most `len(envs)` episodes at a time: an env whose
episode ended takes the next start. `Lockstep` is the step itself, for callers that run a fixed amount of
work rather than a list of episodes (the benchmark).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from sefm_sim.envs.validation import InvalidActionError

TERMINATED, TRUNCATED = "terminated", "truncated"   # the default rule's outcomes: the env's own flags


@dataclass
class Decision:
    """What the policy returns for one batch of N observations."""
    actions: Sequence                     # N actions, the env's action layout
    d: Sequence[float] | None = None      # N values of d(o, g) (a scored rollout), or None
    extras: Sequence | None = None        # N per-row records kept with each applied action (e.g. tokens)


@dataclass
class Episode:
    """One episode: every action applied, and (scored rollouts) d and the detector's decision at every
    observation, o_T included."""
    seed: int
    options: dict | None
    env: int                                        # index of the env that ran it
    reset_info: dict
    observation: Any = None                         # the newest observation
    observations: list = field(default_factory=list)  # o_0 .. o_T (keep_observations only)
    actions: list = field(default_factory=list)     # a_0 .. a_T-1
    extras: list = field(default_factory=list)      # per action: the policy's extras row (Decision.extras)
    d: list[float] = field(default_factory=list)    # per observation scored: d(o_t, g)
    rewards: list[float] = field(default_factory=list)  # per action: reward(d(o_t), d(o_t+1)) (scored, with reward)
    detections: list[bool] = field(default_factory=list)  # per observation scored: did `detect` fire there
    success: bool = False                           # the simulator's verdict on the newest observation
    terminated: bool = False                        # the env's flags after the last action
    truncated: bool = False
    info: dict = field(default_factory=dict)        # the env's info after the last action
    outcome: Any = None                             # how it ended (`end` or `detect`); None while running

    @property
    def steps(self) -> int:
        """Actions applied."""
        return len(self.actions)


def env_verdict(env, episode: Episode):
    """The default end rule: the env's own terminated / truncated flags."""
    return TERMINATED if episode.terminated else TRUNCATED if episode.truncated else None


class Lockstep:
    """Envs stepped together: `start` an episode on a free env, then each `step` is one batched policy call
    and one action per running episode."""

    def __init__(self, envs: Sequence, policy: Callable, *, end: Callable = env_verdict, detect: Callable | None = None,
                 reward: Callable | None = None, keep_observations: bool = False):
        self.envs, self.policy, self.end, self.detect, self.reward = list(envs), policy, end, detect, reward
        self.keep_observations = keep_observations
        self.slots: list[Episode | None] = [None] * len(self.envs)
        self.scored: bool | None = None   # decided by the policy's first answer: does it return d

    @property
    def running(self) -> list[int]:
        """The envs with an episode in progress."""
        return [i for i, ep in enumerate(self.slots) if ep is not None]

    def start(self, i: int, seed: int, options: dict | None = None) -> Episode:
        """Reset env i on `seed` (and reset `options`) and start an episode there."""
        if self.slots[i] is not None:
            raise RuntimeError(f"env {i} is still running the episode of seed {self.slots[i].seed}")
        observation, info = self.envs[i].reset(seed=seed, options=options)
        ep = Episode(seed, options, i, info, observation, success=bool(info.get("success", False)))
        if self.keep_observations:
            ep.observations.append(observation)
        self.slots[i] = ep
        return ep

    def step(self) -> list[Episode]:
        """One batched policy call over every running episode, then each env's action; returns the episodes
        that ended in this step (in env order), whose envs are free again."""
        rows = self.running
        if not rows:
            return []
        decision = self._decide([self.slots[i].observation for i in rows])
        ended = []
        for row, i in enumerate(rows):
            ep = self.slots[i]
            if self.scored:
                ep.d.append(float(decision.d[row]))
                if self.reward is not None and len(ep.d) > 1:
                    ep.rewards.append(self.reward(ep.d[-2], ep.d[-1]))
                fired = self.detect(ep.d, ep.steps) if self.detect is not None else None
                ep.detections.append(fired is not None)
                if ep.outcome is not None:       # its last observation, scored now: that was the last reward
                    ended.append(i)
                    continue
                if fired is not None:
                    ep.outcome = fired
                    ended.append(i)
                    continue
            action = decision.actions[row]
            try:
                observation, _, terminated, truncated, info = self.envs[i].step(action)
            except InvalidActionError as exc:
                raise InvalidActionError(f"the policy's action for env {i} (episode seed {ep.seed}, step "
                                         f"{ep.steps}) was refused: {exc}") from exc
            ep.actions.append(action)
            if decision.extras is not None:
                ep.extras.append(decision.extras[row])
            ep.observation, ep.info = observation, info
            if self.keep_observations:
                ep.observations.append(observation)
            ep.terminated, ep.truncated = bool(terminated), bool(truncated)
            ep.success = bool(info.get("success", terminated))
            ep.outcome = self.end(self.envs[i], ep)
            if ep.outcome is not None and not self.scored:
                ended.append(i)
        done = [self.slots[i] for i in ended]
        for i in ended:
            self.slots[i] = None
        return done

    def _decide(self, observations: list) -> Decision:
        out = self.policy(observations)
        decision = out if isinstance(out, Decision) else Decision(out)
        n = len(observations)
        for name in ("actions", "d", "extras"):
            value = getattr(decision, name)
            if value is not None and len(value) != n:
                raise ValueError(f"the policy returned {len(value)} {name} for {n} observations")
        scored = decision.d is not None
        if self.scored is None:
            self.scored = scored
        elif scored != self.scored:
            raise ValueError("the policy returned d in some steps and not in others: a rollout is scored "
                             "throughout or not at all")
        if self.detect is not None and not scored:
            raise ValueError("a detector needs d: the policy must return Decision(actions, d)")
        return decision


def rollout(envs: Sequence, policy: Callable, seeds: Sequence[int], options: Sequence[dict | None] | None = None, *,
            end: Callable = env_verdict, detect: Callable | None = None, reward: Callable | None = None,
            keep_observations: bool = False) -> list[Episode]:
    """One episode per seed (`options[k]`: seed k's reset options), at most `len(envs)` at a time, stepped in
    lockstep; an env whose episode ended starts the next seed. Returns the episodes in the order of `seeds`."""
    options = [None] * len(seeds) if options is None else list(options)
    if len(options) != len(seeds):
        raise ValueError(f"{len(options)} reset options for {len(seeds)} seeds")
    if seeds and not envs:
        raise ValueError("no envs to run the episodes on")
    run = Lockstep(envs, policy, end=end, detect=detect, reward=reward, keep_observations=keep_observations)
    episodes: list[Episode] = []

    def launch(i: int) -> None:
        k = len(episodes)
        episodes.append(run.start(i, seeds[k], options[k]))

    for i in range(min(len(run.envs), len(seeds))):
        launch(i)
    while run.running:
        for ep in run.step():
            if len(episodes) < len(seeds):
                launch(ep.env)
    return episodes
