"""Held-out success against practice episodes for one or more `sefm practice --json` runs, as one PNG.

    .venv/bin/python experiments/sefm_experiments/plot_practice.py docs/results/long_practice.png \
        "pointer reward=runs/s6/long_pointer.json" "trunk reward=runs/s6/long_trunk.json"
"""
from __future__ import annotations

import argparse
import json

from sefm_cli.plots import success_curves


def curve(path: str) -> list[tuple[float, float, float, float]]:
    run = json.load(open(path))
    per_batch = run["args"]["episodes_per_batch"]
    return [(int(version) * per_batch, e["rate"], e["low"], e["high"])
            for version, e in sorted(run["evaluations"].items(), key=lambda item: int(item[0]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("runs", nargs="+", help="LABEL=path/to/practice.json")
    args = parser.parse_args()
    series = {}
    for item in args.runs:
        label, sep, path = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: expected LABEL=path/to/practice.json")
        series[label] = curve(path)
    success_curves(args.out, series)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
