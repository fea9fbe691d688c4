"""`sefm collect`: scripted demonstrations straight into an episode data set (no ROS).

    sefm collect language_table data/lt_demos --episodes 200 --families block2block --block-mode BLOCK_4

The ROS path (`sefm demos`, recorded as rosbag2 and imported) produces the
same data set format; this direct path is for quick experiments and tests.
Episodes the demonstrator fails are kept only with --keep-failures.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from sefm_core import seeds
from sefm_core.data import Episode, EpisodeDataset
from sefm_sim.station import language_table_proprio

HOLD_STEPS = 3  # zero actions recorded after success: states where the goal holds (steps-to-go 0)
PARAPHRASES = 16  # other wordings of each goal, stored for language augmentation in training


def collect_language_table_episode(env, oracle, seed: int, family: str | None, hold_steps: int = HOLD_STEPS,
                                   dart_noise: float = 0.0, rng: np.random.Generator | None = None):
    """Run the oracle for one episode; returns an Episode (success or not).

    dart_noise > 0 (DART): the executed action gets Gaussian noise, the recorded one is the
    oracle's clean action, so the demos show how to recover from the drift a learned policy makes.
    """
    options = {"family": family} if family else None
    obs, info = env.reset(seed=seed, options=options)
    oracle.reset()
    frames, proprio, actions, rewards, holds = [obs["rgb"]], [language_table_proprio(obs)], [], [], [False]
    blocks = env.blocks
    block_xy = [_block_xy(env, blocks)]
    terminated = truncated = False
    while not (terminated or truncated):
        action = oracle.act(env.state(), env.goal)
        executed = action
        if dart_noise > 0:
            executed = np.clip(action + rng.normal(0.0, dart_noise, 2), -0.1, 0.1)
        obs, reward, terminated, truncated, info = env.step(executed)
        frames.append(obs["rgb"])
        proprio.append(language_table_proprio(obs))
        actions.append(np.asarray(action, dtype=np.float32))
        rewards.append(reward)
        holds.append(bool(info["success"]))
        block_xy.append(_block_xy(env, blocks))
    if terminated:
        for _ in range(hold_steps):  # the robot rests at the goal: more states with steps-to-go 0
            obs, reward, _, _, info = env.step(np.zeros(2))
            if not info["success"]:
                break
            frames.append(obs["rgb"])
            proprio.append(language_table_proprio(obs))
            actions.append(np.zeros(2, np.float32))
            rewards.append(reward)
            holds.append(True)
            block_xy.append(_block_xy(env, blocks))
    goal = env.goal
    from sefm_sim.envs.lt_tasks import paraphrase

    words = np.random.default_rng(seed)
    paraphrases = sorted({goal.instruction, *(paraphrase(words, goal, blocks) for _ in range(PARAPHRASES))})
    metadata = {"env": f"sefm/LanguageTable-{env.mode.value}-v0", "family": goal.family, "goal": goal.to_dict(),
                "paraphrases": paraphrases,
                "seed": seed, "source": "oracle", "first_success_step": holds.index(True) if any(holds) else None,
                "blocks": list(blocks), "camera": env.image_geometry()}
    # Privileged state rides along for diagnostics and tests; no model input reads it.
    return Episode(np.stack(frames), np.stack(proprio), np.stack(actions), np.array(rewards, np.float32),
                   goal.instruction, bool(terminated), metadata,
                   {"goal_holds": np.array(holds, np.uint8), "block_xy": np.array(block_xy, np.float32)})


def _block_xy(env, blocks) -> np.ndarray:
    state = env.state()
    return np.array([state.xy(b) for b in blocks], np.float32)


def collect_language_table(out: str, episodes: int, families: list[str] | None, mode: str, seed0: int,
                           noise: float, image_size: tuple[int, int], keep_failures: bool = False,
                           log=print, hold_steps: int = HOLD_STEPS, dart_noise: float = 0.0,
                           oracle_speed: float = 1.0, role: str = "train_demos") -> EpisodeDataset:
    """Oracle demos from seed `seed0` up; failed ones are skipped but use up their seed. Every seed tried must
    lie in the seed plan's `role` range (train_demos or test_demos): leaving it is an error."""
    from sefm_sim.envs.language_table import LanguageTableEnv
    from sefm_sim.envs.lt_oracle import OrientedPushOracle

    env = LanguageTableEnv(block_mode=mode, image_size=image_size)
    dataset = EpisodeDataset(out, create=True)
    oracle = OrientedPushOracle(noise_std=noise, rng=np.random.default_rng(seed0), speed_scale=oracle_speed)
    written = failed = seed = 0
    start = time.monotonic()
    while written < episodes:
        seeds.check(role, seed0 + seed, 1)
        family = families[seed % len(families)] if families else None
        episode = collect_language_table_episode(env, oracle, seed0 + seed, family, hold_steps, dart_noise,
                                                 np.random.default_rng(seed0 + seed))
        seed += 1
        if episode.success or keep_failures:
            dataset.append(episode)
            written += 1
        else:
            failed += 1
        if written % 20 == 0 or written == episodes:
            log(f"  {written}/{episodes} episodes ({failed} failed demos skipped), {time.monotonic() - start:.0f} s")
    env.close()
    return dataset


def main(argv=None) -> int:
    from sefm_cli.scene_flags import add_scene_flags, at_least

    parser = argparse.ArgumentParser(prog="sefm collect", description=__doc__.splitlines()[0])
    parser.add_argument("env", choices=["language_table"], help="the simulator whose oracle demonstrates")
    parser.add_argument("out", help="data set directory (created, or appended to)")
    parser.add_argument("--episodes", type=at_least(1), default=100, help="successful demos to write")
    add_scene_flags(parser)
    parser.add_argument("--seeds", choices=["train_demos", "test_demos"], default="train_demos",
                        help="the seed plan's range to draw from (sefm_core.seeds): training or held-out test demos")
    parser.add_argument("--seed", type=int, default=None, help="first reset seed (default: the start of --seeds)")
    parser.add_argument("--noise", type=float, default=0.0, help="oracle action noise (std, m)")
    parser.add_argument("--keep-failures", action="store_true", help="also keep demos the oracle failed")
    parser.add_argument("--dart", type=float, default=0.0,
                        help="DART: std (m) of noise on executed actions; the clean oracle action is recorded")
    parser.add_argument("--hold-steps", type=int, default=HOLD_STEPS, help="resting frames recorded after success")
    parser.add_argument("--oracle-speed", type=float, default=1.0,
                        help="scale of the oracle's speeds (< 1: slower, longer demos; steps-to-go counts steps)")
    args = parser.parse_args(argv)
    width, height = args.image_size
    families = [f for f in args.families.split(",") if f] or None
    first = seeds.first_seed(args.seeds) if args.seed is None else args.seed
    try:
        seeds.check(args.seeds, first, args.episodes)
    except seeds.SeedPlanError as exc:
        parser.error(str(exc))
    dataset = collect_language_table(args.out, args.episodes, families, args.block_mode, first, args.noise,
                                     (width, height), args.keep_failures,
                                     hold_steps=args.hold_steps, dart_noise=args.dart, oracle_speed=args.oracle_speed,
                                     role=args.seeds)
    steps = [entry["steps"] for entry in dataset.index]
    print(f"{args.out}: {len(dataset)} episodes, {np.mean(steps) if steps else 0:.1f} steps on average "
          f"({args.hold_steps} of them resting frames after success)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
