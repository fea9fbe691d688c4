"""The recorder node: the stations' driver topics, tasks and episode events into one rosbag2 bag per session.

    ros2 run sefm_bags recorder --ros-args -p stations:=station_0,station_1 -p output:=bags/session_1

Messages are stored as they arrive on the wire (serialized CDR, no decoding),
stamped with their receive time like `ros2 bag record`. A topic is subscribed
as soon as it appears on the graph, with its type from the graph; the task
topic is latched, so an episode that started before the recorder is still
announced. Each topic's publishers' QoS is stored as its `offered_qos_profiles`
(as `ros2 bag record` does), so a player can offer the same: a replayed `task`
is latched again. The bag is written in segments (sefm_bags.writer): a segment closes
at every episode end (once the episode's last observation is in) and at least every `segment_seconds`, so a killed
recorder leaves a readable bag of everything up to its last closed segment.
For long sessions, `compression: zstd` compresses the MCAP chunks and `image_format: jpeg|png` stores each
sensor_msgs/Image topic as sensor_msgs/CompressedImage on `<topic>/compressed` (encoded in the recorder, so
the drivers publish raw as usual). `sefm bench record` measures what each costs.
Ctrl-C or SIGTERM closes the bag completely.
"""
from __future__ import annotations

import collections
import importlib
import struct
import sys
import time

from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from std_msgs.msg import Header

from sefm_bags.writer import SegmentedBagWriter
from sefm_interfaces.msg import EpisodeEvent
from sefm_bags.params import RecorderParams
from sefm_ros.common import LATCHED, SefmNode, reliable, spin_main, station_list

IMAGE = "/camera/image_raw"
IMAGE_WAIT = 3.0   # s a station's camera subscription waits for its other topics (see `discover`)
# The parts of one observation; the acknowledgement waits for all of those the station publishes.
OBSERVATION_PARTS = ("/camera/image_raw", "/joint_states", "/sim/ground_truth")
RAW_IMAGE = "sensor_msgs/msg/Image"
INFINITE = QosTime(2147483647, 4294967295)   # rmw's infinite duration, as rosbag2 stores it


def offered_qos(profile) -> Qos:
    """A publisher's QoS as discovery reports it (rclpy QoSProfile; history and depth are not sent in DDS
    discovery, so they come as UNKNOWN and 0, as in `ros2 bag record`'s bags), in the bag's terms (the enum
    values are rmw's in both)."""
    def span(duration) -> QosTime:
        sec, nsec = divmod(int(duration.nanoseconds), 1_000_000_000)
        return INFINITE if sec >= INFINITE.sec else QosTime(sec, nsec)

    return Qos(QosHistory(int(profile.history)), int(profile.depth), QosReliability(int(profile.reliability)),
               QosDurability(int(profile.durability)), span(profile.deadline), span(profile.lifespan),
               QosLiveliness(int(profile.liveliness)), span(profile.liveliness_lease_duration),
               bool(profile.avoid_ros_namespace_conventions))


