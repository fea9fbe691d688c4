"""`sefm eval`: a checkpoint's success in the simulator and the quality of its steps-to-go.

    sefm eval CHECKPOINT --episodes 100 [--families block2block] [--block-mode BLOCK_4] [--seed N]
                         [--dataset DEMOS --run-dir SFT_RUN]     # also steps-to-go on held-out demos

Policy rollouts run in parallel envs with batched inference, acting greedily (or sampled: --policy);
reset seeds come from the seed plan's eval range (sefm_core.seeds), which no demo or practice
episode uses. Success rates come with Wilson 95% intervals, per family and overall.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np
import torch

from sefm_core import checkpoint, seeds
from sefm_core.data import EpisodeDataset
from sefm_core.metrics import best_threshold, steps_to_go_quality
from sefm_core.stats import wilson
from sefm_core.steps_to_go import expected_steps, hindsight_labels


def policy_success(model, episodes: int, families: list[str] | None, mode: str = "BLOCK_4", seed0: int | None = None,
                   parallel: int = 8, image_size=(128, 72), greedy: bool = True, max_steps: int = 200,
                   log=print) -> dict:
    """Run `episodes` seeded episodes (families round-robin) from the seed plan's eval range (seed0: its start
    unless given; seeds outside it are an error); returns {family: Rate, "all": Rate}."""
    from sefm_cli.collect import language_table_proprio
    from sefm_sim.envs.language_table import LanguageTableEnv

    seed0 = seeds.first_seed("eval") if seed0 is None else seed0
    seeds.check("eval", seed0, episodes)
    model.eval()
    envs = [LanguageTableEnv(block_mode=mode, image_size=image_size, max_steps=max_steps)
            for _ in range(min(parallel, episodes))]
    queue = list(range(episodes))
    results: dict[str, list[int]] = {}
    slots: list[dict | None] = [None] * len(envs)
    start = time.monotonic()

    def launch(i):
        n = queue.pop(0)
        family = families[n % len(families)] if families else None
        obs, _ = envs[i].reset(seed=seed0 + n, options={"family": family} if family else None)
        slots[i] = {"obs": obs, "family": envs[i].goal.family}

    for i in range(len(envs)):
        launch(i)
    while any(slots):
        active = [i for i, s in enumerate(slots) if s]
        images = torch.from_numpy(np.stack([slots[i]["obs"]["rgb"] for i in active]))
        proprio = torch.from_numpy(np.stack([language_table_proprio(slots[i]["obs"]) for i in active]))
        texts = [slots[i]["obs"]["instruction"] for i in active]
        _, actions, _, _ = model.act(images, texts, proprio, greedy=greedy)
        for i, action in zip(active, actions):
            obs, _, terminated, truncated, _ = envs[i].step(action)
            slots[i]["obs"] = obs
            if terminated or truncated:
                results.setdefault(slots[i]["family"], []).append(int(terminated))
                slots[i] = None
                if queue:
                    launch(i)
    for env in envs:
        env.close()
    rates = {family: wilson(sum(v), len(v)) for family, v in sorted(results.items())}
    everything = [x for v in results.values() for x in v]
    rates["all"] = wilson(sum(everything), len(everything))
    log(f"  {episodes} episodes in {time.monotonic() - start:.0f} s")
    return rates


def held_out_states(model, dataset: EpisodeDataset, episode_ids: list[int]):
    """Every observation of the episodes with its labels (`sft.Arrays`; tower outputs cached beside the
    data set), and the simulator's goal-holds flag of each."""
    from sefm_core.sft import flatten, tower_cache
    from sefm_sim.labels import LANGUAGE_TABLE

    fmap, texts, vectors = tower_cache(model, dataset, log=lambda *a, **k: None)
    data = flatten(model, dataset, episode_ids, fmap, texts, vectors, labels=LANGUAGE_TABLE)
    holds = np.concatenate([_goal_holds(dataset[i], model) for i in episode_ids]).astype(bool)
    return data, holds


@torch.no_grad()
def _steps_to_go(model, fmap: torch.Tensor, text: torch.Tensor, proprio: torch.Tensor) -> np.ndarray:
    model.eval()
    return torch.cat([expected_steps(model.heads(fmap[i:i + 512].float(), text[i:i + 512], proprio[i:i + 512])[1])
                      for i in range(0, len(fmap), 512)]).numpy()


