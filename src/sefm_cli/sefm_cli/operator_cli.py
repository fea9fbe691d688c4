"""`sefm operator`: the one human who supervises the fleet.

    sefm operator status [--stations station_0,station_1] [--seconds 0]   live table (0: until Ctrl-C)
    sefm operator estop  [--reason TEXT]          halt every station now
    sefm operator release                         release the e-stop (stations stay paused)
    sefm operator pause|resume|abort|reset STATION [--reason TEXT] [--seed N] [--success]
"""
from __future__ import annotations

import argparse
import sys
import time

from sefm_cli.runtime_env import apply_runtime_defaults

SERVICES = {"pause": "PauseStation", "resume": "ResumeStation", "abort": "AbortEpisode", "reset": "ResetStation"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sefm operator", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["status", "estop", "release", *SERVICES],
                        help="status: live table; estop / release: the fleet e-stop; the rest: one station")
    parser.add_argument("station", nargs="?", help="station namespace, e.g. station_0 (for pause/resume/abort/reset)")
    parser.add_argument("--success", action="store_true",
                        help="abort: end the episode as a success the operator saw (the bag import keeps it)")
    parser.add_argument("--stations", default="station_0,station_1", help="stations to show (status)")
    parser.add_argument("--seconds", type=float, default=0.0, help="status: stop after this long (0: until Ctrl-C)")
    parser.add_argument("--reason", default="operator", help="why, recorded with the action")
    parser.add_argument("--wait", type=float, default=10.0,
                        help="estop/release: seconds to wait for the stations on the graph to match")
    parser.add_argument("--seed", type=int, default=-1, help="reset: the new episode's seed (-1: the next one)")
    args = parser.parse_args(argv)
    if args.command in SERVICES and not args.station:
        parser.error(f"{args.command} needs a station, e.g. `sefm operator {args.command} station_0`")
    apply_runtime_defaults()

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    import sefm_interfaces.srv as srv
    from sefm_interfaces.msg import EStop
    from sefm_ros.common import LATCHED, station_list

    rclpy.init()
    node = rclpy.create_node("sefm_operator")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if args.command in ("estop", "release"):
            pub = node.create_publisher(EStop, "/estop", LATCHED)
            msg = EStop(engaged=args.command == "estop", source="operator", reason=args.reason)
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
            # Latched, so a subscriber matched while we run gets it even if discovery is slow: wait until
            # every /estop subscriber the graph knows has matched us, then linger for the delivery.
            deadline = time.monotonic() + args.wait
            while time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
                listeners = node.count_subscribers("/estop")
                if listeners and pub.get_subscription_count() >= listeners:
                    break
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
            reached = pub.get_subscription_count()
            print(f"e-stop {'engaged' if msg.engaged else 'released'} ({reached} subscriber(s) reached)")
            if not reached:
                print("sefm operator: no station subscribes to /estop; stations started later will not see this",
                      file=sys.stderr)
            return 0
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
