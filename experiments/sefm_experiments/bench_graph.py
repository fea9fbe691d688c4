"""`sefm bench graph`: what the ROS 2 graph costs, against the same computation in a bare loop.

    sefm bench graph [--checkpoint runs/sft/checkpoints/final] [--stations 1,2,4] [--steps 100]

Per step, both run the same work: every station's env step and camera render
(lockstep LanguageTable), one batched policy forward pass (sampled action,
the policy node's `act`), and one batched steps-to-go forward pass (the reward
node's). The graph does it with real nodes on DDS in one process, as `sefm
improve` runs them (per station the lockstep simulated driver, the safety
gate and the station manager; the policy and reward nodes; the e-stop latch
and the lifecycle manager, on one executor); the bare loop calls the same
objects directly. Both are measured in the same run, alternately, after a
warm-up.

  steps/s  aggregate env steps per second over all stations
  latency  observation -> its command: graph, the command's arrival at the
           safety gate minus the observation's stamp; bare loop, the
           action's computation minus the observation's creation; and
           observation -> its score (the reward node's steps_to_go) on the
           graph (p50 / p99)

Without --checkpoint the default model (pretrained towers, untrained heads)
is built: speed does not depend on the weights. The trainer is not part of
either side (its REINFORCE update runs between batches, not per step).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np

from sefm_experiments.bench import emit, machine_line
from sefm_bringup.graph import ImproveConfig


def default_checkpoint(directory: str) -> str:
    from sefm_core import checkpoint
    from sefm_core.model import EFM, ModelConfig

    path = f"{directory}/untrained"
    checkpoint.save(EFM(ModelConfig()), path)   # the LanguageTable default: pretrained towers, 2-d actions
    return path


def bare_loop(checkpoint_dir: str, stations: int, steps: int, warmup: int, image_size) -> tuple[float, np.ndarray]:
    """The stations' envs stepped in lockstep by `sefm_sim.rollout` with the same per-step work as the graph:
    one batched policy pass (sampled), one batched steps-to-go pass; an ended episode restarts at once, on the
    station's next seed. Returns (env steps per second after the warm-up, observation -> action latencies)."""
    import torch

    from sefm_core import checkpoint
    from sefm_core import episode_rules as rules
    from sefm_sim.rollout import Lockstep
    from sefm_sim.station import Station, StationConfig, language_table_proprio

    policy, _ = checkpoint.load(checkpoint_dir)
    reward, _ = checkpoint.load(checkpoint_dir)
    policy.eval()
    reward.eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    # the stations' practice seeds, as the graph run of the same benchmark uses them
    starts = ImproveConfig(stations=stations).station_seeds()
    config = StationConfig(image_width=image_size[0], image_height=image_size[1])
    fleet = [Station(config, seed) for seed in starts]
    born = [0.0] * stations   # when each station's current observation was made
    latencies, clock = [], {"steps": 0, "start": None}

    def act(observations):
        if clock["steps"] == warmup:
            clock["start"] = time.perf_counter()
            latencies.clear()
        clock["steps"] += 1
        images = torch.from_numpy(np.stack([obs["rgb"] for obs in observations]))
        proprio = torch.from_numpy(np.stack([language_table_proprio(obs) for obs in observations]))
        texts = [obs["instruction"] for obs in observations]
        with torch.no_grad():
            _, actions, _, _ = policy.act(images, texts, proprio, greedy=False, generator=generator)
        acted = time.perf_counter()
        latencies.extend(acted - b for b in born)
        reward.steps_to_go(images, texts, proprio)   # the reward node's pass: work only, nothing ends on it
        return np.clip(actions, -0.1, 0.1)

    run = Lockstep([_Clocked(s.env, born, i) for i, s in enumerate(fleet)], act,
                   end=lambda env, ep: rules.end_after_action(ep.steps, config.max_steps, ep.success, True))
    episodes = [0] * stations
    for i, seed in enumerate(starts):
        run.start(i, seed)
    for _ in range(warmup + steps):
        for ep in run.step():   # a station starts its next episode at once, on its next seed
            episodes[ep.env] += 1
            run.start(ep.env, starts[ep.env] + episodes[ep.env])
    elapsed = time.perf_counter() - clock["start"]
    for s in fleet:
        s.close()
    return steps * stations / elapsed, np.array(latencies)


class _Clocked:
    """An env that notes when each of its observations was made (the bare loop's latency clock)."""

    def __init__(self, env, born: list[float], index: int):
        self.env, self.born, self.index = env, born, index

    def reset(self, **kwargs):
        out = self.env.reset(**kwargs)
        self.born[self.index] = time.perf_counter()
        return out

    def step(self, action):
        out = self.env.step(action)
        self.born[self.index] = time.perf_counter()
        return out


