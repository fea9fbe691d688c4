"""The message types SEFM bags carry: ROS 2 Kilted's standard set plus sefm_interfaces and interbotix_xs_msgs
(an ALOHA station's commands), for rosbags."""
from __future__ import annotations

import functools
import pathlib
import sys

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

INTERFACE_PACKAGE = "sefm_interfaces"
PACKAGES = (INTERFACE_PACKAGE, "interbotix_xs_msgs")


def interface_msg_dir(package: str = INTERFACE_PACKAGE) -> pathlib.Path:
    """Where an interface package's .msg files are: the ament index, this environment's share/, or the source
    tree."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(pathlib.Path(get_package_share_directory(package)) / "msg")
    except (ImportError, LookupError, OSError, ValueError):
        pass  # no ament index in this environment: try the other places
    candidates.append(pathlib.Path(sys.prefix) / "share" / package / "msg")
    candidates.append(pathlib.Path(__file__).resolve().parents[2] / package / "msg")
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"cannot find the {package} .msg files in {[str(c) for c in candidates]}")


@functools.lru_cache(maxsize=1)
def typestore():
    """A rosbags typestore that knows every standard Kilted message and our interface packages' messages."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for package in PACKAGES:
        for path in sorted(interface_msg_dir(package).glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    store.register(types)
    return store
