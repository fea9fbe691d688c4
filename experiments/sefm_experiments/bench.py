"""`sefm bench`: measured numbers, printed and optionally written as Markdown.

    sefm bench env language_table [--episodes 50] [--markdown docs/benchmarks/language_table.md]
    sefm bench env language_table --frames docs/images/language_table_tasks.png
    sefm bench env aloha [--episodes 50] [--markdown docs/benchmarks/aloha.md]
    sefm bench env aloha --frames docs/images/aloha_tasks.png
    sefm bench graph [--stations 1,2,4]      (the ROS 2 graph against a bare loop: sefm_experiments.bench_graph)
    sefm bench record [--minutes 1,5]        (the recorder at ALOHA's rates, import memory: sefm_experiments.bench_record)
    sefm bench paper [--experiments 1,2,3,4] (the paper's experiments at our scale: sefm_experiments.bench_paper)

`env` measures simulator speed on one pinned core (with and without camera
rendering) and the scripted demonstrator's success per task family, with
Wilson 95% intervals. Every figure in docs/ comes from one of these commands.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np

from sefm_core.stats import Rate, wilson


def pin_to_one_core() -> str:
    """Run on a single core, and keep the software renderer single-threaded too."""
    os.environ["LP_NUM_THREADS"] = "1"  # llvmpipe (osmesa) worker threads
    try:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return "not pinned (no sched_setaffinity)"


def machine_line() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{datetime.date.today().isoformat()}")


def steps_per_second(make_env, steps: int, seed: int = 0) -> float:
    """Env steps per second under uniformly random actions (resets excluded from the timing)."""
    env = make_env()
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    low, high = env.action_space.low, env.action_space.high
    elapsed, done = 0.0, 0
    while done < steps:
        action = rng.uniform(low, high) * 0.3
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        elapsed += time.perf_counter() - start
        done += 1
        if terminated or truncated:
            env.reset(seed=seed + done)
    env.close()
    return steps / elapsed


def emit(lines: list[str], *rows: str) -> None:
    """Append Markdown rows to the report and print them as they are measured."""
    lines.extend(rows)
    print("\n".join(rows), flush=True)


def caption(image: np.ndarray, *texts: tuple[str, tuple[int, int, int]]) -> np.ndarray:
    """The image with a white caption strip below it, one (text, colour) per line."""
    import cv2

    strip = np.full((6 + 15 * len(texts), image.shape[1], 3), 255, np.uint8)
    for i, (text, colour) in enumerate(texts):
        cv2.putText(strip, text, (4, 14 + 15 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.38, colour, 1, cv2.LINE_AA)
    return np.concatenate([image, strip], axis=0)


# Each simulator's report head: title, speed-table heading, its first column, what a rendered frame is.
SPEED_REPORTS = {
    "language_table": ("LanguageTable (MuJoCo) benchmark", "Speed (one core, random actions)", "block mode", "rgb"),
    "aloha": ("ALOHA (MuJoCo, gym-aloha model) benchmark",
              "Speed (one core, random joint targets near the start pose)", "task", "top camera"),
}


def speed_report(env_name: str, args, names, size: tuple[int, int], make_env) -> list[str]:
    """A report's title, machine and command lines, then its speed table: one row `| name | rendering | steps/s |`
    per name, rendered and not (`make_env(name, render)`), printed as measured. Pins this process to one core."""
    title, heading, first_column, frame = SPEED_REPORTS[env_name]
    lines = [f"# {title}", "",
             f"Machine: {machine_line()}; {pin_to_one_core()}.", "",
             f"Command: `sefm bench env {env_name} --episodes {args.episodes} --speed-steps {args.speed_steps}`",
             "", f"## {heading}", "",
             f"| {first_column} | rendering | steps/s |", "|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name in names:
        for render in (True, False):
            rendering = f"{size[0]}x{size[1]} {frame}" if render else "none"
            rate = steps_per_second(lambda: make_env(name, render), args.speed_steps)
            emit(lines, f"| {name} | {rendering} | {rate:.0f} |")
    return lines


# --- LanguageTable ----------------------------------------------------------------------

def language_table_oracle(mode: str, family: str, episodes: int, seed0: int = 0) -> tuple[Rate, float]:
    from sefm_sim.envs.language_table import LanguageTableEnv
    from sefm_sim.envs.lt_oracle import OrientedPushOracle

    env = LanguageTableEnv(block_mode=mode, render_images=False)
    successes, lengths = 0, []
    for episode in range(episodes):
        env.reset(seed=seed0 + episode, options={"family": family})
        oracle = OrientedPushOracle()
        for step in range(env.config.max_steps):
            _, _, terminated, truncated, _ = env.step(oracle.act(env.state(), env.goal))
            if terminated or truncated:
                break
        successes += int(terminated)
        lengths.append(step + 1)
    env.close()
    return wilson(successes, episodes), float(np.mean(lengths))


def bench_language_table(args) -> list[str]:
    from sefm_sim.envs.language_table import LanguageTableConfig, LanguageTableEnv
    from sefm_sim.envs.lt_tasks import FAMILIES

    lines = speed_report("language_table", args, ("BLOCK_4", "BLOCK_8"), LanguageTableConfig().image_size,
                         lambda mode, render: LanguageTableEnv(block_mode=mode, render_images=render))
    head = ["", f"## Scripted oracle success ({args.episodes} seeded episodes per family, seeds 0..{args.episodes - 1})",
            "", "Wilson 95% intervals.", "",
            "| block mode | family | success [95% CI] | mean steps |", "|---|---|---|---|"]
    emit(lines, *head)
    for mode in ("BLOCK_4", "BLOCK_8"):
        for family in FAMILIES:
            rate, mean_steps = language_table_oracle(mode, family, args.episodes)
            emit(lines, f"| {mode} | {family} | {rate} | {mean_steps:.0f} |")
    return lines


def language_table_frames(path: str, size=(320, 180)) -> None:
    """One rendered start frame per family (BLOCK_4) plus BananaTable, captioned, in one PNG."""
    import cv2

    from sefm_sim.envs.language_table import LanguageTableEnv
    from sefm_sim.envs.lt_tasks import FAMILIES

    tiles = []
    cases = [("BLOCK_4", family) for family in FAMILIES] + [("BANANA", "block2absolutelocation"),
                                                           ("BLOCK_8", "block2block")]
    for mode, family in cases:
        env = LanguageTableEnv(block_mode=mode, image_size=size)
        obs, _ = env.reset(seed=1, options={"family": family})
        tiles.append(caption(obs["rgb"], (f"{mode} / {family}", (0, 0, 0)), (obs["instruction"][:52], (0, 0, 160))))
        env.close()
    rows = [np.concatenate(tiles[i:i + 2], axis=1) for i in range(0, len(tiles), 2)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    print(f"wrote {path}")


# --- ALOHA --------------------------------------------------------------------------------

def bench_aloha(args) -> list[str]:
    from sefm_sim.envs import aloha_scripted
    from sefm_sim.envs.aloha import TASKS, AlohaConfig, AlohaEnv

    lines = speed_report("aloha", args, TASKS, AlohaConfig().image_size,
                         lambda task, render: AlohaEnv(task=task, render_images=render))
    head = ["", f"## Scripted demonstrations ({args.episodes} seeded episodes per task, seeds 0..{args.episodes - 1})",
            "", "End-effector rollout (mocap-driven grippers) and its joint-space replay in the env the policy",
            "uses. Success = staged reward 4 reached within 400 steps (ACT's definition; with",
            "`terminate_on_success` the episode ends there). The fourth column: stage 4 still held after",
            "the 400th action. Wilson 95% intervals.", "",
            "| task | end-effector rollout | joint-space replay | replay, held at the end | seconds per demo |",
            "|---|---|---|---|---|"]
    emit(lines, *head)
    for task in TASKS:
        ee = replayed = held = 0
        start = time.perf_counter()
        for seed in range(args.episodes):
            demo = aloha_scripted.record(task, seed)
            best, final = aloha_scripted.replay(demo)
            ee += int(demo.ee_max_stage == 4)
            replayed += int(best == 4)
            held += int(final == 4)
        per_demo = (time.perf_counter() - start) / args.episodes
        n = args.episodes
        emit(lines, f"| {task} | {wilson(ee, n)} | {wilson(replayed, n)} | {wilson(held, n)} | {per_demo:.1f} |")
    return lines


def aloha_frames(path: str, size=(320, 240)) -> None:
    """The top camera during each task's scripted demo (seed 0), when it first reaches its best stage."""
    import cv2

    from sefm_sim.envs import aloha_scripted
    from sefm_sim.envs.aloha import TASKS, AlohaEnv

    tiles = []
    for task in TASKS:
        demo = aloha_scripted.record(task, 0)
        env = AlohaEnv(task=task, image_size=size, terminate_on_success=False)
        obs, _ = env.reset(seed=0)
        best, best_frame, best_step = -1, obs["rgb"], 0
        for step, action in enumerate(demo.actions, 1):
            obs, reward, _, _, _ = env.step(action)
            if reward > best:
                best, best_frame, best_step = int(reward), obs["rgb"], step
        tiles.append(caption(best_frame, (f"{task}: stage {best} at step {best_step}", (0, 0, 0))))
        env.close()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(np.concatenate(tiles, axis=1), cv2.COLOR_RGB2BGR))
    print(f"wrote {path}")


