"""Resumable stages: a command whose completion is a marker written after it succeeded.

`sefm pipeline` and `sefm bench paper` chain `sefm` commands. A stage counts as
done only when `<run>/stages/<name>.json` exists: it is written (atomically)
after the command exited 0 and its expected output exists, and it records the
command, a signature of its configuration (the command line plus the content
of every file it names) and what the stage produced. On a rerun:

- marker present, same signature: skipped ("done already");
- marker present, another signature: a clear error naming what changed (a
  finished stage is never silently reused with another config);
- no marker but output present (an interrupted run): resumed where the command
  can resume (`resume` arguments, e.g. `sefm sft --resume`; Stage 2's trainer
  resumes from its own checkpoints), otherwise the partial output is removed and
  the stage redone. The log says which.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

SEFM = [sys.executable, "-m", "sefm_cli.cli"]


class StageError(RuntimeError):
    pass


def _shown(cmd: list[str]) -> list[str]:
    return ["sefm", *cmd[len(SEFM):]] if cmd[:len(SEFM)] == SEFM else list(cmd)


def signature(cmd: list[str], produced: list[pathlib.Path] = ()) -> dict:
    """The stage's configuration: its command line and the sha256 of each existing file it names, except
    what it produces (a YAML config edited between runs changes the signature, not only a changed flag)."""
    files, produced = {}, [p.resolve() for p in produced]
    for arg in cmd[len(SEFM):] if cmd[:len(SEFM)] == SEFM else cmd:
        path = pathlib.Path(arg)
        if any(path.resolve() == p or p in path.resolve().parents for p in produced):
            continue
        if arg.endswith((".yaml", ".yml", ".json")) and path.is_file():
            files[arg] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"command": _shown(cmd), "files": files}


def _differences(old: dict, new: dict) -> str:
    if old.get("command") != new["command"]:
        a, b = old.get("command", []), new["command"]
        changed = [f"{x!r} -> {y!r}" for x, y in zip(a, b) if x != y] or [f"{len(a)} -> {len(b)} arguments"]
        return "command " + ", ".join(changed[:4])
    files = [f for f in set(old.get("files", {})) | set(new["files"])
             if old.get("files", {}).get(f) != new["files"].get(f)]
    return "content of " + ", ".join(sorted(files))


def _summary(path: pathlib.Path) -> dict:
    if path.is_file():
        return {"path": str(path), "bytes": path.stat().st_size}
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return {"path": str(path), "files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def run_stage(name: str, cmd: list[str], run: pathlib.Path, outputs: list[pathlib.Path], expect: pathlib.Path,
              log=print, resume: list[str] | None = None) -> None:
    """Run `cmd` as stage `name` of the run folder `run` (see the module text).

    outputs: what the stage writes (removed when a partial stage is redone); expect: the file that must exist
    after success; resume: None to redo a partial stage, else the arguments that make the command continue it."""
    marker = run / "stages" / f"{name.replace(' ', '_').replace('/', '_')}.json"
    sig = signature(cmd, [*outputs, expect])
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("signature") == sig:
            log(f"[{name}] done already ({marker}); skipped")
            return
        raise StageError(f"stage {name} finished earlier with another configuration ({_differences(done.get('signature', {}), sig)}); "
                         f"use another run folder, or delete {marker} and its output to redo it")
    partial = [p for p in outputs if p.exists()]
    if partial and resume is not None:
        log(f"[{name}] an interrupted run left {', '.join(map(str, partial))}: resuming it")
        cmd = cmd + resume
    elif partial:
        log(f"[{name}] an interrupted run left {', '.join(map(str, partial))}: removed, redoing the stage")
        for p in partial:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    log_path = run / "logs" / f"{marker.stem}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log(f"[{name}] {' '.join(_shown(cmd))}")
    start = time.monotonic()
    with open(log_path, "a") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            out.write(line)
            if not line.startswith("[INFO]") and "Loading weights" not in line:
                log(f"  {line.rstrip()[:160]}")
        proc.wait()
    if proc.returncode != 0 or not expect.exists():
        raise StageError(f"stage {name} failed (exit {proc.returncode}); its log: {log_path}")
    seconds = time.monotonic() - start
    marker.parent.mkdir(parents=True, exist_ok=True)
    record = {"stage": name, "signature": sig, "resumed": bool(partial and resume is not None),
              "outputs": [_summary(p) for p in outputs], "seconds": round(seconds, 1),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, marker)   # atomic: a marker is whole or absent
    log(f"[{name}] {seconds:.0f} s")
