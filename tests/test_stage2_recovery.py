"""Killing the policy or the trainer mid-run: the graph recovers and no stored episode is corrupt."""
import signal
import time

import pytest

from sefm_bringup.graph import terminate
from sefm_core.data import EpisodeDataset
from sefm_interfaces.msg import PolicyAction, PolicyVersion

from helpers import LATCHED, RELIABLE, Stage2Graph

pytestmark = pytest.mark.slow   # an end-to-end run: `make test` runs it, `make test-fast` does not


def test_policy_and_trainer_restarts_lose_nothing_they_stored(tmp_path):
    g = Stage2Graph(tmp_path)
    trainer_params = {"episodes_per_batch": 2, "updates_per_batch": 1}
    bridge, reward = g.bridge(max_steps=5), g.reward()
    policy, trainer = g.policy(), g.trainer(**trainer_params)
    d = g.driver()
    actions, versions = [], []
    d.node.create_subscription(PolicyAction, "action", actions.append, RELIABLE)
    d.node.create_subscription(PolicyVersion, g.version_topic, versions.append, LATCHED)
    procs = [bridge, reward, policy, trainer]
    try:
        assert d.spin_until(lambda: any(v.version >= 1 for v in versions), timeout=180)
        # Kill the policy mid-episode: the lockstep station waits, then continues with a new policy process.
        policy.send_signal(signal.SIGKILL)
        policy.wait()
        n = len(actions)
        d.spin_for(1.5)
        assert len(actions) == n  # nobody acts: the station holds
        policy = g.policy()
        procs.append(policy)
        assert d.spin_until(lambda: len(actions) > n + 5, timeout=120)
        # Kill the trainer: it comes back from its newest checkpoint and keeps improving.
        latest = max(v.version for v in versions)
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
        trainer = g.trainer(**trainer_params)
        procs.append(trainer)
        assert d.spin_until(lambda: any(v.version > latest for v in versions), timeout=180)
        time.sleep(0.5)
        data = EpisodeDataset(tmp_path / "run" / "episodes")  # every stored episode reads back whole
        assert len(data) >= 4
        for episode in data:
            assert episode.steps == len(episode.extras["log_probs"]) == len(episode.rewards)
            assert len(episode.extras["stamps"]) == episode.steps + 1
        restarted = [line for line in open(tmp_path / "run" / "metrics.csv").read().splitlines()[1:]]
        assert [int(row.split(",")[0]) for row in restarted] == list(range(1, len(restarted) + 1))  # no version twice
    finally:
        d.close()
        terminate(procs)
