"""Demonstrations through rosbag2: record over the real graph, import, and every bad input named clearly."""
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import yaml

from sefm_bags.importer import ImportConfig, TopicMap, decode_image, import_bags
from sefm_bags.types import typestore
from sefm_bags.writer import SegmentedBagWriter
from sefm_cli.collect import collect_language_table
from sefm_cli.teleop import command_for, parse_keys
from sefm_core import seeds
from sefm_core.data import EpisodeDataset

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")
SIZE = (64, 36)


def sefm(*args, timeout=180, **kwargs):
    return subprocess.run([SEFM, *args], capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    """Ground truth: the oracle's episodes written directly (no ROS) for the seeds the stations use."""
    out = {}
    for seed in seeds.station_seeds("train_demos", 2, 4):
        path = tmp_path_factory.mktemp("direct") / "ds"
        out[seed] = collect_language_table(
            str(path), 4, ["block2block"], "BLOCK_4", seed, 0.0, SIZE, keep_failures=True, log=lambda *_: None)
    return out


def assert_same_training_data(got, want, labels: bool = False):
    assert got.instruction == want.instruction
    assert got.success == want.success
    assert np.array_equal(got.rgb, want.rgb)
    assert np.array_equal(got.proprio, want.proprio)
    assert np.array_equal(got.actions, want.actions)
    if labels:   # recorded from a simulated station: its ground truth gives the same training labels
        assert np.array_equal(got.extras["block_xy"], want.extras["block_xy"])
        assert np.array_equal(got.extras["goal_holds"], want.extras["goal_holds"])
        for key in ("blocks", "camera", "goal", "first_success_step"):
            assert got.metadata[key] == want.metadata[key], key


def by_station(dataset):
    out = {}
    for episode in dataset:
        out.setdefault(episode.metadata["station"], []).append(episode)
    return out


@pytest.mark.parametrize("storage,stations,compressed", [("mcap", 2, False), ("sqlite3", 1, False),
                                                          ("mcap", 1, True)])
def test_demos_through_the_graph_import_to_the_ground_truth(tmp_path, truth, storage, stations, compressed):
    """Recorded raw, or (compressed) with zstd MCAP chunks and the frames stored as PNG CompressedImage on
    <camera>/compressed: lossless both, so the import equals the simulator's ground truth either way."""
    bag = tmp_path / "session"
    extra = ["--compression", "zstd", "--image-format", "png"] if compressed else []
    run = sefm("demos", str(bag), "--episodes", str(2 * stations), "--stations", str(stations), "--storage",
               storage, "--families", "block2block", "--image-size", "64x36", *extra)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == storage
    camera = "/station_0/camera/image_raw" + ("/compressed" if compressed else "")
    types = {t["topic_metadata"]["name"]: t["topic_metadata"]["type"] for t in meta["topics_with_message_count"]}
    assert types[camera] == ("sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image")
    if compressed:   # every chunk zstd-compressed, as rosbag2's MCAP plugin writes it (no rosbag2 compression)
        from rosbags.rosbag2.storage_mcap import McapReader

        assert meta["compression_mode"] == ""
        for name in meta["relative_file_paths"]:
            mcap = McapReader(bag / name)
            mcap.open()
            try:
                assert mcap.chunks and {c.compression for c in mcap.chunks} == {"zstd"}
            finally:
                mcap.close()
    assert all(isinstance(t["topic_metadata"]["offered_qos_profiles"], str) for t in meta["topics_with_message_count"])
    # each topic's publishers' QoS, as rosbag2 stores it: the task latched (a replay latches it again)
    offered = {t["topic_metadata"]["name"]: yaml.safe_load(t["topic_metadata"]["offered_qos_profiles"])
               for t in meta["topics_with_message_count"]}
    task = offered["/station_0/task"]
    assert task and all(q["durability"] == 1 and q["reliability"] == 1 for q in task), task   # transient local
    assert all(q["durability"] == 2 for q in offered[camera])                                 # volatile
    info = sefm("bag", "info", str(bag))
    assert info.returncode == 0 and camera in info.stdout

    out = tmp_path / "dataset"
    imported = sefm("bag", "import", str(bag), "--out", str(out))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "total" in imported.stdout
    stations_seen = by_station(EpisodeDataset(out))
    assert sorted(stations_seen) == [f"station_{i}" for i in range(stations)]
    for i, (name, episodes) in enumerate(sorted(stations_seen.items())):
        want = [e for e in truth[seeds.first_seed("train_demos", i)] if e.success][:2]
        assert len(episodes) == 2
        for got, expected in zip(episodes, want):
            assert_same_training_data(got, expected, labels=True)
            assert got.metadata["outcome"] == "env_success" and got.metadata["seed"] == expected.metadata["seed"]
            assert (got.rgb.shape[1], got.rgb.shape[2]) == (SIZE[1], SIZE[0])
    if storage == "mcap":   # the imported data set trains as it is: record -> import -> train
        sft = sefm("sft", str(out), "--backbone", "scratch", "--steps", "3", "--batch-size", "8", "--run-dir",
                   str(tmp_path / "sft"), timeout=300)
        assert sft.returncode == 0, sft.stderr[-2000:]
        assert (tmp_path / "sft" / "checkpoints" / "final" / "model.safetensors").exists()


def test_killed_recorder_leaves_a_readable_bag_of_the_finished_episodes(tmp_path, truth):
    bag = tmp_path / "session"
    demos = subprocess.Popen([SEFM, "demos", str(bag), "--episodes", "40", "--families", "block2block",
                              "--image-size", "64x36"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            meta_path = bag / "metadata.yaml"
            if meta_path.exists():
                files = yaml.safe_load(meta_path.read_text())["rosbag2_bagfile_information"]["files"]
                if len(files) >= 3:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the recorder never closed 3 segments")
        pids = subprocess.run(["pgrep", "-P", str(demos.pid), "-f", "sefm_bags.recorder_node"], capture_output=True,
                              text=True).stdout.split()   # the recorder: a process of its own, started by demos
        assert pids, "recorder process not found"
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
        demos.wait(timeout=60)
        assert demos.returncode != 0   # the session notices its recorder died
    finally:
        if demos.poll() is None:
            demos.kill()
    out = tmp_path / "dataset"
    reports = import_bags([str(bag)], str(out), log=lambda *_: None)
    assert not reports[0].error
    episodes = list(EpisodeDataset(out))
    assert len(episodes) >= 2
    want = [e for e in truth[0] if e.success]
    for got, expected in zip(episodes, want):   # every imported episode is whole and exact
        assert_same_training_data(got, expected, labels=True)


# --- bags written here, as other drivers would record them --------------------------------------------------

def stamp(store, ns):
    return store.types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)


def header(store, ns):
    return store.types["std_msgs/msg/Header"](stamp=stamp(store, ns), frame_id="cam")


def image_message(store, rgb, ns, encoding):
    if encoding in ("jpeg", "png"):
        ok, buf = cv2.imencode(".jpg" if encoding == "jpeg" else ".png", rgb[..., ::-1])
        assert ok
        return "sensor_msgs/msg/CompressedImage", store.types["sensor_msgs/msg/CompressedImage"](
            header=header(store, ns), format=encoding, data=buf.ravel())
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., :1]}.get(encoding, rgb)
    h, w, c = pixels.shape
    return "sensor_msgs/msg/Image", store.types["sensor_msgs/msg/Image"](
        header=header(store, ns), height=h, width=w, encoding=encoding, is_bigendian=0, step=w * c,
        data=np.ascontiguousarray(pixels).ravel())


