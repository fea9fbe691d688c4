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
    rates = policy_success(model, episodes=3, families=["point2block"], parallel=2, image_size=(64, 36),
                           max_steps=5, log=lambda *a: None)
    assert rates["all"].trials == 3 and rates["point2block"].trials == 3
    assert 0.0 <= rates["all"].value <= 1.0


def test_swapped_goal_detections_pair_goal_states_with_other_goals(tmp_path):
    import torch

    from sefm_cli.collect import collect_language_table
    from sefm_cli.evaluate import held_out_states, swapped_goal_detections
    from sefm_core.model import EFM, ModelConfig

    data = collect_language_table(str(tmp_path / "demos"), episodes=6, families=["point2block"], mode="BLOCK_4",
                                  seed0=0, noise=0.0, image_size=(64, 36), log=lambda *a, **k: None, hold_steps=2)
    torch.manual_seed(0)
    model = EFM(ModelConfig(backbone="pretrained", channels=16, hidden=32))
    states, holds = held_out_states(model, data, list(range(len(data))))
    everything, pairs = swapped_goal_detections(model, states, holds, threshold=1e9)
    nothing, same = swapped_goal_detections(model, states, holds, threshold=-1.0)
    assert pairs > 0 and same == pairs and (everything, nothing) == (1.0, 0.0)
