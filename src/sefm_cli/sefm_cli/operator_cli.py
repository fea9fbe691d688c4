"""`sefm operator`: the one human who supervises the fleet.

    sefm operator [console] [--stations ...]      the console: connected at start, its e-stop key acts at once
    sefm operator status [--stations station_0,station_1] [--seconds 0]   live table (0: until Ctrl-C)
    sefm operator estop  [--reason TEXT] [--stations ...] [--wait 5]   halt every station; exit 0 once each confirms
    sefm operator release [--stations ...] [--wait 5]  release the e-stop (stations stay paused)
    sefm operator pause|resume|abort|reset STATION [--reason TEXT] [--seed N] [--success]

The e-stop paths. A new process is a new DDS participant that must discover the graph before anything it publishes
arrives (seconds): the console pays that once, at start (it creates its e-stop publisher, waits until every
station's e-stop subscriber has matched it, then waits for keys), so its e-stop key is one publish on a connected
writer. The one-shot `estop` / `release` publish at once (latched: delivered to each subscriber as it matches)
and then wait, at most `--wait` s, until every expected station confirms: `--stations`, or else every node
subscribing the e-stop topic. A station confirms by its `safety_status` (the safety gate: state `estopped`) or its
`status` (the station manager or sim bridge: STATE_ESTOPPED), or, for a subscriber that publishes neither, by
acknowledging the message (reliable delivery). Exit 1 names the stations that did not confirm. That the state
outlives the operator's process is the job of `estop_latch` (sefm_station.estop_latch_node), which republishes it.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from sefm_cli.runtime_env import apply_runtime_defaults

SERVICES = {"pause": "PauseStation", "resume": "ResumeStation", "abort": "AbortEpisode", "reset": "ResetStation"}
ESTOPPED = 3   # sefm_interfaces/StationStatus.STATE_ESTOPPED
NOT_STATIONS = ("sefm_operator",)   # e-stop subscribers that are no station (estop_latch is one: it confirms by ack)


class EStopPath:
    """An operator's side of the fleet e-stop on one node: the latched publisher, made at once, and what each
    station says about its e-stop state. Spin the node's executor (any thread) for the confirmations."""

    def __init__(self, node, topic: str = "/estop", stations=()):
        from sefm_interfaces.msg import EStop
        from sefm_ros.common import LATCHED

        self.node, self.topic, self.EStop = node, topic, EStop
        self.pub = node.create_publisher(EStop, topic, LATCHED)
        self.estopped: dict[str, bool] = {}     # station -> what its status last said (engaged or not)
        self.watched: set[str] = set()
        self.lock = threading.Lock()
        for station in stations:
            self.watch(station)

    # --- the e-stop -------------------------------------------------------------------------------

    def publish(self, engaged: bool, reason: str = "operator", source: str = "operator") -> float:
        """Publish now; returns the wall clock (time.time()) taken just before the publish."""
        msg = self.EStop(engaged=engaged, source=source, reason=reason)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        pressed = time.time()
        self.pub.publish(msg)
        return pressed

    # --- the stations -----------------------------------------------------------------------------

    def subscribers(self) -> set[str]:
        """Stations subscribing the e-stop topic: their namespace (a node in the root: its name)."""
        out = set()
        for info in self.node.get_subscriptions_info_by_topic(self.topic):
            if info.node_name in NOT_STATIONS and info.node_namespace in ("/", ""):
                continue
            if info.node_name.startswith("_NODE_") or info.node_namespace.startswith("_NODE_"):
                continue   # its participant is matched, its node's name not discovered yet: the next look has it
            out.add(info.node_namespace.strip("/") or info.node_name)
        return out

    def connected(self, stations=()) -> bool:
        """Every e-stop subscriber on the graph has matched our publisher (and each expected station has one)."""
        listeners = self.node.count_subscribers(self.topic)
        if not listeners or self.pub.get_subscription_count() < listeners:
            return False
        return set(stations) <= self.subscribers()

    def watch(self, station: str) -> None:
        from std_msgs.msg import String

        from sefm_interfaces.msg import StationStatus
        from sefm_ros.common import LATCHED, reliable

        station = station.strip("/")
        with self.lock:
            if station in self.watched:
                return
            self.watched.add(station)

        def on_gate(msg):
            try:
                self.estopped[station] = json.loads(msg.data).get("state") == "estopped"
            except ValueError:
                pass

        def on_station(msg):
            self.estopped[station] = msg.state == ESTOPPED

        self.node.create_subscription(String, f"/{station}/safety_status", on_gate, LATCHED)
        self.node.create_subscription(StationStatus, f"/{station}/status", on_station, reliable(1))

    def reports_status(self, station: str) -> bool:
        return any(self.node.count_publishers(f"/{station}/{t}") for t in ("safety_status", "status"))

    def confirmed(self, station: str, engaged: bool) -> bool:
        """The station's status shows the state (a subscriber with no status: its e-stop subscription matched and
        acknowledged, checked by the caller)."""
        return self.estopped.get(station) is engaged


