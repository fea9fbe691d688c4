"""The policy node drives a bridge station over DDS and hot-swaps verified policy versions between episodes."""
import subprocess
import uuid

import pytest

from sefm_interfaces.msg import PolicyAction, PolicyVersion

from helpers import LATCHED, RELIABLE, station_with_node, stop, tiny_checkpoint


def test_policy_acts_for_the_station_and_swaps_versions_between_episodes(tmp_path):
    sha0 = tiny_checkpoint(tmp_path / "v0", 0)
    sha1 = tiny_checkpoint(tmp_path / "v1", 1)
    version_topic = f"/policy_version_{uuid.uuid4().hex[:6]}"
    d, bridge, policy = station_with_node("sefm_policy.policy_node", {"checkpoint": tmp_path / "v0",
                                          "version_from": "''"},   # the test plays the trainer
                                          max_steps=6,
                                          remap=(f"/policy/version:={version_topic}",))
    actions = []
    d.node.create_subscription(PolicyAction, "action", actions.append, RELIABLE)
    versions = d.node.create_publisher(PolicyVersion, version_topic, LATCHED)
    try:
        ok = d.spin_until(lambda: len(actions) >= 8, timeout=90)
        assert ok, policy.stdout.read() if policy.poll() is not None else "no actions"
        observed = {(s.header.stamp.sec, s.header.stamp.nanosec) for s in d.states}
        for a in actions:
            assert (a.observation_stamp.sec, a.observation_stamp.nanosec) in observed  # exact join key
            assert all(-0.1 <= v <= 0.1 for v in a.values) and len(a.tokens) == 2
            assert a.log_prob <= 0.0 and a.policy_version == 0 and not a.greedy
        first_episode = [a.step for a in actions if a.episode_id == actions[0].episode_id]
        assert first_episode == list(range(len(first_episode)))
        # A corrupted version is rejected; a verified one is used from the next episode on.
        versions.publish(PolicyVersion(version=2, checkpoint_uri=f"file://{tmp_path / 'v1'}", sha256="0" * 64))
        versions.publish(PolicyVersion(version=1, checkpoint_uri=f"file://{tmp_path / 'v1'}", sha256=sha1))
        assert d.spin_until(lambda: any(a.policy_version == 1 for a in actions), timeout=90)
        d.spin_for(2.0)
        by_episode = {}
        for a in actions:
            by_episode.setdefault(a.episode_id, set()).add(a.policy_version)
        assert all(len(v) == 1 for v in by_episode.values()), by_episode  # never a swap mid-episode
        assert not any(a.policy_version == 2 for a in actions)
        assert sha0 != sha1
    finally:
        stop(d, bridge)
        policy.terminate()
        try:
            policy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            policy.kill()



def test_rounds_start_each_versions_episodes_together_and_never_deadlock(tmp_path):
    """episodes_per_version 2: two episodes on v0, then the lockstep station waits; v1 releases it; with no
    new version and no action for round_timeout, it goes on with the current version."""
    tiny_checkpoint(tmp_path / "v0", 0)
    sha1 = tiny_checkpoint(tmp_path / "v1", 1)
    version_topic = f"/policy_version_{uuid.uuid4().hex[:6]}"
    d, bridge, policy = station_with_node("sefm_policy.policy_node", {
        "checkpoint": tmp_path / "v0", "episodes_per_version": 2, "round_timeout": 4.0,
        "version_from": "''"}, max_steps=4,
        remap=(f"/policy/version:={version_topic}",))
    actions = []
    d.node.create_subscription(PolicyAction, "action", actions.append, RELIABLE)
    versions = d.node.create_publisher(PolicyVersion, version_topic, LATCHED)

    def episodes(version):
        return sorted({a.episode_id for a in actions if a.policy_version == version})

    try:
        assert d.spin_until(lambda: len(episodes(0)) == 2, timeout=90), "no two episodes on v0"
        d.spin_for(2.0)
        assert len(episodes(0)) == 2 and not episodes(1)     # the round is full: the station waits
        versions.publish(PolicyVersion(version=1, checkpoint_uri=f"file://{tmp_path / 'v1'}", sha256=sha1))
        assert d.spin_until(lambda: len(episodes(1)) == 2, timeout=60), "v1 did not release the station"
        assert len(episodes(0)) == 2 and min(episodes(1)) > max(episodes(0))
        # no v2 comes: after round_timeout without an action the station goes on with v1
        assert d.spin_until(lambda: len(episodes(1)) >= 3, timeout=60), "the fleet deadlocked"
    finally:
        stop(d, bridge)
        policy.terminate()
        try:
            out, _ = policy.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            policy.kill()
            out = ""
    assert "go on with v1" in out


def test_unsupported_image_encodings_are_clear_errors():
    from sensor_msgs.msg import Image

    from sefm_ros.common import image_to_array

    rgb = Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(range(12)))
    assert image_to_array(rgb).shape == (2, 2, 3)
    bgr = Image(height=2, width=2, encoding="bgr8", step=6, data=bytes(range(12)))
    assert image_to_array(bgr)[0, 0].tolist() == [2, 1, 0]
    with pytest.raises(ValueError, match="unsupported image encoding 'mono16'"):
        image_to_array(Image(height=2, width=2, encoding="mono16", step=4, data=bytes(8)))
    with pytest.raises(ValueError, match="does not match"):
        image_to_array(Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(5)))


def test_an_observation_is_handed_out_only_under_the_episode_it_names():
    """The new episode's first observation arrives before its task: it waits for that task and is never handed
    out under the previous episode's (a policy would act on it with the old instruction)."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image, JointState

    from sefm_interfaces.msg import EpisodeStep, Task
    from sefm_ros.common import StationObservations

    def stamped(msg, sec):
        msg.header.stamp = Time(sec=sec)
        return msg

    view = StationObservations("s")
    view.add_task(stamped(Task(episode_id=10, instruction="old"), 1))
    for sec, episode, step in ((1, 10, 0), (2, 10, 1), (3, 30, 0)):   # observation 3 starts episode 30
        view.add_image(stamped(Image(height=1, width=1, step=3, encoding="rgb8", data=[0, 0, 0]), sec))
        view.add_state(stamped(JointState(position=[0.0]), sec))
        view.add_step(stamped(EpisodeStep(episode_id=episode, step=step), sec))
    assert view.pending() == [(1, 0), (2, 0)]       # episode 30's task has not come: its observation waits
    for key in view.pending():
        view.mark_done(key)
    view.add_task(stamped(Task(episode_id=30, instruction="new"), 3))
    assert view.pending() == [(3, 0)]
    task, step = view.episode_of((3, 0))
    assert task.instruction == "new" and step == 0
    # an observation without its episode_step is never handed out, nor one with NaN joint states
    view.add_image(stamped(Image(height=1, width=1, step=3, encoding="rgb8", data=[0, 0, 0]), 4))
    view.add_state(stamped(JointState(position=[0.0]), 4))
    assert view.pending() == [(3, 0)]
    import pytest
    with pytest.raises(ValueError, match="non-finite"):
        view.add_state(stamped(JointState(position=[float("nan")]), 5))
