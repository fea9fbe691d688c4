"""`sefm eval`: a checkpoint's success in the simulator and the quality of its steps-to-go.

    sefm eval CHECKPOINT --episodes 100 [--families block2block] [--block-mode BLOCK_4] [--seed N]
                         [--dataset DEMOS --run-dir SFT_RUN]     # also steps-to-go on held-out demos

Policy rollouts run in parallel envs with batched inference, acting greedily (or sampled: --policy);
reset seeds come from the seed plan's eval range (sefm_core.seeds), which no demo or practice
episode uses. Success rates come with Wilson 95% intervals, per family and overall.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch

from sefm_core import checkpoint, seeds
from sefm_core import episode_rules as rules
from sefm_core.data import EpisodeDataset
from sefm_core.stats import wilson


def policy_success(model, episodes: int, families: list[str] | None, mode: str = "BLOCK_4", seed0: int | None = None,
                   parallel: int = 8, image_size=(128, 72), greedy: bool = True, max_steps: int = 200,
                   log=print) -> dict:
    """Run `episodes` seeded episodes (families round-robin) from the seed plan's eval range (seed0: its start
    unless given; seeds outside it are an error), `parallel` at a time with one batched forward pass per step
    (`sefm_sim.rollout`); an episode ends by the simulator's success or the step cap (`episode_rules`).
    Returns {family: Rate, "all": Rate}."""
    from sefm_sim.envs.language_table import LanguageTableEnv
    from sefm_sim.rollout import rollout
    from sefm_sim.station import language_table_proprio

    seed0 = seeds.first_seed("eval") if seed0 is None else seed0
    seeds.check("eval", seed0, episodes)
    model.eval()
    # sampled actions from a generator seeded by the first episode's seed: the same command, the same numbers
    generator = torch.Generator().manual_seed(seed0)

    def act(observations):
        images = torch.from_numpy(np.stack([obs["rgb"] for obs in observations]))
        proprio = torch.from_numpy(np.stack([language_table_proprio(obs) for obs in observations]))
        _, actions, _, _ = model.act(images, [obs["instruction"] for obs in observations], proprio, greedy=greedy,
                                     generator=generator)
        return actions

    picked = [families[n % len(families)] if families else None for n in range(episodes)]
    envs = [LanguageTableEnv(block_mode=mode, image_size=image_size, max_steps=max_steps)
            for _ in range(min(parallel, episodes))]
    start = time.monotonic()
    try:
        done = rollout(envs, act, [seed0 + n for n in range(episodes)],
                       [{"family": family} if family else None for family in picked], end=_station_end)
    finally:
        for env in envs:
            env.close()
    results: dict[str, list[int]] = {}
    for ep in done:
        results.setdefault(ep.reset_info["family"], []).append(int(ep.outcome == rules.ENV_SUCCESS))
    rates = {family: wilson(sum(v), len(v)) for family, v in sorted(results.items())}
    everything = [x for v in results.values() for x in v]
    rates["all"] = wilson(sum(everything), len(everything))
    log(f"  {episodes} episodes in {time.monotonic() - start:.0f} s")
    return rates


def _station_end(env, episode):
    """As a simulated station ends an episode (`episode_rules.end_after_action`): after an action, by the
    simulator's success or the env's step cap."""
    return rules.end_after_action(episode.steps, env.config.max_steps, episode.success, oracle_ends=True)


def main(argv=None) -> int:
    from sefm_cli.scene_flags import add_scene_flags, at_least
    from sefm_core.stg_eval import steps_to_go_report
    from sefm_sim.labels import LANGUAGE_TABLE

    parser = argparse.ArgumentParser(prog="sefm eval", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the checkpoint directory to evaluate")
    parser.add_argument("--episodes", type=at_least(0), default=100, help="held-out rollouts (0: only the steps-to-go measures)")
    add_scene_flags(parser)
    parser.add_argument("--seed", type=int, default=None,
                        help="first evaluation seed (default: the start of the seed plan's eval range; seeds "
                             "outside it are refused)")
    parser.add_argument("--parallel", type=at_least(1), default=8, help="envs stepped together (one batched forward pass)")
    parser.add_argument("--max-steps", type=at_least(1), default=200, help="step cap of an evaluation episode")
    parser.add_argument("--policy", choices=["greedy", "sampled"], default="greedy",
                        help="act by the argmax of each action dimension, or sample (the policy REINFORCE trains)")
    parser.add_argument("--dataset", help="demonstrations the checkpoint was trained on")
    parser.add_argument("--run-dir", help="the sft run (its split.json names the held-out demos)")
    parser.add_argument("--test-dataset", help="held-out demos (another seed range) for the steps-to-go measures")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.episodes == 0 and not (args.dataset and args.run_dir):
        parser.error("--episodes 0 measures only steps-to-go: give --dataset and --run-dir too")
    first = seeds.first_seed("eval") if args.seed is None else args.seed
    try:
        seeds.check("eval", first, args.episodes)
    except seeds.SeedPlanError as exc:
        parser.error(str(exc))
    args.seed = first
    model, _ = checkpoint.load(args.checkpoint)
    out = {"checkpoint": args.checkpoint, "episodes": args.episodes, "seed": args.seed,
           "seeds": seeds.describe({"eval": (first, args.episodes)}), "policy": args.policy,
           "max_steps": args.max_steps, "families": args.families, "block_mode": args.block_mode}
    if args.dataset and args.run_dir:
        split = json.loads((pathlib.Path(args.run_dir) / "split.json").read_text())
        test = EpisodeDataset(args.test_dataset) if args.test_dataset else None
        q, per = steps_to_go_report(model, EpisodeDataset(args.dataset), split["train"], split["val"], test, True,
                                    labels=LANGUAGE_TABLE)
        print(f"steps-to-go on {q.episodes} held-out demos ({q.states} states): rank correlation per episode "
              f"{q.approach_spearman:.3f} over the approach, {q.per_episode_spearman:.3f} over every state; "
              f"pooled {q.pooled_spearman:.3f}; MAE {q.mae:.1f} steps; "
              f"detector d <= {q.threshold:.1f}: precision {q.precision:.2f} recall {q.recall:.2f} F1 {q.f1:.2f}; "
              f"at-goal states with another demo's goal detected: {q.swapped_goal_detected:.2f} "
              f"({q.swapped_pairs} pairs; 0 = grounded in the words)")
        if len(per) > 1:
            for family, f in per.items():
                print(f"  {family:24s} {f.episodes:3d} demos: per episode {f.approach_spearman:.3f} (approach), "
                      f"{f.per_episode_spearman:.3f} (every state), pooled "
                      f"{f.pooled_spearman:.3f}; MAE {f.mae:.1f}; F1 {f.f1:.2f}")
        out["steps_to_go"] = q.__dict__
        out["steps_to_go_by_family"] = {k: v.__dict__ for k, v in per.items()}
    if args.episodes > 0:
        width, height = args.image_size
        families = [f for f in args.families.split(",") if f] or None
        rates = policy_success(model, args.episodes, families, args.block_mode, args.seed, args.parallel, (width, height),
                               greedy=args.policy == "greedy", max_steps=args.max_steps)
        for family, rate in rates.items():
            print(f"success {family:24s} {rate}")
        out["success"] = {k: {"rate": r.value, "low": r.low, "high": r.high, "n": r.trials} for k, r in rates.items()}
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
