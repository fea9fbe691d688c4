"""rosbag2 folders -> the episode data set (`sefm bag import`). No ROS needed: rosbags reads both storages.

Per station (a namespace holding the mapped image topic), an observation is a
camera frame and a joint state with the same header stamp (or, for drivers whose
joints run at their own rate, the nearest within a tolerance); a robot with
several joint-state topics (ALOHA's arms) has one per topic, joined by stamp
(`sefm_bags.sources`). The command that answers an observation carries its stamp
(sensor_msgs/JointState, the policy's and teleoperator's convention); a
headerless command (a ros2_control forward controller's Float64MultiArray, an
Interbotix JointGroupCommand) answers an observation with the newest value sent
before the next observation. Episodes come from episode events (START/END of an
episode id), else from task changes, else (no task topic but an instruction in
the topic map) the whole bag is one episode.

The bag is read once, in order, and an episode is written as soon as it has
ended and its parts are in: memory holds the episodes still open, not the
session, and frames are resized to the data set's resolution on the way in.

Nothing is matched by arrival order, and nothing bad passes silently: each
episode that cannot be imported is skipped with its reason, which the summary
counts. An episode with a hole (a frame missing or unreadable, its goal frame
lost) is dropped, or with `gaps: split` cut at the holes into pieces. A station
that cannot be read (a topic missing or of the wrong type) fails alone; a bag
that cannot be read at all, or fails part-way, leaves the data set as it was;
a bag whose content (its storage files' sha256) is in the data set already is
skipped, unless forced: importing twice adds nothing.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import pathlib
import shutil
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sefm_bags.sources import HEADERLESS, JOINT_STATE, Layout, LayoutError, Source, profile_sources, reduce
from sefm_core.config import ConfigError, apply_flags, from_dict, load_yaml, setting
from sefm_core.data import DatasetError, Episode, EpisodeDataset
from sefm_core.episode_rules import OUTCOMES, SUCCESS_OUTCOMES   # EpisodeEvent.OUTCOME_* by name

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
COMMAND_TYPES = (JOINT_STATE, *HEADERLESS)
# EpisodeEvent outcomes (sefm_interfaces/msg/EpisodeEvent)
START, END = 0, 1
DISCARDED = 4
# How long (bag time) an ended episode waits for parts still missing (a command or a joint state that travels
# on another topic and was recorded after the END); an episode whose parts are all in is written at once.
SETTLE_NS = 2_000_000_000


class BagImportError(RuntimeError):
    """A bag that cannot be imported at all; the message names the bag and the problem."""


@dataclass(frozen=True)
class TopicMap:
    """Which topics hold what. Relative names are looked up under every station namespace in the bag;
    absolute names (a real robot's) describe one station. Empty task/episode_event: the bag has none."""
    image: str = "camera/image_raw"        # sensor_msgs/Image (rgb8, bgr8, mono8) or CompressedImage (JPEG/PNG)
    joint_states: str = "joint_states"     # sensor_msgs/JointState: proprioception = position
    command: str = "joint_command"         # JointState (header.stamp = the observation it answers) or headerless
    task: str = "task"                     # sefm_interfaces/Task
    episode_event: str = "episode_event"   # sefm_interfaces/EpisodeEvent
    episode_step: str = "episode_step"     # sefm_interfaces/EpisodeStep (optional): each frame's step, so a lost
                                           # frame is found even when all its other parts are lost too
    ground_truth: str = "sim/ground_truth"  # sefm_interfaces/SimGroundTruth (simulated stations only): training
                                           # labels (block positions, goal predicate, camera); optional
    instruction: str = ""                  # the instruction when the bag has no task topic
    station: str = "robot"                 # station name when the topics are absolute
    assume_success: bool = False           # without episode events: treat every episode as a success
    joint_state_tolerance_ms: float = 0.0  # 0: joint states (and JointState commands) must carry the frame's
                                           # stamp; > 0: the nearest one within this tolerance
    max_frame_gap_ms: float = 0.0          # > 0: the camera runs at a fixed rate, and frames further apart than
                                           # this are a hole (e.g. 50 for 30 Hz); 0: frames come when they come
                                           # (a lockstep station), a lost one is found by its other parts only
    joint_state_sources: tuple[Source, ...] = ()   # several joint-state topics, concatenated in this order
                                                    # (replaces `joint_states`)
    command_sources: tuple[Source, ...] = ()       # several command topics, concatenated (replaces `command`)


@dataclass(frozen=True)
class ImportConfig:
    topics: TopicMap = TopicMap()
    keep_failures: bool = setting(False, "import failed / timed-out episodes too (operator discards never)")
    force: bool = setting(False, "import a bag whose content is in the data set already, again")
    image_size: str = setting("", "WxH the frames are resized to on the way in ('': the data set's, or for a "
                                  "new data set the bag's own)")
    gaps: Literal["drop", "split"] = setting("drop", "an episode with a missing or unreadable observation: "
                                                     "drop it, or split it at the holes (the pieces before a "
                                                     "hole are failures)")
    profile: str = setting("", "a robot profile (name or path): its arms' joint-state topics and its camera, "
                               "joined in its order (overrides the topic map's joint states, command, image)")
    profile_commands: Literal["joint_command", "interbotix"] = setting(
        "joint_command", "with a profile, the actions: the JointState on `joint_command` (a SEFM station's), or "
                         "each arm's Interbotix commands/joint_group + commands/joint_single")


def load_import_config(path: str | None, flags: dict | None = None) -> ImportConfig:
    """The import config from a YAML file (TopicMap fields under `topics:`, ImportConfig's beside it) with the
    command-line flags that were given on top."""
    values = apply_flags(load_yaml(path) if path else {}, flags or {})
    topics = from_dict(TopicMap, values.pop("topics", {}) or {}, f"{path or 'import config'}: topics")
    rest = from_dict(ImportConfig, values, path or "import config")
    config = dataclasses.replace(rest, topics=topics)
    image_size(config)   # checked here, once
    return config


def image_size(config: ImportConfig) -> tuple[int, int] | None:
    if not config.image_size:
        return None
    try:
        w, h = (int(v) for v in config.image_size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"image_size {config.image_size!r}: expected WxH, e.g. 128x96") from None
    if w < 1 or h < 1:
        raise ConfigError(f"image_size {config.image_size!r}: both sides must be positive")
    return w, h


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
    station_errors: dict = field(default_factory=dict)   # station -> why it could not be read (the others import)
    peak_frames: int = 0                   # most frames held at once while reading (bounded by the longest episode)


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


def resize(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    import cv2

    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class _Plan:
    """What one station's topics are: {role: topic} for the single roles, and its joint-state and command
    sources with the layouts that join them."""
    roles: dict
    state_topics: tuple
    command_topics: tuple
    states: Layout
    commands: Layout


def _plans(topics: dict[str, str], config: ImportConfig) -> dict[str, _Plan]:
    """{station: plan} for every station whose camera is in the bag; a station that lacks a required topic
    gets a string (why) instead of a plan."""
    tmap, profile = config.topics, None
    state_sources = tmap.joint_state_sources or (Source(tmap.joint_states),)
    command_sources = tmap.command_sources or (Source(tmap.command),)
    image = tmap.image
    if config.profile:
        from sefm_station.profiles import load_profile

        profile = load_profile(config.profile)
        state_sources, profile_cmds, image = profile_sources(profile, config.profile_commands)
        command_sources = tmap.command_sources or profile_cmds
    singles = {"image": image, "task": tmap.task, "episode_event": tmap.episode_event,
               "episode_step": tmap.episode_step, "ground_truth": tmap.ground_truth}
    # A camera recorded compressed (the recorder's image_format, or image_transport's own topic) is read in
    # place of the raw one: <image>/compressed.
    cameras = {}   # station prefix -> its camera topic
    if image.startswith("/"):   # one station with absolute names: none without its camera
        found = [t for t in (image, image + "/compressed") if t in topics]
        prefixes = {tmap.station: ""} if found else {}
        cameras = {"": found[0]} if found else {}
    else:
        prefixes = {}
        for topic in sorted(topics, key=lambda t: t.endswith("/compressed")):   # raw first
            base = topic[: -len("/compressed")] if topic.endswith("/compressed") else topic
            if base == "/" + image or base.endswith("/" + image):
                prefix = base[: -len(image)]            # "/station_0/" or "/"
                prefixes.setdefault(prefix.strip("/") or tmap.station, prefix)
                cameras.setdefault(prefix, topic)
    plans = {}
    for name, prefix in prefixes.items():
        def full(t: str) -> str:
            return t if t.startswith("/") else prefix + t
        roles = {r: full(t) for r, t in singles.items() if t and full(t) in topics}
        roles["image"] = cameras[prefix]
        state_topics = tuple(full(s.topic) for s in state_sources)
        command_topics = tuple(full(s.topic) for s in command_sources)
        bad = _wrong_type(topics, roles, state_topics, command_topics)
        if bad:
            plans[name] = bad
            continue
        missing = [t for t in state_topics + command_topics if t not in topics]
        if missing:
            kind = "joint_states" if missing[0] in state_topics else "command"
            plans[name] = f"station {name!r} lacks the {kind} topic {missing[0]!r}"
            continue
        if "task" not in roles and "episode_event" not in roles and not tmap.instruction:
            plans[name] = (f"station {name!r} has neither a task nor an episode_event topic, so its episodes "
                           "cannot be found (or give `instruction` in the topic map: the bag is one episode)")
            continue
        plans[name] = _Plan(roles, state_topics, command_topics,
                            Layout(tuple(state_sources), profile, "state"),
                            Layout(tuple(command_sources), profile, "command"))
    return plans


def _wrong_type(topics, roles, state_topics, command_topics) -> str:
    allowed = {"image": IMAGE_TYPES, "task": ("sefm_interfaces/msg/Task",),
               "episode_event": ("sefm_interfaces/msg/EpisodeEvent",),
               "episode_step": ("sefm_interfaces/msg/EpisodeStep",),
               "ground_truth": ("sefm_interfaces/msg/SimGroundTruth",)}
    checks = [(t, r, allowed[r]) for r, t in roles.items()]
    checks += [(t, "joint_states", (JOINT_STATE,)) for t in state_topics]
    checks += [(t, "command", COMMAND_TYPES) for t in command_topics]
    for topic, role, types in checks:
        if topic in topics and topics[topic] not in types:
            return f"topic {topic} has message type {topics[topic]}; the {role} topic must be {' or '.join(types)}"
    return ""


class _Stream:
    """One station while its bag is read: the messages of the episodes still open, and the episodes' bounds."""

    def __init__(self, name: str, plan: _Plan, config: ImportConfig, size, report: BagReport, bag: str):
        self.name, self.plan, self.config, self.size, self.report, self.bag = name, plan, config, size, report, bag
        self.tolerance = int(config.topics.joint_state_tolerance_ms * 1e6)
        self.frames: dict[int, np.ndarray] = {}       # stamp -> (H, W, 3) uint8, resized
        self.frame_time: dict[int, int] = {}          # stamp -> bag time
        self.bad_frames: dict[int, str] = {}          # stamp -> why its pixels could not be read
        self.bad_times: list[int] = []                # bag times of image records that did not decode at all
        self.states = [dict() for _ in plan.state_topics]             # per source: stamp -> (names, values)
        self.commands = [dict() for _ in plan.command_topics]         # stamped sources: stamp -> (names, values)
        self.timed = [collections.deque() for _ in plan.command_topics]   # headerless: (bag time, names, values)
        self.steps: dict[int, tuple[int, int]] = {}  # stamp -> (episode id, step)
        self.truth: dict[int, object] = {}
        self.tasks: dict[int, object] = {}            # episode id -> Task (small: kept for the whole bag)
        self.open: dict[int, int] = {}                # episode id -> first stamp (started, not ended)
        self.closing: list[list] = []                 # [episode id, first, last, END or None, bag time, next try]
        self.mode = ("events" if "episode_event" in plan.roles else "tasks" if "task" in plan.roles else "whole")
        self.state_names: list[str] = []
        self.command_names: list[str] = []
        self.newest = 0
        if self.mode == "whole":
            self.open[0] = 0

    # --- reading --------------------------------------------------------------------------------------

    def add(self, role: str, index: int, msgtype: str, msg, bag_time: int) -> None:
        self.newest = max(self.newest, bag_time)
        if role == "image":
            stamp = ns(msg.header.stamp)
            if stamp in self.frames or stamp in self.bad_frames:
                return   # the same observation sent again (a lockstep station re-sends while it waits)
            try:
                self.frames[stamp] = resize(decode_image(msg, msgtype), self.size)
                self.frame_time[stamp] = bag_time
            except ValueError as exc:
                self.bad_frames[stamp] = f"image: {exc}"
                self.report.dropped[f"image: {exc}"] += 1
            self.report.peak_frames = max(self.report.peak_frames, len(self.frames))
            if not self.open and not self.closing:   # between episodes: keep only what a START may still claim
                self._evict(lambda s: s < stamp - SETTLE_NS)
        elif role in ("joint_states", "command"):
            names, values = reduce(msg, msgtype)
            if len(values) == 0:   # (a gripper-only or effort-only message): nothing to learn from
                self.report.dropped["joint state with no positions" if role == "joint_states"
                                    else "command with no values"] += 1
                return
            if role == "joint_states":
                self.states[index].setdefault(ns(msg.header.stamp), (names, values))
            elif msgtype == JOINT_STATE:
                self.commands[index].setdefault(ns(msg.header.stamp), (names, values))
            else:
                self.timed[index].append((bag_time, names, values))
        elif role == "task":
            self.tasks.setdefault(msg.episode_id, msg)
            if self.mode == "tasks" and msg.episode_id not in self.open and not any(
                    c[0] == msg.episode_id for c in self.closing):
                stamp = ns(msg.header.stamp)
                for eid, first in list(self.open.items()):   # a new task ends the one before it
                    self._close(eid, first, stamp - 1, None, bag_time)
                self._start(msg.episode_id, stamp)
        elif role == "episode_step":
            self.steps.setdefault(ns(msg.header.stamp), (int(msg.episode_id), int(msg.step)))
        elif role == "ground_truth":
            self.truth.setdefault(ns(msg.header.stamp), msg)
        elif role == "episode_event":
            if msg.event == START:
                self._start(msg.episode_id, ns(msg.last_observation_stamp))
            elif msg.event == END and not any(c[0] == msg.episode_id for c in self.closing):
                first = self.open.pop(msg.episode_id, None)
                if first is None and msg.episode_id in self.tasks:
                    first = ns(self.tasks[msg.episode_id].header.stamp)
                self._close(msg.episode_id, first, ns(msg.last_observation_stamp), msg, bag_time)

    def bad_record(self, role: str, bag_time: int, exc: Exception) -> None:
        self.report.dropped[f"undecodable {role} message ({type(exc).__name__})"] += 1
        if role == "image":
            self.bad_times.append(bag_time)

    def _start(self, eid: int, first: int) -> None:
        if not self.open and not self.closing:
            self._evict(lambda s: s < first)
        self.open[eid] = first

    def _close(self, eid, first, last, end, bag_time) -> None:
        self.open.pop(eid, None)
        self.closing.append([eid, first, last, end, bag_time, bag_time])

    def _evict(self, old) -> None:
        """Forget every per-stamp item `old(stamp)` is true for; a headerless source keeps its newest value
        (a command still in force)."""
        for table in (self.frames, self.frame_time, self.bad_frames, self.steps, self.truth, *self.states,
                      *self.commands):
            for s in [s for s in table if old(s)]:
                del table[s]
        if self.frame_time:
            oldest = min(self.frame_time.values())
            for timed in self.timed:
                while len(timed) > 1 and timed[1][0] < oldest:
                    timed.popleft()
            self.bad_times = [t for t in self.bad_times if t >= oldest]

    # --- writing ----------------------------------------------------------------------------------------

    def ready(self, final: bool = False):
        """Yield the ended episodes that are complete, or waited for long enough (every one when `final`)."""
        while self.closing:
            item = self.closing[0]
            eid, first, last, end, closed_at, next_try = item
            if not final and self.newest < next_try:
                return
            outcome = self._build(eid, first, last, end)
            if outcome is None and not final and self.newest < closed_at + SETTLE_NS:
                item[5] = self.newest + 50_000_000   # parts still missing: look again in 50 ms of bag time
                return
            self.closing.pop(0)
            yield from self._finish(eid, first, last, end, outcome)
            self._evict(lambda s: s <= last)
        if final:
            for eid, first in list(self.open.items()):
                if self.mode == "events":
                    self.report.episodes += 1
                    self.report.dropped["incomplete: no END event (the recording stopped mid-episode)"] += 1
                else:   # the last task's episode, or the whole bag, runs to the last frame
                    last = max(self.frames, default=first)
                    yield from self._finish(eid, first, last, None, self._build(eid, first, last, None))
            self.open.clear()

    def _finish(self, eid, first, last, end, outcome):
        self.report.episodes += 1
        if outcome is None:   # waited long enough: say what is missing
            outcome = self._build(eid, first, last, end, final=True)
        if isinstance(outcome, str):
            self.report.dropped[outcome] += 1
            return
        yield from outcome

    def _build(self, eid, first, last, end, final: bool = False):
        """A list of Episodes, a reason to drop (str), or None: parts are missing that may still come
        (only when not `final`; `final` turns what is missing into the reason)."""
        tmap = self.config.topics
        if first is None:
            return "no START event or task for the episode"
        if last < first:
            return "inconsistent stamps: END's last observation precedes the episode start"
        outcome = end.outcome if end is not None else None
        success = outcome in SUCCESS_OUTCOMES if end is not None else tmap.assume_success
        if outcome == DISCARDED:
            return "discarded by the operator"
        if not success and not self.config.keep_failures:
            return f"not successful ({OUTCOMES.get(outcome, 'no outcome')}); --keep-failures imports it"
        stamps = sorted(s for s in self.frames if first <= s <= last)
        holes = self._holes(eid, first, last, stamps, end is not None)
        if holes and not final:
            return None
        pieces = [stamps]
        if holes:
            if self.config.gaps == "drop":
                return (f"a hole in the episode: {holes[0][1]} (dropped; `gaps: split` imports the pieces "
                        "around it)")
            pieces = _split(stamps, [h[0] for h in holes])
        episodes = []
        for k, piece in enumerate(pieces):
            whole = len(pieces) == 1
            built = self._episode(eid, piece, end, success if (whole or k == len(pieces) - 1 and
                                                                piece[-1] == last) else False, final)
            if built is None:
                return None
            if isinstance(built, str):
                if whole:
                    return built
                self.report.dropped[f"a piece of a split episode: {built}"] += 1
                continue
            if not whole:
                built.metadata.update(piece=k, pieces=len(pieces), holes=[h[1] for h in holes])
                if not built.success and not self.config.keep_failures:
                    self.report.dropped["a piece before a hole (a failure; --keep-failures imports it)"] += 1
                    continue
            episodes.append(built)
        return episodes

    def _holes(self, eid, first, last, stamps, events: bool) -> list[tuple[int, str]]:
        """(stamp, what) for every observation the episode lacks: an unreadable frame, a frame whose other
        parts (its step, a command answering it) arrived without it, the START's or END's own frame."""
        have = set(stamps)
        holes = [(s, f"an unreadable frame ({why})") for s, why in self.bad_frames.items() if first <= s <= last]
        if events:
            for s, what in ((first, "its first observation"), (last, "its last observation (the goal frame)")):
                if s not in have and s not in self.bad_frames:
                    holes.append((s, f"{what} is missing"))
        # (a joint state without its frame is no proof: its stamp may just disagree; a step or a command for
        # an observation is)
        orphans = {s for s, (e, _) in self.steps.items() if e == eid and first <= s <= last}
        orphans |= {s for table in self.commands for s in table if first <= s <= last}
        holes += [(s, "a frame is missing (its other parts are in the bag)") for s in orphans - have
                  if s not in self.bad_frames]
        gap = int(self.config.topics.max_frame_gap_ms * 1e6)
        if gap > 0:   # a camera at a fixed rate: frames further apart than that lost one between them
            holes += [(b, f"frames {(b - a) / 1e6:.0f} ms apart (more than max_frame_gap_ms "
                          f"{self.config.topics.max_frame_gap_ms:g}): a frame is missing")
                      for a, b in zip(stamps, stamps[1:]) if b - a > gap]
        if stamps:
            lo, hi = self.frame_time[stamps[0]], self.frame_time[stamps[-1]]
            times = sorted((self.frame_time[s], s) for s in stamps)
            for t in self.bad_times:
                if lo < t < hi:   # between two frames by bag time: the hole lies before the next frame
                    nxt = next(s for ft, s in times if ft > t)
                    holes.append((nxt - 1, "an image record that does not decode"))
        return sorted(holes)

    def _episode(self, eid, stamps, end, success, final):
        tmap = self.config.topics
        if len(stamps) < 2:
            return "fewer than 2 camera frames inside the episode"
        state_index = [self._index(table) for table in self.states]
        command_index = [self._index(table) for table in self.commands]
        states = []
        for s in stamps:
            parts = [self._stamped(table, index, s) for table, index in zip(self.states, state_index)]
            if any(p is None for p in parts):
                return None if not final else (
                    "a camera frame has no joint state with its stamp (inconsistent stamps; see "
                    "joint_state_tolerance_ms)")
            states.append(parts)
        actions = []
        for i, s in enumerate(stamps[:-1]):
            parts = []
            for k in range(len(self.plan.command_topics)):
                part = (self._stamped(self.commands[k], command_index[k], s) if self.commands[k] or not self.timed[k]
                        else self._in_force(self.timed[k], self.frame_time[stamps[i + 1]]))
                parts.append(part)
            if any(p is None for p in parts):
                return None if not final else "an observation has no command for its stamp"
            actions.append(parts)
        try:
            proprio = np.stack([self.plan.states.join(p) for p in states])
            action_values = np.stack([self.plan.commands.join(p) for p in actions])
        except LayoutError as exc:
            return f"joint states or commands do not fit the layout ({exc})"
        except ValueError:   # np.stack: the vectors' lengths changed inside the episode
            return "the joint-state or command length changes inside the episode"
        if len({self.frames[s].shape for s in stamps}) > 1:
            return "the image size changes inside the episode"
        task = self.tasks.get(eid)
        instruction = task.instruction if task is not None else tmap.instruction
        if not instruction:
            return "no instruction (no task message and no `instruction` in the topic map)"
        self.state_names = self.state_names or self.plan.states.names(states[0])
        self.command_names = self.command_names or self.plan.commands.names(actions[0])
        rewards = np.zeros(len(stamps) - 1, np.float32)
        rewards[-1] = float(success)   # sparse outcome; Stage 1 labels come from the success flag
        outcome = end.outcome if end is not None else None
        metadata = {"source": "rosbag2", "bag": self.bag, "station": self.name, "episode_id": int(eid),
                    "outcome": OUTCOMES.get(outcome, "unknown") if end is not None else "no events",
                    "joint_names": self.state_names, "command_names": self.command_names,
                    "first_stamp_ns": int(stamps[0])}
        if task is not None:
            metadata.update(env=task.env_id, family=task.family, seed=int(task.seed),
                            goal=json.loads(task.goal_json) if task.goal_json else {})
        extras = {}
        has_truth = all(s in self.truth for s in stamps)
        if "ground_truth" in self.plan.roles and not has_truth and not final:
            return None   # the labels travel on their own topic: wait for them as for any other part
        if self.truth and has_truth:
            extras = ground_truth_labels([self.truth[s] for s in stamps], metadata)
        elif self.truth:
            self.report.notes["frames without their sim/ground_truth (imported without training labels)"] += 1
        try:
            return Episode(np.stack([self.frames[s] for s in stamps]), proprio, action_values, rewards,
                           instruction, bool(success), metadata, extras)
        except DatasetError as exc:
            return f"invalid episode ({exc})"

    def _index(self, table: dict):
        """The table's stamps, sorted, for the nearest-stamp lookups of one build (None: exact stamps only)."""
        return np.fromiter(sorted(table), np.int64, len(table)) if self.tolerance > 0 and table else None

    def _stamped(self, table: dict, index, stamp: int):
        if stamp in table:
            return table[stamp]
        if index is None:
            return None
        i = int(np.searchsorted(index, stamp))
        near = min((int(index[j]) for j in (i - 1, i) if 0 <= j < len(index)), key=lambda s: abs(s - stamp))
        return table[near] if abs(near - stamp) <= self.tolerance else None

    @staticmethod
    def _in_force(timed, before: int):
        """The newest headerless value recorded before bag time `before` (the command in force then)."""
        value = None
        for t, names, values in timed:
            if t >= before:
                break
            value = (names, values)
        return value


def _split(stamps: list[int], holes: list[int]) -> list[list[int]]:
    pieces, current = [], []
    cuts = sorted(holes)
    for s in stamps:
        if current and any(current[-1] < h <= s for h in cuts):
            pieces.append(current)
            current = []
        if s not in cuts:
            current.append(s)
    if current:
        pieces.append(current)
    return pieces


def read_bag(path: pathlib.Path, config: ImportConfig, report: BagReport, size):
    """Yield the Episodes of one bag as they end, station by station; `report` counts every drop and names
    stations that cannot be read. Raises BagImportError for a bag that cannot be read."""
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
        try:
            plans = _plans(topics, config)
        except (ConfigError, LayoutError) as exc:
            raise BagImportError(f"{path}: {exc}") from exc
        image = config.topics.image if not config.profile else "the profile's camera"
        if not plans:
            raise BagImportError(f"{path}: no image topic {image!r} (topics: {', '.join(sorted(topics)) or 'none'})"
                                 "; map the topic names with --topics")
        report.station_errors.update({n: why for n, why in plans.items() if isinstance(why, str)})
        plans = {n: p for n, p in plans.items() if not isinstance(p, str)}
        if not plans:
            raise BagImportError(f"{path}: " + "; ".join(report.station_errors.values()))
        role_of = {}   # topic -> [(station, role, source index)]
        for name, plan in plans.items():
            for role, topic in plan.roles.items():
                role_of.setdefault(topic, []).append((name, role, 0))
            for i, topic in enumerate(plan.state_topics):
                role_of.setdefault(topic, []).append((name, "joint_states", i))
            for i, topic in enumerate(plan.command_topics):
                role_of.setdefault(topic, []).append((name, "command", i))
        decoder = {}   # connection id -> the typestore that reads it
        for c in reader.connections:   # types the store lacks come with the bag
            if c.topic in role_of and c.msgtype not in store.fielddefs:
                store.register(get_types_from_msg(c.msgdef.data, c.msgtype))
            if c.topic in role_of:
                decoder[c.id] = own_store(c, store)
        streams = {name: _Stream(name, plan, config, size, report, str(path)) for name, plan in plans.items()}
        connections = [c for c in reader.connections if c.topic in role_of]
        try:
            for conn, bag_time, raw in reader.messages(connections=connections):
                try:
                    msg = decoder[conn.id].deserialize_cdr(raw, conn.msgtype)
                except Exception as exc:   # a corrupt record: count it (a frame's is a hole), keep the rest
                    for name, role, _ in role_of[conn.topic]:
                        streams[name].bad_record(role, bag_time, exc)
                    continue
                for name, role, index in role_of[conn.topic]:
                    stream = streams[name]
                    stream.add(role, index, conn.msgtype, msg, bag_time)
                    if stream.closing:
                        yield from stream.ready()
        except ReaderError as exc:
            raise BagImportError(f"{path}: reading failed part-way ({exc}); the storage file is truncated or "
                                 "corrupt") from exc
        for stream in streams.values():
            yield from stream.ready(final=True)
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
    """Import every bag into the data set at `out` (created or appended to); one report per bag. Each bag is
    one transaction: a bag that fails part-way leaves the data set as it was before it; a data set folder this
    call created and nothing was imported into is removed again."""
    root = pathlib.Path(out)
    created = not (root / "meta.json").exists()
    dataset = EpisodeDataset(out, create=True)
    present = {e["metadata"].get("bag_sha256") for e in dataset.index}
    reports = []
    for bag in bags:
        report = BagReport(bag=str(bag))
        reports.append(report)
        path = pathlib.Path(bag)
        digest = bag_digest(path) if path.exists() else ""
        if digest and digest in present and not config.force:
            report.skipped = True
            report.notes["already in the data set (the same content; --force imports it again)"] += 1
            continue
        size = image_size(config) or _resolution(dataset)
        try:
            with dataset.transaction():
                for episode in read_bag(path, config, report, size):
                    episode.metadata["bag_sha256"] = digest
                    try:
                        dataset.append(episode)
                    except DatasetError as exc:
                        report.dropped[f"does not fit the data set ({exc})"] += 1
                        continue
                    report.imported += 1
                    report.steps += episode.steps
                    report.successes += int(episode.success)
        except (BagImportError, Exception) as exc:   # (anything else: still one line naming the bag)
            why = str(exc) if isinstance(exc, BagImportError) else f"{bag}: {type(exc).__name__}: {exc}"
            report.error = why + (f" (the {report.imported} episodes read before it are not imported)"
                                  if report.imported else "")
            report.imported = report.steps = report.successes = 0
            log(f"error: {report.error}")
            continue
        for station, why in report.station_errors.items():
            log(f"error: {bag}: {why} (its other stations import)")
        present.add(digest)
    if created and not len(dataset):
        shutil.rmtree(root, ignore_errors=True)
    return reports


def _resolution(dataset: EpisodeDataset) -> tuple[int, int] | None:
    """(W, H) of the data set's frames, once it has any."""
    if dataset.meta["shapes"] is None:
        return None
    h, w, _ = dataset.meta["shapes"]["rgb"]
    return w, h


def summary_table(reports: list[BagReport]) -> str:
    lines = [f"{'bag':<40}{'episodes':>9}{'imported':>9}{'steps':>8}{'success':>8}  dropped / error"]
    for r in reports:
        name = r.bag if len(r.bag) <= 38 else "..." + r.bag[-35:]
        stations = [f"station failed: {why}" for why in r.station_errors.values()] if not r.error else []
        detail = r.error or "; ".join(stations + [f"{n} x {why}" for why, n in (r.dropped + r.notes).most_common()]) or "-"
        lines.append(f"{name:<40}{r.episodes:>9}{r.imported:>9}{r.steps:>8}{r.successes:>8}  {detail}")
    total = [sum(getattr(r, k) for r in reports) for k in ("episodes", "imported", "steps", "successes")]
    lines.append(f"{'total':<40}{total[0]:>9}{total[1]:>9}{total[2]:>8}{total[3]:>8}")
    return "\n".join(lines)
