"""Stage 2 on a real graph: bridge, policy, reward and trainer nodes as separate processes over DDS."""
import csv

import numpy as np
import pytest

from sefm_bringup.graph import terminate
from sefm_core.data import EpisodeDataset
from sefm_interfaces.msg import PolicyAction, PolicyVersion, StepsToGo

from helpers import LATCHED, RELIABLE, Stage2Graph, fail_with_output

pytestmark = pytest.mark.slow   # an end-to-end run: `make test` runs it, `make test-fast` does not


def test_trainer_joins_episodes_exactly_updates_and_the_policy_adopts_the_new_version(tmp_path):
    g = Stage2Graph(tmp_path)
    procs = [
        g.bridge(max_steps=6),  # its 4 subscribers: policy, reward, trainer and this test: nobody misses a start
        g.policy(),
        g.reward(),
        g.trainer(episodes_per_batch=2, updates_per_batch=2, max_versions=1),
    ]
    d = g.driver()
    actions, scores, versions = [], [], []
    d.node.create_subscription(PolicyAction, "action", actions.append, RELIABLE)
    d.node.create_subscription(StepsToGo, "steps_to_go", scores.append, RELIABLE)
    d.node.create_subscription(PolicyVersion, g.version_topic, versions.append, LATCHED)
    try:
        ok = d.spin_until(lambda: any(a.policy_version == 1 for a in actions), timeout=180)
        if not ok:
            fail_with_output(procs)
        assert any(v.version == 1 and v.sha256 for v in versions)
        data = EpisodeDataset(tmp_path / "run" / "episodes")
        assert len(data) >= 2
        by_stamp = {(a.observation_stamp.sec, a.observation_stamp.nanosec): a for a in actions}
        score_by_stamp = {(s.observation_stamp.sec, s.observation_stamp.nanosec): s for s in scores}
        observed = sorted({(o.header.stamp.sec, o.header.stamp.nanosec) for o in d.observations()})
        for episode in list(data)[:2]:
            stamps = [tuple(s) for s in episode.extras["stamps"]]
            # 6 actions (max_steps): the observation the last one led to is scored, so every action is a transition
            assert episode.metadata["policy_version"] == 0 and episode.steps == 6 and not episode.metadata["dropped"]
            i = observed.index(stamps[0])
            assert stamps == observed[i:i + len(stamps)]  # consecutive observations, none missing or repeated
            for t, stamp in enumerate(stamps[:-1]):
                assert episode.extras["log_probs"][t] == np.float32(by_stamp[stamp].log_prob)
                assert list(episode.extras["tokens"][t]) == list(by_stamp[stamp].tokens)
                assert episode.rewards[t] == np.float32(score_by_stamp[stamps[t + 1]].reward)
        metrics = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
        assert metrics and all(float(row["policy_entropy"]) > 0 for row in metrics)  # an untrained policy samples widely
        by_episode = {}
        for a in actions:
            by_episode.setdefault(a.episode_id, set()).add(a.policy_version)
        assert all(len(v) == 1 for v in by_episode.values())
    finally:
        d.close()
        terminate(procs)


def test_stale_policy_versions_are_dropped_on_the_graph(tmp_path):
    """The test plays the policy: episode 0 acted by a version the trainer is not training (stale), episode 1 by
    the current one. The stale one is recorded as unused and starts no update; the current one trains v1."""
    import json
    import time

    from sensor_msgs.msg import Image

    g = Stage2Graph(tmp_path)
    procs = [
        g.bridge(max_steps=4),  # its 4 subscribers: reward, trainer, this test and the test's go signal below
        g.reward(),
        g.trainer(episodes_per_batch=1, updates_per_batch=1, max_versions=1),
    ]
    d = g.driver()
    versions = []
    d.node.create_subscription(PolicyVersion, g.version_topic, versions.append, LATCHED)
    action_pub = d.node.create_publisher(PolicyAction, "action", RELIABLE)
    answered = {}   # observation stamp -> episode id

    def act(score: StepsToGo) -> None:
        """Answer each observation once it is scored: a policy no faster than the reward model (the bridge does not
        wait for scores, and a reward node left far behind would drop observations)."""
        key = (score.observation_stamp.sec, score.observation_stamp.nanosec)
        if key in answered:
            return
        # every score names the episode its observation belongs to (the station's episode_step)
        answered[key] = episode = score.episode_id
        acting_version = 5 if episode == min(answered.values()) else 0   # the first episode: stale
        d.send([0.01, 0.0], score.observation_stamp)
        action_pub.publish(PolicyAction(observation_stamp=score.observation_stamp, episode_id=episode,
                                        step=score.step, values=[0.01, 0.0], tokens=[40, 32], log_prob=-1.0,
                                        policy_version=acting_version, greedy=False))

    d.node.create_subscription(StepsToGo, "steps_to_go", act, RELIABLE)
    unused = tmp_path / "run" / "unused_episodes.jsonl"
    try:
        # the trainer must hear this test's actions from the first one: only then let the station start
        assert d.spin_until(lambda: action_pub.get_subscription_count() >= 1, timeout=60)
        d.node.create_subscription(Image, "camera/image_raw", lambda _: None, RELIABLE)
        # the stale episode's record can come after v1: the trainer may wait for its last score (at most 10 s)
        ok = d.spin_until(lambda: versions and versions[-1].version == 1 and unused.exists()
                          and "stale policy version" in unused.read_text(), timeout=120)
        if not ok:
            fail_with_output(procs)
        data = EpisodeDataset(tmp_path / "run" / "episodes")
        records = [json.loads(line) for line in unused.read_text().splitlines()]
        first = min(answered.values())
        stale = [r for r in records if r["episode_id"] == first]
        assert stale and stale[0]["dropped"] == {"stale policy version": 4}, records   # 4 steps (max_steps), none used
        data = EpisodeDataset(tmp_path / "run" / "episodes")
        assert [e.metadata["episode_id"] for e in data][:1] == [min(k for k in answered.values() if k > first)]
        assert data[0].metadata["policy_version"] == 0 and not data[0].metadata["dropped"]
        time.sleep(0.1)
    finally:
        terminate(procs)
        d.close()
