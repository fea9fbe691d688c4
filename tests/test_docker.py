"""docker/Dockerfile makes an image that runs `sefm` (the issue: `sefm` off PATH, Python not 3.11).

Without a Docker engine (the project's machines have only the client) everything
that can be read is checked statically: the base image is Python 3.11, the venv's
bin leads PATH, the environment defaults match sefm_cli/runtime_env.py, every COPY
source is in the repository, what tools/setup.sh reads is copied, and the
entrypoint exists, is executable and dispatches to `sefm` (run here against a
stand-in venv). With an engine, the image is built and `sefm --help` run in it.
"""
from __future__ import annotations

import glob
import json
import os
import pathlib
import re
import shlex
import shutil
import stat
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def instructions(path: pathlib.Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    out, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue   # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return out


def substitute(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


def parse_env(args: str, env: dict[str, str]) -> dict[str, str]:
    """ENV k=v k2="v 2" ... or the legacy ENV k v; values see the variables set before them."""
    words = shlex.split(args, posix=True)
    if words and "=" not in words[0]:
        return {words[0]: substitute(" ".join(words[1:]), env)}
    out = {}
    for word in words:
        key, _, value = word.partition("=")
        out[key] = substitute(value, {**env, **out})
    return out


def image_environment() -> tuple[dict[str, str], str]:
    """The final stage's ENV (starting from a python image's PATH) and its WORKDIR."""
    env = {"PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"}
    workdir = "/"
    for keyword, args in instructions():
        if keyword == "FROM":
            env = {"PATH": env["PATH"]}
            workdir = "/"
        elif keyword == "ENV":
            env.update(parse_env(args, env))
        elif keyword == "WORKDIR":
            workdir = os.path.join(workdir, substitute(args, env))
    return env, workdir


def venv_path() -> str:
    env, workdir = image_environment()
    return env.get("SEFM_VENV") or os.path.join(workdir, ".venv")   # tools/setup.sh: ${SEFM_VENV:-$ROOT/.venv}


def copies() -> list[tuple[list[str], str, list[str]]]:
    """(sources, destination, flags) of every COPY/ADD that reads the build context."""
    out = []
    for keyword, args in instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        rest = args
        for flag in flags:
            rest = rest.replace(flag, "", 1)
        rest = rest.strip()
        paths = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        if any(f.startswith("--from") for f in flags):
            continue
        out.append((paths[:-1], paths[-1], flags))
    return out


def git_tracked(rel: str) -> bool | None:
    if not (ROOT / ".git").exists() or not shutil.which("git"):
        return None
    proc = subprocess.run(["git", "ls-files", "--", rel], cwd=ROOT, capture_output=True, text=True)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def test_base_image_is_python_3_11():
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert froms, "no FROM"
    args_before = {}
    for keyword, args in instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in args:
            key, _, value = args.partition("=")
            args_before[key.strip()] = value.strip().strip('"')
    image = substitute(froms[-1].split()[0], args_before)
    assert re.fullmatch(r"(docker\.io/)?(library/)?python:3\.11([.-][\w.-]*)?(@sha256:\w+)?", image), (
        f"the image is built on {image!r}; the ROS 2 Kilted wheels and `sefm doctor` need Python 3.11 "
        "(e.g. python:3.11-slim-bookworm)")


def test_setup_sh_makes_the_venv_and_its_bin_leads_path():
    runs = " ".join(args for keyword, args in instructions() if keyword == "RUN")
    assert "tools/setup.sh" in runs, "the image should be made by the project's own tools/setup.sh"
    env, _ = image_environment()
    first = env["PATH"].split(":")[0]
    assert first == f"{venv_path()}/bin", f"PATH starts with {first!r}, not the venv's bin {venv_path()}/bin"


def test_environment_defaults_match_runtime_env():
    from sefm_cli.runtime_env import DEFAULTS

    env, _ = image_environment()
    wrong = {}
    for key, value in DEFAULTS.items():
        expected = venv_path() if key == "AMENT_PREFIX_PATH" else value   # sys.prefix: the venv
        if env.get(key) != expected:
            wrong[key] = (env.get(key), expected)
    assert not wrong, f"ENV in the Dockerfile (found, expected): {wrong}"


def test_every_copied_file_is_in_the_repository():
    found = copies()
    assert found, "nothing is copied into the image"
    problems = []
    for sources, _, _ in found:
        for src in sources:
            if re.match(r"\w+://", src):
                problems.append(f"{src}: downloads at build time")
                continue
            matches = glob.glob(str(ROOT / src))
            if not matches:
                problems.append(f"{src}: not in the repository")
            elif git_tracked(src) is False:
                problems.append(f"{src}: exists here but is not tracked by git (a fresh clone lacks it)")
    assert not problems, problems


def test_what_setup_sh_reads_is_copied():
    """Every top-level path tools/setup.sh uses under $ROOT is copied to (or made in) the image's WORKDIR."""
    read = set(re.findall(r'\$ROOT"?/([\w.-]+)', (ROOT / "tools" / "setup.sh").read_text()))
    read -= {".venv"}   # what it makes: the venv's default place
    assert {"requirements", "src", "tools"} <= read, read
    _, workdir = image_environment()
    present = set()
    for _, dest, _ in copies():
        dest = dest if dest.startswith("/") else os.path.join(workdir, dest)
        rel = os.path.relpath(dest, workdir)
        present.add(rel.split("/")[0])
    for keyword, args in instructions():
        if keyword == "RUN":
            for made in re.findall(r"mkdir\s+(?:-p\s+)?([\w./-]+)", args):
                present.add(made.strip("./").split("/")[0])
    missing = sorted(read - present)
    assert not missing, f"tools/setup.sh reads {missing} under its root, which the image does not have"


def entrypoint_source() -> pathlib.Path:
    entry = [args for keyword, args in instructions() if keyword == "ENTRYPOINT"]
    assert entry, "no ENTRYPOINT"
    target = json.loads(entry[-1])[0]
    for sources, dest, _ in copies():
        if dest == target or (dest.endswith("/") and os.path.join(dest, pathlib.Path(sources[0]).name) == target):
            return ROOT / sources[0]
    pytest.fail(f"ENTRYPOINT {target} is not a file copied from the repository")


def test_entrypoint_exists_and_is_executable():
    script = entrypoint_source()
    assert script.is_file(), script
    assert script.read_text().startswith("#!"), f"{script.name} has no #! line"
    assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is not executable (chmod +x)"
    if git_tracked(str(script.relative_to(ROOT))):
        mode = subprocess.run(["git", "ls-files", "-s", "--", str(script.relative_to(ROOT))], cwd=ROOT,
                              capture_output=True, text=True).stdout.split()[0]
        assert mode == "100755", f"git records {script.name} as {mode}: a fresh clone gets it without +x"
    subprocess.run(["bash", "-n", str(script)], check=True)
    cmd = [json.loads(args) for keyword, args in instructions() if keyword == "CMD"]
    assert cmd and cmd[-1][0] == "sefm", f"the default command should be sefm: {cmd}"


@pytest.mark.parametrize("argv, expected", [
    (["sefm", "doctor"], "sefm doctor"),
    (["doctor", "python"], "sefm doctor python"),     # a first word that is no program is a sefm command
    (["--help"], "sefm --help"),
    ([], "sefm --help"),
    (["echo", "plain"], "plain"),                     # any other program runs as it is
])
def test_entrypoint_runs_sefm_commands(tmp_path, argv, expected):
    """The entrypoint, run here with a stand-in venv whose `sefm` prints its arguments."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    stub = venv_bin / "sefm"
    stub.write_text('#!/bin/sh\necho "sefm $*"\n')
    stub.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "SEFM_VENV": str(tmp_path / "venv"), "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(entrypoint_source()), *argv], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def docker_engine() -> str | None:
    """None if a Docker engine answers, else why not."""
    if not shutil.which("docker"):
        return "docker is not on PATH"
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 30 s"
    if proc.returncode != 0 or not proc.stdout.strip():
        return "the docker client is here but no Docker engine answers (as on the project's machines)"
    return None


@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_image_builds_and_runs_sefm():
    reason = docker_engine()
    if reason:
        pytest.skip(reason)
    tag = "sefm:test-docker"
    build = ["docker", "build", "-f", str(DOCKERFILE), "-t", tag]
    if os.environ.get("PIP_EXTRA_INDEX_URL"):
        build += ["--build-arg", f"PIP_EXTRA_INDEX_URL={os.environ['PIP_EXTRA_INDEX_URL']}"]
    subprocess.run([*build, str(ROOT)], check=True, timeout=5000)
    help_ = subprocess.run(["docker", "run", "--rm", tag, "sefm", "--help"], capture_output=True, text=True,
                           timeout=300)
    assert help_.returncode == 0 and "usage: sefm" in help_.stdout, help_.stderr
    doctor = subprocess.run(["docker", "run", "--rm", tag, "sefm", "doctor", "python"], capture_output=True,
                            text=True, timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
