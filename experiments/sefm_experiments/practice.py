"""Stage 2 without ROS: the same on-policy REINFORCE loop as `sefm improve`, in one process.

`sefm improve` runs Stage 2 through the node graph (the deployment path). The
experiments of `sefm bench paper` need many Stage-2 runs, so they use this loop:
the same env, the same frozen reward model, the same detector and the same
`reinforce_update`, with the stations' episodes stepped as one batch and the
frozen towers run once per step for both heads (policy and reward model share
them: only the heads are trained).

Per step and station: d(o_t) from the frozen copy; r_{t-1} = d(o_t-1) - d(o_t);
the detector may end the episode at o_t; otherwise the policy samples a_t. The
batched stepping is `sefm_sim.rollout` (as `sefm eval`'s); the rules (reward,
detector, step cap, the simulator's success ending an episode) are
`sefm_core.episode_rules`, the ones the graph's nodes use. The simulator's
verdict is recorded for the report only; it never enters a reward.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from sefm_core import episode_rules as rules
from sefm_core import seeds
from sefm_core.regression_guard import RegressionGuard
from sefm_core.reinforce import (ReinforceConfig, discounted_returns, make_optimizer,
                                 reinforce_update)
from sefm_core.steps_to_go import expected_steps
from sefm_sim.rollout import Episode


class Acted(NamedTuple):
    """What an episode keeps of each action for the update (`sefm_sim.rollout.Episode.extras`)."""
    fmap: torch.Tensor      # the observation's tower features ...
    text: torch.Tensor
    proprio: torch.Tensor
    tokens: torch.Tensor    # ... and the sampled action tokens
    entropy: float          # the policy's entropy there (nats, summed over the action dims)


def run_batch(policy, reward_model, envs, reset_seeds: list[int], families: list[str | None], threshold: float,
              generator: torch.Generator, greedy: bool = False, oracle_ends: bool = True,
              hold: int = 1) -> list[Episode]:
    """One on-policy episode per env, stepped together (`sefm_sim.rollout`); returns them when all have ended.
    Every observation is scored by the frozen reward model (its d, the last one included); the rules are
    `episode_rules`': the detector d <= s (on `hold` observations in a row), the step cap, and (oracle_ends) the simulator's success, as a
    simulated station's. Each episode's `extras` are its actions' `Acted` records."""
    from sefm_sim.rollout import Decision, rollout
    from sefm_sim.station import language_table_proprio

    shared_towers = (policy.config.backbone_key() == reward_model.config.backbone_key()
                     and not policy.config.trainable_backbone and not reward_model.config.trainable_backbone)

    def decide(observations):
        images = torch.from_numpy(np.stack([obs["rgb"] for obs in observations]))
        proprio = torch.from_numpy(np.stack([language_table_proprio(obs) for obs in observations]))
        texts = [obs["instruction"] for obs in observations]
        with torch.no_grad():
            fmap, text = policy.tower_features(images, texts)
            if not shared_towers:
                d = reward_model.steps_to_go(images, texts, proprio)
            else:  # the same frozen towers: run them once for both heads
                d = expected_steps(reward_model.heads(fmap, text, proprio)[1])
            logp = torch.log_softmax(policy.heads(fmap, text, proprio)[0], dim=-1)
            tokens = (logp.argmax(-1) if greedy else
                      torch.multinomial(logp.exp().flatten(0, 1), 1, generator=generator).view(logp.shape[:2]))
            entropy = -(logp.exp() * logp).sum(-1).sum(-1)
        return Decision(policy.tokenizer.decode(tokens.numpy()), d.tolist(),
                        [Acted(fmap[r], text[r], proprio[r], tokens[r], float(entropy[r])) for r in range(len(texts))])

    return rollout(envs, decide, reset_seeds, [{"family": family} if family else None for family in families],
                   end=lambda env, ep: rules.end_after_action(ep.steps, env.config.max_steps, ep.success, oracle_ends),
                   detect=lambda d, step: rules.SUCCESS_DETECTED if rules.detector_fires(d, step, threshold, hold) else None,
                   reward=rules.transition_reward)


def detected(episode: Episode) -> bool:
    """Ended by the learned detector."""
    return episode.outcome == rules.SUCCESS_DETECTED


