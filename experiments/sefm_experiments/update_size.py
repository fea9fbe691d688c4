"""How far one REINFORCE update moves the policy: KL(before || after) per state, averaged over one on-policy
batch, for several learning rates of the Stage-2 update (AdamW over the heads) applied to the same batch.
PPO-style methods keep this near 0.01-0.02 nats; far above that, one update replaces the policy instead of
nudging it.

    .venv/bin/python experiments/sefm_experiments/update_size.py runs/p2bc_s2/checkpoints/final --lrs 1e-5 1e-4
"""
import argparse
import copy

import numpy as np
import torch

from sefm_experiments.practice import returns_of, run_batch, update_from
from sefm_core import checkpoint
from sefm_core.reinforce import ReinforceConfig, make_optimizer
from sefm_sim.envs.language_table import LanguageTableEnv
from sefm_core import seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the policy and the frozen reward model")
    parser.add_argument("--lrs", nargs="+", type=float, required=True, help="learning rates to try, e.g. 1e-5 1e-4")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--threshold", type=float, default=-1.0, help="success detector d <= s (-1: never)")
    parser.add_argument("--families", default="point2block")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--center-returns", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    policy, _ = checkpoint.load(args.checkpoint)
    policy.eval()
    envs = [LanguageTableEnv(block_mode="BLOCK_4", image_size=(128, 72), max_steps=args.max_steps)
            for _ in range(args.episodes)]
    batch = run_batch(policy, policy, envs, [seeds.first_seed("practice") + k for k in range(args.episodes)],
                      [args.families or None] * args.episodes, args.threshold,
                      torch.Generator().manual_seed(args.seed))
    returns = [returns_of(ep, 0.9) for ep in batch]
    flat = np.concatenate(returns)
    print(f"{len(flat)} transitions, return mean {flat.mean():.2f} std {flat.std():.2f}")
    for lr in args.lrs:
        cfg = ReinforceConfig(lr=lr, center_returns=args.center_returns)
        moved = copy.deepcopy(policy)
        _, kl = update_from(moved, make_optimizer(moved.heads, cfg), batch, returns, cfg,
                            torch.Generator().manual_seed(args.seed))
        print(f"lr {lr:<8g} KL per state {kl:.4f}", flush=True)
    for env in envs:
        env.close()


if __name__ == "__main__":
    main()