def write_bag(path, episodes, encoding="rgb8", topics=None, events=True, command_type="JointState",
              storage="mcap", corrupt=None, store=None, extra=()):
    """Episodes as a driver + SEFM graph would have recorded them (one station), with some knobs to break it
    (`corrupt`: the first episode's); `store`: the message definitions it is recorded with (default: today's);
    `extra`: (topic, msgtype, message, bag time) written first."""
    store = store or typestore()
    asks = {"operator_asks": 0} if "operator_asks" in str(store.fielddefs["sefm_interfaces/msg/EpisodeEvent"]) else {}
    t = topics or {"image": "/station_0/camera/image_raw", "joint_states": "/station_0/joint_states",
                   "command": "/station_0/joint_command", "task": "/station_0/task",
                   "episode_event": "/station_0/episode_event"}
    writer = SegmentedBagWriter(path, storage, typestore=store)
    ns = 1_000_000_000
    types = {}
    for topic, msgtype, msg, when in extra:
        writer.add_topic(topic, msgtype)
        types[topic] = msgtype
        writer.write(topic, when, bytes(store.serialize_cdr(msg, msgtype)))
    for k, episode in enumerate(episodes):
        stamps = [ns + 100_000_000 * i for i in range(episode.steps + 1)]
        msgs = []
        if t.get("task"):
            task = store.types["sefm_interfaces/msg/Task"](
                header=header(store, stamps[0]), station="station_0", episode_id=k, env_id="sim", family="f",
                instruction=episode.instruction, goal_json="{}", seed=k, max_steps=200)
            msgs.append((t["task"], "sefm_interfaces/msg/Task", task, stamps[0]))
        event = store.types["sefm_interfaces/msg/EpisodeEvent"]
        if events:
            msgs.append((t["episode_event"], "sefm_interfaces/msg/EpisodeEvent",
                         event(header=header(store, stamps[0]), station="station_0", episode_id=k, event=0, outcome=0,
                               num_steps=0, last_observation_stamp=stamp(store, stamps[0]), env_success=False, env_success_known=True,
                               detail="", **asks), stamps[0]))
        for i, s in enumerate(stamps):
            hole = k == 0 and (i == 2 if corrupt in ("bad_frame", "garbage_frame") else
                               i == len(stamps) - 1 if corrupt == "lost_goal" else False)
            msgtype, image = image_message(store, episode.rgb[i], s, "yuv422" if hole and corrupt == "bad_frame"
                                           else encoding)
            if hole and corrupt == "garbage_frame":
                image = b"\x00\x01\x00\x00garbage"   # a record that does not decode as an Image at all
            if not (hole and corrupt == "lost_goal"):
                msgs.append((t["image"], msgtype, image, s + 1))
            state_stamp = s + (1000 if corrupt == "stamps" and k == 0 else 0)
            position = np.zeros(0) if corrupt == "empty_state" and k == 0 else episode.proprio[i].astype(np.float64)
            joint = store.types["sensor_msgs/msg/JointState"](
                header=header(store, state_stamp), name=["a", "b", "c", "d"], position=position,
                velocity=np.zeros(0), effort=np.zeros(0))
            msgs.append((t["joint_states"], "sensor_msgs/msg/JointState", joint, s + 2))
            if i < episode.steps and not (corrupt == "missing_command" and k == 0 and i == 3):
                if command_type == "JointState":
                    command = store.types["sensor_msgs/msg/JointState"](
                        header=header(store, s), name=["dx", "dy"], position=episode.actions[i].astype(np.float64),
                        velocity=np.zeros(0), effort=np.zeros(0))
                    msgs.append((t["command"], "sensor_msgs/msg/JointState", command, s + 3))
                else:
                    layout = store.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
                    command = store.types["std_msgs/msg/Float64MultiArray"](
                        layout=layout, data=episode.actions[i].astype(np.float64))
                    msgs.append((t["command"], "std_msgs/msg/Float64MultiArray", command, s + 3))
        if events:
            msgs.append((t["episode_event"], "sefm_interfaces/msg/EpisodeEvent",
                         event(header=header(store, stamps[-1]), station="station_0", episode_id=k, event=1,
                               outcome=2 if episode.success else 3, num_steps=episode.steps,
                               last_observation_stamp=stamp(store, stamps[-1]), env_success=episode.success, env_success_known=True,
                               detail="", **asks), stamps[-1] + 5))
        for topic, msgtype, msg, when in msgs:
            if topic not in types:
                writer.add_topic(topic, msgtype)
                types[topic] = msgtype
            writer.write(topic, when, msg if isinstance(msg, bytes) else bytes(store.serialize_cdr(msg, msgtype)))
        writer.roll()
        ns = stamps[-1] + 1_000_000_000
    writer.close()
    return path


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "png", "jpeg"])
def test_image_encodings_and_compressed_images_import(tmp_path, truth, encoding):
    episodes = [e for e in truth[0] if e.success][:2]
    bag = write_bag(tmp_path / "bag", episodes, encoding=encoding, storage="sqlite3" if encoding == "png" else "mcap")
    reports = import_bags([str(bag)], str(tmp_path / "ds"), log=lambda *_: None)
    assert reports[0].imported == 2, reports[0]
    for got, want in zip(EpisodeDataset(tmp_path / "ds"), episodes):
        assert np.array_equal(got.actions, want.actions) and np.array_equal(got.proprio, want.proprio)
        if encoding == "mono8":
            assert np.array_equal(got.rgb, np.repeat(want.rgb[..., :1], 3, axis=3))
        elif encoding == "jpeg":
            assert np.abs(got.rgb.astype(int) - want.rgb).mean() < 8   # lossy, but the same picture
        else:
            assert np.array_equal(got.rgb, want.rgb)