def update_from(policy, optimizer, episodes: list[Episode], returns: list[np.ndarray],
                cfg: ReinforceConfig, generator: torch.Generator | None = None, reference=None) -> tuple[float, float]:
    """REINFORCE on one batch of episodes (`run_batch`) and their returns (then discarded by the caller:
    on-policy). reference: the frozen Stage-1 model, whose action head anchors the policy when cfg.kl_weight > 0.
    Returns (the mean loss, KL(policy before || after) per state over the batch: how far one update moved it)."""
    stack = lambda name: torch.stack([getattr(x, name) for ep in episodes for x in ep.extras])  # noqa: E731
    fmap, text, proprio = stack("fmap"), stack("text"), stack("proprio")
    reference_logits = None
    if cfg.kl_weight > 0:
        with torch.no_grad():
            reference_logits = reference.heads(fmap, text, proprio)[0]
    return reinforce_update(policy, optimizer, fmap, text, proprio, stack("tokens").long(),
                            torch.as_tensor(np.concatenate(returns), dtype=torch.float32), cfg, generator,
                            reference_logits)


def returns_of(episode: Episode, gamma: float) -> np.ndarray:
    """The discounted returns of an episode's rewards r_t = d(o_t) - d(o_t+1), one per action."""
    return discounted_returns(np.asarray(episode.rewards, np.float64), gamma)


@dataclass
class PracticeResult:
    versions: list[dict]           # one row per update: episodes, detected and true successes, return, loss
    episodes: int                  # practice episodes used (the "extra episodes" of the paper's table)
    seconds: float
    guard: dict | None = None      # the regression guard's windows (cfg.guard_every > 0)


def practice(policy, reward_model, cfg: ReinforceConfig, versions: int, threshold: float,
             families: list[str] | None, mode: str = "BLOCK_4", image_size=(128, 72), max_steps: int = 100,
             seed0: int | None = None, torch_seed: int = 0, on_version=None, log=print, hold: int = 1,
             oracle_ends: bool = False) -> PracticeResult:
    """`versions` rounds of: a batch of `cfg.episodes_per_batch` practice episodes, then an update.
    Episodes end by the detector (d <= s on `hold` observations in a row), the step cap, and only with
    oracle_ends by the simulator's success (a simulator-only stand-in). on_version(version, policy) runs after
    each update (e.g. a held-out evaluation)."""
    from sefm_sim.envs.language_table import LanguageTableEnv

    seed0 = seeds.first_seed("practice") if seed0 is None else seed0
    seeds.check("practice", seed0, versions * cfg.episodes_per_batch)
    envs = [LanguageTableEnv(block_mode=mode, image_size=image_size, max_steps=max_steps)
            for _ in range(cfg.episodes_per_batch)]
    optimizer = make_optimizer(policy.heads, cfg)
    generator = torch.Generator().manual_seed(torch_seed)
    policy.eval()
    reward_model.eval()
    rows, used, start = [], 0, time.monotonic()
    guard = RegressionGuard(cfg.guard_every, cfg.guard_drop)
    # the policy (heads) and optimizer at each window's start: what a roll-back restores
    kept = {0: copy.deepcopy((policy.heads.state_dict(), optimizer.state_dict()))}
    for version in range(1, versions + 1):
        n = cfg.episodes_per_batch
        batch_seeds = [seed0 + used + k for k in range(n)]
        fams = [families[(used + k) % len(families)] if families else None for k in range(n)]
        batch = run_batch(policy, reward_model, envs, batch_seeds, fams, threshold, generator,
                          oracle_ends=oracle_ends, hold=hold)
        used += n
        returns = [returns_of(ep, cfg.gamma) for ep in batch]
        loss, moved = update_from(policy, optimizer, batch, returns, cfg, generator, reward_model)
        row = {"version": version, "episodes": used,
               "detected": sum(detected(ep) for ep in batch) / n,
               "true_success": sum(ep.success for ep in batch) / n,
               "false_detections": sum(detected(ep) and not ep.success for ep in batch),
               "mean_return": float(np.mean([r[0] if len(r) else 0.0 for r in returns])),
               "steps": sum(ep.steps for ep in batch), "loss": loss, "update_kl": moved,
               "entropy": float(np.mean([x.entropy for ep in batch for x in ep.extras])),
               "seconds": round(time.monotonic() - start, 1), "guard": ""}
        back = guard.observe(version, sum(detected(ep) for ep in batch), n)
        if back is not None:
            heads, moments = kept[back]
            policy.heads.load_state_dict(heads)
            optimizer.load_state_dict(moments)
            row["guard"] = f"rolled back to v{back}"
        if guard.every and guard.window_start == version:
            kept = {v: s for v, s in kept.items() if v == guard.best_version}
            kept[version] = copy.deepcopy((policy.heads.state_dict(), optimizer.state_dict()))
        rows.append(row)
        log(f"  v{version}: {used} episodes, detected {row['detected']:.2f}, true {row['true_success']:.2f} "
            f"({row['false_detections']} false detections), return {row['mean_return']:.2f}, "
            f"entropy {row['entropy']:.2f}, update KL {moved:.4f}, {row['seconds']:.0f} s"
            + (f"; regression guard: {row['guard']}" if row["guard"] else ""))
        if on_version:
            on_version(version, policy)
    for env in envs:
        env.close()
    return PracticeResult(rows, used, time.monotonic() - start, guard.summary() if guard.every else None)


