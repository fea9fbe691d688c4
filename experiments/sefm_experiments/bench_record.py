"""`sefm bench record`: the recorder against an ALOHA-shaped session, then the import's peak memory.

    sefm bench record [--minutes 1,5] [--formats raw,jpeg] [--raw-seconds 30] [--markdown docs/benchmarks/record.md]

A synthetic station (`station_0`, the `aloha_ros2_interbotix` profile's topic
names) publishes what a real ALOHA session does: four 640x480 rgb8 cameras at
30 Hz, four arms' 9-joint states at 100 Hz (the followers and the leaders),
each follower's Interbotix commands (joint_group + joint_single) at 50 Hz, and
a task and START/END events every `--episode-seconds`, as the station manager
would. The frames are smooth moving patterns with sensor noise (generated,
not committed; real camera frames compress differently). The real recorder
node runs in its own process, configured like `sefm demos` does, and records
the whole session; then `sefm bag import` reads the bag through the profile
(`--profile aloha_ros2_interbotix --profile-commands interbotix`) in its own
process, whose peak RSS is its `ru_maxrss`.

  dropped   messages published minus messages in the bag (every topic)
  MB/s      bag size on disk / session length
  CPU       the recorder process's CPU time / session length (100% = one core),
            and per stream (the 14 topics) that divided by the topic count
  import    peak RSS of `sefm bag import`; it must not grow with the session

raw records only `--raw-seconds` (110 MB/s of disk); jpeg runs every length
of `--minutes` with zstd MCAP chunks.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from sefm_experiments.bench import emit, machine_line

CAMERAS = ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist")
CAMERA_TOPIC = "{}/camera/color/image_rect_raw"
ARMS = ("follower_left", "follower_right", "leader_left", "leader_right")
JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper", "left_finger",
          "right_finger"]
CAMERA_HZ, JOINT_HZ, COMMAND_HZ = 30.0, 100.0, 50.0
WIDTH, HEIGHT = 640, 480
PROFILE = "aloha_ros2_interbotix"
IMPORT_SIZE = "160x120"   # the data set's resolution: frames are resized on the way in


def topics() -> list[str]:
    names = [CAMERA_TOPIC.format(c) for c in CAMERAS] + [f"{a}/joint_states" for a in ARMS]
    names += [f"{a}/commands/{kind}" for a in ARMS[:2] for kind in ("joint_group", "joint_single")]
    return names + ["task", "episode_event"]


def frames(camera: int, count: int = 30) -> list[bytes]:
    """A camera's looping frames: a gradient with a moving disc, plus noise (what JPEG and zstd see)."""
    import cv2

    rng = np.random.default_rng(camera)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([xx * 255 // WIDTH, yy * 255 // HEIGHT, np.full_like(xx, 60 * camera)], axis=2).astype(np.uint8)
    out = []
    for i in range(count):
        image = base.copy()
        centre = (int(WIDTH / 2 + 200 * np.cos(i / count * 2 * np.pi)), int(HEIGHT / 2 + 120 * np.sin(i / count * 2 * np.pi)))
        cv2.circle(image, centre, 60, (220, 40, 40), -1)
        noise = rng.integers(-6, 7, image.shape)
        out.append(np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8).tobytes())
    return out


class Session:
    """The publishing side: one node, every stream on its own schedule from one thread."""

    def __init__(self, context, episode_seconds: float, depth: int):
        import rclpy
        from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
        from sensor_msgs.msg import Image, JointState

        from sefm_interfaces.msg import EpisodeEvent, Task
        from sefm_ros.common import EPISODES, LATCHED

        self.node = rclpy.create_node("aloha_session", namespace="/station_0", context=context)
        self.episode_seconds = episode_seconds
        self.msgs = {"Image": Image, "JointState": JointState, "Group": JointGroupCommand,
                     "Single": JointSingleCommand, "Task": Task, "Event": EpisodeEvent}
        self.cameras = []
        for i, cam in enumerate(CAMERAS):
            images = []
            for data in frames(i):
                msg = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3)
                msg.data = data
                images.append(msg)
            self.cameras.append((self.node.create_publisher(Image, CAMERA_TOPIC.format(cam), depth), images))
        self.arms = [self.node.create_publisher(JointState, f"{a}/joint_states", depth) for a in ARMS]
        self.groups = [self.node.create_publisher(JointGroupCommand, f"{a}/commands/joint_group", depth) for a in ARMS[:2]]
        self.singles = [self.node.create_publisher(JointSingleCommand, f"{a}/commands/joint_single", depth)
                        for a in ARMS[:2]]
        self.task_pub = self.node.create_publisher(Task, "task", LATCHED)
        self.event_pub = self.node.create_publisher(EpisodeEvent, "episode_event", EPISODES)
        self.sent: dict[str, int] = {t: 0 for t in topics()}
        self.late = 0.0   # s the publishing loop fell behind its schedule at worst

    def publishers(self):
        return ([p for p, _ in self.cameras] + self.arms + self.groups + self.singles
                + [self.task_pub, self.event_pub])

    def wait_for(self, timeout: float = 60.0) -> None:
        """Until the recorder has subscribed to every topic."""
        deadline = time.monotonic() + timeout
        while any(p.get_subscription_count() < 1 for p in self.publishers()):
            if time.monotonic() > deadline:
                missing = [p.topic_name for p in self.publishers() if p.get_subscription_count() < 1]
                raise RuntimeError(f"the recorder never subscribed to {', '.join(missing)}")
            time.sleep(0.1)

    def run(self, seconds: float) -> None:
        clock = self.node.get_clock()
        t0 = time.monotonic()
        due = {"camera": t0, "joint": t0, "command": t0}
        period = {"camera": 1 / CAMERA_HZ, "joint": 1 / JOINT_HZ, "command": 1 / COMMAND_HZ}
        frame, episode, first_stamp, last_stamp, episode_start = 0, 0, None, None, t0
        rng = np.random.default_rng(0)
        while True:
            now = time.monotonic()
            if now - t0 >= seconds:
                break
            kind = min(due, key=due.get)
            if due[kind] > now:
                time.sleep(due[kind] - now)
                continue
            self.late = max(self.late, now - due[kind])
            due[kind] += period[kind]
            stamp = clock.now().to_msg()
            if kind == "camera":
                if first_stamp is None:
                    first_stamp, episode_start = stamp, now
                    self.start_episode(episode, stamp)
                for (pub, images), name in zip(self.cameras, CAMERAS):
                    msg = images[frame % len(images)]
                    msg.header.stamp = stamp
                    pub.publish(msg)
                    self.sent[CAMERA_TOPIC.format(name)] += 1
                last_stamp, frame = stamp, frame + 1
                if now - episode_start >= self.episode_seconds:
                    self.end_episode(episode, last_stamp)
                    episode, first_stamp = episode + 1, None
            elif kind == "joint":
                for pub, arm in zip(self.arms, ARMS):
                    msg = self.msgs["JointState"](name=JOINTS, position=list(rng.normal(0, 0.3, len(JOINTS))))
                    msg.header.stamp = stamp
                    pub.publish(msg)
                    self.sent[f"{arm}/joint_states"] += 1
            else:
                for group, single, arm in zip(self.groups, self.singles, ARMS[:2]):
                    group.publish(self.msgs["Group"](name="arm", cmd=list(rng.normal(0, 0.3, 6))))
                    single.publish(self.msgs["Single"](name="gripper", cmd=float(rng.uniform(0.7, 1.5))))
                    self.sent[f"{arm}/commands/joint_group"] += 1
                    self.sent[f"{arm}/commands/joint_single"] += 1
        if first_stamp is not None:
            self.end_episode(episode, last_stamp)

    def start_episode(self, episode: int, stamp) -> None:
        task = self.msgs["Task"](station="station_0", episode_id=episode + 1, instruction="transfer the cube",
                                 max_steps=100000)
        task.header.stamp = stamp
        self.task_pub.publish(task)
        event = self.msgs["Event"](station="station_0", episode_id=episode + 1, event=0, last_observation_stamp=stamp)
        event.header.stamp = stamp
        self.event_pub.publish(event)
        self.sent["task"] += 1
        self.sent["episode_event"] += 1

    def end_episode(self, episode: int, stamp) -> None:
        event = self.msgs["Event"](station="station_0", episode_id=episode + 1, event=1, outcome=7,
                                   last_observation_stamp=stamp, env_success_known=False)
        event.header.stamp = stamp
        self.event_pub.publish(event)
        self.sent["episode_event"] += 1