def test_remapped_topics_of_a_real_robot_import_through_a_topic_map(tmp_path, truth):
    episodes = [e for e in truth[0] if e.success][:2]
    topics = {"image": "/camera/color/image_raw/compressed", "joint_states": "/robot/joint_states",
              "command": "/robot/forward_command_controller/commands", "episode_event": "/teleop/episode_event"}
    bag = write_bag(tmp_path / "bag", episodes, encoding="png", topics=topics, command_type="Float64MultiArray")
    mapping = tmp_path / "topics.yaml"
    mapping.write_text(yaml.safe_dump({"topics": {**topics, "task": "", "instruction": "push the block",
                                                  "station": "arm_1"}}))
    run = sefm("bag", "import", str(bag), "--out", str(tmp_path / "ds"), "--topics", str(mapping))
    assert run.returncode == 0, run.stdout + run.stderr
    got = list(EpisodeDataset(tmp_path / "ds"))
    assert len(got) == 2
    for g, want in zip(got, episodes):
        assert g.instruction == "push the block" and g.metadata["station"] == "arm_1"
        assert np.array_equal(g.rgb, want.rgb) and np.array_equal(g.actions, want.actions)
    # without the map the bag's topics are not found, and the error says which exist
    plain = sefm("bag", "import", str(bag), "--out", str(tmp_path / "ds2"))
    assert plain.returncode == 1 and "/camera/color/image_raw/compressed" in plain.stdout


