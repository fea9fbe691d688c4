"""Replay a rosbag2 bag onto the ROS graph with the QoS its publishers offered (`sefm bag play`).

Each topic gets one publisher whose QoS follows the bag's `offered_qos_profiles`, the rule `ros2 bag play`
uses: transient local only if every recorded publisher offered it (so a replayed `task` is latched again and a
node that starts late still gets it), reliable only if every one was reliable, the deepest history depth. A
topic recorded without profiles (an older bag) is replayed reliable and volatile, and the log says so.
Messages go out as they were stored (serialized CDR), at their recorded receive times scaled by `rate`.
"""
from __future__ import annotations

import importlib
import time

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABLE, TRANSIENT_LOCAL = 1, 1   # rosbags' QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL (rmw's values)


def replay_qos(profiles, messages: int) -> tuple[QoSProfile, bool]:
    """The publisher QoS for a topic recorded with these offered profiles (rosbags Qos) and this many messages,
    and whether the bag had any profiles. DDS discovery does not carry history depth (recorded as 0): a
    latched topic then keeps all its messages (at most 1000), so a late subscriber gets as many as it keeps;
    a volatile one keeps 10."""
    if not profiles:
        return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE), False
    latched = all(q.durability.value == TRANSIENT_LOCAL for q in profiles)
    reliable = all(q.reliability.value == RELIABLE for q in profiles)
    depth = max(q.depth for q in profiles) or (min(max(messages, 1), 1000) if latched else 10)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE), True


def message_class(type_name: str):
    """"sensor_msgs/msg/Image" -> the generated Python class."""
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def play(bag, node, rate: float = 1.0, spin=None, log=print) -> dict[str, int]:
    """Publish every message of the bag from `node` (its publishers stay, for latched topics, as long as the
    node does); `spin(timeout)` runs the node's executor while waiting. Returns messages per topic."""
    from rosbags.rosbag2 import Reader

    if rate <= 0:
        raise ValueError(f"rate {rate}: must be > 0")
    counts: dict[str, int] = {}
    with Reader(bag) as reader:
        publishers = {}
        for c in reader.connections:
            if c.topic in publishers:
                continue
            qos, known = replay_qos(c.ext.offered_qos_profiles,
                                    sum(x.msgcount for x in reader.connections if x.topic == c.topic))
            if not known:
                log(f"{c.topic}: the bag stores no offered QoS; replaying it reliable and volatile")
            publishers[c.topic] = node.create_publisher(message_class(c.msgtype), c.topic, qos)
            counts[c.topic] = 0
        if spin is not None:
            spin(0.5)   # let subscribers match before the first message
        start, first = time.monotonic(), None
        for connection, stamp, data in reader.messages():
            first = stamp if first is None else first
            due = start + (stamp - first) * 1e-9 / rate
            while (wait := due - time.monotonic()) > 0:
                spin(min(wait, 0.05)) if spin is not None else time.sleep(min(wait, 0.05))
            publishers[connection.topic].publish(bytes(data))
            counts[connection.topic] += 1
    return counts
