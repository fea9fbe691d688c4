"""The `sefm` command line: one entry point for every SEFM job.

Each subcommand lives in its own module and exposes ``main(argv) -> int``;
this file only dispatches, so `sefm --help` stays fast (no torch or rclpy
import until a subcommand needs it).
"""
from __future__ import annotations

import importlib
import sys

from sefm_cli.runtime_env import apply_runtime_defaults

# subcommand -> (module with main(argv), one-line help)
COMMANDS = {
    "doctor": ("sefm_cli.doctor", "check that this machine can run SEFM, with a fix for each failure"),
    "bench": ("sefm_experiments.bench", "measure simulator speed and scripted-demonstrator success"),
    "collect": ("sefm_cli.collect", "scripted demonstrations straight into an episode data set (no ROS)"),
    "demos": ("sefm_cli.demos", "the scripted oracle teleoperates sim stations over ROS; the session is a rosbag2"),
    "teleop": ("sefm_cli.teleop", "drive a station from the keyboard (arrow keys; success, discard, reset)"),
    "bag": ("sefm_cli.bag_cli", "rosbag2: `import` bags into an episode data set, `info` on a bag, `play` it back"),
    "sft": ("sefm_cli.sft_cli", "Stage 1: behavioural cloning + steps-to-go on an episode data set"),
    "eval": ("sefm_cli.evaluate", "success in the simulator and steps-to-go quality of a checkpoint"),
    "improve": ("sefm_bringup.graph", "Stage 2: a fleet of stations practises, the trainer improves the policy"),
    "practice": ("sefm_experiments.practice", "Stage 2 without ROS: the same REINFORCE loop in one process (experiments)"),
    "detector": ("sefm_experiments.detector_study", "the success detector on a policy's own states: false ends and "
                                                    "misses of d <= s held k steps (calibration rollouts)"),
    "pipeline": ("sefm_cli.pipeline", "the whole job (`make demo`): demos -> import -> Stage 1 -> Stage 2 -> report"),
    "driver": ("sefm_drivers.cli", "start one simulated robot driver alone: aloha (Interbotix xs_sdk arms + "
                                   "cameras) or language_table"),
    "operator": ("sefm_cli.operator_cli", "watch the stations; e-stop, pause, resume, abort or reset them"),
}


def usage() -> str:
    lines = ["usage: sefm <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`sefm <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"sefm: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    apply_runtime_defaults()
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return int(module.main(rest) or 0)
    except Exception as exc:
        if isinstance(exc, input_errors()):   # bad input the command did not catch: one line, never a traceback
            print(f"sefm {command}: {exc}", file=sys.stderr)
            return 2
        raise


# The errors that mean "bad input" (a checkpoint, a data set, a bag, a config, a seed), by module: a module
# that raised one has been imported, so nothing is imported here for it.
INPUT_ERRORS = {"sefm_core.config": "ConfigError", "sefm_core.seeds": "SeedPlanError",
                "sefm_core.checkpoint": "CheckpointError", "sefm_core.data": "DatasetError",
                "sefm_bags.importer": "BagImportError", "sefm_ros.parameters": "ParameterError"}


def input_errors() -> tuple[type, ...]:
    return tuple(getattr(sys.modules[m], name) for m, name in INPUT_ERRORS.items() if m in sys.modules)


if __name__ == "__main__":
    sys.exit(main())
