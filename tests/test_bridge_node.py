"""The sim bridge node as a robot driver: a real node in its own process, driven over DDS."""
import uuid

import rclpy

import pytest

from sefm_interfaces.msg import EpisodeEvent, EStop, StationStatus
from sefm_interfaces.srv import PauseStation, ResumeStation

from helpers import RELIABLE, launch, stop

@pytest.fixture()
def station():
    driver, proc = launch("max_steps:=4")
    yield driver, proc
    stop(driver, proc)


def test_lockstep_observation_command_cycle_and_episode_boundaries(station):
    d, proc = station
    assert d.spin_until(lambda: d.tasks and d.images and d.states), proc.stdout.read() if proc.poll() else "no data"
    first = d.tasks[-1]
    assert first.family == "block2block" and first.seed == 3 and first.instruction
    img, st = d.images[-1], d.states[-1]
    assert img.encoding == "rgb8" and (img.height, img.width) == (36, 64) and len(img.data) == 36 * 64 * 3
    assert img.header.stamp == st.header.stamp  # one observation = frame + state with one stamp
    assert list(st.name) == ["effector_x", "effector_y", "target_x", "target_y"]
    # A command for the current observation steps the env exactly once.
    for k in range(3):
        obs = d.observations()
        d.send([0.01, 0.0], obs[-1].header.stamp)
        assert d.spin_until(lambda: len(d.observations()) == len(obs) + 1)
        assert d.observations()[-1].position[2] == pytest.approx(obs[-1].position[2] + 0.01, abs=1e-6)
    # A command answering an old observation is ignored.
    n = len(d.observations())
    d.send([0.01, 0.0], d.observations()[0].header.stamp)
    d.spin_for(1.5)
    assert len(d.observations()) == n
    # The fourth action hits the step cap: END (timeout), then a new episode with the next seed.
    d.send([0.0, 0.0], d.observations()[-1].header.stamp)
    assert d.spin_until(lambda: len(d.tasks) >= 2 and any(e.event == EpisodeEvent.END for e in d.events))
    end = next(e for e in d.events if e.event == EpisodeEvent.END)
    assert end.outcome == EpisodeEvent.OUTCOME_TIMEOUT and end.num_steps == 4 and end.episode_id == first.episode_id
    assert d.tasks[-1].episode_id > first.episode_id and d.tasks[-1].seed == 4
    stamps = [s.header.stamp.sec * 10**9 + s.header.stamp.nanosec for s in d.observations()]
    assert stamps == sorted(set(stamps))  # strictly increasing: the join key never names two observations
    # Every observation names its episode and step; the one the capped action led to is published too
    # (its score is that action's reward), and the episode id is its first observation's stamp.
    assert d.spin_until(lambda: len({(m.header.stamp.sec, m.header.stamp.nanosec) for m in d.steps}) >= 6)
    tags = {(m.header.stamp.sec, m.header.stamp.nanosec): (m.episode_id, m.step) for m in d.steps}
    by_stamp = sorted(tags.items())
    assert [v for _, v in by_stamp[:6]] == [(first.episode_id, k) for k in range(5)] + [(d.tasks[-1].episode_id, 0)]
    assert first.episode_id == stamps[0] and end.last_observation_stamp == d.observations()[4].header.stamp


def test_invalid_commands_are_rejected_and_the_robot_holds(station):
    d, _ = station
    assert d.spin_until(lambda: d.states)
    obs = d.observations()
    d.send([float("nan"), 0.0], obs[-1].header.stamp)
    d.send([0.1, 0.1, 0.1], obs[-1].header.stamp)
    d.spin_for(1.5)
    assert len(d.observations()) == len(obs)
    assert d.spin_until(lambda: d.status and "rejected command" in d.status[-1].message)
    d.send([5.0, 0.0], obs[-1].header.stamp)  # out of range: clipped to 0.1, not rejected
    assert d.spin_until(lambda: len(d.observations()) == len(obs) + 1)
    assert d.observations()[-1].position[2] - obs[-1].position[2] <= 0.1 + 1e-6


def test_estop_halts_and_pause_resume_are_honoured(station):
    d, _ = station
    assert d.spin_until(lambda: d.states)
    stop = EStop(engaged=True, source="test", reason="hands in the workspace")
    d.estop.publish(stop)
    assert d.spin_until(lambda: any(e.outcome == EpisodeEvent.OUTCOME_ESTOP for e in d.events))
    n = len(d.observations())
    d.send([0.01, 0.0], d.observations()[-1].header.stamp)
    d.spin_for(1.5)
    assert len(d.observations()) == n  # nothing reaches the robot
    assert d.spin_until(lambda: d.status and d.status[-1].state == StationStatus.STATE_ESTOPPED)
    assert not d.call(ResumeStation, "resume", reason="too early").success
    d.estop.publish(EStop(engaged=False, source="test", reason="clear"))
    assert d.spin_until(lambda: d.status and d.status[-1].state == StationStatus.STATE_PAUSED)
    assert d.call(ResumeStation, "resume", reason="clear").success
    assert d.spin_until(lambda: d.tasks and len(d.tasks) >= 1)
    n = len(d.observations())
    d.send([0.01, 0.0], d.observations()[-1].header.stamp)
    assert d.spin_until(lambda: len(d.observations()) == n + 1)
    assert d.call(PauseStation, "pause", reason="look").success
    d.send([0.01, 0.0], d.observations()[-1].header.stamp)
    d.spin_for(1.5)
    assert len(d.observations()) == n + 1