def graph_run(checkpoint_dir: str, stations: int, steps: int, warmup: int, image_size,
              batch_wait: float = ImproveConfig.batch_wait,
              executor_kind: str = "single") -> tuple[float, np.ndarray, np.ndarray]:
    """`sefm improve`'s graph without the trainer (node_specs: per station the simulated driver, the safety gate
    and the station manager; the policy, the reward node, the e-stop latch, the lifecycle manager). Returns
    (env steps per second, observation -> command latencies at the gate, observation -> score latencies)."""
    from dataclasses import asdict, replace

    import rclpy
    from sensor_msgs.msg import JointState

    from sefm_bringup.graph import make_executor, node_class, node_specs
    from sefm_interfaces.msg import StepsToGo
    from sefm_ros.common import ns_of, reliable

    # episodes end as in the bare loop: the simulator's success or the step cap
    cfg = ImproveConfig(checkpoint=checkpoint_dir, stations=stations, image_width=image_size[0],
                        image_height=image_size[1], batch_wait=batch_wait, success_threshold=-1.0,
                        sim_success_ends=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    specs = [s for s in node_specs(cfg) if s.executable != "trainer"]
    manager = specs[-1]   # the lifecycle manager: everything but the trainer
    specs[-1] = replace(manager, params=replace(manager.params, nodes=",".join(
        n for n in manager.params.node_list() if n != "/trainer")))
    nodes = [node_class(s)(namespace=s.namespace, context=context, **asdict(s.params)) for s in specs]
    probe = rclpy.create_node("bench_probe", context=context)
    latencies, scored, count = [], [], [0]

    def on_command(msg):
        latencies.append(probe.get_clock().now().nanoseconds - ns_of(msg.header.stamp))
        count[0] += 1

    def on_score(msg):
        scored.append(probe.get_clock().now().nanoseconds - ns_of(msg.observation_stamp))

    for s in cfg.station_names():
        probe.create_subscription(JointState, f"/{s}/joint_command", on_command, reliable(10))
        probe.create_subscription(StepsToGo, f"/{s}/steps_to_go", on_score, reliable(50))
    executor = make_executor(executor_kind, context)
    for node in nodes + [probe]:
        executor.add_node(node)
    try:
        start = None
        while count[0] < (warmup + steps) * stations:
            executor.spin_once(timeout_sec=0.05)
            if start is None and count[0] >= warmup * stations:
                start, first = time.perf_counter(), count[0]
                latencies.clear()
                scored.clear()
        elapsed = time.perf_counter() - start
        rate = (count[0] - first) / elapsed
    finally:
        executor.shutdown()
        for node in nodes + [probe]:
            node.destroy_node()
        rclpy.shutdown(context=context)
    return rate, np.array(latencies) * 1e-9, np.array(scored) * 1e-9


def percentiles(seconds: np.ndarray) -> str:
    return f"{1e3 * np.percentile(seconds, 50):.1f} / {1e3 * np.percentile(seconds, 99):.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sefm bench graph", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="Stage-1 checkpoint (default: the default model, untrained heads)")
    parser.add_argument("--stations", default="1,2,4", help="comma-separated fleet sizes to time")
    parser.add_argument("--steps", type=int, default=100, help="measured steps per station")
    parser.add_argument("--warmup", type=int, default=10, help="steps per station before measuring")
    parser.add_argument("--image-size", default="128x72", help="camera image size, WxH")
    parser.add_argument("--executor", choices=["single", "events"], default="single",
                        help="graph: rclpy's SingleThreadedExecutor or the experimental EventsExecutor")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternate bare and graph runs this many times; the median pair is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    parser.add_argument("--batch-wait", type=float, default=ImproveConfig.batch_wait,
                        help="graph: seconds the policy and reward nodes wait for the other stations' frames "
                             "(0: the lockstep default of `sefm improve`)")
    parser.add_argument("--markdown", help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    counts = [int(n) for n in args.stations.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or default_checkpoint(tmp)
        lines: list[str] = []
        emit(lines, "# The graph against a bare loop (lockstep LanguageTable)", "",
             f"`sefm bench graph --stations {args.stations} --steps {args.steps} --repeats {args.repeats} "
             f"--executor {args.executor}"
             f"{' --checkpoint ' + args.checkpoint if args.checkpoint else ''}`; {machine_line()}; "
             f"images {width}x{height}; torch threads {args.threads}; executor {args.executor}; "
             f"batch wait {1e3 * ImproveConfig(batch_wait=args.batch_wait).node_batch_wait():g} ms; "
             f"model: {'the checkpoint' if args.checkpoint else 'default (pretrained towers), untrained heads'}.",
             "Latency: observation -> its command (policy) and -> its score (reward node), p50 / p99 in ms, "
             "against LanguageTable's 100 ms control period.",
             "", "| stations | bare steps/s | graph steps/s | ratio graph/bare (range) | bare policy latency "
             "| graph policy latency | graph reward latency |", "|---|---|---|---|---|---|---|")
        for n in counts:
            # Alternate the two sides `repeats` times: a shared machine's speed drifts within minutes,
            # so each graph run is compared with the bare run just before it, and the median pair is shown.
            pairs, bare_lat, graph_lat, reward_lat = [], [], [], []
            for _ in range(args.repeats):
                bare_rate, lat = bare_loop(ckpt, n, args.steps, args.warmup, (width, height))
                bare_lat.append(lat)
                graph_rate, lat, score_lat = graph_run(ckpt, n, args.steps, args.warmup, (width, height),
                                                       args.batch_wait, args.executor)
                graph_lat.append(lat)
                reward_lat.append(score_lat)
                pairs.append((graph_rate / bare_rate, bare_rate, graph_rate))
            ratio, bare_rate, graph_rate = sorted(pairs)[len(pairs) // 2]
            spread = f" ({min(pairs)[0]:.2f}-{max(pairs)[0]:.2f})" if len(pairs) > 1 else ""
            emit(lines, f"| {n} | {bare_rate:.1f} | {graph_rate:.1f} | {ratio:.2f}{spread} | "
                 + " | ".join(percentiles(np.concatenate(lat)) for lat in (bare_lat, graph_lat, reward_lat)) + " |")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
