"""The setup is idempotent, and the wheel CMake fix-up touches only what it must."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import fix_wheel_cmake_paths  # noqa: E402


def test_second_setup_run_changes_nothing():
    proc = subprocess.run(["bash", str(ROOT / "tools/setup.sh")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("up to date") == 3, proc.stdout  # pip, interfaces, python packages
    assert "done in" in proc.stdout


def test_cmake_path_fixup_rewrites_only_build_container_paths(tmp_path):
    cmake_dir = tmp_path / "share" / "pkg" / "cmake"
    cmake_dir.mkdir(parents=True)
    exported = cmake_dir / "export.cmake"
    exported.write_text('INTERFACE_INCLUDE_DIRECTORIES "/opt/python/cp311-cp311/include/python3.11;'
                        '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"\n')
    untouched = cmake_dir / "other.cmake"
    untouched.write_text('set(X "/usr/include")\n')
    assert fix_wheel_cmake_paths.main(str(tmp_path)) == 0
    text = exported.read_text()
    assert "/opt/python" not in text
    import numpy
    assert numpy.get_include() in text
    assert untouched.read_text() == 'set(X "/usr/include")\n'
    before = text
    assert fix_wheel_cmake_paths.main(str(tmp_path)) == 0  # idempotent
    assert exported.read_text() == before
