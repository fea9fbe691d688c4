"""`sefm bench estop`: from the operator's e-stop to the last command a driver receives, against one control period.

    sefm bench estop --robot aloha           [--trials 20] [--one-shot 5] [--markdown PATH]
    sefm bench estop --robot language_table

Per robot, real processes on a private namespace and e-stop topic (a running fleet is never halted): the simulated
driver (`sefm_drivers.aloha_driver` / `language_table_driver`), the safety gate (`sefm_station.safety_gate_node`,
profile sim_aloha / sim_language_table, autostart), a policy stand-in (a process publishing targets on the gate's
`joint_command` at the profile's rate). In this process: a recorder subscribed to the driver's command topics with
the driver's QoS (reliable, depth 10), stamping each arrival with the wall clock, and an operator stand-in that
is connected before the first trial, as the `sefm operator` console is (sefm_cli.operator_cli.EStopPath).

A trial: commands flow; at a random time (0.5-1.5 s after the previous release) the operator takes the wall clock
and publishes the e-stop at once (a key press); the latency is the arrival of the last command after it (the
gate's hold, or a policy command that was already on its way) minus that clock. Then release and repeat.
`--one-shot N` also times the one-shot `sefm operator estop` as typed: from its process start to the last
command, which includes the new process's start-up and DDS discovery.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import threading
import time
import uuid

ROBOTS = {  # robot: (driver module, profile, extra driver parameters)
    "aloha": ("sefm_drivers.aloha_driver", "sim_aloha", ()),
    "language_table": ("sefm_drivers.language_table_driver", "sim_language_table", ()),
}


def policy_stand_in(namespace: str, profile_name: str) -> int:
    """A process publishing targets on `<namespace>/joint_command` at the profile's rate until killed."""
    import rclpy
    from sensor_msgs.msg import JointState

    from sefm_ros.common import reliable
    from sefm_station.profiles import load_profile

    profile = load_profile(profile_name)
    rclpy.init()
    node = rclpy.create_node("policy_stand_in", namespace=namespace)
    pub = node.create_publisher(JointState, "joint_command", reliable(10))
    names = list(profile.command.names)
    lower, upper = profile.command.lower, profile.command.upper
    start = time.monotonic()

    def tick():
        phase = time.monotonic() - start
        if profile.delta:
            values = [0.01 * math.sin(phase), 0.01 * math.cos(phase)][:len(names)]
        else:
            values = [lo + (hi - lo) * (0.5 + 0.05 * math.sin(phase + i)) for i, (lo, hi) in enumerate(zip(lower, upper))]
        pub.publish(JointState(name=names, position=[float(v) for v in values]))

    node.create_timer(profile.period, tick)
    try:
        rclpy.spin(node)
    except BaseException:   # killed: a quiet exit
        pass
    return 0


def percentile(values, q):
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(label, values_ms, period_ms):
    over = sum(v > period_ms for v in values_ms)
    return (f"| {label} | {len(values_ms)} | {percentile(values_ms, 50):.1f} | {percentile(values_ms, 95):.1f} | "
            f"{max(values_ms):.1f} | {min(values_ms):.1f} | {period_ms:g} | {over} |")


