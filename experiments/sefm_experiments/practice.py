"""Stage 2 without ROS: the same on-policy REINFORCE loop as `sefm improve`, in one process.

`sefm improve` runs Stage 2 through the node graph (the deployment path). The
experiments of `sefm bench paper` need many Stage-2 runs, so they use this loop:
the same env, the same frozen reward model, the same detector and the same
`reinforce_update`, with the stations' episodes stepped as one batch and the
frozen towers run once per step for both heads (policy and reward model share
them: only the heads are trained).

Per step and station: d(o_t) from the frozen copy; r_{t-1} = d(o_t-1) - d(o_t);
the detector may end the episode at o_t; otherwise the policy samples a_t. The
rules (reward, detector, step cap, the simulator's success ending an episode)
are `sefm_core.episode_rules`, the ones the graph's nodes use. The simulator's
verdict is recorded for the report only; it never enters a reward.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from sefm_core import episode_rules as rules
from sefm_core import seeds
from sefm_core.reinforce import (ReinforceConfig, discounted_returns, make_optimizer,
                                 reinforce_update)
from sefm_core.steps_to_go import expected_steps


@dataclass
class PracticeEpisode:
    fmap: list = field(default_factory=list)     # per action: the observation's tower features ...
    text: list = field(default_factory=list)
    proprio: list = field(default_factory=list)
    tokens: list = field(default_factory=list)   # ... and the sampled action tokens
    d: list = field(default_factory=list)        # d(o_t) of every observation, the last one included
    entropy: list = field(default_factory=list)  # per action: the policy's entropy (nats, summed over dims)
    detections: list = field(default_factory=list)  # per observation scored: did the detector fire there
    goal_holds: bool = False                     # the simulator's predicate on the newest observation (oracle)
    outcome: int | None = None                   # how it ended (episode_rules.OUTCOMES); None while running

    @property
    def detected(self) -> bool:                  # ended by the learned detector
        return self.outcome == rules.SUCCESS_DETECTED

    def rewards(self, oracle: bool = False) -> np.ndarray:
        if oracle:  # diagnostic only: the simulator's success as a sparse reward (not the method)
            return np.eye(len(self.tokens))[-1] * float(self.goal_holds) if self.tokens else np.zeros(0)
        d = np.asarray(self.d, np.float64)
        return d[:-1] - d[1:]  # r_t = d(o_t) - d(o_t+1), one per action


def run_batch(policy, reward_model, envs, reset_seeds: list[int], families: list[str | None], threshold: float,
              generator: torch.Generator, potential=None, greedy: bool = False,
              oracle_ends: bool = True) -> list[PracticeEpisode]:
    """One on-policy episode per env, stepped together; returns them when all have ended.
    potential(env) -> d, DIAGNOSTIC only: replaces the reward model's d (e.g. the true distance in steps).
    oracle_ends: the simulator's success ends an episode (as a simulated station's does)."""
    from sefm_cli.collect import language_table_proprio

    shared_towers = (policy.config.backbone_key() == reward_model.config.backbone_key()
                     and not policy.config.trainable_backbone and not reward_model.config.trainable_backbone)
    observations, episodes = [], []
    for env, seed, family in zip(envs, reset_seeds, families):
        obs, _ = env.reset(seed=seed, options={"family": family} if family else None)
        observations.append(obs)
        episodes.append(PracticeEpisode())
    active = list(range(len(envs)))
    while active:
        images = torch.from_numpy(np.stack([observations[i]["rgb"] for i in active]))
        proprio = torch.from_numpy(np.stack([language_table_proprio(observations[i]) for i in active]))
        texts = [observations[i]["instruction"] for i in active]
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
        actions = policy.tokenizer.decode(tokens.numpy())
        still = []
        for row, i in enumerate(active):
            ep = episodes[i]
            ep.d.append(float(d[row]) if potential is None else potential(envs[i]))
            ep.detections.append(rules.detector_fires(ep.d[-1], threshold, len(ep.tokens)))
            if ep.outcome is not None:
                continue  # its last observation is scored now: that was the last reward
            if ep.detections[-1]:
                ep.outcome = rules.SUCCESS_DETECTED
                continue
            ep.fmap.append(fmap[row])
            ep.text.append(text[row])
            ep.proprio.append(proprio[row])
            ep.tokens.append(tokens[row])
            ep.entropy.append(float(entropy[row]))
            observations[i], _, terminated, _, info = envs[i].step(actions[row])
            ep.goal_holds = bool(info.get("success", terminated))
            ep.outcome = rules.end_after_action(len(ep.tokens), envs[i].config.max_steps, ep.goal_holds, oracle_ends)
            still.append(i)
        active = still
    return episodes


def true_steps_to_go(env) -> float:
    """DIAGNOSTIC potential for point2block: the effector's distance to the named block in oracle steps."""
    from sefm_sim.envs import lt_constants as C
    from sefm_sim.envs.lt_oracle import POINT_STOP, SPEED_APPROACH

    state = env.state()
    distance = float(np.linalg.norm(state.xy(env.goal.block) - state.target))
    return max(distance - POINT_STOP, 0.0) / (SPEED_APPROACH / C.CONTROL_HZ)


