"""rosbag2 folders -> the episode data set (`sefm bag import`). No ROS needed: rosbags reads both storages.

Per station (a namespace holding the mapped image topic), an observation is a
camera frame and a joint state with the same header stamp; the command that
answers it carries that stamp too (sensor_msgs/JointState, our bridge's and
simulators' convention). Headerless commands (std_msgs/Float64MultiArray, a
ros2_control forward controller's) answer the newest observation received
before them. Episodes come from episode events (START/END of an episode id)
or, in bags without them, from task changes.

Nothing is matched by arrival order, and nothing bad passes silently: each
episode that cannot be imported is skipped with its reason, which the summary
counts; a bag that cannot be read at all is reported by name and the other
bags still import. A bag whose content (its storage files' sha256) is in the
data set already is skipped, unless forced: importing twice adds nothing.
"""
from __future__ import annotations

import collections
import hashlib
import json
import pathlib
from dataclasses import dataclass, field

import numpy as np

from sefm_core.config import from_dict, load_yaml
from sefm_core.data import DatasetError, Episode, EpisodeDataset
from sefm_core.episode_rules import OUTCOMES, SUCCESS_OUTCOMES   # EpisodeEvent.OUTCOME_* by name

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
COMMAND_TYPES = ("sensor_msgs/msg/JointState", "std_msgs/msg/Float64MultiArray")
# EpisodeEvent outcomes (sefm_interfaces/msg/EpisodeEvent)
START, END = 0, 1


class BagImportError(RuntimeError):
    """A bag that cannot be imported at all; the message names the bag and the problem."""


@dataclass(frozen=True)
class TopicMap:
    """Which topics hold what. Relative names are looked up under every station namespace in the bag;
    absolute names (a real robot's) describe one station. Empty task/episode_event: the bag has none."""
    image: str = "camera/image_raw"        # sensor_msgs/Image (rgb8, bgr8, mono8) or CompressedImage (JPEG/PNG)
    joint_states: str = "joint_states"     # sensor_msgs/JointState: proprioception = position
    command: str = "joint_command"         # JointState (header.stamp = the observation it answers) or Float64MultiArray
    task: str = "task"                     # sefm_interfaces/Task
    episode_event: str = "episode_event"   # sefm_interfaces/EpisodeEvent
    ground_truth: str = "sim/ground_truth"  # sefm_interfaces/SimGroundTruth (simulated stations only): training
                                           # labels (block positions, goal predicate, camera); optional
    instruction: str = ""                  # the instruction when the bag has no task topic
    station: str = "robot"                 # station name when the topics are absolute
    assume_success: bool = False           # without episode events: treat every episode as a success
    joint_state_tolerance_ms: float = 0.0  # 0: the joint state must carry the frame's stamp; > 0: the nearest
                                           # one within this tolerance (drivers whose joints run at their own rate)


@dataclass(frozen=True)
class ImportConfig:
    topics: TopicMap = TopicMap()
    keep_failures: bool = False            # import failed / timed-out episodes too (operator discards never)
    force: bool = False                    # import a bag whose content is in the data set already, again


def load_import_config(path: str | None) -> ImportConfig:
    if not path:
        return ImportConfig()
    values = load_yaml(path)
    topics = from_dict(TopicMap, values.pop("topics", {}) or {}, f"{path}: topics")
    rest = from_dict(ImportConfig, values, path)
    return ImportConfig(topics=topics, keep_failures=rest.keep_failures, force=rest.force)


@dataclass
class BagReport:
    bag: str
    episodes: int = 0
    imported: int = 0
    steps: int = 0
    successes: int = 0
    dropped: collections.Counter = field(default_factory=collections.Counter)   # reason -> count
    notes: collections.Counter = field(default_factory=collections.Counter)     # imported, but: what -> count
    error: str = ""
    skipped: bool = False                  # its content is in the data set already


