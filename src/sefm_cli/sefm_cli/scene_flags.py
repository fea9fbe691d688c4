"""The scene flags every LanguageTable command shares (families, block mode, image size), checked as parsed:
a bad value is a one-line error (exit 2) before anything starts."""
from __future__ import annotations

import argparse

BLOCK_MODES = ("BLOCK_4", "BLOCK_8", "N_CHOOSE_K", "BANANA")


def families(text: str) -> str:
    """A comma-separated list of LanguageTable instruction families ("" for all of them)."""
    from sefm_sim.envs.lt_tasks import FAMILIES

    unknown = [f for f in text.split(",") if f and f not in FAMILIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown families {unknown}; valid: {', '.join(FAMILIES)}")
    return text


def image_size(text: str) -> tuple[int, int]:
    """WxH, both at least 1."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size {text!r}: expected WxH, e.g. 128x72") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"image size {text!r}: width and height must be at least 1")
    return width, height


def at_least(low: int):
    """An argparse type: an integer >= low (e.g. `--episodes`, `--max-steps`: 0 would do nothing or hang)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value}: must be at least {low}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def add_scene_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--families", default="", type=families,
                        help="comma-separated LanguageTable instruction families (default: all)")
    parser.add_argument("--block-mode", default="BLOCK_4", choices=BLOCK_MODES,
                        help="LanguageTable blocks (BANANA: the unseen banana)")
    parser.add_argument("--image-size", default=(128, 72), type=image_size,
                        help="camera image size, WxH (as the model was or will be trained; default 128x72)")
