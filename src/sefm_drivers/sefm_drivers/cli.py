"""`sefm driver aloha|language_table`: start one simulated robot driver alone, in this process.

  sefm driver aloha --namespace /robot --rate 50 --image-size 128x96
  sefm driver language_table --namespace /station_0 --image-size 160x90 --seed 7

Every driver parameter is a flag (derived from its dataclass in `sefm_drivers.params`); `--image-size WxH`
sets image_width and image_height at once, `--rate` the control rate. Ctrl-C stops it.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import sys

from sefm_core.config import ConfigError, add_flags, from_dict
from sefm_drivers.params import AlohaDriverParams, LanguageTableDriverParams

DRIVERS = {
    "aloha": (AlohaDriverParams, "control_rate", "the simulated ALOHA as two Interbotix xs_sdk follower drivers "
                                                 "and its cameras"),
    "language_table": (LanguageTableDriverParams, "rate", "the simulated LanguageTable robot (effector deltas, "
                                                          "joint states, camera)"),
}


def image_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 128x96), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sefm driver", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="driver", required=True, metavar="{" + ",".join(DRIVERS) + "}")
    for name, (cls, rate_field, help_) in DRIVERS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--namespace", default="", help="namespace to push the driver under (default: the root)")
        p.add_argument("--image-size", type=image_size, metavar="WxH", help="camera image size, e.g. 128x96")
        if rate_field != "rate":
            p.add_argument("--rate", dest=rate_field, type=float, metavar="HZ",
                           help=f"the control rate (same as --{rate_field.replace('_', '-')})")
        add_flags(p, cls, skip=() if rate_field == "rate" else (rate_field,))
    return ap


def params_from(args: argparse.Namespace):
    cls, _, _ = DRIVERS[args.driver]
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.image_size is not None:
        given["image_width"], given["image_height"] = args.image_size
    params = from_dict(cls, given, f"sefm driver {args.driver}")
    if hasattr(params, "check"):
        try:
            params.check()
        except ValueError as exc:
            raise ConfigError(f"sefm driver {args.driver}: {exc}") from None
    return params


def namespace_of(text: str) -> str:
    text = text.strip().rstrip("/")
    if text and not re.fullmatch(r"(/[A-Za-z_][A-Za-z0-9_]*)+", "/" + text.lstrip("/")):
        raise ConfigError(f"sefm driver: {text!r} is not a valid ROS namespace")
    return "/" + text.lstrip("/") if text else ""


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        params = params_from(args)
        namespace = namespace_of(args.namespace)
    except ConfigError as exc:   # a bad flag: one line, exit 2 (as `sefm` does for every command)
        print(exc, file=sys.stderr)
        return 2
    from sefm_ros.common import spin_main   # rclpy only once the flags are sound

    if args.driver == "aloha":
        from sefm_drivers.aloha_driver import AlohaDriver as node_class
    else:
        from sefm_drivers.language_table_driver import LanguageTableDriver as node_class
    return spin_main(functools.partial(node_class, namespace=namespace, **dataclasses.asdict(params)),
                     ["sefm-driver"])
