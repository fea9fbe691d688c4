"""`sefm_sim.rollout`: real LanguageTable envs stepped in lockstep by scripted policies (no model, no torch)."""
import subprocess
import sys

import numpy as np
import pytest

from sefm_core import episode_rules as rules
from sefm_sim.envs.language_table import LanguageTableEnv
from sefm_sim.envs.lt_oracle import OrientedPushOracle
from sefm_sim.envs.validation import InvalidActionError
from sefm_sim.rollout import TERMINATED, TRUNCATED, Decision, Lockstep, rollout

SEEDS = [30_000_000, 30_000_001, 30_000_002]
P2B = {"family": "point2block"}


def opened_envs(max_steps: int, n: int = 2):
    """A fixture's body: `n` small envs capped at `max_steps`, closed after the test."""
    made = [LanguageTableEnv(block_mode="BLOCK_4", image_size=(64, 36), max_steps=max_steps) for _ in range(n)]
    yield made
    for env in made:
        env.close()


@pytest.fixture
def envs():
    yield from opened_envs(6)


@pytest.fixture
def long_envs():
    yield from opened_envs(40)


def zero_policy(calls=None):
    def act(observations):
        if calls is not None:
            calls.append(len(observations))
        return np.zeros((len(observations), 2))
    return act


def oracle_policy(envs):
    """The scripted oracle, acting for whichever env holds each observation (matched by the effector target)."""
    oracle = OrientedPushOracle()

    def act(observations):
        actions = []
        for obs in observations:
            env = next(e for e in envs if np.allclose(e.target, obs["effector_target_translation"]))
            actions.append(oracle.act(env.state(), env.goal))
        return np.stack(actions)
    return act


def station_end(env, ep):
    return rules.end_after_action(ep.steps, env.config.max_steps, ep.success, oracle_ends=True)


def test_the_step_cap_ends_episodes_and_freed_envs_take_the_next_seed(envs):
    calls = []
    episodes = rollout(envs, zero_policy(calls), SEEDS, [P2B] * 3, keep_observations=True)
    assert [ep.seed for ep in episodes] == SEEDS and [ep.env for ep in episodes] == [0, 1, 0]
    for ep in episodes:   # a resting effector never reaches the block: each runs to the cap
        assert ep.outcome == TRUNCATED and ep.truncated and not ep.success and ep.steps == 6
        assert len(ep.observations) == 7 and ep.observation is ep.observations[-1]
        assert ep.reset_info["family"] == "point2block" and ep.d == [] and ep.rewards == []
    assert calls == [2] * 6 + [1] * 6   # one batched call per step over the running episodes
    capped = rollout(envs, zero_policy(), SEEDS[:2], [P2B] * 2, end=station_end)
    assert [ep.outcome for ep in capped] == [rules.TIMEOUT] * 2


def test_the_simulators_success_ends_an_episode(long_envs):
    envs = long_envs
    episodes = rollout(envs, oracle_policy(envs), SEEDS, [P2B] * 3, end=station_end)
    assert all(ep.outcome == rules.ENV_SUCCESS and ep.success and 1 <= ep.steps < 40 for ep in episodes), \
        [(ep.outcome, ep.steps) for ep in episodes]
    assert len({ep.steps for ep in episodes}) > 1
    assert episodes[2].env == min(episodes[:2], key=lambda ep: ep.steps).env   # the env freed first goes on
    default = rollout(envs, oracle_policy(envs), SEEDS[:1], [P2B])   # the env's own flags by default
    assert default[0].outcome == TERMINATED and default[0].terminated
    assert default[0].steps == episodes[0].steps


def test_equal_seeds_give_equal_episodes(long_envs):
    envs = long_envs

    def run():
        episodes = rollout(envs, oracle_policy(envs), SEEDS, [P2B] * 3, keep_observations=True)
        return [(ep.steps, ep.outcome, np.stack(ep.actions), np.stack([o["rgb"] for o in ep.observations]))
                for ep in episodes]

    first, second = run(), run()
    for a, b in zip(first, second):
        assert a[:2] == b[:2]
        np.testing.assert_array_equal(a[2], b[2])
        np.testing.assert_array_equal(a[3], b[3])   # the same frames, bit for bit


def test_a_scored_rollout_scores_the_last_observation_and_the_detector_ends_episodes(envs):
    def scored(observations):   # d: the distance of the effector target to the table centre, in cm
        d = [100 * float(np.linalg.norm(obs["effector_target_translation"] - [0.35, 0.0])) for obs in observations]
        return Decision(np.zeros((len(observations), 2)), d, [f"row {r}" for r in range(len(observations))])

    kwargs = dict(end=station_end, reward=rules.transition_reward)
    off = rollout(envs, scored, SEEDS[:2], [P2B] * 2,
                  detect=lambda d, step: rules.SUCCESS_DETECTED if rules.detector_fires(d, step, -1.0) else None,
                  **kwargs)
    for ep in off:   # the cap ended it after 6 actions; the 7th observation is scored too
        assert ep.outcome == rules.TIMEOUT and ep.steps == 6 and len(ep.d) == 7 and len(ep.rewards) == 6
        assert ep.detections == [False] * 7 and ep.extras == [f"row {ep.env}"] * 6   # kept per applied action
        assert ep.rewards == [a - b for a, b in zip(ep.d, ep.d[1:])]
    on = rollout(envs, scored, SEEDS[:2], [P2B] * 2,
                 detect=lambda d, step: rules.SUCCESS_DETECTED if rules.detector_fires(d, step, 1e9) else None,
                 **kwargs)
    for ep in on:   # s above every d: the detector fires at the first observation it may judge
        assert ep.outcome == rules.SUCCESS_DETECTED and ep.steps == 1 and ep.detections == [False, True]
    with pytest.raises(ValueError, match="needs d"):
        rollout(envs, zero_policy(), SEEDS[:1], [P2B], detect=lambda d, step: None)


def test_a_nan_action_is_refused_with_the_episode_it_came_from(envs):
    def nan_policy(observations):
        actions = np.zeros((len(observations), 2))
        actions[-1, 0] = np.nan
        return actions

    with pytest.raises(InvalidActionError, match=r"env 1 \(episode seed 30000001, step 0\).*non-finite"):
        rollout(envs, nan_policy, SEEDS[:2], [P2B] * 2)
    with pytest.raises(ValueError, match="returned 1 actions for 2 observations"):
        rollout(envs, lambda observations: np.zeros((1, 2)), SEEDS[:2], [P2B] * 2)


def test_lockstep_runs_a_fixed_number_of_steps_and_refuses_a_busy_env(envs):
    run = Lockstep(envs, zero_policy())
    run.start(0, SEEDS[0], P2B)
    with pytest.raises(RuntimeError, match="still running"):
        run.start(0, SEEDS[1], P2B)
    run.start(1, SEEDS[1], P2B)
    ended = [ep for _ in range(5) for ep in run.step()]
    assert ended == [] and run.running == [0, 1]
    assert [ep.seed for ep in run.step()] == SEEDS[:2] and run.running == []


def test_the_helper_needs_neither_torch_nor_ros_nor_the_learning_core():
    code = ("import sys, sefm_sim.rollout; bad = [m for m in ('torch', 'rclpy', 'sefm_core') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
