"""`sefm improve`: the whole Stage-2 graph from one config, in one process and as one process per node."""
import os
import subprocess
import sys

import pytest

from sefm_core.data import EpisodeDataset

from helpers import tiny_checkpoint

pytestmark = pytest.mark.slow   # an end-to-end run: `make test` runs it, `make test-fast` does not

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")


@pytest.mark.parametrize("processes,executor,rounds", [("single", "single", False), ("per_node", "single", False),
                                                       ("single", "events", False), ("single", "single", True)])
def test_improve_runs_two_stations_through_two_policy_versions(tmp_path, processes, executor, rounds):
    tiny_checkpoint(tmp_path / "stage1", 0)
    config = tmp_path / "improve.yaml"
    config.write_text(f"""
checkpoint: {tmp_path / 'stage1'}
run_dir: {tmp_path / 'run'}
stations: 2
families: block2block
image_width: 64
image_height: 36
max_steps: 5
success_threshold: -1.0
reinforce:
  episodes_per_batch: 2
  updates_per_batch: 1
versions: 2
processes: {processes}
executor: {executor}
rounds: {str(rounds).lower()}
""")
    env = {**os.environ, "ROS_DOMAIN_ID": str(40 + (processes == "per_node") + 2 * (executor == "events") + 4 * rounds)}
    proc = subprocess.run([SEFM, "improve", "--config", str(config)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "policy version 2" in proc.stdout and "station_1" in proc.stdout
    assert (tmp_path / "run" / "checkpoints" / "v2" / "model.safetensors").exists()
    data = EpisodeDataset(tmp_path / "run" / "episodes")
    versions = [ep.metadata["policy_version"] for ep in data]
    # Two batches (v0, then v1) from two stations that act in parallel: both stations feed the trainer.
    assert not any(ep.metadata["dropped"] for ep in data), [ep.metadata for ep in data]
    assert {ep.metadata["station"] for ep in data} == {"station_0", "station_1"}
    if not rounds:
        assert versions.count(0) >= 2 and versions.count(1) >= 2 and set(versions) <= {0, 1, 2}
    else:  # one round per version: at most one episode per station on it (one may end before its first
        # action and hold no transition), and none is lost as stale (v2's round may start before the run stops)
        assert 1 <= versions.count(0) <= 2 and 1 <= versions.count(1) <= 2 and set(versions) <= {0, 1, 2}, versions
        unused = tmp_path / "run" / "unused_episodes.jsonl"
        assert not unused.exists() or "stale" not in unused.read_text()


def test_practice_ends_only_on_the_detector_the_step_cap_or_the_operator_whose_labels_are_stored(tmp_path):
    """The detector on, every detection unsure (ask_above 0): each station asks, the scripted operator answers
    (block2block is not solved in 6 steps, so the right answer is "not yet"; 15% of its answers are wrong, so
    some episodes end as its "success"), and the trainer stores each episode with how it ended and how often it
    asked. Nothing from the simulator ends an episode (no env_success). The regression guard judges every
    version by those verdicts; a roll-back makes the new version the best one's policy."""
    tiny_checkpoint(tmp_path / "stage1", 0)
    config = tmp_path / "improve.yaml"
    config.write_text(f"""
checkpoint: {tmp_path / 'stage1'}
run_dir: {tmp_path / 'run'}
stations: 2
families: block2block
image_width: 64
image_height: 36
max_steps: 6
success_threshold: 100.0
ask_above: 0.0
ask_every: 1
operator: scripted
scripted_operator: {{operator_delay: 0.05, operator_error_rate: 0.15, operator_seed: 1}}
reinforce:
  episodes_per_batch: 2
  updates_per_batch: 1
  guard_every: 1             # the regression guard on every version, any drop rolls back
  guard_drop: 0.0
versions: 4
rounds: true
executor: events
""")
    env = {**os.environ, "ROS_DOMAIN_ID": "48"}
    proc = subprocess.run([SEFM, "improve", "--config", str(config)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = EpisodeDataset(tmp_path / "run" / "episodes")
    meta = [ep.metadata for ep in data]
    assert {m["end_reason"] for m in meta} <= {"success_detected", "timeout", "operator_success", "operator_abort"}
    assert all(m["operator_asks"] >= 1 for m in meta), meta   # every episode asked at its first judged step
    labelled = [m for m in meta if m["end_reason"] == "operator_success"]
    assert labelled and all(m["oracle_success"] is not None for m in meta), meta
    assert any(m["end_reason"] == "timeout" and m["operator_asks"] > 1 for m in meta) or len(labelled) == len(meta)
    assert "asked" in proc.stdout   # the monitor's column
    # the guard judged every version by the stations' verdicts (the operator's "success" here); each roll-back
    # made the new version the best one's policy
    import csv
    import json

    import torch

    from sefm_core import checkpoint

    guard = json.loads((tmp_path / "run" / "guard.json").read_text())
    assert len(guard["windows"]) == 4 and guard["windows"][0]["credited"] == 0
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    for row in rows:
        if row["guard"]:
            best = int(row["guard"].split("v")[-1])
            weights = [checkpoint.load(tmp_path / "run" / "checkpoints" / f"v{v}" if v else tmp_path / "stage1")[0]
                       .heads.state_dict() for v in (int(row["version"]), best)]
            assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]), row


def test_a_terminated_improve_takes_its_node_processes_with_it(tmp_path):
    import signal
    import time

    tiny_checkpoint(tmp_path / "stage1", 0)
    env = {**os.environ, "ROS_DOMAIN_ID": "49"}
    proc = subprocess.Popen([SEFM, "improve", "--checkpoint", str(tmp_path / "stage1"), "--run-dir", str(tmp_path / "run"),
                             "--stations", "2", "--processes", "per_node", "--versions", "1000", "--image-width", "64",
                             "--image-height", "36"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    children_file = f"/proc/{proc.pid}/task/{proc.pid}/children"
    children: list[int] = []
    deadline = time.monotonic() + 60
    # trainer, reward, policy, the e-stop latch, the lifecycle manager, per station a driver, a gate, a manager
    while len(children) < 11 and time.monotonic() < deadline:
        time.sleep(0.5)
        children = [int(c) for c in open(children_file).read().split()]
    assert len(children) == 11, children
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) is not None

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    assert not [c for c in children if alive(c)]


def test_a_fleet_survives_a_crashed_policy_and_a_crashed_reward_node(tmp_path):
    """per_node: SIGKILL the policy after the first version and the reward node after the second; the runner
    starts each again, the lifecycle manager configures and activates it, and the fleet reaches its budget."""
    import signal
    import time

    tiny_checkpoint(tmp_path / "stage1", 0)
    env = {**os.environ, "ROS_DOMAIN_ID": "50"}
    run = tmp_path / "run"
    proc = subprocess.Popen([SEFM, "improve", "--checkpoint", str(tmp_path / "stage1"), "--run-dir", str(run),
                             "--stations", "2", "--processes", "per_node", "--versions", "4", "--image-width", "64",
                             "--image-height", "36", "--max-steps", "5", "--episodes-per-batch", "2",
                             "--families", "block2block"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    try:
        for version, victim in ((1, "sefm_policy.policy_node"), (2, "sefm_reward.reward_node")):
            deadline = time.monotonic() + 150
            while not (run / "checkpoints" / f"v{version}").exists() and time.monotonic() < deadline \
                    and proc.poll() is None:
                time.sleep(0.2)
            if not (run / "checkpoints" / f"v{version}").exists():
                proc.terminate()
                pytest.fail(f"no version {version}; sefm improve printed:\n{proc.communicate(timeout=60)[0][-4000:]}")
            children = [int(c) for c in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()]
            (pid,) = [c for c in children if victim in open(f"/proc/{c}/cmdline").read()]
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.terminate()   # (SIGTERM: the runner takes its node processes with it)
            out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out[-3000:]
    assert out.count("exited with code -9: starting it again (restart 1 of 3)") == 2, out[-3000:]
    assert "reached policy version 4" in out
    assert (run / "checkpoints" / "v4" / "model.safetensors").exists()


def test_improve_rejects_a_bad_config(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("stations: two\n")
    proc = subprocess.run([SEFM, "improve", "--config", str(config)], capture_output=True, text=True)
    assert proc.returncode == 2 and "stations" in proc.stderr
    proc = subprocess.run([SEFM, "improve", "--stations", "2"], capture_output=True, text=True)
    assert proc.returncode == 2 and "checkpoint is required" in proc.stderr


def test_improve_config_batch_wait_by_mode_and_bad_values_raise():
    from sefm_bringup.graph import load_config, node_parameters
    from sefm_core.config import ConfigError

    lockstep = node_parameters(load_config(None, {"checkpoint": "ckpt"}))
    realtime = node_parameters(load_config(None, {"checkpoint": "ckpt", "mode": "realtime"}))
    assert lockstep["policy"]["batch_wait"] == lockstep["reward"]["batch_wait"] == 0.05
    assert realtime["policy"]["batch_wait"] == 0.005
    assert node_parameters(load_config(None, {"checkpoint": "ckpt", "batch_wait": 0.02}))["policy"]["batch_wait"] == 0.02
    rounds = node_parameters(load_config(None, {"checkpoint": "ckpt", "rounds": True, "reinforce.episodes_per_batch": 12}))
    assert rounds["policy"]["episodes_per_version"] == 12 and lockstep["policy"]["episodes_per_version"] == 0
    assert rounds["trainer"]["rounds"] is True and lockstep["trainer"]["rounds"] is False
    for bad in ({"reinforce.minibatch": 0}, {"batch_wait": -0.1}, {"reinforce.center_returns": "yes"},
                {"executor": "multi"}, {"reinforce.lr": float("nan")}, {"lr": 1e-5},
                {"rounds": True, "mode": "realtime"}):
        with pytest.raises(ConfigError):
            load_config(None, {"checkpoint": "ckpt", **bad})