ENVS = {"language_table": bench_language_table, "aloha": bench_aloha}
FRAMES = {"language_table": language_table_frames, "aloha": aloha_frames}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["graph"]:   # the graph benchmark has its own options (sefm_experiments.bench_graph)
        from sefm_experiments import bench_graph

        return bench_graph.main(argv[1:])
    if argv[:1] == ["estop"]:   # the e-stop latency benchmark (sefm_experiments.bench_estop)
        from sefm_experiments import bench_estop

        return bench_estop.main(argv[1:])
    if argv[:1] == ["record"]:   # the recorder at ALOHA's rates (sefm_experiments.bench_record)
        from sefm_experiments import bench_record

        return bench_record.main(argv[1:])
    if argv[:1] == ["paper"]:   # the paper's experiments (sefm_experiments.bench_paper)
        from sefm_experiments import bench_paper

        return bench_paper.main(argv[1:])
    parser = argparse.ArgumentParser(prog="sefm bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    env = sub.add_parser("env", help="simulator speed and scripted-demonstrator success")
    env.add_argument("name", choices=sorted(ENVS), help="the simulator to time")
    env.add_argument("--episodes", type=int, default=50, help="seeded episodes per task family")
    env.add_argument("--speed-steps", type=int, default=1000, help="steps timed per speed row")
    env.add_argument("--markdown", help="also write the tables to this Markdown file")
    env.add_argument("--frames", help="only write a PNG of one rendered frame per task to this path")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.speed_steps < 1:
        parser.error("--episodes and --speed-steps must be positive")
    if args.frames:
        FRAMES[args.name](args.frames)
        return 0
    lines = ENVS[args.name](args)
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"\nwrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