@dataclass
class _Station:
    images: dict = field(default_factory=dict)        # stamp ns -> (H, W, 3) uint8
    image_time: dict = field(default_factory=dict)    # stamp ns -> bag receive time
    states: dict = field(default_factory=dict)        # stamp ns -> positions
    joint_names: list = field(default_factory=list)
    commands: dict = field(default_factory=dict)      # stamp ns -> values
    unstamped_commands: list = field(default_factory=list)   # (bag time, values)
    tasks: dict = field(default_factory=dict)         # episode id -> task message
    task_order: list = field(default_factory=list)    # (stamp ns, episode id)
    starts: dict = field(default_factory=dict)        # episode id -> first observation stamp
    ends: dict = field(default_factory=dict)          # episode id -> END event
    truth: dict = field(default_factory=dict)         # stamp ns -> SimGroundTruth
    bad_items: collections.Counter = field(default_factory=collections.Counter)


def ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def decode_image(msg, msgtype: str) -> np.ndarray:
    """sensor_msgs Image / CompressedImage -> (H, W, 3) uint8 RGB; ValueError naming the problem."""
    if msgtype.endswith("CompressedImage"):
        import cv2

        buf = np.frombuffer(bytes(msg.data), np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if len(buf) else None
        if bgr is None:
            raise ValueError(f"compressed image (format {msg.format!r}) does not decode as JPEG or PNG")
        return bgr[..., ::-1].copy()
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise ValueError(f"image encoding {msg.encoding!r} is not supported (rgb8, bgr8, mono8)")
    data = np.asarray(msg.data, dtype=np.uint8)
    if msg.step < msg.width * channels or len(data) != msg.height * msg.step:
        raise ValueError(f"image of {len(data)} bytes does not match {msg.height} rows x step {msg.step}")
    pixels = data.reshape(msg.height, msg.step)[:, :msg.width * channels].reshape(msg.height, msg.width, channels)
    if msg.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    return pixels[..., ::-1].copy() if msg.encoding == "bgr8" else pixels.copy()


def resolve_stations(topics: dict[str, str], tmap: TopicMap) -> dict[str, dict[str, str]]:
    """{station: {role: topic}} for the roles whose topic is in the bag."""
    roles = {"image": tmap.image, "joint_states": tmap.joint_states, "command": tmap.command,
             "task": tmap.task, "episode_event": tmap.episode_event, "ground_truth": tmap.ground_truth}
    if tmap.image.startswith("/"):   # one station with absolute names: none without its camera
        return {tmap.station: {r: t for r, t in roles.items() if t and t in topics}} if tmap.image in topics else {}
    stations = {}
    for topic in topics:
        if topic == "/" + tmap.image or topic.endswith("/" + tmap.image):
            prefix = topic[: -len(tmap.image)]            # "/station_0/" or "/"
            name = prefix.strip("/") or tmap.station
            stations[name] = {r: prefix + t for r, t in roles.items() if t and prefix + t in topics}
    return stations


def read_bag(path: pathlib.Path, tmap: TopicMap) -> dict[str, _Station]:
    """Every mapped message of one bag, decoded, per station. Raises BagImportError for an unreadable bag."""
    from rosbags.rosbag2 import Reader, ReaderError
    from rosbags.typesys import get_types_from_msg

    from sefm_bags.types import typestore

    bare = path.is_file() and path.suffix == ".mcap"   # an MCAP file carries its own schemas and index
    if not path.is_dir() and not bare:
        raise BagImportError(f"{path}: not a rosbag2 folder or an .mcap file (missing, or another kind of file)")
    if not bare and not (path / "metadata.yaml").exists():
        raise BagImportError(f"{path}: no metadata.yaml: not a rosbag2 folder, or its recorder never closed a segment")
    store = typestore()
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError, KeyError, ValueError) as exc:   # (UnicodeDecodeError is a ValueError)
        raise BagImportError(f"{path}: cannot open the bag ({type(exc).__name__}: {exc}); metadata.yaml or a "
                             "storage file is missing, not UTF-8 YAML, truncated or corrupt") from exc
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        stations = resolve_stations(topics, tmap)
        if not stations:
            raise BagImportError(f"{path}: no image topic {tmap.image!r} (topics: {', '.join(sorted(topics)) or 'none'})"
                                 "; map the topic names with --topics")
        role_of = {topic: (name, role) for name, roles in stations.items() for role, topic in roles.items()}
        _check_types(path, topics, role_of)
        for name, roles in stations.items():
            for required in ("joint_states", "command"):
                if required not in roles:
                    raise BagImportError(f"{path}: station {name!r} lacks the {required} topic "
                                         f"{getattr(tmap, required)!r}")
            if "task" not in roles and "episode_event" not in roles:
                raise BagImportError(f"{path}: station {name!r} has neither a task nor an episode_event topic, so "
                                     "its episodes cannot be found")
        decoder = {}   # connection id -> the typestore that reads it
        for c in reader.connections:   # types the store lacks come with the bag
            if c.topic in role_of and c.msgtype not in store.fielddefs:
                store.register(get_types_from_msg(c.msgdef.data, c.msgtype))
            if c.topic in role_of:
                decoder[c.id] = own_store(c, store)
        data = {name: _Station() for name in stations}
        connections = [c for c in reader.connections if c.topic in role_of]
        try:
            for conn, bag_time, raw in reader.messages(connections=connections):
                name, role = role_of[conn.topic]
                try:
                    msg = decoder[conn.id].deserialize_cdr(raw, conn.msgtype)
                except Exception as exc:   # a corrupt record: count it, keep the rest
                    data[name].bad_items[f"undecodable {role} message ({type(exc).__name__})"] += 1
                    continue
                _add(data[name], role, conn.msgtype, msg, bag_time)
        except ReaderError as exc:
            raise BagImportError(f"{path}: reading failed part-way ({exc}); the storage file is truncated or "
                                 "corrupt") from exc
        return data
    finally:
        reader.close()


