"""QoS profiles, stamps, image conversion and the per-station observation join."""
from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
import rclpy.executors
from rclpy._rclpy_pybind11 import RCLError
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from sefm_interfaces.msg import EpisodeEvent, EpisodeStep, Task
from sefm_ros.dds import apply_localhost_defaults

# Deliberate QoS (ARCHITECTURE.md): everything reliable; latched topics keep their last message for late joiners.
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# `task` and `episode_event` keep their recent history for late joiners: a node that was busy or restarted
# still learns which episodes ran, so every episode leaves a record.
EPISODES = QoSProfile(depth=32, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# `episode_event` carries a START and an END per episode: twice the depth holds the same 32 episodes
EPISODE_EVENTS = QoSProfile(depth=64, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
ENCODINGS = ("rgb8", "bgr8")


def reliable(depth: int) -> QoSProfile:
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def stamp_key(stamp) -> tuple[int, int]:
    return (stamp.sec, stamp.nanosec)


def ns_of(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def time_of(ns_or_key) -> Time:
    if isinstance(ns_or_key, tuple):
        return Time(sec=ns_or_key[0], nanosec=ns_or_key[1])
    return Time(sec=ns_or_key // 1_000_000_000, nanosec=ns_or_key % 1_000_000_000)


def image_to_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB; a clear error for anything else."""
    if msg.encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; the nodes take {', '.join(ENCODINGS)}")
    if msg.width == 0 or msg.height == 0:
        raise ValueError(f"empty {msg.width}x{msg.height} image")
    if len(msg.data) != msg.height * msg.step or msg.step < msg.width * 3:
        raise ValueError(f"image data of {len(msg.data)} bytes does not match {msg.height} rows x step {msg.step}")
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    rgb = rows[:, :msg.width * 3].reshape(msg.height, msg.width, 3)
    return rgb[..., ::-1].copy() if msg.encoding == "bgr8" else rgb


class StationObservations:
    """One station's recent observations, joined exactly by header stamp: a camera frame, a joint state and the
    station's `episode_step` (which episode and step the observation belongs to), plus the tasks of its episodes.

    An observation is handed out only once all three parts and its episode's task have arrived, and always
    under the episode its `episode_step` names: no node acts on, or scores, an observation under the previous
    episode's task because the new task came late.
    """

    def __init__(self, name: str, keep: int = 8):
        self.name, self.keep = name, keep
        self.images: dict[tuple[int, int], np.ndarray] = {}
        self.states: dict[tuple[int, int], np.ndarray] = {}
        self.steps: dict[tuple[int, int], tuple[int, int]] = {}   # stamp -> (episode id, step)
        self.tasks: dict[int, Task] = {}                          # episode id -> its task
        self.done: set[tuple[int, int]] = set()
        self.first_seen = 0.0   # when the oldest observation not handled yet arrived (0: none waiting)
        self.expecting = False  # its last observation was handled and its episode goes on: another will come
        self.ended_episodes: set[int] = set()   # episodes whose END came: no observation after their last
        self._pending: list | None = None   # pending(), until the next change (it is asked many times a step)

    def add_image(self, msg: Image) -> None:
        self.images[stamp_key(msg.header.stamp)] = image_to_array(msg)
        _trim(self.images, self.keep)
        self.first_seen = self.first_seen or time.monotonic()
        self._pending = None

    def add_state(self, msg) -> None:
        position = np.asarray(msg.position, dtype=np.float32)
        if not np.all(np.isfinite(position)):
            raise ValueError(f"joint_states with non-finite positions {position.tolist()}")
        self.states[stamp_key(msg.header.stamp)] = position
        _trim(self.states, self.keep)
        self._pending = None

    def add_step(self, msg: EpisodeStep) -> None:
        self.steps[stamp_key(msg.header.stamp)] = (msg.episode_id, msg.step)
        _trim(self.steps, self.keep)
        self._pending = None

    def add_task(self, msg: Task) -> None:
        self.tasks[msg.episode_id] = msg
        for old in sorted(self.tasks)[:-self.keep]:
            del self.tasks[old]
        self._pending = None

    def pending(self) -> list[tuple[int, int]]:
        """Stamps of complete observations (frame, state, episode step and that episode's task) not handled
        yet, oldest first."""
        if self._pending is None:
            keys = set(self.images) & set(self.states) & set(self.steps) - self.done
            self._pending = sorted(k for k in keys if self.steps[k][0] in self.tasks)
        return self._pending

    def ended(self, msg: EpisodeEvent) -> None:
        """An episode's END: its last observation has come, the next one waits for a reset."""
        if msg.event == EpisodeEvent.END:
            self.ended_episodes.add(msg.episode_id)
            if len(self.ended_episodes) > 4 * self.keep:
                self.ended_episodes.discard(min(self.ended_episodes))
            self.expecting = False

    def episode_of(self, key: tuple[int, int]) -> tuple[Task, int]:
        """(the task of the episode the observation belongs to, its step in that episode)."""
        episode_id, step = self.steps[key]
        return self.tasks[episode_id], step

    @property
    def task(self) -> Task | None:
        """The newest episode's task (None before the first)."""
        return self.tasks[max(self.tasks)] if self.tasks else None

    def mark_done(self, key: tuple[int, int]) -> None:
        """`key` is handled; older observations not handled by now are stale and never handed out."""
        self.done.update(k for k in self.pending() if k <= key)
        self.done.add(key)
        self.first_seen = 0.0
        self.expecting = key in self.steps and self.steps[key][0] not in self.ended_episodes
        self._pending = None
        for k in sorted(self.done)[:-8 * self.keep]:
            self.done.discard(k)


def hold_for_batch(views, batch_wait: float) -> bool:
    """True while a forward pass should wait for more stations: some station is expected to answer (its last
    observation was handled, its episode has not ended, nothing new from it yet), and the oldest waiting
    observation arrived less than `batch_wait` seconds ago. Observations that come together then share one
    forward pass. A station that lets the wait run out is not waited for again until it sends an observation
    (a paused or stopped station costs one wait, not one per step)."""
    waiting = [v for v in views if v.pending()]
    expected = [v for v in views if v.expecting and not v.pending()]
    if not (waiting and expected):
        return False
    if time.monotonic() - min(v.first_seen for v in waiting) < batch_wait:
        return True
    for v in expected:
        v.expecting = False
    return False


def _trim(d: dict, keep: int) -> None:
    for k in sorted(d)[:-keep]:
        del d[k]


class SefmNode(Node):
    """A node whose parameters are the fields of the dataclass `PARAMETERS` (sefm_ros.parameters: typed
    descriptors, every override checked; `self.params` is the dataclass).

    `namespace`, `context` and parameter overrides let the graph runner put many
    nodes into one process; `ros2 run` and launch files use the usual --ros-args
    (`-p name:=value`, `--params-file`).
    """

    PARAMETERS: type = None

    def __init__(self, name: str, namespace: str = "", context=None, **overrides):
        from sefm_ros.parameters import declare

        super().__init__(name, namespace=namespace, context=context,
                         parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        try:
            self.params = declare(self, self.PARAMETERS)
        except ValueError:
            Node.destroy_node(self)   # the context must not clean up a node that never finished its __init__
            raise


def observe_station(node: Node, view: StationObservations, on_observation=None) -> None:
    """Subscribe `node` to a station's camera frames, joint states, episode steps and tasks, fed into `view`.

    A frame or joint state that cannot be used (encoding, size, NaN) is logged (throttled) and
    skipped; `on_observation()` runs after each part that arrives (an observation may just have
    become complete: act at once instead of on a polling timer).
    """
    from sensor_msgs.msg import JointState

    def feed(add):
        def callback(msg) -> None:
            try:
                add(msg)
            except ValueError as exc:
                node.get_logger().error(f"{view.name}: {exc}", throttle_duration_sec=5.0)
                return
            if on_observation is not None:
                on_observation()
        return callback

    def add_task(msg: Task) -> None:
        if msg.episode_id not in view.tasks:   # (the same task again: history replayed to a late joiner)
            view.add_task(msg)

    node.create_subscription(Image, f"{view.name}/camera/image_raw", feed(view.add_image), reliable(5))
    node.create_subscription(JointState, f"{view.name}/joint_states", feed(view.add_state), reliable(10))
    node.create_subscription(EpisodeStep, f"{view.name}/episode_step", feed(view.add_step), reliable(10))
    node.create_subscription(Task, f"{view.name}/task", feed(add_task), EPISODES)
    node.create_subscription(EpisodeEvent, f"{view.name}/episode_event", view.ended, EPISODE_EVENTS)


def node_names(text: str) -> frozenset[str]:
    """"reward, /trainer" -> {"reward", "trainer"} (empty: anyone)"""
    return frozenset(n.strip().strip("/") for n in text.split(",") if n.strip())


def subscribe_from(node: Node, msg_type, topic: str, callback, qos, names: frozenset[str]):
    """A subscription that hands `callback` a message only while every publisher on the topic is a node with
    one of `names` (every message where `names` is empty).

    Where SROS2 (DDS security with enclaves) is not enabled, anyone on the graph can publish a `steps_to_go`
    success or a `policy/version`. This checks the publishers' identities on the graph (their node names) at
    every message: while a node that does not own the topic publishes on it, nothing on it is accepted, so a
    stray publisher stops the topic loudly instead of steering the run. It stops mistakes and strays, not an
    attacker (that is SROS2's job). The graph, not each sample's publisher id, is asked because rclpy's
    EventsExecutor does not hand callbacks the message info. A refused message is counted and logged."""
    if not names:
        return node.create_subscription(msg_type, topic, callback, qos)
    refused = [0]

    def checked(msg) -> None:
        # (a publisher whose node name discovery has not delivered yet is not refused: refusing it would drop
        # the owner's own messages in the moment after a restart; it is checked again at the next message)
        strangers = {e.node_name for e in node.get_publishers_info_by_topic(subscription.topic_name)} - names \
            - {"_NODE_NAME_UNKNOWN_"}
        if strangers:
            refused[0] += 1
            node.get_logger().warning(f"{subscription.topic_name}: refused while {', '.join(sorted(strangers))} "
                                      f"also publish there (accepted only from: {', '.join(sorted(names))}; "
                                      f"{refused[0]} refused so far)", throttle_duration_sec=5.0)
            return
        callback(msg)

    subscription = node.create_subscription(msg_type, topic, checked, qos)
    return subscription


def station_list(text: str) -> list[str]:
    """"station_0, /station_1" -> ["station_0", "station_1"]"""
    return [s.strip().strip("/") for s in text.split(",") if s.strip()]


def spin_main(node_class, argv=None) -> int:
    """The console-script body of every node: init, spin until Ctrl-C or shutdown, clean up."""
    from sefm_ros.parameters import ParameterError

    apply_localhost_defaults()   # (read by the middleware when rclpy starts: `ros2 run` and launch included)
    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = node_class()
    except ParameterError as exc:   # a bad parameter: one line and exit 2, before the node does anything
        print(exc, file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok():
            raise
        # SIGTERM (or Ctrl-C) shut the context down while a callback was publishing: a clean stop
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
