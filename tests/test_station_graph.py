"""The learning graph on the station layer, in one process, built from `sefm improve`'s own node list
(`sefm_bringup.graph.node_specs`): the same policy, reward node, trainer, safety gates and station managers over
(a) the simulated LanguageTable, (b) the simulated ALOHA on the Interbotix contract and (c) a fake driver that
implements only the vendor contract; only the profile (and the driver) changes. Then faults injected into a
running graph: none stops it."""
import dataclasses
import json
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from sefm_core import checkpoint
from sefm_core.data import EpisodeDataset
from sefm_core.model import EFM, ModelConfig
from sefm_ros.common import reliable

from fake_xs_sdk import FakeXsSdk
from helpers import tiny_checkpoint

pytestmark = pytest.mark.slow   # end-to-end graphs: `make test` runs them, `make test-fast` does not


def aloha_checkpoint(path):
    """A tiny ALOHA policy: 14 commands within sim_aloha's limits, 14 joint-state values."""
    from sefm_station.profiles import load_profile

    command = load_profile("sim_aloha").command
    return checkpoint.save(EFM(ModelConfig(channels=16, hidden=32, proprio_dim=14, action_low=command.lower,
                                           action_high=command.upper)), path)


class Graph:
    """node_specs(cfg) as nodes on one executor (as `sefm improve --processes single` runs them), with a probe
    node for the test. `fake_driver` (with `drivers: external`): each station's driver is the test's FakeXsSdk."""

    def __init__(self, cfg, fake_driver: bool = False, **manager):
        from sefm_bringup.graph import node_class, node_specs

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        specs = []
        for spec in node_specs(cfg):
            if spec.executable == "station_manager" and manager:
                spec = dataclasses.replace(spec, params=dataclasses.replace(spec.params, **manager))
            specs.append(spec)
        self.nodes = [node_class(s)(namespace=s.namespace, context=self.context, **dataclasses.asdict(s.params))
                      for s in specs]
        self.by_name = {s.full_name: n for s, n in zip(specs, self.nodes)}
        if fake_driver:
            self.nodes += [FakeXsSdk(f"/{name}", self.context) for name in cfg.station_names()]
        self.probe = rclpy.create_node("probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        for node in self.nodes + [self.probe]:
            self.executor.add_node(node)

    def spin_until(self, predicate, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)   # a callback that raises fails the test here
            if predicate():
                return True
        return False

    def close(self):
        self.executor.shutdown()
        for node in self.nodes + [self.probe]:
            node.destroy_node()
        rclpy.shutdown(context=self.context)


def config(tmp_path, ckpt, **fields):
    from sefm_bringup.graph import load_config

    return load_config(None, {"checkpoint": str(ckpt), "run_dir": str(tmp_path / "run"), "stations": 1,
                              "image_width": 64, "image_height": 36, "max_steps": 6, "success_threshold": -1.0,
                              "reinforce.episodes_per_batch": 2, "versions": 1, **fields})


@pytest.mark.parametrize("robot", ["sim_language_table", "sim_aloha", "fake_xs_sdk"])
def test_the_same_learning_graph_runs_over_each_driver(tmp_path, robot):
    if robot == "sim_language_table":
        tiny_checkpoint(ckpt := tmp_path / "stage1", 0)
        cfg = config(tmp_path, ckpt, families="point2block")
    else:
        aloha_checkpoint(ckpt := tmp_path / "stage1")
        cfg = config(tmp_path, ckpt, env="aloha", mode="realtime", image_width=128, image_height=96,
                     **({"drivers": "external", "profile": "sim_aloha"} if robot == "fake_xs_sdk" else {}))
    # the fake driver has no sim/reset: the episodes follow one another (resets: none)
    graph = Graph(cfg, fake_driver=robot == "fake_xs_sdk", **({"resets": "none"} if robot == "fake_xs_sdk" else {}))
    try:
        trainer = graph.by_name["/trainer"]
        assert graph.spin_until(lambda: trainer.version >= 1, 180), "no policy version from the graph"
        gate = graph.by_name["/station_0/safety_gate"].gate
        assert gate.counts["passed"] >= 10 and gate.counts["non_finite"] == 0, dict(gate.counts)
        if robot == "fake_xs_sdk":
            fake = graph.nodes[-1]
            assert fake.commands >= 10   # the policy's targets reached the vendor contract's joint_group topic
            assert np.any(fake.arms["follower_left"][:6] != 0.0)
    finally:
        graph.close()
    stored = list(EpisodeDataset(tmp_path / "run" / "episodes"))
    assert len(stored) >= 2 and all(len(ep.rewards) > 0 for ep in stored)
    assert {ep.metadata["station"] for ep in stored} == {"station_0"}


def test_bad_frames_states_and_commands_injected_into_a_running_graph_stop_nothing(tmp_path):
    """A 0x0 frame, a frame of the wrong size, a 3-value joint state and NaNs on the learning topics, and NaN or
    wrong-length commands for the gate: the policy and reward nodes log and go on, the gate refuses and counts,
    the lockstep station does not stall, and the episodes keep coming."""
    tiny_checkpoint(ckpt := tmp_path / "stage1", 0)
    cfg = config(tmp_path, ckpt, families="point2block", versions=1000, max_steps=4)
    graph = Graph(cfg)
    try:
        manager = graph.by_name["/station_0/station_manager"]
        assert graph.spin_until(lambda: manager.episodes is not None and manager.episodes.episodes_done >= 1, 60)
        image = graph.probe.create_publisher(Image, "/station_0/camera/image_raw", reliable(2))
        state = graph.probe.create_publisher(JointState, "/station_0/joint_states", reliable(10))
        command = graph.probe.create_publisher(JointState, "/station_0/joint_command", reliable(10))
        graph.spin_until(lambda: False, 0.5)   # matched
        stamp = graph.probe.get_clock().now().to_msg()
        bad_images = [Image(height=0, width=0, encoding="rgb8", step=0, data=b""),
                      Image(height=7, width=5, encoding="rgb8", step=15, data=bytes(105)),
                      Image(height=36, width=64, encoding="mono16", step=128, data=bytes(36 * 128))]
        for msg in bad_images:
            msg.header.stamp = stamp
            image.publish(msg)
        for positions in ([0.1, 0.2, 0.3], [float("nan")] * 4):
            msg = JointState(name=["effector_x", "effector_y", "target_x", "target_y"][:len(positions)],
                             position=positions)
            msg.header.stamp = stamp
            state.publish(msg)
        before = manager.episodes.episodes_done
        gate = graph.by_name["/station_0/safety_gate"].gate
        for positions in ([float("nan"), 0.0], [0.01, 0.02, 0.03], [float("inf"), 1.0]):
            msg = JointState(name=[], position=positions)
            msg.header.stamp = graph.probe.get_clock().now().to_msg()   # "answers" the current observation
            command.publish(msg)
        assert graph.spin_until(lambda: manager.episodes.episodes_done >= before + 3, 60), \
            f"the station stalled: {manager.episodes.message}"
        assert gate.counts["non_finite"] == 2 and gate.counts["length"] == 1, dict(gate.counts)
        assert not manager.episodes.fault
    finally:
        graph.close()


def test_the_gate_holds_within_the_watchdog_time_when_the_policy_dies(tmp_path):
    """Real time: the policy node disappears mid-episode; the safety gate sends the hold (a zero delta) within
    the profile's watchdog time plus one control period, and nothing else after it."""
    from geometry_msgs.msg import TwistStamped

    tiny_checkpoint(ckpt := tmp_path / "stage1", 0)
    cfg = config(tmp_path, ckpt, families="point2block", mode="realtime", max_steps=200, versions=1000)
    graph = Graph(cfg)
    deltas = []
    graph.probe.create_subscription(TwistStamped, "/station_0/driver/commands/effector_delta",
                                    lambda m: deltas.append((time.monotonic(), m.twist.linear.x, m.twist.linear.y)),
                                    reliable(10))
    try:
        gate_node = graph.by_name["/station_0/safety_gate"]
        assert graph.spin_until(lambda: gate_node.gate is not None and gate_node.gate.counts["passed"] >= 5, 60)
        policy = graph.by_name["/policy"]
        graph.executor.remove_node(policy)
        policy.destroy_node()
        graph.nodes.remove(policy)
        killed = time.monotonic()
        watchdog = gate_node.profile.control.watchdog_timeout
        assert graph.spin_until(lambda: gate_node.gate.counts["watchdog"] >= 1, 5 * watchdog)
        graph.spin_until(lambda: False, 0.5)
        held = [d for d in deltas if d[0] > killed]
        assert held and held[-1][1:] == (0.0, 0.0), held   # the hold: a zero delta
        assert held[-1][0] - killed <= watchdog + 1.0 / gate_node.profile.control.rate_hz + 0.1, held[-1][0] - killed
        assert len([d for d in held if d[1:] != (0.0, 0.0)]) <= 1   # at most one command already in flight
    finally:
        graph.close()
