"""`sefm teleop`: drive one LanguageTable station from the keyboard, while a recorder writes the bag.

    sefm teleop --station station_0 [--step 0.03]

Keys (the arrows move the effector as it appears in the overhead camera):
  arrow keys  move by --step metres: up/down = -x/+x, left/right = -y/+y
  space       stay still for one step
  s           success: end the episode as done (the import keeps it), start the next
  d           discard: end the episode as aborted (the import drops it), start the next
  r           reset: a new episode now (the old one is kept as aborted)
  q           quit

Each key answers the newest observation (its stamp goes into the command's
header), so a lockstep station steps once per key; keys typed faster than the
station steps wait their turn. Commands are clipped by the station like any
other. When stdin is not a terminal (a script, a test), keys are read from it
as bytes.
"""
from __future__ import annotations

import argparse
import os
import select
import sys
import time

ARROWS = {"A": "up", "B": "down", "C": "right", "D": "left"}
KEYS = {" ": "stay", "s": "success", "d": "discard", "r": "reset", "q": "quit"}


def parse_keys(buffer: str) -> tuple[list[str], str]:
    """Key names in `buffer`, and the incomplete tail (an escape sequence cut in half) to keep for later."""
    keys, i = [], 0
    while i < len(buffer):
        ch = buffer[i]
        if ch == "\x1b":
            if i + 2 >= len(buffer):
                return keys, buffer[i:]
            if buffer[i + 1] == "[" and buffer[i + 2] in ARROWS:
                keys.append(ARROWS[buffer[i + 2]])
            i += 3
            continue
        if ch.lower() in KEYS:
            keys.append(KEYS[ch.lower()])
        i += 1
    return keys, ""


def command_for(key: str, step: float) -> tuple[float, float] | None:
    """The (delta_x, delta_y) of a motion key; None for the other keys."""
    return {"up": (-step, 0.0), "down": (step, 0.0), "left": (0.0, -step), "right": (0.0, step),
            "stay": (0.0, 0.0)}.get(key)


def run(station: str, step: float, stdin=None, log=None) -> int:
    import rclpy
    from sensor_msgs.msg import JointState

    from sefm_interfaces.srv import AbortEpisode, ResetStation
    from sefm_ros.common import reliable

    stdin = stdin or sys.stdin
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    rclpy.init()
    node = rclpy.create_node("keyboard_teleop", namespace=f"/{station}")
    latest = {"stamp": None, "names": []}
    node.create_subscription(JointState, "joint_states",
                             lambda m: latest.update(stamp=m.header.stamp), reliable(10))
    command_pub = node.create_publisher(JointState, "joint_command", reliable(10))
    abort = node.create_client(AbortEpisode, "abort")
    reset = node.create_client(ResetStation, "reset")
    fd = stdin.fileno()
    restore = _cbreak(fd)
    pending: list[str] = []
    buffer, last_commanded = "", None
    started, warned = time.monotonic(), False
    log(__doc__.split("Keys")[1].split("Each key")[0].rstrip())
    try:
        while True:
            rclpy.spin_once(node, timeout_sec=0.02)
            ready, _, _ = select.select([fd], [], [], 0)
            if ready:
                chunk = os.read(fd, 64)
                if not chunk and not pending:
                    break                      # end of input (a script): done
                keys, buffer = parse_keys(buffer + chunk.decode(errors="ignore"))
                pending += keys
            if not pending:
                continue
            key = pending[0]
            if key == "quit":
                break
            if key in ("success", "discard", "reset"):
                pending.pop(0)
                if key == "reset":
                    request, client = ResetStation.Request(seed=-1, reason="teleop reset"), reset
                else:
                    request = AbortEpisode.Request(reason="teleop", reset=True, success=key == "success")
                    client = abort
                if not client.wait_for_service(timeout_sec=5.0):
                    log(f"{station}: the {key} service is not available; is the station running?")
                    continue
                future = client.call_async(request)
                rclpy.spin_until_future_complete(node, future, timeout_sec=5.0)
                log(f"{key}: {future.result().message if future.result() else 'no answer'}")
                continue
            stamp = latest["stamp"]
            if stamp is None and time.monotonic() - started > 5.0 and not warned:
                log(f"no observation from /{station}/joint_states yet; is the station running?")
                warned = True
            if stamp is None or (stamp.sec, stamp.nanosec) == last_commanded:
                continue                       # wait for the station's next observation
            delta = command_for(pending.pop(0), step)
            command = JointState(name=["delta_x", "delta_y"], position=list(delta))
            command.header.stamp = stamp
            command_pub.publish(command)
            last_commanded = (stamp.sec, stamp.nanosec)
        time.sleep(0.2)   # let the last command leave
    finally:
        restore()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _cbreak(fd: int):
    """Keys without Enter and without echo on a terminal; returns the function that restores it."""
    if not os.isatty(fd):
        return lambda: None
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sefm teleop", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--station", default="station_0", help="the station namespace to drive")
    parser.add_argument("--step", type=float, default=0.03, help="metres per arrow key (clipped to 0.1)")
    args = parser.parse_args(argv)
    return run(args.station.strip("/"), args.step)


if __name__ == "__main__":
    sys.exit(main())
