"""`sefm doctor` passes on a working machine and explains what is broken on a broken one."""
import os
import subprocess
import sys

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")


def run_doctor(*args, **env):
    return subprocess.run([SEFM, "doctor", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_doctor_passes_on_this_machine():
    proc = run_doctor()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("python", "torch", "interfaces", "ros2 graph", "mujoco render", "vision tower", "language tower"):
        assert any(line.startswith(name) and " ok " in line for line in proc.stdout.splitlines()), proc.stdout
    assert "7 of 7 checks passed" in proc.stdout


def test_doctor_fails_clearly_on_an_unknown_render_backend():
    proc = run_doctor("mujoco render", MUJOCO_GL="nonexistent-gl")
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and "nonexistent-gl" in proc.stdout
    assert "fix mujoco render: set MUJOCO_GL=osmesa" in proc.stdout


def test_doctor_fails_clearly_on_a_missing_middleware():
    proc = run_doctor("ros2 graph", "--timeout", "60", RMW_IMPLEMENTATION="rmw_does_not_exist_cpp")
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and "fix ros2 graph" in proc.stdout


def test_doctor_rejects_an_unknown_check_name():
    proc = run_doctor("warp-drive")
    assert proc.returncode == 2
    assert "unknown check" in proc.stderr and "mujoco render" in proc.stderr


def test_sefm_lists_its_commands_and_rejects_unknown_ones():
    assert "doctor" in subprocess.run([SEFM, "--help"], capture_output=True, text=True).stdout
    proc = subprocess.run([SEFM, "fly"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown command" in proc.stderr
