"""One rule set for Stage 2: the graph (bridge, policy, reward, trainer over DDS) and `sefm practice` (no ROS)
run a fixed policy on the same seeds and must give the same episodes: lengths, rewards and detector decisions."""
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from sefm_core import checkpoint
from sefm_core.data import EpisodeDataset

from helpers import tiny_checkpoint

pytestmark = pytest.mark.slow   # an end-to-end run: `make test` runs it, `make test-fast` does not

EPISODES, MAX_STEPS = 6, 5


def practice_episodes(ckpt, seeds, threshold):
    from sefm_experiments.practice import run_batch
    from sefm_sim.envs.language_table import LanguageTableEnv

    model, _ = checkpoint.load(ckpt)
    model.eval()
    envs = [LanguageTableEnv(block_mode="BLOCK_4", image_size=(64, 36), max_steps=MAX_STEPS,
                             families=("point2block",)) for _ in seeds]
    try:   # greedy: the fixed policy both paths run; families None: the env draws it as a station's does
        return run_batch(model, model, envs, seeds, [None] * len(seeds), threshold, torch.Generator(), greedy=True)
    finally:
        for env in envs:
            env.close()


def test_the_graph_and_the_ros_free_loop_agree_on_every_episode(tmp_path):
    from sefm_bringup.graph import ImproveConfig
    from sefm_experiments.practice import detected

    ckpt = tmp_path / "stage1"
    tiny_checkpoint(ckpt, 3)
    seeds = list(range(ImproveConfig(stations=1).station_seeds()[0], ImproveConfig(stations=1).station_seeds()[0]
                       + EPISODES))
    # s between two episodes' d at their first judged observation, at the widest gap among the middle ones:
    # the detector ends some episodes there and lets others run on, and float rounding cannot flip a decision
    probe = practice_episodes(ckpt, seeds, -1.0)
    d1 = np.sort([ep.d[1] for ep in probe])
    gap = 1 + int(np.argmax(np.diff(d1)[1:-1]))
    threshold = float((d1[gap] + d1[gap + 1]) / 2)
    expected = practice_episodes(ckpt, seeds, threshold)
    assert any(detected(ep) and ep.steps == 1 for ep in expected) and any(ep.steps > 1 for ep in expected)

    config = tmp_path / "improve.yaml"
    config.write_text(yaml.safe_dump({
        "checkpoint": str(ckpt), "run_dir": str(tmp_path / "run"), "stations": 1, "families": "point2block",
        "image_width": 64, "image_height": 36, "max_steps": MAX_STEPS, "success_threshold": threshold,
        "sim_success_ends": True,   # as `sefm practice` with oracle_ends
        "reinforce": {"episodes_per_batch": EPISODES, "updates_per_batch": 1}, "versions": 1, "rounds": True,
        "greedy": True}))
    run = subprocess.run([sys.executable, "-m", "sefm_cli.cli", "improve", "--config", str(config)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    time.sleep(0.1)
    data = EpisodeDataset(tmp_path / "run" / "episodes")
    unused = tmp_path / "run" / "unused_episodes.jsonl"
    assert not unused.exists(), unused.read_text()
    stored = sorted((e for e in data if e.metadata["policy_version"] == 0), key=lambda e: e.metadata["episode_id"])
    assert len(stored) == EPISODES
    for got, want in zip(stored, expected):
        assert got.steps == want.steps, (got.metadata, want.outcome)
        np.testing.assert_allclose(got.rewards, want.rewards, atol=1e-4)
        np.testing.assert_allclose(got.extras["steps_to_go"], want.d, atol=1e-4)
        assert got.extras["detected"].astype(bool).tolist() == want.detections
        assert got.metadata["outcome"] == want.outcome
        assert got.metadata["oracle_success"] == want.success