def record(bag: pathlib.Path, seconds: float, image_format: str, compression: str, episode_seconds: float,
           depth: int, context) -> dict:
    import psutil

    from sefm_bags.params import RecorderParams
    from sefm_ros.parameters import params_file

    params = params_file(bag.parent / f"{bag.name}_recorder.yaml", {"/recorder": RecorderParams(
        output=str(bag), stations="station_0", topics=",".join(topics()), image_format=image_format,
        compression=compression, acknowledge=False)})
    recorder = subprocess.Popen([sys.executable, "-m", "sefm_bags.recorder_node", "--ros-args", "--params-file",
                                 str(params)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    session = Session(context, episode_seconds, depth)
    try:
        session.wait_for()
        proc = psutil.Process(recorder.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        start = time.monotonic()
        session.run(seconds)
        elapsed = time.monotonic() - start
        time.sleep(3.0)   # the last messages reach the recorder
        cpu = sum(proc.cpu_times()[:2]) - cpu0
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            _, err = recorder.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, err = recorder.communicate()
        session.node.destroy_node()
    if recorder.returncode not in (0, -signal.SIGINT) or not (bag / "metadata.yaml").exists():
        raise RuntimeError(f"the recorder failed (exit {recorder.returncode}): {err[-2000:]}")
    import yaml

    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    suffix = "/compressed" if image_format != "raw" else ""
    recorded = {t: counts.get(f"/station_0/{t}" + (suffix if t.endswith("image_rect_raw") else ""), 0)
                for t in session.sent}
    size = sum(f.stat().st_size for f in bag.iterdir())
    return {"seconds": elapsed, "sent": sum(session.sent.values()), "dropped": sum(session.sent.values())
            - sum(recorded.values()), "mb_s": size / 1e6 / elapsed, "cpu": cpu / elapsed,
            "late": session.late, "lost": {t: n - recorded[t] for t, n in session.sent.items() if n != recorded[t]}}


def import_peak(bag: pathlib.Path, out: pathlib.Path) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, the summary's total line) of `sefm bag import` in its own process."""
    config = out.parent / "import.yaml"
    config.write_text("topics:\n  joint_state_tolerance_ms: 10.0\n  max_frame_gap_ms: 50.0\n")
    cmd = [str(pathlib.Path(sys.executable).parent / "sefm"), "bag", "import", str(bag), "--out", str(out), "--topics",
           str(config), "--image-size", IMPORT_SIZE, "--profile", PROFILE, "--profile-commands", "interbotix"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = output.splitlines()
    total = next((line for line in lines if line.startswith("total")), None)
    if total is None:
        raise RuntimeError(f"import failed (exit {proc.returncode}): {output[-2000:]}")
    # "total <episodes> <imported> <steps> <successes>"; the bag's own line names every drop's reason
    _, episodes, imported, steps, _ = total.split()[:5]
    reasons = next((line.split(None, 5)[5] for line in lines
                    if line.split() and line.split()[0].endswith(bag.name) and len(line.split()) > 5), "")
    summary = f"{imported}/{episodes} episodes, {steps} steps" + (f"; dropped: {reasons}" if reasons else "")
    return usage.ru_maxrss / 1024, time.monotonic() - start, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sefm bench record", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,5", help="session lengths recorded compressed and imported")
    parser.add_argument("--formats", default="raw,jpeg", help="raw (--raw-seconds only) and/or jpeg, png")
    parser.add_argument("--raw-seconds", type=float, default=30.0, help="length of the raw recording")
    parser.add_argument("--episode-seconds", type=float, default=20.0, help="an episode every this many seconds")
    parser.add_argument("--publisher-depth", type=int, default=10,
                        help="the synthetic drivers' reliable keep-last history (rclcpp's default is 10)")
    parser.add_argument("--dir", default="", help="where the bags go (default: a temporary folder, removed)")
    parser.add_argument("--markdown", default="", help="write the tables here too")
    args = parser.parse_args(argv)
    import rclpy

    work = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="sefm_bench_record_"))
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
        lengths = [args.raw_seconds] if fmt == "raw" else [float(m) * 60 for m in args.minutes.split(",")]
        runs += [(fmt, "none" if fmt == "raw" else "zstd", s) for s in lengths]
    lines: list[str] = []
    emit(lines, "# Recording an ALOHA-shaped session", "",
         f"Machine: {machine_line()}; publisher history {args.publisher_depth}. Command: `sefm bench record {' '.join(argv or sys.argv[1:])}`.", "",
         "| images | chunks | session | messages | dropped | MB/s | recorder CPU | per stream | import peak RSS "
         "| import time | imported |", "|---|---|---|---|---|---|---|---|---|---|---|")
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        for fmt, compression, seconds in runs:
            bag = work / f"{fmt}_{int(seconds)}s"
            r = record(bag, seconds, fmt, compression, args.episode_seconds, args.publisher_depth, context)
            peak, took, total = import_peak(bag, work / f"{bag.name}_dataset")
            emit(lines, f"| {fmt} | {compression} | {r['seconds']:.0f} s | {r['sent']} | {r['dropped']} | "
                        f"{r['mb_s']:.1f} | {100 * r['cpu']:.0f}% | {100 * r['cpu'] / len(topics()):.1f}% | "
                        f"{peak:.0f} MB | {took:.0f} s | {total} |")
            print(f"  lost per topic: {r['lost'] or 'none'}; publisher at worst {1000 * r['late']:.0f} ms behind",
                  flush=True)
            if not args.dir:
                import shutil

                shutil.rmtree(bag, ignore_errors=True)
    finally:
        rclpy.shutdown(context=context)
    if args.markdown:
        pathlib.Path(args.markdown).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