class RecorderNode(SefmNode):
    PARAMETERS = RecorderParams

    def __init__(self, namespace: str = "", context=None, **overrides):
        super().__init__("recorder", namespace, context, **overrides)
        p = self.params
        output = p.output or time.strftime("bags/session_%Y%m%d_%H%M%S")
        self.bag = SegmentedBagWriter(output, p.storage, segment_seconds=p.segment_seconds,
                                      compression=p.compression)
        relative = [t.strip().strip("/") for t in p.topics.split(",") if t.strip()]
        self.wanted = [f"/{s}/{t}" for s in station_list(p.stations) for t in relative]
        self.wanted += [t.strip() for t in p.extra_topics.split(",") if t.strip()]
        self.subscriptions_by_topic = {}
        self.image_seen: dict[str, float] = {}   # camera topic -> when the graph first showed it
        self.counts = collections.Counter()
        self.episodes_ended = 0
        self.parts: dict[str, dict] = collections.defaultdict(dict)   # station -> stamp -> parts recorded
        self.completed = collections.defaultdict(lambda: collections.deque(maxlen=32))   # recent whole observations
        self.roll_after: dict[str, tuple] = {}   # station -> the ended episode's last observation, still incomplete
        if p.image_format != "raw":   # loaded now: a first frame that waited for the import would stall every topic
            import cv2

            from sefm_bags.importer import decode_image

            self.codec = (cv2, decode_image)
        self.ack_pubs = {s: self.create_publisher(Header, f"/{s}/recorded", reliable(50))
                         for s in station_list(p.stations)} if p.acknowledge else {}
        self.create_timer(0.5, self.discover)
        self.create_timer(1.0, self.bag.roll_if_due)
        self.get_logger().info(f"recording {len(self.wanted)} topics to {output} ({p.storage})")
        self.discover()

    def discover(self) -> None:
        """Subscribe to every wanted topic that has appeared on the graph, with its advertised type.
        A station's camera comes last: a station may hold its first episode until the camera has a subscriber
        (`min_subscribers`), and its task, events and ground truth must be recorded from that episode on. So
        the camera waits until the station's other wanted topics are subscribed, or for IMAGE_WAIT seconds
        (a driver that publishes fewer topics)."""
        types = dict(self.get_topic_names_and_types())
        now = time.monotonic()
        for topic in sorted(self.wanted, key=lambda t: t.endswith(IMAGE)):   # cameras last
            if topic in self.subscriptions_by_topic or topic not in types:
                continue
            if topic.endswith(IMAGE):
                station = topic[:-len(IMAGE)]
                others = [t for t in self.wanted if t.startswith(station + "/") and t != topic]
                first_seen = self.image_seen.setdefault(topic, now)
                if any(t not in self.subscriptions_by_topic for t in others) and now - first_seen < IMAGE_WAIT:
                    continue
            type_name = types[topic][0]                       # e.g. "sensor_msgs/msg/Image"
            package, _, name = type_name.split("/")
            msg_class = getattr(importlib.import_module(f"{package}.msg"), name)
            offered = [offered_qos(info.qos_profile) for info in self.get_publishers_info_by_topic(topic)]
            qos = LATCHED if topic.endswith("/task") else reliable(100)
            if type_name == RAW_IMAGE and self.params.image_format != "raw":
                from sensor_msgs.msg import CompressedImage

                self.bag.add_topic(topic + "/compressed", "sensor_msgs/msg/CompressedImage", offered)
                callback, raw, stored = (lambda msg, topic=topic: self.on_image(topic, msg, CompressedImage),
                                         False, f"{topic}/compressed ({self.params.image_format})")
            else:
                self.bag.add_topic(topic, type_name, offered)
                callback, raw, stored = (lambda data, topic=topic: self.on_message(topic, data), True,
                                         f"{topic} ({type_name})")
            self.subscriptions_by_topic[topic] = self.create_subscription(msg_class, topic, callback, qos, raw=raw)
            self.get_logger().info(f"recording {stored}")

    def on_image(self, topic: str, msg, compressed_class) -> None:
        """A raw camera frame -> CompressedImage (same header, bgr8 pixels) on <topic>/compressed; a frame the
        importer could not read either is logged and skipped (the importer then finds the hole)."""
        cv2, decode_image = self.codec
        fmt = self.params.image_format
        try:
            rgb = decode_image(msg, RAW_IMAGE)
            params = [cv2.IMWRITE_JPEG_QUALITY, self.params.jpeg_quality] if fmt == "jpeg" else []
            ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                       params)
            if not ok:
                raise ValueError("cv2.imencode failed")
        except ValueError as exc:
            self.counts["unencodable frames"] += 1
            self.get_logger().error(f"{topic}: frame not stored ({exc})", throttle_duration_sec=5.0)
            return
        out = compressed_class(header=msg.header, format=f"{msg.encoding}; {fmt} compressed bgr8")
        out.data = encoded.tobytes()
        self.on_message(topic, serialize_message(out), stored=topic + "/compressed")

    def on_message(self, topic: str, data: bytes, stored: str = "") -> None:
        self.bag.write(stored or topic, self.get_clock().now().nanoseconds, data)
        self.counts[topic] += 1
        if self.ack_pubs and topic.endswith(OBSERVATION_PARTS):
            self.acknowledge(topic, data)
        if topic.endswith("/episode_event"):
            event = deserialize_message(data, EpisodeEvent)
            if event.event == EpisodeEvent.END:
                self.episodes_ended += 1
                self.roll_after_episode(topic.strip("/").split("/")[0], event.last_observation_stamp)

    def roll_after_episode(self, station: str, last_stamp) -> None:
        """Close the segment once the ended episode is on disk, whatever happens next. Its last observation's
        parts travel on other topics and may arrive after the END event: when they are still missing, the
        segment closes as they complete (or at the latest after `segment_seconds`)."""
        stamp = (last_stamp.sec, last_stamp.nanosec)
        if station not in self.ack_pubs or stamp in self.completed[station]:
            self.bag.roll()
            return
        if station in self.roll_after:   # an earlier episode still waiting: do not wait longer for it
            self.bag.roll()
        self.roll_after[station] = stamp

    def acknowledge(self, topic: str, data: bytes) -> None:
        """Once every part of an observation the station publishes is in the bag, say so with its stamp."""
        station = topic.strip("/").split("/")[0]
        if station not in self.ack_pubs:
            return
        # Every part starts with a Header: stamp sec, nanosec after the 4-byte CDR encapsulation
        sec, nanosec = struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)
        expected = {part for part in OBSERVATION_PARTS if f"/{station}{part}" in self.subscriptions_by_topic}
        seen = self.parts[station].setdefault((sec, nanosec), set())
        seen.add(topic[len(station) + 1:])
        if not expected <= seen:
            for key in sorted(self.parts[station])[:-16]:   # keep only recent observations waiting for parts
                del self.parts[station][key]
            return
        del self.parts[station][(sec, nanosec)]
        self.completed[station].append((sec, nanosec))
        if self.roll_after.get(station) == (sec, nanosec):
            del self.roll_after[station]
            self.bag.roll()
        ack = Header(frame_id=station)
        ack.stamp.sec, ack.stamp.nanosec = sec, nanosec
        self.ack_pubs[station].publish(ack)

    def destroy_node(self):
        self.bag.close()
        total = sum(self.counts.values())
        # print, not the ROS logger: after Ctrl-C the context is already shut down
        print(f"[recorder] closed {self.bag.path}: {total} messages, {self.episodes_ended} episode ends",
              file=sys.stderr)
        return super().destroy_node()


def main(argv=None) -> int:
    return spin_main(RecorderNode, argv)


if __name__ == "__main__":
    sys.exit(main())
