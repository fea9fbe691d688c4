"""Point the ROS 2 wheels' CMake exports at this virtual environment's Python.

The ros-kilted-* wheels were built in a manylinux container and their exported
CMake targets name that container's interpreter, e.g.
``/opt/python/cp311-cp311/include/python3.11``. CMake refuses to generate a
package that links against those targets while the paths do not exist.

We rewrite the paths in the venv's own ``*.cmake`` files only: nothing outside
the venv is touched, so a machine with a real ROS 2 install (or a real
/opt/python) is unaffected. Running it twice changes nothing.
"""
from __future__ import annotations

import pathlib
import sys
import sysconfig

BUILD_PREFIX = "/opt/python/cp311-cp311"


def replacements() -> list[tuple[str, str]]:
    import numpy

    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    return [
        (f"{BUILD_PREFIX}/include/python3.11", python_include),
        (f"{BUILD_PREFIX}/lib/python3.11/site-packages/numpy/_core/include", numpy_include),
    ]


def main(venv: str = sys.prefix) -> int:
    share = pathlib.Path(venv) / "share"
    pairs = replacements()
    changed = 0
    for path in share.rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        if BUILD_PREFIX not in text:
            continue
        new = text
        for old, real in pairs:
            new = new.replace(old, real)
        if new != text:
            path.write_text(new, errors="surrogateescape")
            changed += 1
    left = [p for p in share.rglob("*.cmake") if BUILD_PREFIX + "/include" in p.read_text(errors="ignore")]
    print(f"fix_wheel_cmake_paths: rewrote {changed} file(s) under {share}")
    if left:
        print(f"fix_wheel_cmake_paths: still unresolved in {len(left)} file(s), e.g. {left[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
