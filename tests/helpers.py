"""What the tests share: a test-side driver node, real node processes on a private namespace, tiny checkpoints."""
import subprocess
import sys
import time
import uuid

import rclpy
import torch
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState

from sefm_core import checkpoint
from sefm_core.model import EFM, ModelConfig
from sefm_interfaces.msg import EpisodeEvent, EpisodeStep, EStop, StationStatus, Task

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Spinning:
    """A test's side of the graph: spin `self.executor` until a predicate holds, call services on `self.node`."""
    poll = 0.05   # s per spin

    def spin_until(self, predicate, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=self.poll)
        return predicate()

    def spin_for(self, seconds):
        self.spin_until(lambda: False, seconds)

    def call(self, srv_type, name, **fields):
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(srv_type.Request(**fields))
        self.executor.spin_until_future_complete(future, timeout_sec=10)
        return future.result()


class Driver(Spinning):
    """The test's side of the graph: records what the bridge publishes and sends commands."""

    def __init__(self, namespace: str, estop_topic: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"driver_{uuid.uuid4().hex[:6]}", namespace=namespace, context=self.context)
        self.images, self.states, self.tasks, self.events, self.status, self.steps = [], [], [], [], [], []
        self.node.create_subscription(EpisodeStep, "episode_step", self.steps.append, RELIABLE)
        self.node.create_subscription(Image, "camera/image_raw", self.images.append, RELIABLE)
        self.node.create_subscription(JointState, "joint_states", self.states.append, RELIABLE)
        self.node.create_subscription(Task, "task", self.tasks.append, LATCHED)
        self.node.create_subscription(EpisodeEvent, "episode_event", self.events.append, RELIABLE)
        self.node.create_subscription(StationStatus, "status", self.status.append, RELIABLE)
        self.command = self.node.create_publisher(JointState, "joint_command", RELIABLE)
        self.estop = self.node.create_publisher(EStop, estop_topic, LATCHED)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def observations(self):
        """Joint states by stamp, first arrival kept: a waiting lockstep bridge re-sends the current one."""
        seen = {}
        for msg in self.states:
            seen.setdefault((msg.header.stamp.sec, msg.header.stamp.nanosec), msg)
        return list(seen.values())


    def send(self, values, stamp):
        msg = JointState(name=["delta_x", "delta_y"], position=[float(v) for v in values])
        msg.header.stamp = stamp
        self.command.publish(msg)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def launch(*params, estop=None):
    namespace = f"/station_{uuid.uuid4().hex[:6]}"
    estop = estop or f"/estop_{uuid.uuid4().hex[:6]}"  # a private e-stop topic: parallel runs never halt each other
    args = [a for p in ("image_width:=64", "image_height:=36", "families:=block2block", "seed:=3") + params
            for a in ("-p", p)]
    proc = subprocess.Popen([sys.executable, "-m", "sefm_sim_bridge.bridge_node", "--ros-args",
                             "-r", f"__ns:={namespace}", "-r", f"/estop:={estop}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Driver(namespace, estop), proc


def stop(driver, proc):
    driver.close()
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def tiny_checkpoint(path, seed):
    torch.manual_seed(seed)
    return checkpoint.save(EFM(ModelConfig(backbone="pretrained", channels=16, hidden=32)), path, {"step": seed})


def station_with_node(module: str, node_params: dict, max_steps: int, families: str = "point2block",
                      remap: tuple[str, ...] = ()):
    """A bridge station in its own namespace and one SEFM node (`module`) serving it, both real processes;
    returns (driver, bridge process, node process). The node's output is piped for the failure message."""
    ns = f"station_{uuid.uuid4().hex[:6]}"
    estop = f"/estop_{uuid.uuid4().hex[:6]}"
    bridge = subprocess.Popen([sys.executable, "-m", "sefm_sim_bridge.bridge_node", "--ros-args",
                               "-r", f"__ns:=/{ns}", "-r", f"/estop:={estop}", "-p", "image_width:=64",
                               "-p", "image_height:=36", "-p", f"max_steps:={max_steps}", "-p", f"families:={families}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # (no lifecycle manager here: the node configures and activates itself)
    params = [x for k, v in {"stations": ns, "autostart": "true", **node_params}.items() for x in ("-p", f"{k}:={v}")]
    node = subprocess.Popen([sys.executable, "-m", module, "--ros-args", *[x for r in remap for x in ("-r", r)],
                             *params], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Driver(f"/{ns}", estop), bridge, node


def spawn(module, *args):
    return subprocess.Popen([sys.executable, "-m", module, "--ros-args", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def fail_with_output(procs):
    """Stop the node processes and fail with the tail of each one's output."""
    for p in procs:
        p.terminate()
    raise AssertionError("\n".join((p.stdout.read() or "")[-1500:] for p in procs))


class Stage2Graph:
    """Stage 2's nodes as real processes on a private graph: a station namespace, e-stop and policy-version topic of
    their own, every node started from one tiny stage-1 checkpoint (tmp_path/stage1); the trainer runs in
    tmp_path/run. Each method starts one more process."""

    def __init__(self, tmp_path):
        self.checkpoint, self.run_dir = tmp_path / "stage1", tmp_path / "run"
        tiny_checkpoint(self.checkpoint, 0)
        self.ns = f"station_{uuid.uuid4().hex[:6]}"
        self.estop, self.version_topic = f"/estop_{uuid.uuid4().hex[:6]}", f"/policy_version_{uuid.uuid4().hex[:6]}"
        self.remap = ["-r", f"/policy/version:={self.version_topic}"]

    def _serving(self):
        # (no lifecycle manager here: each node configures and activates itself)
        return ("-p", f"checkpoint:={self.checkpoint}", "-p", f"stations:={self.ns}", "-p", "autostart:=true")

    def bridge(self, max_steps: int):
        """The station (block2block, 64x36 images): it starts its first episode once 4 subscribers listen."""
        return spawn("sefm_sim_bridge.bridge_node", "-r", f"__ns:=/{self.ns}", "-r", f"/estop:={self.estop}",
                     "-p", "image_width:=64", "-p", "image_height:=36", "-p", f"max_steps:={max_steps}",
                     "-p", "families:=block2block", "-p", "min_subscribers:=4")

    def policy(self):
        return spawn("sefm_policy.policy_node", *self.remap, *self._serving())

    def reward(self):
        """The reward node, its detector never firing (threshold -1)."""
        return spawn("sefm_reward.reward_node", *self._serving(), "-p", "success_threshold:=-1.0")

    def trainer(self, **params):
        """The trainer, with `params` (e.g. episodes_per_batch=2) after its checkpoint, stations and run folder."""
        return spawn("sefm_trainer.trainer_node", *self.remap, *self._serving(), "-p", f"run_dir:={self.run_dir}",
                     *[a for k, v in params.items() for a in ("-p", f"{k}:={v}")])

    def driver(self):
        return Driver(f"/{self.ns}", self.estop)
