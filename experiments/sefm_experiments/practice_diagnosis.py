"""Where do a practice batch's episodes end? For point2block: the distance of the effector's target to the
named block and to the nearest other block, whether d <= s fired and whether the goal held; then how long
the true successes took and how far d moved along them (with --threshold -1 no detector ends an episode).

    .venv/bin/python experiments/sefm_experiments/practice_diagnosis.py runs/p2b/checkpoints/final --threshold 3.3 [--episodes 16]
"""
import argparse

import numpy as np
import torch

from sefm_experiments.practice import detected, run_batch
from sefm_core import checkpoint
from sefm_core.metrics import spearman
from sefm_sim.envs.language_table import LanguageTableEnv
from sefm_core import seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--reward-checkpoint")
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--seed", type=int, default=seeds.first_seed("practice"), help="first reset seed (default: the seed plan's practice range)")
    args = parser.parse_args()
    policy, _ = checkpoint.load(args.checkpoint)
    reward_model, _ = checkpoint.load(args.reward_checkpoint or args.checkpoint)
    policy.eval()
    reward_model.eval()
    envs = [LanguageTableEnv(block_mode="BLOCK_4", image_size=(128, 72), max_steps=100) for _ in range(args.episodes)]
    distances = [record_distances(env) for env in envs]
    episodes = run_batch(policy, reward_model, envs, [args.seed + i for i in range(args.episodes)],
                         ["point2block"] * args.episodes, args.threshold, torch.Generator().manual_seed(0))
    print("detected  goal held  steps  named block (m)  nearest other block (m)  last d")
    for env, ep in zip(envs, episodes):
        state, goal = env.state(), env.goal
        named = np.linalg.norm(state.xy(goal.block) - state.target)
        others = {b: np.linalg.norm(state.xy(b) - state.target) for b in state.blocks if b != goal.block}
        near = min(others, key=others.get)
        print(f"{detected(ep)!s:9} {ep.success!s:9} {ep.steps:5d}  {goal.block:16s} {named:.3f}  "
              f"{near:16s} {others[near]:.3f}  {ep.d[-1]:.1f}")
    successes = [ep for ep in episodes if ep.success]
    print(f"d at the first observation: median {np.median([ep.d[0] for ep in episodes]):.1f}")
    if successes:
        steps = [ep.steps for ep in successes]
        drop = [(ep.d[0] - ep.d[-1]) / ep.steps for ep in successes]
        print(f"true successes: {len(successes)} of {len(episodes)}; steps: median {np.median(steps):.0f} "
              f"(range {min(steps)}-{max(steps)}); d fell by a median {np.median(drop):.2f} per step along them")
    reward_quality(episodes, distances, args.threshold)


def record_distances(env) -> list:
    """Wraps the env so every observation's effector-to-named-block distance (m) is recorded."""
    trace, reset, step = [], env.reset, env.step

    def distance():
        state = env.state()
        return float(np.linalg.norm(state.xy(env.goal.block) - state.target))

    def recording_reset(*a, **k):
        out = reset(*a, **k)
        trace.clear()
        trace.append(distance())
        return out

    def recording_step(*a, **k):
        out = step(*a, **k)
        trace.append(distance())
        return out

    env.reset, env.step = recording_reset, recording_step
    return trace


def reward_quality(episodes, distances, threshold: float) -> None:
    d = np.concatenate([ep.d for ep in episodes])
    dist = np.concatenate([trace[:len(ep.d)] for ep, trace in zip(episodes, distances)])
    r = np.concatenate([np.diff(-np.asarray(ep.d)) for ep in episodes])
    closed = np.concatenate([np.diff(-np.asarray(trace[:len(ep.d)])) for ep, trace in zip(episodes, distances)])
    low = d <= max(threshold, 1.0)
    print(f"on the policy's states ({len(d)}): rank corr. of d with the distance to the named block "
          f"{spearman(d, dist):.2f}; of the reward with the distance closed {spearman(r, closed):.2f}; "
          f"d <= {max(threshold, 1.0):.1f} on {low.sum()} states, {np.mean(dist[low] > 0.10):.2f} of them "
          f"> 10 cm from the block")


if __name__ == "__main__":
    main()
