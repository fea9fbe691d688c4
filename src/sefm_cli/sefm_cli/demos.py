"""`sefm demos`: the scripted oracle teleoperates N sim stations through the ROS graph; a recorder makes the bag.

    sefm demos bags/demo_session --episodes 20 --stations 2 --families block2block [--storage sqlite3] [--compression zstd --image-format jpeg]

The sim data-collection path, built like a real one: each station is a sim
bridge node; a teleoperator node per station answers every observation with
a command on `joint_command` (the oracle stands in for a human who sees the
table: it reads the simulator's true block positions); the recorder node runs
as its own process and writes the bag. After the success the teleoperator
keeps still for `--settle-steps` commands, so demos end with resting states at
the goal, as `sefm collect` writes them. Import the bag with `sefm bag import`.
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from sefm_core import seeds

SETTLE_STEPS = 3   # the same resting states as `sefm collect` (HOLD_STEPS)


def make_oracle_teleop(bridge, context, quota: int, noise: float, seed: int):
    """A teleoperator node for one sim station: the oracle's command for every new observation, until `quota`
    episodes have ended. It shares the process with the bridge because the oracle needs the true scene."""
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Header

    from sefm_interfaces.msg import EpisodeEvent, Task
    from sefm_ros.common import LATCHED, reliable
    from sefm_sim.envs.lt_oracle import OrientedPushOracle

    ns = bridge.get_namespace()
    node = Node("oracle_teleop", namespace=ns, context=context)
    oracle = OrientedPushOracle(noise_std=noise, rng=np.random.default_rng(seed))
    command_pub = node.create_publisher(JointState, "joint_command", reliable(10))
    node.ended = 0
    answered = set()

    def on_task(_msg: Task) -> None:
        oracle.reset()

    recorded = set()   # observation stamps the recorder has acknowledged
    states = {}        # observation stamp -> its joint state, until answered

    def on_recorded(msg: Header) -> None:
        key = (msg.stamp.sec, msg.stamp.nanosec)
        recorded.add(key)
        if key in states:
            on_state(states[key])

    def on_state(msg: JointState) -> None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if node.ended >= quota or key in answered:
            return
        if key not in recorded:   # the teleoperator waits until the observation is in the bag: nothing is lost
            states[key] = msg
            return
        answered.add(key)
        states.pop(key, None)
        recorded.discard(key)
        station = bridge.station
        if station.info.get("success"):
            action = np.zeros(2)          # the goal holds: rest there
        else:
            action = oracle.act(station.env.state(), station.env.goal)
        command = JointState(name=list(station.command_names), position=[float(v) for v in action])
        command.header.stamp = msg.header.stamp   # the observation this command answers
        command_pub.publish(command)

    def on_event(msg: EpisodeEvent) -> None:
        if msg.event == EpisodeEvent.END:
            node.ended += 1

    node.create_subscription(Task, "task", on_task, LATCHED)
    node.create_subscription(JointState, "joint_states", on_state, reliable(10))
    node.create_subscription(Header, "recorded", on_recorded, reliable(50))
    node.create_subscription(EpisodeEvent, "episode_event", on_event, reliable(50))
    return node


# The recorder settings `sefm demos` passes on (flags derived from RecorderParams)
RECORDING = ("storage", "compression", "image_format", "jpeg_quality", "segment_seconds")


def record_demos(out: str, episodes: int, stations: int = 1, recording: dict | None = None, families: str = "",
                 block_mode: str = "BLOCK_4", seed: int | None = None, noise: float = 0.0, image_size=(128, 72),
                 settle_steps: int = SETTLE_STEPS, max_steps: int = 200, log=print) -> dict:
    """Run the graph until `episodes` episodes have ended (split over the stations); returns their outcomes.
    Station i resets from its own block of the seed plan's train_demos range (`seed` moves station 0's start)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from sefm_bags.importer import OUTCOMES
    from sefm_bags.params import RecorderParams
    from sefm_bringup.graph import terminate
    from sefm_ros.parameters import params_file
    from sefm_interfaces.msg import EpisodeEvent
    from sefm_ros.common import reliable
    from sefm_sim_bridge.bridge_node import BridgeNode

    names = [f"station_{i}" for i in range(stations)]
    # the recorder is its own process (a crash there never takes the stations down), configured by params file
    params = params_file(pathlib.Path(tempfile.mkdtemp(prefix="sefm_demos_")) / "recorder.yaml",
                         {"/recorder": RecorderParams(output=out, stations=",".join(names), **(recording or {}))})
    recorder = subprocess.Popen([sys.executable, "-m", "sefm_bags.recorder_node", "--ros-args",
                                 "--params-file", str(params)])
    context = rclpy.Context()
    rclpy.init(context=context)
    quotas = [episodes // stations + (1 if i < episodes % stations else 0) for i in range(stations)]
    starts = seeds.station_seeds("train_demos", stations, max(quotas), seed)
    bridges, teleops = [], []
    outcomes: dict[str, int] = {}
    executor = SingleThreadedExecutor(context=context)
    try:
        for i, name in enumerate(names):
            bridge = BridgeNode(namespace=f"/{name}", context=context, env="language_table", block_mode=block_mode,
                                families=families, image_width=image_size[0], image_height=image_size[1],
                                max_steps=max_steps, seed=starts[i], settle_steps=settle_steps,
                                min_subscribers=1,   # the recorder (the teleoperator, in this process, exists already)
                                min_ground_truth_subscribers=1)
            bridges.append(bridge)
            teleops.append(make_oracle_teleop(bridge, context, quotas[i], noise, starts[i]))
        watcher = rclpy.create_node("demos_progress", context=context)
        def on_event(msg):
            if msg.event == EpisodeEvent.END:
                key = OUTCOMES.get(msg.outcome, str(msg.outcome))
                outcomes[key] = outcomes.get(key, 0) + 1

        for name in names:
            watcher.create_subscription(EpisodeEvent, f"/{name}/episode_event", on_event, reliable(50))
        for node in bridges + teleops + [watcher]:
            executor.add_node(node)
        start, last_log = time.monotonic(), 0.0
        while any(t.ended < q for t, q in zip(teleops, quotas)):
            if recorder.poll() is not None:
                raise RuntimeError(f"the recorder exited with code {recorder.returncode}; see its log above")
            executor.spin_once(timeout_sec=0.05)
            if time.monotonic() - last_log > 5.0:
                done = sum(min(t.ended, q) for t, q in zip(teleops, quotas))
                log(f"  {done}/{episodes} episodes recorded, {time.monotonic() - start:.0f} s")
                last_log = time.monotonic()
        for bridge in bridges:   # stop the stations before the recorder, so the bag ends cleanly
            executor.remove_node(bridge)
            bridge.destroy_node()
        end = time.monotonic() + 1.0   # the recorder receives what is still in flight
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    finally:
        recorder.send_signal(2)   # SIGINT: the recorder closes the bag
        terminate([recorder], grace=20.0)
        executor.shutdown()
        rclpy.try_shutdown(context=context)
    log(f"{out}: {episodes} episodes ({', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))}) "
        f"in {time.monotonic() - start:.0f} s")
    return outcomes


def main(argv=None) -> int:
    from sefm_bags.params import RecorderParams
    from sefm_cli.scene_flags import add_scene_flags, at_least
    from sefm_core.config import add_flags

    parser = argparse.ArgumentParser(prog="sefm demos", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="bag folder to create")
    parser.add_argument("--episodes", type=at_least(1), default=20, help="episodes to record, split over the stations")
    parser.add_argument("--stations", type=at_least(1), default=1, help="simulated stations recording at once")
    add_flags(parser, RecorderParams, skip=tuple(f.name for f in dataclasses.fields(RecorderParams)
                                                 if f.name not in RECORDING))
    add_scene_flags(parser)
    parser.add_argument("--seed", type=int, default=None,
                        help="first reset seed of station 0 (default: the seed plan's train_demos start; station i "
                             "starts one block later, sefm_core.seeds)")
    parser.add_argument("--noise", type=float, default=0.0, help="oracle action noise (std, m)")
    parser.add_argument("--settle-steps", type=at_least(0), default=SETTLE_STEPS,
                        help="commands the teleoperator rests at the goal after the success (resting frames)")
    parser.add_argument("--max-steps", type=at_least(1), default=200, help="step cap of an episode")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.stations < 1:
        parser.error("--episodes and --stations must be at least 1")
    width, height = args.image_size
    quota = -(-args.episodes // args.stations)
    try:
        seeds.station_seeds("train_demos", args.stations, quota, args.seed)
    except seeds.SeedPlanError as exc:
        parser.error(str(exc))
    recording = {name: getattr(args, name) for name in RECORDING if getattr(args, name) is not None}
    record_demos(args.out, args.episodes, args.stations, recording, args.families, args.block_mode, args.seed,
                 args.noise, (width, height), args.settle_steps, args.max_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