def main(argv=None) -> int:
    from sefm_cli.scene_flags import add_scene_flags

    import argparse
    import dataclasses
    import json
    import pathlib

    from sefm_core import checkpoint
    from sefm_core.config import ConfigError, add_flags, apply_flags, from_dict
    from sefm_cli.evaluate import policy_success

    parser = argparse.ArgumentParser(prog="sefm practice", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the Stage-1 checkpoint: policy version 0 and the frozen reward model")
    parser.add_argument("--reward-checkpoint", help="a different frozen reward model (as `sefm improve` allows)")
    parser.add_argument("--versions", type=int, default=10, help="updates (one batch of episodes each)")
    add_flags(parser, ReinforceConfig)   # the update's settings, as the trainer node declares them
    parser.add_argument("--threshold", type=float, required=True, help="success detector: d <= s (< 0: off)")
    parser.add_argument("--hold", type=int, default=1, help="success detector: d <= s on this many observations "
                                                             "in a row")
    parser.add_argument("--sim-success-ends", type=lambda v: {"true": True, "false": False}[v.lower()],
                        default=False, metavar="{true,false}",
                        help="the simulator's success also ends practice episodes (a simulator-only stand-in "
                             "for the detector; default false)")
    add_scene_flags(parser)
    parser.add_argument("--max-steps", type=int, default=100, help="step cap of a practice episode")
    parser.add_argument("--eval-episodes", type=int, default=100, help="held-out rollouts before and after practice")
    parser.add_argument("--eval-policy", choices=["sampled", "greedy"], default="sampled",
                        help="evaluate the policy REINFORCE trains (sampled, the default) or its argmax")
    parser.add_argument("--eval-seed", type=int, default=None,
                        help="first seed of the held-out evaluation (default: the seed plan's eval range)")
    parser.add_argument("--practice-seed", type=int, default=None,
                        help="first reset seed of practice (default: the seed plan's practice range)")
    parser.add_argument("--save", help="write the practised policy here (a checkpoint directory)")
    parser.add_argument("--eval-every", type=int, default=0, help="also evaluate every N versions (0: only the ends)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the sampled actions")
    parser.add_argument("--json", help="write the versions and evaluations here")
    args = parser.parse_args(argv)
    try:
        cfg = from_dict(ReinforceConfig, apply_flags({}, {f.name: getattr(args, f.name)
                                                          for f in dataclasses.fields(ReinforceConfig)}), "practice")
        cfg.check()
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    args.eval_seed = seeds.first_seed("eval") if args.eval_seed is None else args.eval_seed
    args.practice_seed = seeds.first_seed("practice") if args.practice_seed is None else args.practice_seed
    try:
        used = {"eval": (args.eval_seed, args.eval_episodes),
                "practice": (args.practice_seed, args.versions * cfg.episodes_per_batch)}
        for role, (first, count) in used.items():
            seeds.check(role, first, count)
    except seeds.SeedPlanError as exc:
        parser.error(str(exc))
    torch.manual_seed(args.seed)
    image_size = args.image_size
    policy, _ = checkpoint.load(args.checkpoint)
    reward_model, _ = checkpoint.load(args.reward_checkpoint or args.checkpoint)
    families = [f for f in args.families.split(",") if f] or None
    evals = {}

    def evaluate(version, model):
        if args.eval_episodes > 0:
            rate = policy_success(model, args.eval_episodes, families, args.block_mode, args.eval_seed,
                                  image_size=image_size, max_steps=args.max_steps,
                                  greedy=args.eval_policy == "greedy")["all"]
            evals[version] = {"rate": rate.value, "low": rate.low, "high": rate.high, "n": rate.trials}
            print(f"  eval v{version}: {rate}", flush=True)

    evaluate(0, policy)
    result = practice(policy, reward_model, cfg, args.versions, args.threshold, families, args.block_mode, image_size,
                      max_steps=args.max_steps, seed0=args.practice_seed, torch_seed=args.seed, hold=args.hold,
                      oracle_ends=args.sim_success_ends,
                      on_version=lambda v, m: evaluate(v, m) if args.eval_every and v % args.eval_every == 0
                      and v != args.versions else None)
    evaluate(args.versions, policy)
    if args.save:
        checkpoint.save(policy, pathlib.Path(args.save), {"practice": result.versions[-1], "from": args.checkpoint})
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps({"versions": result.versions, "evaluations": evals,
                                                      "episodes": result.episodes, "seconds": result.seconds,
                                                      "guard": result.guard,
                                                      "seeds": seeds.describe(used), "reinforce": dataclasses.asdict(cfg),
                                                      "args": vars(args)}, indent=2))
    return 0
