"""The success detector on a policy's own states: false ends and misses of `d <= s` held for k observations.

Runs the policy (sampled, as it practises) for whole episodes that nothing ends early: no detector, no
simulator success. Every observation gets d(o_t, g) from the frozen reward model and the simulator's verdict
(for measurement only). Then each rule (s, k) is replayed on those episodes as a station would apply it:

  ends      the episode at the first o_t, t >= 1, where the last k observations all have d <= s
  false end it ended there while the goal did not hold at o_t
  miss      the goal was reached and held (the verdict true on `held` consecutive observations) and the rule
            never ended the episode
  delay     steps from the first held goal to the end, for episodes the rule ended correctly
  asks      with an operator band (`--ask-above a`, a < s): a detection whose newest d is above a asks the
            operator instead of ending (the station's `ask_above`), who answers right: success ends the
            episode, "not yet" lets it go on, and the next question comes `--ask-every` observations later

Reset seeds come from the seed plan's `calibration` range: calibration rollouts, apart from demos,
evaluation and practice. Prints a table and (--json) writes it; `--pick` names the rule with the fewest
false ends whose miss rate stays within --max-miss.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
import torch

from sefm_core import seeds
from sefm_core.stats import wilson


def rollouts(model, reward_model, episodes: int, seed0: int, families, mode: str, image_size, max_steps: int,
             parallel: int = 8, torch_seed: int = 0) -> list[dict]:
    """Whole sampled episodes: per episode d(o_0..o_T) and the simulator's verdict at each observation."""
    from sefm_core import episode_rules as rules
    from sefm_sim.envs.language_table import LanguageTableEnv
    from sefm_sim.rollout import rollout

    from sefm_sim.rollout import Decision
    from sefm_sim.station import language_table_proprio

    generator = torch.Generator().manual_seed(torch_seed)
    verdicts: dict[int, list[bool]] = {}

    def decide(observations):
        images = torch.from_numpy(np.stack([obs["rgb"] for obs in observations]))
        proprio = torch.from_numpy(np.stack([language_table_proprio(obs) for obs in observations]))
        texts = [obs["instruction"] for obs in observations]
        with torch.no_grad():
            d = reward_model.steps_to_go(images, texts, proprio)
            _, actions, _, _ = model.act(images, texts, proprio, greedy=False, generator=generator)
        return Decision(actions, d.tolist())

    def end(env, ep):
        verdicts.setdefault(id(ep), [bool(ep.reset_info.get("success", False))]).append(ep.success)
        return rules.end_after_action(ep.steps, max_steps, ep.success, oracle_ends=False)

    envs = [LanguageTableEnv(block_mode=mode, image_size=image_size, max_steps=max_steps)
            for _ in range(min(parallel, episodes))]
    picked = [families[n % len(families)] if families else None for n in range(episodes)]
    try:
        done = rollout(envs, decide, [seed0 + n for n in range(episodes)],
                       [{"family": f} if f else None for f in picked], end=end)
    finally:
        for env in envs:
            env.close()
    return [{"seed": ep.seed, "d": ep.d, "goal": verdicts[id(ep)]} for ep in done]


def first_held(goal: list[bool], held: int) -> int | None:
    """The first observation from which the goal holds on `held` consecutive observations."""
    run = 0
    for t, g in enumerate(goal):
        run = run + 1 if g else 0
        if run >= held:
            return t - held + 1
    return None


def end_of(d: list[float], goal: list[bool], threshold: float, hold: int, ask_above: float = -1.0,
           ask_every: int = 10) -> tuple[int | None, bool, int]:
    """Where a station applying the rule ends a recorded episode: (the observation or None, whether the
    operator ended it, how often it asked the operator)."""
    from sefm_core import episode_rules as rules

    asks, asked_at = 0, -ask_every
    for t in range(1, len(d)):
        if not rules.detector_fires(d[:t + 1], t, threshold, hold):
            continue
        if 0 <= ask_above < d[t]:
            if t - asked_at < ask_every:
                continue
            asks, asked_at = asks + 1, t
            if goal[t]:
                return t, True, asks
            continue
        return t, False, asks
    return None, False, asks


def replay(episodes: list[dict], threshold: float, hold: int, held: int = 3, ask_above: float = -1.0,
           ask_every: int = 10) -> dict:
    """Apply `d <= s on k consecutive observations` (and an operator band) to recorded episodes (module
    docstring)."""
    ended = false = missed = reached = asks = 0
    delays = []
    for ep in episodes:
        d, goal = ep["d"], ep["goal"]
        at, by_operator, asked = end_of(d, goal, threshold, hold, ask_above, ask_every)
        asks += asked
        start = first_held(goal, held)
        reached += start is not None
        if at is None:
            missed += start is not None
            continue
        ended += 1
        if not goal[at] and not by_operator:
            false += 1
        elif start is not None:
            delays.append(at - start)
    n = len(episodes)
    return {"s": threshold, "k": hold, "ask_above": ask_above, "asks": asks, "episodes": n, "ended": ended,
            "false_ends": false,
            "false_end_rate": false / n, "false_share_of_ends": false / ended if ended else 0.0,
            "reached": reached, "misses": missed, "miss_rate": missed / reached if reached else 0.0,
            "median_delay": float(np.median(delays)) if delays else float("nan")}