def own_store(connection, store):
    """The typestore that decodes a connection: ours, unless the bag recorded another definition of the type
    (its hash differs: e.g. an EpisodeEvent from before a field was added), then one built from the bag's."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    definition = connection.msgdef.data if connection.msgdef is not None else ""
    if not connection.digest or not definition or store.hash_rihs01(connection.msgtype) == connection.digest:
        return store
    own = get_typestore(Stores.ROS2_KILTED)
    own.register(get_types_from_msg(definition, connection.msgtype))
    return own


def _check_types(path, topics, role_of) -> None:
    allowed = {"image": IMAGE_TYPES, "joint_states": ("sensor_msgs/msg/JointState",), "command": COMMAND_TYPES,
               "task": ("sefm_interfaces/msg/Task",), "episode_event": ("sefm_interfaces/msg/EpisodeEvent",),
               "ground_truth": ("sefm_interfaces/msg/SimGroundTruth",)}
    for topic, (_, role) in role_of.items():
        if topics[topic] not in allowed[role]:
            raise BagImportError(f"{path}: topic {topic} has message type {topics[topic]}; the {role} topic must be "
                                 f"{' or '.join(allowed[role])}")


def _add(st: _Station, role: str, msgtype: str, msg, bag_time: int) -> None:
    if role == "image":
        stamp = ns(msg.header.stamp)
        if stamp in st.images:
            return   # the same observation sent again (a lockstep bridge re-sends while it waits)
        try:
            st.images[stamp] = decode_image(msg, msgtype)
            st.image_time[stamp] = bag_time
        except ValueError as exc:
            st.bad_items[f"image: {exc}"] += 1
    elif role == "joint_states":
        if len(msg.position) == 0:   # (a gripper-only or effort-only message): no state to learn from
            st.bad_items["joint state with no positions"] += 1
            return
        st.states.setdefault(ns(msg.header.stamp), np.asarray(msg.position, np.float32))
        st.joint_names = st.joint_names or list(msg.name)
    elif role == "command":
        values = msg.position if msgtype.endswith("JointState") else msg.data
        if len(values) == 0:
            st.bad_items["command with no values"] += 1
        elif msgtype.endswith("JointState"):
            st.commands.setdefault(ns(msg.header.stamp), np.asarray(values, np.float32))
        else:
            st.unstamped_commands.append((bag_time, np.asarray(values, np.float32)))
    elif role == "task":
        if msg.episode_id not in st.tasks:
            st.task_order.append((ns(msg.header.stamp), msg.episode_id))
        st.tasks[msg.episode_id] = msg
    elif role == "ground_truth":
        st.truth.setdefault(ns(msg.header.stamp), msg)
    elif role == "episode_event":
        if msg.event == START:
            st.starts[msg.episode_id] = ns(msg.last_observation_stamp)
        elif msg.event == END:
            st.ends.setdefault(msg.episode_id, msg)


def _segments(st: _Station):
    """(episode id, first stamp, last stamp or None, END event or None) for every episode the bag shows."""
    if st.starts or st.ends:
        for eid in sorted(set(st.starts) | set(st.ends)):
            first = st.starts.get(eid)
            if first is None and eid in st.tasks:
                first = ns(st.tasks[eid].header.stamp)
            end = st.ends.get(eid)
            yield eid, first, ns(end.last_observation_stamp) if end is not None else None, end
        return
    order = sorted(st.task_order)
    last_obs = max(st.images, default=0)
    for i, (stamp, eid) in enumerate(order):
        stop = order[i + 1][0] - 1 if i + 1 < len(order) else last_obs
        yield eid, stamp, stop, None


def build_episodes(st: _Station, tmap: TopicMap, keep_failures: bool, report: BagReport, bag: str, station: str):
    """Yield Episodes of one station; every skip is counted in `report.dropped` with its reason."""
    if st.unstamped_commands:   # headerless commands answer the newest observation received before them
        by_time = sorted((t, s) for s, t in st.image_time.items())
        times = [t for t, _ in by_time]
        for t, values in st.unstamped_commands:
            i = np.searchsorted(times, t, side="right") - 1
            if i >= 0:
                st.commands.setdefault(by_time[i][1], values)
    report.dropped.update(st.bad_items)
    state_stamps = np.array(sorted(st.states), dtype=np.int64)
    tolerance = int(tmap.joint_state_tolerance_ms * 1e6)

    def state_at(stamp: int):
        if stamp in st.states:
            return st.states[stamp]
        if tolerance <= 0 or not len(state_stamps):
            return None
        i = int(np.searchsorted(state_stamps, stamp))
        near = min((abs(int(state_stamps[j]) - stamp), int(state_stamps[j])) for j in (i - 1, i)
                   if 0 <= j < len(state_stamps))
        return st.states[near[1]] if near[0] <= tolerance else None

    for eid, first, last, end in _segments(st):
        report.episodes += 1

        def drop(reason: str) -> None:
            report.dropped[reason] += 1

        if first is None:
            drop("no START event or task for the episode")
            continue
        if last is None:
            drop("incomplete: no END event (the recording stopped mid-episode)")
            continue
        if last < first:
            drop("inconsistent stamps: END's last observation precedes the episode start")
            continue
        outcome = end.outcome if end is not None else None
        success = outcome in SUCCESS_OUTCOMES if end is not None else tmap.assume_success
        if outcome == 4:
            drop("discarded by the operator")
            continue
        if not success and not keep_failures:
            drop(f"not successful ({OUTCOMES.get(outcome, 'no outcome')}); --keep-failures imports it")
            continue
        stamps = sorted(s for s in st.images if first <= s <= last)
        states = [state_at(s) for s in stamps]
        if len(stamps) < 2:
            drop("fewer than 2 camera frames inside the episode")
            continue
        if any(s is None for s in states):
            drop("a camera frame has no joint state with its stamp (inconsistent stamps; see "
                 "joint_state_tolerance_ms)")
            continue
        missing = [i for i, s in enumerate(stamps[:-1]) if s not in st.commands]
        if missing:
            drop("an observation has no command for its stamp")
            continue
        shapes = {st.images[s].shape for s in stamps}
        if len(shapes) > 1:
            drop("the image size changes inside the episode")
            continue
        task = st.tasks.get(eid)
        instruction = task.instruction if task is not None else tmap.instruction
        if not instruction:
            drop("no instruction (no task message and no `instruction` in the topic map)")
            continue
        actions = np.stack([st.commands[s] for s in stamps[:-1]])
        rewards = np.zeros(len(stamps) - 1, np.float32)
        rewards[-1] = float(success)   # sparse outcome; Stage 1 labels come from the success flag
        metadata = {"source": "rosbag2", "bag": bag, "station": station, "episode_id": int(eid),
                    "outcome": OUTCOMES.get(outcome, "unknown") if end is not None else "no events",
                    "joint_names": st.joint_names, "first_stamp_ns": int(stamps[0])}
        if task is not None:
            metadata.update(env=task.env_id, family=task.family, seed=int(task.seed),
                            goal=json.loads(task.goal_json) if task.goal_json else {})
        extras = {}
        if st.truth and all(s in st.truth for s in stamps):
            extras = ground_truth_labels([st.truth[s] for s in stamps], metadata)
        elif st.truth:
            report.notes["frames without their sim/ground_truth (imported without training labels)"] += 1
        try:
            episode = Episode(np.stack([st.images[s] for s in stamps]), np.stack(states),
                              actions, rewards, instruction, bool(success), metadata, extras)
        except DatasetError as exc:
            drop(f"invalid episode ({exc})")
            continue
        yield episode


def ground_truth_labels(truths: list, metadata: dict) -> dict:
    """A simulated station's per-observation ground truth -> the extras and metadata `sefm collect` writes
    (block positions, goal predicate, camera), so recorded and directly written demos train alike."""
    first = truths[0]
    holds = np.array([t.goal_holds for t in truths], np.uint8)
    metadata.update(blocks=list(first.object_names),
                    first_success_step=int(np.argmax(holds)) if holds.any() else None,
                    camera={"projection": np.asarray(first.world_to_image, np.float64).reshape(3, 4).tolist(),
                            "block_z": float(first.object_z), "effector_z": float(first.effector_z)})
    xy = np.stack([np.asarray(t.object_xy, np.float32).reshape(-1, 2) for t in truths])
    return {"goal_holds": holds, "block_xy": xy}


def bag_digest(path: pathlib.Path) -> str:
    """sha256 over a bag's storage files (names and bytes, in name order; a bare .mcap: that file): the same
    recording, wherever it lies, gives the same digest; metadata.yaml is left out (a reindexed bag is the
    same recording)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.iterdir()
                                                 if p.is_file() and p.suffix in (".mcap", ".db3"))
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def import_bags(bags: list[str], out: str, config: ImportConfig = ImportConfig(), log=print) -> list[BagReport]:
    """Import every bag into the data set at `out` (created or appended to); one report per bag."""
    dataset = EpisodeDataset(out, create=True)
    present = {e["metadata"].get("bag_sha256") for e in dataset.index}
    reports = []
    for bag in bags:
        report = BagReport(bag=str(bag))
        reports.append(report)
        try:
            stations = read_bag(pathlib.Path(bag), config.topics)
        except BagImportError as exc:
            report.error = str(exc)
            log(f"error: {exc}")
            continue
        digest = bag_digest(pathlib.Path(bag))
        if digest in present and not config.force:
            report.skipped = True
            report.notes["already in the data set (the same content; --force imports it again)"] += 1
            continue
        present.add(digest)
        for name, st in stations.items():
            for episode in build_episodes(st, config.topics, config.keep_failures, report, str(bag), name):
                episode.metadata["bag_sha256"] = digest
                try:
                    dataset.append(episode)
                except DatasetError as exc:
                    report.dropped[f"does not fit the data set ({exc})"] += 1
                    continue
                report.imported += 1
                report.steps += episode.steps
                report.successes += int(episode.success)
    return reports


def summary_table(reports: list[BagReport]) -> str:
    lines = [f"{'bag':<40}{'episodes':>9}{'imported':>9}{'steps':>8}{'success':>8}  dropped / error"]
    for r in reports:
        name = r.bag if len(r.bag) <= 38 else "..." + r.bag[-35:]
        detail = r.error or "; ".join(f"{n} x {why}" for why, n in (r.dropped + r.notes).most_common()) or "-"
        lines.append(f"{name:<40}{r.episodes:>9}{r.imported:>9}{r.steps:>8}{r.successes:>8}  {detail}")
    total = [sum(getattr(r, k) for r in reports) for k in ("episodes", "imported", "steps", "successes")]
    lines.append(f"{'total':<40}{total[0]:>9}{total[1]:>9}{total[2]:>8}{total[3]:>8}")
    return "\n".join(lines)