def observation_steps_to_go(model, data) -> np.ndarray:
    """d(o, g) of every observation of `held_out_states` data, with the episode's own goal."""
    return _steps_to_go(model, data.fmap, data.text_vectors[data.text_index], data.proprio)


def swapped_goal_detections(model, data, holds: np.ndarray, threshold: float, seed: int = 0) -> tuple[float, int]:
    """Is the detector grounded in the words? Every at-goal state of the demos, paired with the goal of
    another demo (a different block or target), should NOT be detected. Returns (share detected, pairs)."""
    rng = np.random.default_rng(seed)
    goal = data.goal.numpy()
    rows = np.flatnonzero(holds)
    others = rng.integers(len(goal), size=len(rows))
    keep = goal[rows] != goal[others]
    if not keep.any():
        return float("nan"), 0
    rows, others = torch.from_numpy(rows[keep]), torch.from_numpy(others[keep])
    d = _steps_to_go(model, data.fmap[rows], data.text_vectors[data.text_index[others]], data.proprio[rows])
    return float((d <= threshold).mean()), len(rows)


def _goal_holds(episode, model) -> np.ndarray:
    """The simulator's per-observation success flags, or (data without them) the states labelled 0."""
    if "goal_holds" in episode.extras:
        return episode.extras["goal_holds"]
    labels = hindsight_labels(episode.steps + 1, episode.success_index, model.config.max_steps_to_go)
    return (labels == 0).astype(np.uint8)


def steps_to_go_report(model, dataset: EpisodeDataset, train_ids: list[int], val_ids: list[int],
                       test: EpisodeDataset | None = None, by_family: bool = False):
    """Quality on held-out successful demos, at a success threshold s chosen on other demos.

    Without `test`: measured on the split's val demos, s chosen on the training demos (optimistic
    there: the heads fit them, so d sits near 0 at success and s comes out too low).
    With `test` (a separate data set, all of its episodes): s is chosen on the val demos, which
    training never saw, and everything is measured on `test`.
    by_family: also {family: quality} for each instruction family among the measured demos.
    """
    calibrate = train_ids if test is None else val_ids
    data, holds = held_out_states(model, dataset, [i for i in calibrate if dataset.index[i]["success"]])
    threshold = best_threshold(observation_steps_to_go(model, data), holds)
    held, ids = (dataset, val_ids) if test is None else (test, list(range(len(test))))
    data, holds = held_out_states(model, held, [i for i in ids if held.index[i]["success"]])
    d, labels, episode = observation_steps_to_go(model, data), data.stg.numpy(), data.episode.numpy()
    swapped, pairs = swapped_goal_detections(model, data, holds, threshold)
    overall = dataclasses.replace(steps_to_go_quality(d, labels, episode, holds, threshold),
                                  swapped_goal_detected=swapped, swapped_pairs=pairs)
    if not by_family:
        return overall
    family = np.array([held.index[i].get("metadata", {}).get("family", "?") for i in episode])
    per = {f: steps_to_go_quality(d[family == f], labels[family == f], episode[family == f], holds[family == f],
                                  threshold) for f in sorted(set(family))}
    return overall, per


def main(argv=None) -> int:
    from sefm_cli.scene_flags import add_scene_flags

    parser = argparse.ArgumentParser(prog="sefm eval", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the checkpoint directory to evaluate")
    parser.add_argument("--episodes", type=int, default=100, help="held-out rollouts (0: only the steps-to-go measures)")
    add_scene_flags(parser)
    parser.add_argument("--seed", type=int, default=None,
                        help="first evaluation seed (default: the start of the seed plan's eval range; seeds "
                             "outside it are refused)")
    parser.add_argument("--parallel", type=int, default=8, help="envs stepped together (one batched forward pass)")
    parser.add_argument("--max-steps", type=int, default=200, help="step cap of an evaluation episode")
    parser.add_argument("--policy", choices=["greedy", "sampled"], default="greedy",
                        help="act by the argmax of each action dimension, or sample (the policy REINFORCE trains)")
    parser.add_argument("--dataset", help="demonstrations the checkpoint was trained on")
    parser.add_argument("--run-dir", help="the sft run (its split.json names the held-out demos)")
    parser.add_argument("--test-dataset", help="held-out demos (another seed range) for the steps-to-go measures")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
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
        q, per = steps_to_go_report(model, EpisodeDataset(args.dataset), split["train"], split["val"], test, True)
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