def test_a_bag_is_imported_once_and_an_older_message_definition_still_reads(tmp_path, truth):
    """Importing the same bag again adds nothing (its content hash is in the data set) unless forced; a bag
    recorded before EpisodeEvent gained `operator_asks` is decoded with its own definition."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from sefm_bags.types import interface_msg_dir

    episodes = [e for e in truth[0] if e.success][:2]
    old = get_typestore(Stores.ROS2_KILTED)
    for path in sorted(interface_msg_dir().glob("*.msg")):
        text = path.read_text()
        if path.stem == "EpisodeEvent":
            text = "\n".join(line for line in text.splitlines() if not line.startswith("uint32 operator_asks"))
        old.register(get_types_from_msg(text, f"sefm_interfaces/msg/{path.stem}"))
    bag = write_bag(tmp_path / "old_bag", episodes, store=old)
    out = tmp_path / "ds"
    first = sefm("bag", "import", str(bag), "--out", str(out))
    assert first.returncode == 0, first.stdout + first.stderr
    got = list(EpisodeDataset(out))
    assert len(got) == 2 and all(g.metadata["outcome"] == "env_success" for g in got)
    assert len({g.metadata["bag_sha256"] for g in got}) == 1
    again = sefm("bag", "import", str(bag), "--out", str(out))
    assert again.returncode == 0 and "already in the data set" in again.stdout and len(EpisodeDataset(out)) == 2
    forced = sefm("bag", "import", str(bag), "--out", str(out), "--force")
    assert forced.returncode == 0 and len(EpisodeDataset(out)) == 4


def test_empty_joint_states_bad_maps_unreadable_metadata_and_a_file_as_out_are_named(tmp_path, truth):
    good = [e for e in truth[0] if e.success][:2]
    log = lambda *_: None  # noqa: E731
    # an episode whose joint states carry no positions is dropped with the reason, and does not lock the data
    # set's width: a later, whole bag still imports
    out = tmp_path / "ds"
    report = import_bags([str(write_bag(tmp_path / "empty", good, corrupt="empty_state"))], str(out), log=log)[0]
    assert report.imported == 1 and report.episodes == 2, (report.dropped, report.notes)
    assert import_bags([str(write_bag(tmp_path / "whole", good))], str(out), log=log)[0].imported == 2
    assert {e.proprio.shape[1] for e in EpisodeDataset(out)} == {4}
    # a bare .mcap file (one segment: the first episode) imports as `bag info` reads it
    bare = sefm("bag", "import", str(tmp_path / "whole" / "whole_0.mcap"), "--out", str(tmp_path / "bare"))
    assert bare.returncode == 0 and len(EpisodeDataset(tmp_path / "bare")) == 1, bare.stdout + bare.stderr
    # an absolute topic map whose camera topic is not in the bag: the error lists the bag's topics
    mapping = tmp_path / "map.yaml"
    mapping.write_text(yaml.safe_dump({"topics": {"image": "/no/such/camera", "joint_states": "/robot/joints"}}))
    run = sefm("bag", "import", str(tmp_path / "whole"), "--out", str(tmp_path / "ds2"), "--topics", str(mapping))
    assert run.returncode == 1 and "no image topic '/no/such/camera'" in run.stdout and "/station_0/camera" in run.stdout
    # a metadata.yaml that is not UTF-8: one line from import and from info, no traceback
    broken = write_bag(tmp_path / "broken", good)
    (broken / "metadata.yaml").write_bytes(b"\xff\xfe\x00rosbag2")
    for args in (("import", str(broken), "--out", str(tmp_path / "ds3")), ("info", str(broken))):
        run = sefm("bag", *args)
        assert run.returncode == 1 and "Traceback" not in run.stdout + run.stderr and "broken" in run.stdout + run.stderr
    # --out pointing at a file
    afile = tmp_path / "afile"
    afile.write_text("x")
    run = sefm("bag", "import", str(tmp_path / "whole"), "--out", str(afile))
    assert run.returncode == 2 and "is a file" in run.stderr and "Traceback" not in run.stderr


def test_bad_input_is_named_and_good_episodes_survive(tmp_path, truth):
    good = [e for e in truth[0] if e.success][:3]
    log = lambda *_: None  # noqa: E731
    # one bad episode (a command missing, stamps inconsistent) among good ones: only it is dropped, with its reason
    for corrupt, reason in (("missing_command", "no command"), ("stamps", "inconsistent stamps")):
        bag = write_bag(tmp_path / f"bag_{corrupt}", good, corrupt=corrupt)
        report = import_bags([str(bag)], str(tmp_path / f"ds_{corrupt}"), log=log)[0]
        assert report.imported == 2 and report.episodes == 3
        assert any(reason in why for why in report.dropped), report.dropped
    # wrong message type on the image topic
    store = typestore()
    wrong = SegmentedBagWriter(tmp_path / "wrong_type", typestore=store)
    wrong.add_topic("/station_0/camera/image_raw", "std_msgs/msg/String")
    wrong.write("/station_0/camera/image_raw", 1, bytes(store.serialize_cdr(
        store.types["std_msgs/msg/String"](data="x"), "std_msgs/msg/String")))
    wrong.close()
    # a missing required topic: no joint states
    no_joints = write_bag(tmp_path / "no_joints", good[:1], topics={
        "image": "/station_0/camera/image_raw", "joint_states": "/station_0/other", "command": "/station_0/joint_command",
        "task": "/station_0/task", "episode_event": "/station_0/episode_event"})
    # a truncated storage file, a folder without metadata.yaml, a path that does not exist
    truncated = write_bag(tmp_path / "truncated", good[:1])
    storage_file = next(truncated.glob("*.mcap"))
    storage_file.write_bytes(storage_file.read_bytes()[:-200])
    no_meta = write_bag(tmp_path / "no_meta", good[:1])
    (no_meta / "metadata.yaml").unlink()
    # an episode none of whose frames can be read (an unsupported encoding): every frame is a hole
    empty = write_bag(tmp_path / "empty", good[:1], encoding="yuv422")
    ok = write_bag(tmp_path / "ok", good[:2])
    bags = [tmp_path / "wrong_type", no_joints, truncated, no_meta, tmp_path / "missing", empty, ok]
    reports = import_bags([str(b) for b in bags], str(tmp_path / "ds"), log=log)
    errors = {pathlib.Path(r.bag).name: r.error for r in reports}
    assert "std_msgs/msg/String" in errors["wrong_type"] and "camera/image_raw" in errors["wrong_type"]
    assert "joint_states" in errors["no_joints"]
    assert "truncated" in errors["truncated"] or "corrupt" in errors["truncated"]
    assert "metadata.yaml" in errors["no_meta"]
    assert "not a rosbag2 folder" in errors["missing"]
    empty_report = reports[5]
    assert empty_report.imported == 0 and any("yuv422" in why for why in empty_report.dropped)
    assert any("a hole in the episode: an unreadable frame" in why for why in empty_report.dropped)
    assert reports[-1].imported == 2 and len(EpisodeDataset(tmp_path / "ds")) == 2   # the good bag still imports
    # the command line says the same, and its exit code says something was wrong
    run = sefm("bag", "import", str(tmp_path / "missing"), str(ok), "--out", str(tmp_path / "ds3"))
    assert run.returncode == 1 and "not a rosbag2 folder" in run.stdout and len(EpisodeDataset(tmp_path / "ds3")) == 2


def test_bag_without_events_splits_on_task_changes(tmp_path, truth):
    episodes = [e for e in truth[0] if e.success][:2]
    bag = write_bag(tmp_path / "bag", episodes, events=False)
    config = ImportConfig(topics=TopicMap(episode_event="", assume_success=True))
    reports = import_bags([str(bag)], str(tmp_path / "ds"), config, log=lambda *_: None)
    assert reports[0].imported == 2
    for got, want in zip(EpisodeDataset(tmp_path / "ds"), episodes):
        assert_same_training_data(got, want)


def test_decode_image_rejects_what_it_cannot_read():
    store = typestore()
    _, msg = image_message(store, np.zeros((4, 4, 3), np.uint8), 1, "rgb8")
    msg.step = 5
    with pytest.raises(ValueError, match="does not match"):
        decode_image(msg, "sensor_msgs/msg/Image")
    bad = store.types["sensor_msgs/msg/CompressedImage"](header=header(store, 1), format="jpeg",
                                                         data=np.frombuffer(b"not an image", np.uint8))
    with pytest.raises(ValueError, match="does not decode"):
        decode_image(bad, "sensor_msgs/msg/CompressedImage")


def test_keyboard_keys():
    keys, rest = parse_keys("\x1b[A\x1b[Cs d q\x1b[")
    assert keys == ["up", "right", "success", "stay", "discard", "stay", "quit"] and rest == "\x1b["
    assert command_for("up", 0.03) == (-0.03, 0.0) and command_for("success", 0.03) is None


def test_keyboard_teleop_drives_a_recorded_station(tmp_path):
    name = "teleop_station"
    bag = tmp_path / "bag"
    bridge = subprocess.Popen([sys.executable, "-m", "sefm_sim_bridge.bridge_node", "--ros-args", "-r",
                               f"__ns:=/{name}", "-p", "image_width:=64", "-p", "image_height:=36",
                               "-p", "min_subscribers:=1"],  # the recorder
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recorder = subprocess.Popen([sys.executable, "-m", "sefm_bags.recorder_node", "--ros-args", "-p",
                                 f"output:={bag}", "-p", f"stations:={name}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # three moves then "success"; two moves then "discard"; then quit
        keys = "\x1b[A\x1b[A\x1b[Cs\x1b[B\x1b[Ddq"
        teleop = subprocess.run([SEFM, "teleop", "--station", name, "--step", "0.02"], input=keys.encode(),
                                capture_output=True, timeout=60)
        assert teleop.returncode == 0, teleop.stderr.decode()[-2000:]
        time.sleep(1.0)
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=30)
        bridge.terminate()
        bridge.wait(timeout=30)
    report = import_bags([str(bag)], str(tmp_path / "ds"), log=lambda *_: None)[0]
    assert report.imported == 1 and report.dropped["discarded by the operator"] == 1, report
    episode = EpisodeDataset(tmp_path / "ds")[0]
    assert episode.success and episode.metadata["outcome"] == "operator_success"
    assert np.allclose(episode.actions, [[-0.02, 0.0], [-0.02, 0.0], [0.0, 0.02]])


def test_a_replayed_bag_latches_its_task_for_a_node_that_starts_late(tmp_path):
    """`sefm bag play` offers each topic the QoS its recorded publishers offered: the task is transient local
    again, so a node that subscribes after the replay still gets every task (keep-last 32); the camera is
    volatile, so it gets no old frame."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from sefm_interfaces.msg import Task
    from sefm_ros.common import EPISODES
    from sensor_msgs.msg import Image

    bag = tmp_path / "session"
    run = sefm("demos", str(bag), "--episodes", "2", "--stations", "1", "--families", "block2block",
               "--image-size", "64x36")
    assert run.returncode == 0, run.stderr[-2000:]
    recorded = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    tasks_in_bag = next(t["message_count"] for t in recorded["topics_with_message_count"]
                        if t["topic_metadata"]["name"] == "/station_0/task")
    player = subprocess.Popen([SEFM, "bag", "play", str(bag), "--rate", "4", "--hold", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "played" not in line and time.monotonic() < deadline and player.poll() is None:
            line = player.stdout.readline()
        assert "played" in line, line
        node = rclpy.create_node("late_subscriber", context=context)   # after the last message went out
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        tasks, frames = [], []
        node.create_subscription(Task, "/station_0/task", tasks.append, EPISODES)
        node.create_subscription(Image, "/station_0/camera/image_raw", frames.append, 10)
        deadline = time.monotonic() + 15
        while len(tasks) < tasks_in_bag and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert tasks_in_bag >= 2 and len(tasks) == tasks_in_bag and all(t.instruction for t in tasks)
        assert not frames
    finally:
        player.terminate()
        player.wait(timeout=20)
        rclpy.shutdown(context=context)


def synthetic(n: int, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    from sefm_core.data import Episode

    return [Episode(rng.integers(0, 255, (steps + 1, 12, 16, 3), dtype=np.uint8), rng.normal(size=(steps + 1, 4)),
                    rng.normal(size=(steps, 2)), np.zeros(steps), "push the block", True) for _ in range(n)]


@pytest.mark.parametrize("corrupt,what", [("bad_frame", "an unreadable frame"), ("garbage_frame", "a hole in the episode"),
                                          ("lost_goal", "the goal frame")])
def test_an_episode_with_a_hole_is_dropped_or_split_never_imported_whole(tmp_path, corrupt, what):
    episodes = synthetic(3, 8)
    bag = write_bag(tmp_path / "bag", episodes, corrupt=corrupt)
    report = import_bags([str(bag)], str(tmp_path / "ds"), log=lambda *_: None)[0]
    assert report.imported == 2 and any(what in why for why in report.dropped), report.dropped
    assert all(e.metadata["episode_id"] != 0 for e in EpisodeDataset(tmp_path / "ds"))
    if corrupt == "lost_goal":
        return
    split = ImportConfig(gaps="split", keep_failures=True)
    report = import_bags([str(bag)], str(tmp_path / "split"), split, log=lambda *_: None)[0]
    pieces = [e for e in EpisodeDataset(tmp_path / "split") if e.metadata["episode_id"] == 0]
    assert [p.steps for p in pieces] == [1, 5] and [p.success for p in pieces] == [False, True]
    assert np.array_equal(pieces[0].actions, episodes[0].actions[:1])
    assert np.array_equal(pieces[1].actions, episodes[0].actions[3:])
    assert np.array_equal(pieces[1].rgb, episodes[0].rgb[3:])


def test_import_streams_with_memory_bounded_by_the_longest_episode(tmp_path):
    episodes = synthetic(10, 5) + synthetic(1, 11, seed=1)
    bag = write_bag(tmp_path / "bag", episodes)
    report = import_bags([str(bag)], str(tmp_path / "ds"), ImportConfig(image_size="8x6"), log=lambda *_: None)[0]
    assert report.imported == 11 and report.peak_frames <= 12 + 1, report.peak_frames
    dataset = EpisodeDataset(tmp_path / "ds")
    assert dataset.meta["shapes"]["rgb"] == [6, 8, 3]
    # a later bag is resized to the data set's resolution; a bag that fails leaves the data set as it was
    assert import_bags([str(write_bag(tmp_path / "more", synthetic(1, 4, 2)))], str(tmp_path / "ds"),
                       log=lambda *_: None)[0].imported == 1
    assert len(EpisodeDataset(tmp_path / "ds")) == 12
    assert import_bags([str(tmp_path / "missing")], str(tmp_path / "new"), log=lambda *_: None)[0].error
    assert not (tmp_path / "new").exists()   # a failed import leaves no empty data set folder


def test_an_aloha_session_with_four_source_topics_imports_through_its_robot_profile(tmp_path):
    """Two follower arms' joint states (9 joints each, at 100 Hz, stamped off the frames) and each arm's Interbotix
    joint_group + joint_single commands (50 Hz, headerless) join into one 14-D observation and action in the
    profile's order; without task or event topics, the topic map's instruction makes the bag one episode."""
    from sefm_station.profiles import load_profile

    store = typestore()
    types = store.types
    cam = "/cam_high/camera/color/image_rect_raw"
    arms = ("follower_left", "follower_right")
    names = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper", "left_finger",
             "right_finger"]
    topics = {cam: "sensor_msgs/msg/Image"}
    for arm in arms:
        topics[f"/{arm}/joint_states"] = "sensor_msgs/msg/JointState"
        topics[f"/{arm}/commands/joint_group"] = "interbotix_xs_msgs/msg/JointGroupCommand"
        topics[f"/{arm}/commands/joint_single"] = "interbotix_xs_msgs/msg/JointSingleCommand"
    writer = SegmentedBagWriter(tmp_path / "aloha", typestore=store)
    for topic, msgtype in topics.items():
        writer.add_topic(topic, msgtype)
    msgs = []
    for ms in range(0, 2000, 10):
        n = 10**9 + ms * 10**6
        for a, arm in enumerate(arms):
            position = np.r_[np.full(7, ms / 1000 + a), 0.05, -0.05]
            msgs.append((f"/{arm}/joint_states", n, types["sensor_msgs/msg/JointState"](
                header=header(store, n + 2_000_000), name=names, position=position, velocity=np.zeros(0),
                effort=np.zeros(0))))
            if ms % 20 == 0:
                msgs.append((f"/{arm}/commands/joint_group", n + 1, types["interbotix_xs_msgs/msg/JointGroupCommand"](
                    name="arm", cmd=np.full(6, ms / 1000 + a, np.float32))))
                msgs.append((f"/{arm}/commands/joint_single", n + 2, types["interbotix_xs_msgs/msg/JointSingleCommand"](
                    name="gripper", cmd=np.float32(1.0))))
        if ms % 100 == 0:
            _, image = image_message(store, np.full((48, 64, 3), ms % 255, np.uint8), n, "rgb8")
            msgs.append((cam, n + 3, image))
    for topic, when, msg in sorted(msgs, key=lambda m: m[1]):
        writer.write(topic, when, bytes(store.serialize_cdr(msg, topics[topic])))
    writer.close()
    config = ImportConfig(topics=TopicMap(instruction="transfer the cube", assume_success=True, task="",
                                          episode_event="", joint_state_tolerance_ms=5),
                          profile="aloha_ros2_interbotix", profile_commands="interbotix", image_size="32x24")
    report = import_bags([str(tmp_path / "aloha")], str(tmp_path / "ds"), config, log=lambda *_: None)[0]
    assert report.imported == 1, report
    episode = EpisodeDataset(tmp_path / "ds")[0]
    profile = load_profile("aloha_ros2_interbotix")
    assert episode.rgb.shape == (20, 24, 32, 3) and episode.proprio.shape == (20, 14) and episode.actions.shape == (19, 14)
    assert episode.metadata["joint_names"] == list(profile.command.names)
    finger = float(profile.gripper.from_finger(0.05))
    grip = float(profile.gripper.from_joint(1.0))
    for t in (1, 7):
        want_state = [t / 10] * 6 + [finger] + [t / 10 + 1] * 6 + [finger]   # the state 2 ms after the frame
        assert np.allclose(episode.proprio[t], want_state, atol=1e-6)
        # the commands in force when the next frame was taken
        assert np.allclose(episode.actions[t], [(t + 1) / 10] * 6 + [grip] + [(t + 1) / 10 + 1] * 6 + [grip], atol=1e-6)

    # A camera at a fixed rate (10 Hz here) that loses one frame, with nothing else stamped by it: only the
    # frame period shows the hole, so with max_frame_gap_ms the episode is dropped, never imported with it.
    writer = SegmentedBagWriter(tmp_path / "aloha_gap", typestore=store)
    for topic, msgtype in topics.items():
        writer.add_topic(topic, msgtype)
    lost = 10**9 + 1000 * 10**6 + 3
    for topic, when, msg in sorted(msgs, key=lambda m: m[1]):
        if not (topic == cam and when == lost):
            writer.write(topic, when, bytes(store.serialize_cdr(msg, topics[topic])))
    writer.close()
    gap_config = dataclasses.replace(config, topics=dataclasses.replace(config.topics, max_frame_gap_ms=150))
    report = import_bags([str(tmp_path / "aloha_gap")], str(tmp_path / "ds"), gap_config, log=lambda *_: None)[0]
    assert report.imported == 0 and any("200 ms apart" in reason and "max_frame_gap_ms" in reason
                                        for reason in report.dropped), report


def test_a_failed_transaction_leaves_the_data_set_as_it_was(tmp_path):
    from sefm_core.data import Episode

    dataset = EpisodeDataset(tmp_path / "ds", create=True)
    episode = synthetic(1, 3)[0]
    dataset.append(episode)
    before = ((tmp_path / "ds" / "episodes.jsonl").read_text(), (tmp_path / "ds" / "meta.json").read_text())
    with pytest.raises(RuntimeError, match="part-way"):
        with dataset.transaction():
            dataset.append(episode)
            dataset.append(Episode(episode.rgb, episode.proprio, episode.actions, episode.rewards, "x", False))
            raise RuntimeError("failed part-way")
    assert ((tmp_path / "ds" / "episodes.jsonl").read_text(), (tmp_path / "ds" / "meta.json").read_text()) == before
    assert sorted(p.name for p in (tmp_path / "ds" / "episodes").iterdir()) == ["000000.safetensors"]
    assert len(EpisodeDataset(tmp_path / "ds")) == 1


def test_the_writer_refuses_a_compression_its_storage_cannot_hold(tmp_path):
    from sefm_bags.writer import BagWriteError, SegmentedBagWriter

    with pytest.raises(BagWriteError, match="needs the mcap storage"):
        SegmentedBagWriter(tmp_path / "a", "sqlite3", compression="zstd")
    with pytest.raises(BagWriteError, match="unknown bag compression 'lz4'"):
        SegmentedBagWriter(tmp_path / "b", "mcap", compression="lz4")
