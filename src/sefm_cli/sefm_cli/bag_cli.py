"""`sefm bag`: rosbag2 demonstrations into the episode data set, what a bag holds, and its replay.

    sefm bag import BAG [BAG ...] --out DATASET [--topics import.yaml] [--profile aloha_ros2_interbotix]
                    [--image-size 128x96] [--gaps drop|split] [--keep-failures] [--force]
    sefm bag info BAG
    sefm bag play BAG [--rate 1.0] [--hold 5]

`--topics` maps a real robot's topic names (see docs/demonstrations.md); the
defaults are the SEFM driver contract under each station namespace.
"""
from __future__ import annotations

import argparse
import sys
import time


IMPORT_FLAGS = ("image_size", "gaps", "profile", "profile_commands")


def cmd_import(args) -> int:
    from sefm_bags.importer import import_bags, load_import_config, summary_table
    from sefm_core.config import ConfigError

    flags = {k: v for k, v in vars(args).items() if k in IMPORT_FLAGS}
    flags.update({k: True for k in ("keep_failures", "force") if getattr(args, k)})
    try:
        config = load_import_config(args.topics, flags)
    except ConfigError as exc:
        print(f"sefm bag import: {exc}", file=sys.stderr)
        return 2
    import pathlib

    if pathlib.Path(args.out).exists() and not pathlib.Path(args.out).is_dir():
        print(f"sefm bag import: --out {args.out} is a file; give a data set folder (new or existing)",
              file=sys.stderr)
        return 2
    reports = import_bags(args.bags, args.out, config)
    print(summary_table(reports))
    print(f"data set: {args.out}")
    imported = sum(r.imported for r in reports)
    if any(r.error for r in reports):
        return 1   # the good bags are imported; the exit code still says something was wrong
    return 0 if imported or all(r.skipped for r in reports) else 1


def cmd_info(args) -> int:
    from rosbags.rosbag2 import Reader, ReaderError

    try:
        with Reader(args.bag) as reader:
            print(f"{args.bag}: {reader.message_count} messages, {reader.duration * 1e-9:.1f} s, "
                  f"recorded by {reader.ros_distro or 'unknown'}")
            for c in sorted(reader.connections, key=lambda c: c.topic):
                print(f"  {c.topic:<40} {c.msgtype:<36} {c.msgcount:>7}")
    except (ReaderError, OSError, ValueError) as exc:   # (a metadata.yaml that is not UTF-8: UnicodeDecodeError)
        print(f"sefm bag info: {args.bag}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_play(args) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rosbags.rosbag2 import ReaderError

    from sefm_bags.player import play
    from sefm_cli.runtime_env import apply_runtime_defaults

    apply_runtime_defaults()
    rclpy.init()
    node = rclpy.create_node("sefm_bag_player")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        counts = play(args.bag, node, args.rate, lambda t: executor.spin_once(timeout_sec=t))
        print(f"played {sum(counts.values())} messages on {len(counts)} topics from {args.bag}; holding the "
              f"publishers for {args.hold:g} s", flush=True)
        end = time.monotonic() + args.hold   # latched topics reach late subscribers only while their writer lives
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
    except (ReaderError, OSError, ValueError) as exc:
        print(f"sefm bag play: {args.bag}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(argv=None) -> int:
    from sefm_bags.importer import ImportConfig   # (no torch: the importer needs numpy and rosbags only)
    from sefm_core.config import add_flags

    parser = argparse.ArgumentParser(prog="sefm bag", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="bags -> episode data set")
    imp.add_argument("bags", nargs="+", help="rosbag2 folders (mcap or sqlite3) or bare .mcap files")
    imp.add_argument("--out", required=True, help="data set directory (created, or appended to)")
    imp.add_argument("--topics", help="YAML import config: TopicMap fields under `topics:`, the flags below beside it")
    imp.add_argument("--keep-failures", action="store_true", help="import unsuccessful episodes too")
    imp.add_argument("--force", action="store_true", help="import a bag whose content is in the data set already")
    add_flags(imp, ImportConfig, skip=("topics", "keep_failures", "force"))
    info = sub.add_parser("info", help="topics, types and counts of a bag")
    info.add_argument("bag", help="a bag folder, or a bare .mcap / .db3 file")
    play = sub.add_parser("play", help="publish a bag's messages with the QoS its publishers offered")
    play.add_argument("bag", help="a bag folder")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed (2: twice as fast)")
    play.add_argument("--hold", type=float, default=5.0, help="seconds to keep the publishers after the last "
                                                             "message (latched topics reach late subscribers)")
    args = parser.parse_args(argv)
    return {"import": cmd_import, "info": cmd_info, "play": cmd_play}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
