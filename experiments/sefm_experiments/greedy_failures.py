"""How the greedy policy fails on point2block: per held-out episode, the steps taken, the end distance to the
named block, the mean speed over the last 20 steps, and the cosine between each greedy action and the
direction to the named block (first 5 steps, last 20), the policy's mean entropy, and whether pointer head 0
lands nearer the named block than any other block on the first frame (image coordinates). A failure that
heads away from the block from its first step is a perception error; one that stalls near it, a control error.

    .venv/bin/python experiments/sefm_experiments/greedy_failures.py runs/p2bc_s2/checkpoints/final --episodes 24
"""
import argparse

import numpy as np
import torch

from sefm_sim.station import language_table_proprio
from sefm_core import checkpoint
from sefm_core import seeds
from sefm_sim.envs.language_table import LanguageTableEnv
from sefm_sim.labels import to_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--seed", type=int, default=seeds.first_seed("eval"), help="first reset seed (default: the seed plan's eval range)")
    parser.add_argument("--max-steps", type=int, default=100)
    args = parser.parse_args()
    policy, _ = checkpoint.load(args.checkpoint)
    policy.eval()
    env = LanguageTableEnv(block_mode="BLOCK_4", image_size=(128, 72), max_steps=args.max_steps)
    rows = []
    print("seed    steps  success  end distance (m)  speed last 20 (m)  cos first 5  cos last 20  entropy  pointer")
    for seed in range(args.seed, args.seed + args.episodes):
        obs, _ = env.reset(seed=seed, options={"family": "point2block"})
        on_named = pointer_on_named_block(policy, env, obs)
        speeds, cosines, entropies, info = [], [], [], {}
        for _ in range(args.max_steps):
            with torch.no_grad():
                fmap, text = policy.tower_features(torch.from_numpy(obs["rgb"][None]), [obs["instruction"]])
                logits = policy.heads(fmap, text, torch.from_numpy(language_table_proprio(obs)[None]))[0][0]
            logp = torch.log_softmax(logits, -1)
            entropies.append(float(-(logp.exp() * logp).sum()))
            action = policy.tokenizer.decode(logits.argmax(-1)[None].numpy())[0]
            state = env.state()
            to_block = state.xy(env.goal.block) - state.target
            cosines.append(float(action @ to_block / (np.linalg.norm(action) * np.linalg.norm(to_block) + 1e-9)))
            speeds.append(float(np.linalg.norm(action)))
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        state = env.state()
        end = float(np.linalg.norm(state.xy(env.goal.block) - state.target))
        success = bool(info.get("success", False))
        rows.append((success, np.mean(cosines[:5]), np.mean(cosines[-20:]), np.mean(entropies), on_named))
        print(f"{seed}  {len(speeds):5d}  {success!s:7}  {end:16.3f}  {np.mean(speeds[-20:]):17.3f}  "
              f"{rows[-1][1]:+11.2f}  {rows[-1][2]:+11.2f}  {rows[-1][3]:7.2f}  {'named' if on_named else 'other'}")
    env.close()
    for label, keep in (("successes", True), ("failures", False)):
        group = np.array([r[1:] for r in rows if r[0] == keep])
        if len(group):
            print(f"{label}: {len(group)}; mean cos first 5 {group[:, 0].mean():+.2f}, last 20 {group[:, 1].mean():+.2f}, "
                  f"entropy {group[:, 2].mean():.2f} nats; pointer on the named block {int(group[:, 3].sum())}")


def pointer_on_named_block(policy, env, obs) -> bool:
    """Is pointer head 0's attended position (first frame) nearer the named block's image than any other's?"""
    with torch.no_grad():
        fmap, text = policy.tower_features(torch.from_numpy(obs["rgb"][None]), [obs["instruction"]])
        x, t = policy.heads.fuse(fmap, text)
        pointed, _ = policy.heads.pointer(x, t)
    heads = policy.heads.pointer.heads
    at = pointed[0, [0, heads]].numpy()
    camera, state = env.image_geometry(), env.state()
    where = {name: to_image(camera, state.xy(name), camera["block_z"]) for name in state.blocks}
    return min(where, key=lambda name: np.linalg.norm(where[name] - at)) == env.goal.block


if __name__ == "__main__":
    main()