def main(argv=None) -> int:
    from sefm_cli.scene_flags import add_scene_flags
    from sefm_core import checkpoint

    parser = argparse.ArgumentParser(prog="sefm detector", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the policy whose states are judged (a Stage-1 or practised checkpoint)")
    parser.add_argument("--reward-checkpoint", help="the frozen reward model (default: the checkpoint)")
    parser.add_argument("--episodes", type=int, default=200, help="calibration rollouts (whole episodes)")
    parser.add_argument("--max-steps", type=int, default=40, help="their length (the practice step cap)")
    parser.add_argument("--seed", type=int, default=None, help="first reset seed (default: the calibration range's)")
    parser.add_argument("--thresholds", default="0.5,0.75,1.0,1.25,1.5,1.75,2.0", help="the values of s to replay")
    parser.add_argument("--holds", default="1,2,3,4", help="the values of k (observations in a row) to replay")
    parser.add_argument("--ask-above", default="", help="operator bands to replay: values of a (< s) above which "
                                                         "a detection asks the operator (comma-separated)")
    parser.add_argument("--ask-every", type=int, default=10, help="observations between questions after a \"not yet\"")
    parser.add_argument("--held", type=int, default=3, help="observations the goal must hold to count as reached")
    parser.add_argument("--max-miss", type=float, default=0.3, help="--pick: the highest miss rate accepted")
    parser.add_argument("--json", help="write the episodes' summary and the table here")
    add_scene_flags(parser)
    args = parser.parse_args(argv)
    seed0 = seeds.first_seed("calibration") if args.seed is None else args.seed
    try:
        seeds.check("calibration", seed0, args.episodes)
        thresholds = [float(x) for x in args.thresholds.split(",") if x]
        holds = [int(x) for x in args.holds.split(",") if x]
        bands = [-1.0] + [float(x) for x in args.ask_above.split(",") if x]
    except (seeds.SeedPlanError, ValueError) as exc:
        parser.error(str(exc))
    model, _ = checkpoint.load(args.checkpoint)
    reward_model, _ = checkpoint.load(args.reward_checkpoint or args.checkpoint)
    model.eval()
    reward_model.eval()
    families = [f for f in args.families.split(",") if f] or None
    start = time.monotonic()
    episodes = rollouts(model, reward_model, args.episodes, seed0, families, args.block_mode, args.image_size,
                        args.max_steps)
    rows = [replay(episodes, s, k, args.held, a, args.ask_every) for s in thresholds for k in holds for a in bands
            if a < s]
    reached = sum(first_held(ep["goal"], args.held) is not None for ep in episodes)
    print(f"{len(episodes)} episodes ({time.monotonic() - start:.0f} s), seeds {seed0}..{seed0 + args.episodes - 1}; "
          f"goal reached and held in {reached} ({wilson(reached, len(episodes))})")
    print(f"{'s':>5} {'k':>2} {'ask>':>5} {'ended':>6} {'false':>6} {'false/ended':>11} {'miss rate':>9} "
          f"{'delay':>6} {'asks':>5}")
    for r in rows:
        band = f"{r['ask_above']:5.2f}" if r["ask_above"] >= 0 else "    -"
        print(f"{r['s']:5.2f} {r['k']:2d} {band} {r['ended']:6d} {r['false_ends']:6d} {r['false_share_of_ends']:11.2f} "
              f"{r['miss_rate']:9.2f} {r['median_delay']:6.1f} {r['asks']:5d}")
    ok = [r for r in rows if r["miss_rate"] <= args.max_miss and r["ask_above"] < 0]   # the pick asks no one
    pick = min(ok, key=lambda r: (r["false_ends"], r["miss_rate"])) if ok else None
    if pick:
        print(f"pick: s = {pick['s']:g}, k = {pick['k']}: {pick['false_ends']} false ends of {pick['ended']}, "
              f"miss rate {pick['miss_rate']:.2f} (at most {args.max_miss:g})")
    else:
        print(f"no rule keeps the miss rate within {args.max_miss:g}")
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"checkpoint": args.checkpoint, "episodes": len(episodes), "reached": reached,
                                    "seeds": seeds.describe({"calibration": (seed0, args.episodes)}),
                                    "rows": rows, "pick": pick}, indent=2))
    return 0