def one_shot(node, executor, args) -> int:
    """`sefm operator estop|release`: publish at once, then wait (bounded) until each station confirms."""
    engaged = args.command == "estop"
    expected = [s.strip("/") for s in args.stations.split(",") if s.strip()] if args.stations_given else []
    path = EStopPath(node, args.topic, expected)
    path.publish(engaged, args.reason)
    deadline = time.monotonic() + args.wait
    stations, stable_since = set(expected), time.monotonic()
    acked = False
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if not args.stations_given:   # discovered: until the set of e-stop subscribers stops changing
            found = path.subscribers()
            if found - stations:
                stations |= found
                stable_since = time.monotonic()
                for station in found:
                    path.watch(station)
            if not stations or time.monotonic() - stable_since < 0.5:
                continue
        if not path.connected(stations):
            continue
        if not acked:
            from rclpy.duration import Duration

            acked = path.pub.wait_for_all_acked(Duration(seconds=max(0.0, deadline - time.monotonic())))
        if all(path.confirmed(s, engaged) or (acked and not path.reports_status(s)) for s in stations):
            break
    missing = sorted(s for s in stations
                     if not (path.confirmed(s, engaged) or (acked and s in path.subscribers()
                                                             and not path.reports_status(s))))
    done = sorted(stations - set(missing))
    what = "engaged" if engaged else "released"
    print(f"e-stop {what} ({path.pub.get_subscription_count()} subscriber(s) reached; confirmed by "
          f"{len(done)}/{len(stations)} station(s){': ' + ', '.join(done) if done else ''})")
    if not stations:
        print(f"sefm operator: no station subscribes to {args.topic} within {args.wait:g} s; stations started "
              "later hear this only from a running estop_latch", file=sys.stderr)
        return 1
    if missing:
        print(f"sefm operator: not confirmed within {args.wait:g} s by: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def console(node, executor, args) -> int:
    """The interactive console: connect first, then each key acts at once on the connected publisher."""
    expected = [s.strip("/") for s in args.stations.split(",") if s.strip()] if args.stations_given else []
    path = EStopPath(node, args.topic, expected)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    print(f"sefm operator: connecting the e-stop on {args.topic} ...", flush=True)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and not (path.connected(expected) and (expected or path.subscribers())):
        time.sleep(0.05)
    found = path.subscribers() | set(expected)
    for station in found:
        path.watch(station)
    print(f"connected to {path.pub.get_subscription_count()} e-stop subscriber(s): {', '.join(sorted(found)) or '-'}"
          + ("" if path.connected(expected) else " (not all expected stations matched yet)"), flush=True)
    print("keys: e or space = E-STOP, r = release, s = stations, q = quit", flush=True)
    tty = sys.stdin.isatty()
    old = None
    if tty:
        import termios
        import tty as ttymod

        old = termios.tcgetattr(sys.stdin.fileno())
        ttymod.setcbreak(sys.stdin.fileno())
    try:
        while True:
            key = sys.stdin.read(1) if tty else sys.stdin.readline()
            if not key:
                return 0
            key = key.strip().lower()[:1] if not tty else key.lower()
            if key in ("e", " "):
                path.publish(True, args.reason)
                print("E-STOP engaged", flush=True)
            elif key == "r":
                path.publish(False, args.reason)
                print("e-stop released (stations stay paused)", flush=True)
            elif key == "s":
                for station in path.subscribers():
                    path.watch(station)
                print(", ".join(f"{s}: {'estopped' if path.estopped.get(s) else 'running' if s in path.estopped else '?'}"
                                for s in sorted(path.watched)) or "no stations", flush=True)
            elif key == "q":
                return 0
    finally:
        if old is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, old)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sefm operator", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="console",
                        choices=["console", "status", "estop", "release", *SERVICES],
                        help="console (default): the connected e-stop console; status: live table; estop / release: "
                             "the fleet e-stop, confirmed; the rest: one station")
    parser.add_argument("station", nargs="?", help="station namespace, e.g. station_0 (for pause/resume/abort/reset)")
    parser.add_argument("--success", action="store_true",
                        help="abort: end the episode as a success the operator saw (the bag import keeps it)")
    parser.add_argument("--stations", default=None,
                        help="stations to show (status; default station_0,station_1) or that must confirm the "
                             "e-stop (estop / release / console; default: every e-stop subscriber on the graph)")
    parser.add_argument("--topic", default="/estop", help="the fleet e-stop topic")
    parser.add_argument("--seconds", type=float, default=0.0, help="status: stop after this long (0: until Ctrl-C)")
    parser.add_argument("--reason", default="operator", help="why, recorded with the action")
    parser.add_argument("--wait", type=float, default=5.0,
                        help="estop/release: seconds to wait for every station to confirm (exit 1 if one does not); "
                             "console: for the stations to connect")
    parser.add_argument("--seed", type=int, default=-1, help="reset: the new episode's seed (-1: the next one)")
    args = parser.parse_args(argv)
    args.stations_given = args.stations is not None
    if args.stations is None:
        args.stations = "station_0,station_1"
    if args.command in SERVICES and not args.station:
        parser.error(f"{args.command} needs a station, e.g. `sefm operator {args.command} station_0`")
    apply_runtime_defaults()

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    import sefm_interfaces.srv as srv
    from sefm_ros.common import station_list

    rclpy.init()
    node = rclpy.create_node("sefm_operator")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if args.command in ("estop", "release"):
            return one_shot(node, executor, args)
        if args.command == "console":
            return console(node, executor, args)
        if args.command == "status":
            from sefm_bringup.graph import Monitor

            monitor = Monitor(node, station_list(args.stations))
            end = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
            last = 0.0
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
                if time.monotonic() - last > 1.0:
                    print(monitor.table() + "\n", flush=True)
                    last = time.monotonic()
            return 0
        srv_type = getattr(srv, SERVICES[args.command])
        client = node.create_client(srv_type, f"/{args.station.strip('/')}/{args.command}")
        if not client.wait_for_service(timeout_sec=5.0):
            print(f"sefm operator: no {args.command} service on {args.station} (is the station running?)",
                  file=sys.stderr)
            return 1
        request = srv_type.Request(reason=args.reason)
        if args.command == "reset":
            request.seed = args.seed
        if args.command == "abort":
            request.reset, request.success = True, args.success
        future = client.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=10.0)
        result = future.result()
        if result is None:
            print(f"sefm operator: {args.station} did not answer", file=sys.stderr)
            return 1
        print(f"{args.station} {args.command}: {'ok' if result.success else 'refused'}: {result.message}")
        return 0 if result.success else 1
    except KeyboardInterrupt:
        return 0
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
