"""The reward node scores every observation of a real bridge station; a detected success ends the episode."""
import pytest

from sefm_interfaces.msg import EpisodeEvent, StepsToGo

from helpers import RELIABLE, station_with_node, stop, tiny_checkpoint


def run_station(tmp_path, threshold, hold=1):
    sha = tiny_checkpoint(tmp_path / "frozen", 0)
    d, bridge, reward = station_with_node("sefm_reward.reward_node", {
        "checkpoint": tmp_path / "frozen", "success_threshold": threshold, "success_hold": hold}, max_steps=50,
        families="block2block")
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


@pytest.mark.parametrize("hold", [1, 3])
def test_a_detected_success_ends_the_episode(tmp_path, hold):
    d, bridge, reward, scores, _ = run_station(tmp_path, 1000.0, hold)  # every observation reads as success ...
    try:
        # ... but the first observation is never judged (episode_rules), and the verdict must hold on `hold`
        # observations in a row: the detector ends the episode at step max(1, hold - 1)
        sent = set()

        def act():   # a command for each observation of the running episode once it is scored as no success
            obs = d.observations()
            if obs and d.tasks:
                stamp = (obs[-1].header.stamp.sec, obs[-1].header.stamp.nanosec)
                verdicts = [x.success for x in scores if (x.observation_stamp.sec, x.observation_stamp.nanosec) == stamp]
                first = stamp == (d.tasks[-1].header.stamp.sec, d.tasks[-1].header.stamp.nanosec)
                if stamp not in sent and (first or verdicts == [False]):
                    sent.add(stamp)
                    d.send([0.01, 0.0], obs[-1].header.stamp)
            return len(detected()) >= 2

        # (two episodes: the reward node may miss the first episode's first observation, which delays that end)
        detected = lambda: [e for e in d.events if e.outcome == EpisodeEvent.OUTCOME_SUCCESS_DETECTED]  # noqa: E731
        assert d.spin_until(act, timeout=120)
        assert all(e.event == EpisodeEvent.END and e.num_steps >= max(1, hold - 1) for e in detected())
        assert detected()[-1].num_steps == max(1, hold - 1)
        assert all(s.step >= max(1, hold - 1) for s in scores if s.success)
        assert [s.success for s in scores if s.step == 0] and not any(s.success for s in scores if s.step == 0)
    finally:
        stop(d, bridge)
        reward.terminate()
        reward.wait(timeout=10)