def test_realtime_mode_holds_the_last_command_and_the_watchdog_stops_the_robot():
    d, proc = launch("mode:=realtime", "rate_hz:=20.0", "watchdog_timeout:=0.3", "max_steps:=1000")
    try:
        assert d.spin_until(lambda: len(d.observations()) > 5)  # observations flow without commands
        target = lambda: d.observations()[-1].position[2]  # noqa: E731
        x0 = target()
        d.spin_for(0.5)
        assert target() == pytest.approx(x0)  # no command: the watchdog holds position
        d.send([-0.01, 0.0], d.observations()[-1].header.stamp)
        assert d.spin_until(lambda: target() < x0 - 0.02, timeout=5)  # zero-order hold repeats it
        d.spin_for(0.6)  # no new command: after 0.3 s the watchdog holds again
        x1 = target()
        d.spin_for(0.5)
        assert target() == pytest.approx(x1)
        assert d.spin_until(lambda: d.status and "watchdog" in d.status[-1].message)
    finally:
        stop(d, proc)


def test_the_fleet_estop_halts_every_station():
    estop = f"/estop_{uuid.uuid4().hex[:6]}"
    fleet = [launch("max_steps:=100", estop=estop) for _ in range(2)]
    try:
        for d, _ in fleet:
            assert d.spin_until(lambda d=d: d.observations())
        fleet[0][0].estop.publish(EStop(engaged=True, source="operator", reason="fleet stop"))
        for d, _ in fleet:
            assert d.spin_until(lambda d=d: d.status and d.status[-1].state == StationStatus.STATE_ESTOPPED)
            assert any(e.outcome == EpisodeEvent.OUTCOME_ESTOP for e in d.events)
            n = len(d.observations())
            d.send([0.01, 0.0], d.observations()[-1].header.stamp)
            d.spin_for(1.2)
            assert len(d.observations()) == n
    finally:
        for d, proc in fleet:
            stop(d, proc)


def test_wait_for_score_steps_only_after_the_observation_is_scored():
    from sefm_interfaces.msg import StepsToGo

    d, proc = launch("max_steps:=20", "wait_for_score:=true", "score_from:=''")   # the test plays the reward node
    scores = d.node.create_publisher(StepsToGo, "steps_to_go", RELIABLE)
    try:
        assert d.spin_until(lambda: d.tasks and d.states)
        obs = d.observations()
        d.send([0.01, 0.0], obs[-1].header.stamp)
        d.spin_for(1.5)
        assert len(d.observations()) == len(obs)   # commanded, not scored: the station waits
        scores.publish(StepsToGo(observation_stamp=obs[-1].header.stamp, episode_id=d.tasks[-1].episode_id,
                                 expected_steps_to_go=10.0, success=False))
        assert d.spin_until(lambda: len(d.observations()) == len(obs) + 1)   # scored: the waiting command applies
        # scored first, commanded later: steps at once
        obs = d.observations()
        scores.publish(StepsToGo(observation_stamp=obs[-1].header.stamp, episode_id=d.tasks[-1].episode_id,
                                 expected_steps_to_go=9.0, success=False))
        d.spin_for(0.5)
        d.send([0.01, 0.0], obs[-1].header.stamp)
        assert d.spin_until(lambda: len(d.observations()) == len(obs) + 1)
    finally:
        stop(d, proc)


def test_only_the_reward_node_can_end_an_episode_with_a_detected_success():
    """score_from (default: reward): while another node publishes on steps_to_go, nothing there is accepted;
    once it is gone, the reward node's success ends the episode as SUCCESS_DETECTED."""
    from sefm_interfaces.msg import StepsToGo

    d, proc = launch("max_steps:=50")
    intruder = rclpy.create_node("intruder", namespace=d.node.get_namespace(), context=d.context)
    reward = rclpy.create_node("reward", namespace=d.node.get_namespace(), context=d.context)
    publishers = {n: n.create_publisher(StepsToGo, "steps_to_go", RELIABLE) for n in (intruder, reward)}
    for n in (intruder, reward):
        d.executor.add_node(n)

    def success_from(node):
        obs = d.observations()[-1]
        publishers[node].publish(StepsToGo(observation_stamp=obs.header.stamp, episode_id=d.tasks[-1].episode_id,
                                           step=len(d.observations()) - 1, expected_steps_to_go=0.0,
                                           success=True, success_threshold=1.0))

    ends = lambda: [e for e in d.events if e.event == EpisodeEvent.END]   # noqa: E731
    try:
        assert d.spin_until(lambda: d.tasks and d.states)
        d.spin_for(1.0)   # the bridge has seen both publishers
        success_from(intruder)
        d.spin_for(1.5)
        assert not ends(), "a success from a node that is not the reward node ended the episode"
        success_from(reward)   # while the stranger still publishes there, the topic is refused altogether
        d.spin_for(1.0)
        assert not ends()
        intruder.destroy_publisher(publishers.pop(intruder))
        d.spin_for(1.0)   # the bridge sees the stranger gone
        success_from(reward)
        assert d.spin_until(lambda: ends(), 10)
        assert ends()[0].outcome == EpisodeEvent.OUTCOME_SUCCESS_DETECTED
    finally:
        for n in (intruder, reward):
            d.executor.remove_node(n)
            n.destroy_node()
        stop(d, proc)