def run(robot: str, trials: int, one_shot: int, seed: int) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from sefm_cli.operator_cli import EStopPath
    from sefm_ros.common import reliable
    from sefm_station.profiles import load_profile
    from sefm_station.safety_gate_node import message_types

    module, profile_name, extra = ROBOTS[robot]
    profile = load_profile(profile_name)
    period = profile.period
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:6]
    namespace, topic = f"/bench_estop_{tag}", f"/estop_bench_{tag}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [
        subprocess.Popen([sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={namespace}", *extra], **quiet),
        subprocess.Popen([sys.executable, "-m", "sefm_station.safety_gate_node", "--ros-args", "-r",
                          f"__ns:={namespace}", "-r", f"/estop:={topic}", "-p", f"profile:={profile_name}",
                          "-p", "autostart:=true"], **quiet),
        subprocess.Popen([sys.executable, "-m", "sefm_experiments.bench_estop", "_policy", namespace, profile_name],
                         **quiet),
    ]
    context = rclpy.Context()
    rclpy.init(context=context)
    recorder = rclpy.create_node("estop_recorder", namespace=namespace, context=context)
    arrivals: list[float] = []
    lock = threading.Lock()

    def record(_msg):
        now = time.time()
        with lock:
            arrivals.append(now)

    for cmd_topic, kind in message_types(profile).items():
        recorder.create_subscription(kind, cmd_topic, record, reliable(10))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(recorder)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    # the operator stand-in: its own context (as its own process would be), connected before the first trial
    op_context = rclpy.Context()
    rclpy.init(context=op_context)
    operator = rclpy.create_node("sefm_operator", context=op_context)
    path = EStopPath(operator, topic)
    station = namespace.strip("/")
    result = {"robot": robot, "period_ms": period * 1e3, "connected": [], "after": [], "one_shot": [],
              "one_shot_rc": [], "one_shot_process_s": []}

    def flowing(timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                if arrivals and time.time() - arrivals[-1] < 2 * period:
                    return True
            time.sleep(0.01)
        return False

    def last_after(t, window):
        time.sleep(window)
        with lock:
            after = [a for a in arrivals if a >= t]
        return (max(after) if after else None), len(after)

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (path.connected([station])):
            time.sleep(0.05)
        if not path.connected([station]):
            raise RuntimeError("the gate's e-stop subscriber never matched the operator stand-in")
        if not flowing(30):
            raise RuntimeError("no command reached the driver's topics within 30 s")
        window = max(0.5, 10 * period)
        for _ in range(trials):
            time.sleep(rng.uniform(0.5, 1.5))
            if not flowing(5):
                raise RuntimeError("commands stopped flowing between trials")
            pressed = path.publish(True, "bench")
            last, count = last_after(pressed, window)
            result["connected"].append((last - pressed) * 1e3 if last else float("nan"))
            result["after"].append(count)
            path.publish(False, "bench")
        sefm = os.path.join(os.path.dirname(sys.executable), "sefm")
        for _ in range(one_shot):
            time.sleep(rng.uniform(0.5, 1.5))
            if not flowing(5):
                raise RuntimeError("commands stopped flowing between trials")
            started = time.time()
            proc = subprocess.run([sefm, "operator", "estop", "--topic", topic, "--stations", station, "--wait", "10",
                                   "--reason", "bench one-shot"], capture_output=True, text=True, timeout=60)
            ended = time.time()
            last, _ = last_after(started, 0.3)
            result["one_shot"].append((last - started) * 1e3 if last else float("nan"))
            result["one_shot_rc"].append(proc.returncode)
            result["one_shot_process_s"].append(ended - started)
            path.publish(False, "bench")
    finally:
        executor.shutdown()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        operator.destroy_node()
        recorder.destroy_node()
        rclpy.try_shutdown(context=op_context)
        rclpy.try_shutdown(context=context)
    return result


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_policy"]:
        return policy_stand_in(argv[1], argv[2])
    parser = argparse.ArgumentParser(prog="sefm bench estop", description=__doc__.splitlines()[0])
    parser.add_argument("--robot", choices=sorted(ROBOTS), default="aloha")
    parser.add_argument("--trials", type=int, default=20, help="e-stops from the connected operator stand-in")
    parser.add_argument("--one-shot", type=int, default=5, help="e-stops by `sefm operator estop` as typed")
    parser.add_argument("--seed", type=int, default=0, help="the random press times")
    parser.add_argument("--markdown", default="", help="append the table rows to this file")
    args = parser.parse_args(argv)
    from sefm_cli.runtime_env import apply_runtime_defaults

    apply_runtime_defaults()
    r = run(args.robot, args.trials, args.one_shot, args.seed)
    p = r["period_ms"]
    lines = ["| path | trials | p50 ms | p95 ms | max ms | min ms | period ms | > period |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |",
             summary(f"{args.robot}: connected operator (console)", r["connected"], p)]
    if r["one_shot"]:
        lines.append(summary(f"{args.robot}: `sefm operator estop` from process start", r["one_shot"], p))
    print("\n".join(lines))
    print(f"connected: each latency (ms): {', '.join(f'{v:.1f}' for v in r['connected'])}")
    print(f"connected: commands arriving after the press, per trial: {r['after']}")
    if r["one_shot"]:
        print(f"one-shot: exit codes {r['one_shot_rc']}; process wall time (s): "
              f"{', '.join(f'{v:.2f}' for v in r['one_shot_process_s'])}")
    ok = all(v <= p for v in r["connected"])
    print(f"verdict: connected e-stop {'within' if ok else 'NOT within'} one control period ({p:g} ms) "
          f"in {sum(v <= p for v in r['connected'])}/{len(r['connected'])} trials")
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n".join(lines[2:]) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
