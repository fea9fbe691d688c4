"""Where do a practice batch's episodes end? For point2block: the distance of the effector's target to the
named block and to the nearest other block, whether d <= s fired and whether the goal held; then how long
the true successes took and how far d moved along them (with --threshold -1 no detector ends an episode).

    .venv/bin/python tools/practice_diagnosis.py runs/p2b/checkpoints/final --threshold 3.3 [--episodes 16]
"""
import argparse

import numpy as np
import torch

from sefm_bringup.practice import run_batch
from sefm_core import checkpoint
from sefm_sim_bridge.envs.language_table import LanguageTableEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--reward-checkpoint")
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--seed", type=int, default=300000, help="first reset seed")
    args = parser.parse_args()
    policy, _ = checkpoint.load(args.checkpoint)
    reward_model, _ = checkpoint.load(args.reward_checkpoint or args.checkpoint)
    policy.eval()
    reward_model.eval()
    envs = [LanguageTableEnv(block_mode="BLOCK_4", image_size=(128, 72), max_steps=100) for _ in range(args.episodes)]
    episodes = run_batch(policy, reward_model, envs, [args.seed + i for i in range(args.episodes)],
                         ["point2block"] * args.episodes, args.threshold, torch.Generator().manual_seed(0))
    print("detected  goal held  steps  named block (m)  nearest other block (m)  last d")
    for env, ep in zip(envs, episodes):
        state, goal = env.state(), env.goal
        named = np.linalg.norm(state.xy(goal.block) - state.target)
        others = {b: np.linalg.norm(state.xy(b) - state.target) for b in state.blocks if b != goal.block}
        near = min(others, key=others.get)
        print(f"{ep.detected!s:9} {ep.goal_holds!s:9} {len(ep.tokens):5d}  {goal.block:16s} {named:.3f}  "
              f"{near:16s} {others[near]:.3f}  {ep.d[-1]:.1f}")
    successes = [ep for ep in episodes if ep.goal_holds]
    print(f"d at the first observation: median {np.median([ep.d[0] for ep in episodes]):.1f}")
    if successes:
        steps = [len(ep.tokens) for ep in successes]
        drop = [(ep.d[0] - ep.d[-1]) / len(ep.tokens) for ep in successes]
        print(f"true successes: {len(successes)} of {len(episodes)}; steps: median {np.median(steps):.0f} "
              f"(range {min(steps)}-{max(steps)}); d fell by a median {np.median(drop):.2f} per step along them")


if __name__ == "__main__":
    main()
