"""The reward node scores every observation of a real bridge station; a detected success ends the episode."""
from sefm_interfaces.msg import EpisodeEvent, StepsToGo

from helpers import RELIABLE, station_with_node, stop, tiny_checkpoint


def run_station(tmp_path, threshold):
    sha = tiny_checkpoint(tmp_path / "frozen", 0)
    d, bridge, reward = station_with_node("sefm_reward.reward_node", {
        "checkpoint": tmp_path / "frozen", "success_threshold": threshold}, max_steps=50, families="block2block")
    scores = []
    d.node.create_subscription(StepsToGo, "steps_to_go", scores.append, RELIABLE)
    return d, bridge, reward, scores, sha


def test_every_observation_gets_d_and_the_reward_of_the_step_into_it(tmp_path):
    d, bridge, reward, scores, sha = run_station(tmp_path, -1.0)  # never a success
    try:
        # The reward node may miss the first observation (published before its subscriptions matched), and
        # its score of it can go out before this test's subscription matched. So once the reward node is wired
        # to the station, drive a few steps and require a score for each of them.
        ns = d.node.get_namespace()
        wired = lambda: (d.observations() and d.node.count_publishers(f"{ns}/steps_to_go") > 0  # noqa: E731
                         and d.node.count_subscribers(f"{ns}/camera/image_raw") >= 2
                         and d.node.count_subscribers(f"{ns}/joint_states") >= 2)
        assert d.spin_until(wired, timeout=90), reward.stdout.read() if reward.poll() is not None else "not wired"
        d.spin_for(1.0)  # discovery done; let the matching finish
        scored = lambda: {(s.observation_stamp.sec, s.observation_stamp.nanosec) for s in scores}  # noqa: E731
        for _ in range(4):
            seen = len(d.observations())
            d.send([0.02, 0.0], d.observations()[-1].header.stamp)
            assert d.spin_until(lambda: len(d.observations()) > seen, timeout=30)
            new = d.observations()[-1].header.stamp
            assert d.spin_until(lambda: (new.sec, new.nanosec) in scored(), timeout=30), [s.step for s in scores]
        episode = sorted(scores, key=lambda s: s.step)
        assert len({s.episode_id for s in episode}) == 1
        first = episode[0].step
        assert [s.step for s in episode] == list(range(first, first + len(episode)))  # each scored once, in order
        assert all(s.has_reward == (s.step > 0) for s in episode)
        for before, after in zip(episode, episode[1:]):
            assert after.reward == before.expected_steps_to_go - after.expected_steps_to_go  # r = d_t - d_t+1
        stamps = {(o.header.stamp.sec, o.header.stamp.nanosec) for o in d.observations()}
        assert all((s.observation_stamp.sec, s.observation_stamp.nanosec) in stamps for s in episode)
        assert all(not s.success and s.reward_model_sha256 == sha for s in episode)
    finally:
        stop(d, bridge)
        reward.terminate()
        reward.wait(timeout=10)


def test_a_detected_success_ends_the_episode(tmp_path):
    d, bridge, reward, scores, _ = run_station(tmp_path, 1000.0)  # every observation reads as success ...
    try:
        # ... but the first observation is never judged (episode_rules): one action, then the detector ends it
        sent = []

        def act():   # one command per episode, for its first observation; then the station waits at step 1
            obs = d.observations()
            if obs and d.tasks and d.tasks[-1].episode_id not in sent and \
                    (obs[-1].header.stamp.sec, obs[-1].header.stamp.nanosec) == \
                    (d.tasks[-1].header.stamp.sec, d.tasks[-1].header.stamp.nanosec):
                sent.append(d.tasks[-1].episode_id)
                d.send([0.01, 0.0], obs[-1].header.stamp)
            return any(e.outcome == EpisodeEvent.OUTCOME_SUCCESS_DETECTED for e in d.events)
        assert d.spin_until(act, timeout=90)
        end = next(e for e in d.events if e.outcome == EpisodeEvent.OUTCOME_SUCCESS_DETECTED)
        assert end.event == EpisodeEvent.END and end.num_steps == 1
        assert d.spin_until(lambda: len(d.tasks) >= 2)  # the station reset
        assert d.spin_until(lambda: any(s.step == 1 for s in scores), timeout=30)
        assert all(s.success == (s.step > 0) for s in scores)
    finally:
        stop(d, bridge)
        reward.terminate()
        reward.wait(timeout=10)
