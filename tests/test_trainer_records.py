"""The trainer's bookkeeping, driven through its callbacks (no other node): every ended episode gets one
record, an episode still waiting for its last part keeps its observations, late messages open nothing."""
import json

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image

from sefm_interfaces.msg import EpisodeEvent, PolicyAction, StepsToGo, Task

from helpers import tiny_checkpoint


def stamp(ns):
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


def feed(trainer, episode_id, actions, score_last=True, instruction="push the red moon"):
    """One episode of `actions` steps as a station, policy and reward node would publish it; then its END."""
    trainer.on_task("s", Task(station="s", episode_id=episode_id, instruction=instruction))
    for k in range(actions + 1):
        key = stamp(episode_id + k)
        trainer.episode("s", episode_id).steps[(key.sec, key.nanosec)] = k
        image = Image(height=36, width=64, encoding="rgb8", step=192, data=bytes(36 * 64 * 3))
        image.header.stamp = key
        trainer.on_image("s", image)
        trainer.states["s"][(key.sec, key.nanosec)] = np.zeros(4, np.float32)
        if k < actions:
            trainer.on_action("s", PolicyAction(observation_stamp=key, episode_id=episode_id, step=k,
                                                values=[0.01, 0.0], tokens=[40, 32], log_prob=-1.0, policy_version=0))
        if score_last or k < actions:
            trainer.on_score("s", StepsToGo(observation_stamp=key, episode_id=episode_id, step=k,
                                            expected_steps_to_go=5.0 - k, reward=1.0, has_reward=k > 0))
    trainer.on_event("s", EpisodeEvent(station="s", episode_id=episode_id, event=EpisodeEvent.END, outcome=3,
                                       num_steps=actions, last_observation_stamp=stamp(episode_id + actions),
                                       env_success=False, env_success_known=True))


@pytest.fixture()
def trainer(tmp_path):
    """A trainer node for station "s" that never updates (its batch is larger than any test feeds)."""
    from sefm_trainer.trainer_node import TrainerNode

    tiny_checkpoint(tmp_path / "stage1", 0)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = TrainerNode(context=context, checkpoint=str(tmp_path / "stage1"), stations="s",
                       run_dir=str(tmp_path / "run"), episodes_per_batch=100)
    node.trigger_configure()
    node.trigger_activate()
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


def test_an_episode_waiting_for_its_last_score_keeps_its_observations_and_every_episode_has_one_record(
        tmp_path, trainer):
    from sefm_core.data import EpisodeDataset

    first, second, blank = 10**18, 10**18 + 100, 10**18 + 200
    feed(trainer, first, 2, score_last=False)   # its last score is late: it waits
    feed(trainer, second, 2)                     # the next one is complete at once and is stored first
    feed(trainer, blank, 1, instruction="")      # a task without words: recorded as unused, not dropped
    trainer.assemble_due()
    trainer.ended = [(0.0, s, m) for _, s, m in trainer.ended]   # the first one's deadline passes
    trainer.assemble_due()
    stored = {e.metadata["episode_id"]: e for e in EpisodeDataset(tmp_path / "run" / "episodes")}
    assert sorted(stored) == [first, second]
    assert stored[first].steps == 1 and stored[first].metadata["dropped"] == {"no reward": 1}
    assert stored[second].steps == 2 and stored[second].metadata["end_reason"] == "timeout"
    assert stored[second].metadata["oracle_success"] is False
    unused = [json.loads(line) for line in (tmp_path / "run" / "unused_episodes.jsonl").read_text().splitlines()]
    assert [(r["episode_id"], r["dropped"]) for r in unused] == [(blank, {"the task has an empty instruction": 2})]
    # late messages of recorded episodes open no buffer, and a replayed END records nothing twice
    feed(trainer, first, 2)
    trainer.ended = [(0.0, s, m) for _, s, m in trainer.ended]
    trainer.assemble_due()
    assert trainer.episodes == {} and len(EpisodeDataset(tmp_path / "run" / "episodes")) == 2


def test_an_end_that_overtakes_its_final_observation_waits_for_it(tmp_path, trainer):
    from sefm_core.data import EpisodeDataset

    episode = 10**18
    feed(trainer, episode, 2)
    final = (episode + 2) // 10**9, (episode + 2) % 10**9
    step = trainer.episodes[("s", episode)].steps.pop(final)   # its episode_step has not come yet
    trainer.assemble_due()
    assert ("s", episode) in trainer.episodes and not (tmp_path / "run" / "episodes" / "episodes.jsonl").exists()
    trainer.episodes[("s", episode)].steps[final] = step
    trainer.assemble_due()
    stored = list(EpisodeDataset(tmp_path / "run" / "episodes"))
    assert len(stored) == 1 and stored[0].steps == 2 and stored[0].metadata["dropped"] == {}