def update_from(policy, optimizer, episodes: list[PracticeEpisode], returns: list[np.ndarray],
                cfg: ReinforceConfig, generator: torch.Generator | None = None, reference=None) -> tuple[float, float]:
    """REINFORCE on one batch of episodes and their returns (then discarded by the caller: on-policy).
    reference: the frozen Stage-1 model, whose action head anchors the policy when cfg.kl_weight > 0.
    Returns (the mean loss, KL(policy before || after) per state over the batch: how far one update moved it)."""
    stack = lambda name: torch.stack([x for ep in episodes for x in getattr(ep, name)])  # noqa: E731
    fmap, text, proprio = stack("fmap"), stack("text"), stack("proprio")
    reference_logits = None
    if cfg.kl_weight > 0:
        with torch.no_grad():
            reference_logits = reference.heads(fmap, text, proprio)[0]
    return reinforce_update(policy, optimizer, fmap, text, proprio, stack("tokens").long(),
                            torch.as_tensor(np.concatenate(returns), dtype=torch.float32), cfg, generator,
                            reference_logits)


@dataclass
class PracticeResult:
    versions: list[dict]           # one row per update: episodes, detected and true successes, return, loss
    episodes: int                  # practice episodes used (the "extra episodes" of the paper's table)
    seconds: float


def practice(policy, reward_model, cfg: ReinforceConfig, versions: int, threshold: float,
             families: list[str] | None, mode: str = "BLOCK_4", image_size=(128, 72), max_steps: int = 100,
             seed0: int | None = None, torch_seed: int = 0, on_version=None, oracle_reward: str | None = None,
             log=print) -> PracticeResult:
    """`versions` rounds of: a batch of `cfg.episodes_per_batch` practice episodes, then an update.
    on_version(version, policy) runs after each update (e.g. a held-out evaluation).
    oracle_reward, DIAGNOSTIC only (it separates a weak reward model from a weak update): "sparse" rewards
    the simulator's success; "distance" replaces d by the true distance to the named block in oracle steps."""
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
    for version in range(1, versions + 1):
        n = cfg.episodes_per_batch
        batch_seeds = [seed0 + used + k for k in range(n)]
        fams = [families[(used + k) % len(families)] if families else None for k in range(n)]
        batch = run_batch(policy, reward_model, envs, batch_seeds, fams, threshold, generator,
                          true_steps_to_go if oracle_reward == "distance" else None)
        used += n
        returns = [discounted_returns(ep.rewards(oracle_reward == "sparse"), cfg.gamma) for ep in batch]
        loss, moved = update_from(policy, optimizer, batch, returns, cfg, generator, reward_model)
        row = {"version": version, "episodes": used,
               "detected": sum(ep.detected for ep in batch) / n,
               "true_success": sum(ep.goal_holds for ep in batch) / n,
               "false_detections": sum(ep.detected and not ep.goal_holds for ep in batch),
               "mean_return": float(np.mean([r[0] if len(r) else 0.0 for r in returns])),
               "steps": sum(len(ep.tokens) for ep in batch), "loss": loss, "update_kl": moved,
               "entropy": float(np.mean([h for ep in batch for h in ep.entropy])),
               "seconds": round(time.monotonic() - start, 1)}
        rows.append(row)
        log(f"  v{version}: {used} episodes, detected {row['detected']:.2f}, true {row['true_success']:.2f} "
            f"({row['false_detections']} false detections), return {row['mean_return']:.2f}, "
            f"entropy {row['entropy']:.2f}, update KL {moved:.4f}, {row['seconds']:.0f} s")
        if on_version:
            on_version(version, policy)
    for env in envs:
        env.close()
    return PracticeResult(rows, used, time.monotonic() - start)


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
    parser.add_argument("--threshold", type=float, required=True, help="success detector: d <= s")
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
    parser.add_argument("--oracle-reward", nargs="?", const="sparse", choices=["sparse", "distance"],
                        help="DIAGNOSTIC, not the method (separates a weak reward model from a weak update): "
                             "sparse (the default): reward 1 when the simulator's success predicate holds; "
                             "distance: d = the true distance to the named block in oracle steps (point2block); "
                             "use with --threshold -1")
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
                      max_steps=args.max_steps, seed0=args.practice_seed, torch_seed=args.seed, oracle_reward=args.oracle_reward,
                      on_version=lambda v, m: evaluate(v, m) if args.eval_every and v % args.eval_every == 0
                      and v != args.versions else None)
    evaluate(args.versions, policy)
    if args.save:
        checkpoint.save(policy, pathlib.Path(args.save), {"practice": result.versions[-1], "from": args.checkpoint})
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps({"versions": result.versions, "evaluations": evals,
                                                      "episodes": result.episodes, "seconds": result.seconds,
                                                      "seeds": seeds.describe(used), "reinforce": dataclasses.asdict(cfg),
                                                      "args": vars(args)}, indent=2))
    return 0
