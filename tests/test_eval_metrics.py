"""Steps-to-go quality metrics and batched policy evaluation in the simulator."""
import numpy as np
import pytest

from sefm_core.metrics import best_threshold, detector_scores, ranks, spearman, steps_to_go_quality


def test_ranks_and_spearman():
    assert ranks([10, 30, 20, 20]).tolist() == [0.0, 3.0, 1.5, 1.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_quality_separates_per_episode_and_pooled_correlation():
    # Two episodes, each perfectly ordered, but episode 2 predicted 50 steps too high:
    # per-episode correlation is perfect, pooled is not.
    labels = np.array([3, 2, 1, 0, 3, 2, 1, 0])
    d = np.array([3.0, 2, 1, 0, 53, 52, 51, 50])
    holds = labels == 0
    q = steps_to_go_quality(d, labels, np.array([0] * 4 + [1] * 4), holds, threshold=0.5)
    assert q.per_episode_spearman == pytest.approx(1.0)
    assert q.pooled_spearman < 0.9
    assert (q.precision, q.recall) == (1.0, 0.5)  # the second episode's goal state reads d=50


def test_approach_correlation_ignores_the_order_of_tied_resting_frames():
    # 6 approach steps ordered perfectly, then 10 resting frames (all labelled 0) whose d is noise below 0.5:
    # over every state the tied frames' random order costs the correlation; over the approach it is exact.
    labels = np.r_[np.arange(6, 0, -1), np.zeros(10)].astype(int)
    d = np.r_[np.arange(6, 0, -1) + 0.0, np.random.default_rng(0).random(10) * 0.5]
    q = steps_to_go_quality(d, labels, np.zeros(16, int), labels == 0, threshold=0.5)
    assert q.approach_spearman == pytest.approx(1.0)
    assert q.per_episode_spearman < 0.95
    # A wrong order on the approach is still seen.
    d[[0, 4]] = d[[4, 0]]
    assert steps_to_go_quality(d, labels, np.zeros(16, int), labels == 0, 0.5).approach_spearman < 0.5


def test_threshold_choice_maximises_f1():
    d = np.array([0.1, 0.4, 1.2, 3.0, 5.0])
    holds = np.array([True, True, False, False, False])
    s = best_threshold(d, holds)
    assert 0.4 <= s < 1.2
    assert detector_scores(d, holds, s) == (1.0, 1.0, 1.0)


def test_policy_evaluation_runs_batched_seeded_episodes():
    from sefm_cli.evaluate import policy_success
    from sefm_core.model import EFM, ModelConfig

    model = EFM(ModelConfig(backbone="pretrained", channels=16, hidden=32))
    rates = policy_success(model, episodes=3, families=["point2block", "block2block"], parallel=2,
                           image_size=(64, 36), max_steps=5, log=lambda *a: None)
    # families round-robin over the seeds: episodes 0 and 2 point2block, episode 1 block2block
    assert (rates["point2block"].trials, rates["block2block"].trials, rates["all"].trials) == (2, 1, 3)
    assert rates["all"].successes == rates["point2block"].successes + rates["block2block"].successes


class ScriptedModel:
    """Stands in for a checkpoint in `policy_success`: zero actions, or the scripted oracle acting for whichever
    env holds each observation (found by its effector target)."""

    def __init__(self, envs, oracle: bool):
        from sefm_sim.envs.lt_oracle import OrientedPushOracle

        self.envs, self.oracle = envs, OrientedPushOracle() if oracle else None

    def eval(self):
        return self

    def act(self, images, texts, proprio, greedy=True, generator=None):
        if self.oracle is None:
            return None, np.zeros((len(texts), 2)), None, None
        envs = [next(e for e in self.envs if np.allclose(np.asarray(e.target, np.float32), row[2:4]))
                for row in proprio.numpy()]
        return None, np.stack([self.oracle.act(e.state(), e.goal) for e in envs]), None, None


@pytest.mark.parametrize("oracle", [False, True])
def test_policy_success_counts_the_simulators_success_and_a_capped_episode_as_a_failure(monkeypatch, oracle):
    from sefm_cli.evaluate import policy_success
    from sefm_sim.envs.language_table import LanguageTableEnv

    made, init = [], LanguageTableEnv.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(LanguageTableEnv, "__init__", recording_init)
    rates = policy_success(ScriptedModel(made, oracle), episodes=4, families=["point2block"], parallel=3,
                           image_size=(64, 36), max_steps=40, log=lambda *a: None)
    assert len(made) == 3 and rates["all"].trials == 4
    # the oracle reaches every named block within the cap; a robot that never moves reaches none
    assert rates["all"].successes == (4 if oracle else 0), rates


def test_swapped_goal_detections_count_detections_under_another_goal_only():
    """A grounded detector fires only under the state's own goal, an "at a goal" detector under any: paired
    with other goals' instructions, the first never fires and the second always does."""
    from types import SimpleNamespace

    import torch

    from sefm_core.stg_eval import observation_steps_to_go, swapped_goal_detections

    goals, per = 3, 4
    goal = torch.arange(goals).repeat_interleave(per)
    holds = np.tile([False, False, True, True], goals)     # the last two states of each demo are at its goal
    data = SimpleNamespace(goal=goal, fmap=torch.eye(goals)[goal][:, :, None, None], text_vectors=torch.eye(goals),
                           text_index=goal, proprio=torch.from_numpy(holds.astype(np.float32))[:, None])

    class Detector:   # d = 0 (done) or 10 steps
        def __init__(self, grounded: bool):
            self.grounded = grounded

        def eval(self):
            return self

        def heads(self, fmap, text, proprio):
            own_goal = (fmap[:, :, 0, 0] * text).sum(-1) > 0
            done = (proprio[:, 0] > 0) & (own_goal | (not self.grounded))
            logits = torch.full((len(fmap), 11), -30.0)
            logits[done, 0], logits[~done, 10] = 30.0, 30.0
            return None, logits

    for grounded in (True, False):
        d = observation_steps_to_go(Detector(grounded), data)
        np.testing.assert_array_equal(d <= 0.5, holds)   # under their own goals both detect exactly the goal states
    share, pairs = swapped_goal_detections(Detector(True), data, holds, threshold=0.5)
    assert (share, 0 < pairs <= holds.sum()) == (0.0, True)
    assert swapped_goal_detections(Detector(False), data, holds, threshold=0.5) == (1.0, pairs)
    one_goal = SimpleNamespace(**{**vars(data), "goal": torch.zeros_like(goal)})   # nothing to pair with
    share, pairs = swapped_goal_detections(Detector(False), one_goal, holds, threshold=0.5)
    assert np.isnan(share) and pairs == 0


def test_held_out_states_align_goal_flags_with_labels_and_key_goals_by_the_label_schema(tmp_path):
    import torch

    from sefm_cli.collect import collect_language_table
    from sefm_core.model import EFM, ModelConfig
    from sefm_core.stg_eval import held_out_states
    from sefm_sim.labels import LANGUAGE_TABLE

    data = collect_language_table(str(tmp_path / "demos"), episodes=6, families=["point2block"], mode="BLOCK_4",
                                  seed0=0, noise=0.0, image_size=(64, 36), log=lambda *a, **k: None, hold_steps=2)
    torch.manual_seed(0)
    model = EFM(ModelConfig(backbone="pretrained", channels=16, hidden=32))
    states, holds = held_out_states(model, data, list(range(len(data))), LANGUAGE_TABLE)
    assert len(holds) == len(states.stg) == sum(data.index[i]["steps"] + 1 for i in range(len(data)))
    np.testing.assert_array_equal(holds, states.stg.numpy() == 0)   # the simulator's flags match the labels
    blocks = {data.index[i]["metadata"]["goal"]["block"] for i in range(len(data))}
    texts = {data[i].instruction for i in range(len(data))}
    assert len(blocks) < len(texts)   # these seeds word one goal in several ways ...
    assert len(states.goal.unique()) == len(blocks)   # ... and the schema keys it as one goal, not by its words
    plain, _ = held_out_states(model, data, list(range(len(data))))
    assert len(plain.goal.unique()) == len(texts)      # without labels a goal is its instruction


def test_detector_on_practice_counts_false_ends_and_misses_against_the_verdict_at_the_end():
    from sefm_core.metrics import detector_on_practice

    # (detector ended it, the simulator's verdict at the end): a true end, two false ends, a miss, a failure
    # nobody ended, and one without a verdict (not counted)
    m = detector_on_practice([(True, True), (True, False), (True, False), (False, True), (False, False),
                              (True, None)])
    assert (m.episodes, m.detected, m.false_ends, m.goal_at_end, m.missed) == (5, 3, 2, 2, 1)
    assert m.false_end_rate == pytest.approx(2 / 3) and m.miss_rate == pytest.approx(0.5)
    assert np.isnan(detector_on_practice([(False, False)]).false_end_rate)
