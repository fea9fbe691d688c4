"""Stage 2 without ROS: Monte-Carlo returns, the REINFORCE loss, and the exact episode join."""
import random

import numpy as np
import pytest
import torch

from sefm_core.reinforce import discounted_returns, reinforce_loss
from sefm_trainer.episodes import EpisodeBuffer, assemble


def test_discounted_returns_match_the_definition():
    r = np.array([1.0, 0.0, 2.0])
    assert discounted_returns(r, 0.9).tolist() == pytest.approx([1 + 0.81 * 2, 0.9 * 2, 2.0])
    assert discounted_returns(np.array([]), 0.9).tolist() == []


def test_reinforce_raises_the_log_prob_of_actions_with_positive_return():
    logits = torch.zeros(2, 2, 4, requires_grad=True)   # 2 steps, 2 action dims, 4 bins
    tokens = torch.tensor([[1, 2], [3, 0]])
    loss = reinforce_loss(logits, tokens, torch.tensor([1.0, -1.0]), loss_weight=0.05)
    loss.backward()
    # Gradient descent moves logits against the gradient: up for step 0's tokens, down for step 1's.
    assert logits.grad[0, 0, 1] < 0 and logits.grad[0, 1, 2] < 0
    assert logits.grad[1, 0, 3] > 0 and logits.grad[1, 1, 0] > 0
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # equal log-probs, opposite returns


def make_buffer(n=4, version=3, shuffle=True):
    """n observations with their episode steps; actions for all; scores for all (the first has no reward)."""
    from sefm_interfaces.msg import Task

    buf = EpisodeBuffer(task=Task(episode_id=7, instruction="push the red moon"))
    items = []
    for t in range(n):
        k = (10 + t, 0)
        items += [("images", k, np.full((2, 2, 3), t, np.uint8)), ("states", k, np.full(4, t, np.float32)),
                  ("steps", k, t), ("actions", k, ([t, t], [0.01 * t, 0.0], -1.0 - t, version)),
                  ("scores", k, (float(10 - t), None if t == 0 else 1.0 + t, False))]
    if shuffle:
        random.Random(0).shuffle(items)  # arrival order must not matter
    for table, k, value in items:
        getattr(buf, table)[k] = value
    return buf


def test_join_is_exact_whatever_the_arrival_order():
    ep = assemble("station_0", 7, make_buffer(), outcome=1, version=3)
    assert [t.stamp for t in ep.transitions] == [(10, 0), (11, 0), (12, 0)]  # the last obs has no action after
    assert [t.reward for t in ep.transitions] == [2.0, 3.0, 4.0]  # reward of a_t arrives with o_t+1
    assert [t.log_prob for t in ep.transitions] == [-1.0, -2.0, -3.0]
    assert all(int(t.image[0, 0, 0]) == int(t.proprio[0]) == int(t.tokens[0]) for t in ep.transitions)
    assert ep.dropped == {}


def test_stale_versions_and_gaps_are_dropped_and_counted():
    buf = make_buffer()
    k = (12, 0)
    tokens, values, lp, _ = buf.actions[k]
    buf.actions[k] = (tokens, values, lp, 2)  # acted by an older policy
    ep = assemble("s", 0, buf, 1, version=3)
    assert len(ep.transitions) == 2 and ep.dropped == {"stale policy version": 1}   # transitions lost
    buf = make_buffer()
    del buf.scores[(12, 0)]  # a lost reward message mid-episode
    ep = assemble("s", 0, buf, 1, version=3)
    assert len(ep.transitions) == 1 and ep.dropped == {"no reward": 2}
    buf = make_buffer()
    buf.images[(9, 0)] = np.zeros((2, 2, 3), np.uint8)  # a late frame of the previous episode: no step of this one
    buf.states[(9, 0)] = np.zeros(4, np.float32)
    assert [t.stamp for t in assemble("s", 0, buf, 1, version=3).transitions][0] == (10, 0)
    buf = make_buffer()
    del buf.states[(12, 0)]   # an observation lost mid-episode: the episode is cut there, never joined across
    ep = assemble("s", 0, buf, 1, version=3)
    assert [t.stamp for t in ep.transitions] == [(10, 0)] and ep.dropped == {"missing observation": 2}


def test_an_episode_whose_first_observation_was_missed_is_not_used():
    buf = make_buffer()
    del buf.images[(10, 0)]  # e.g. the trainer subscribed after the station started
    ep = assemble("s", 0, buf, 1, version=3)
    assert ep.transitions == [] and ep.dropped == {"missed the episode's first observation": 4}


def test_practice_loop_scores_every_observation_and_updates_the_policy():
    """The ROS-free Stage 2 (`sefm practice`): real env, tiny real model, one batch and one update."""
    from sefm_experiments.practice import practice
    from sefm_core.model import EFM, ModelConfig
    from sefm_core.reinforce import ReinforceConfig

    torch.manual_seed(0)
    policy = EFM(ModelConfig(backbone="pretrained", channels=16, hidden=32))
    reward_model = EFM(ModelConfig(backbone="pretrained", channels=16, hidden=32))
    before = [p.detach().clone() for p in policy.heads.parameters()]
    frozen = [p.detach().clone() for p in reward_model.heads.parameters()]
    seen = []
    result = practice(policy, reward_model, ReinforceConfig(episodes_per_batch=2, updates_per_batch=2, lr=1e-3),
                      versions=2, threshold=-1.0, families=["point2block"], image_size=(64, 36), max_steps=5,
                      on_version=lambda v, m: seen.append(v), log=lambda *a: None)
    assert result.episodes == 4 and seen == [1, 2]
    assert all(row["detected"] == 0 and row["steps"] <= 10 for row in result.versions), result.versions
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.heads.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(frozen, reward_model.heads.parameters()))  # the reward stays fixed


def test_practice_batch_scores_the_observation_after_every_action():
    from sefm_experiments.practice import detected, run_batch
    from sefm_core import episode_rules as rules
    from sefm_core.model import EFM, ModelConfig
    from sefm_sim.envs.language_table import LanguageTableEnv

    torch.manual_seed(0)
    model = EFM(ModelConfig(backbone="pretrained", channels=16, hidden=32)).eval()
    envs = [LanguageTableEnv(block_mode="BLOCK_4", image_size=(64, 36), max_steps=4) for _ in range(3)]
    episodes = run_batch(model, model, envs, [1, 2, 3], ["point2block"] * 3, threshold=-1.0,
                         generator=torch.Generator().manual_seed(0))
    for ep in episodes:  # no detection at s = -1: the simulator ended each (success or the step cap)
        assert ep.outcome in (rules.ENV_SUCCESS, rules.TIMEOUT) and not detected(ep) and 1 <= ep.steps <= 4
        assert len(ep.d) == ep.steps + 1 and len(ep.rewards) == len(ep.extras) == ep.steps
        assert ep.rewards == [rules.transition_reward(a, b) for a, b in zip(ep.d, ep.d[1:])]
        assert ep.steps == 4 or ep.success
    # s above every d: the second observation ends each episode as a detected success, after one action.
    episodes = run_batch(model, model, envs, [1, 2, 3], ["point2block"] * 3, threshold=1e9,
                         generator=torch.Generator().manual_seed(0))
    assert all(detected(ep) and ep.steps == 1 and len(ep.d) == 2 for ep in episodes)
    assert all(ep.detections == [False, True] for ep in episodes)   # the first observation is never judged


def test_update_steps_through_minibatches_and_centred_returns_push_both_ways():
    """`reinforce_update`: each step sees `minibatch` transitions; with centred returns the
    below-mean episode's actions lose probability and the above-mean one's gain."""
    from sefm_core.reinforce import ReinforceConfig, reinforce_update

    model, fmap, text, proprio = tiny_policy_batch(8)
    n = 8
    tokens = torch.randint(0, model.config.action_bins, (n, 2))
    returns = torch.tensor([5.0] * 4 + [1.0] * 4)   # all positive: only the centring makes some negative

    def logp():
        with torch.no_grad():
            logits, _ = model.heads(fmap, text, proprio)
        return torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1).sum(-1)

    before = logp()
    seen = []
    hook = model.heads.action_head.register_forward_hook(lambda m, i, o: seen.append(len(o)))
    cfg = ReinforceConfig(lr=1e-2, updates_per_batch=6, minibatch=4, center_returns=True)
    reinforce_update(model, torch.optim.SGD(model.heads.parameters(), lr=cfg.lr), fmap, text, proprio, tokens,
                     returns, cfg, torch.Generator().manual_seed(0))
    hook.remove()
    assert seen == [8] + [4] * 6 + [8] and not model.heads.training   # the batch before and after: the update's KL
    change = logp() - before
    assert (change[:4] > 0).all() and (change[4:] < 0).all(), change


def test_reinforce_update_defaults_to_one_pass_and_centred_returns_push_both_ways():
    # updates_per_batch 0 (the default): one pass over the batch, each transition in exactly one step.
    from sefm_core.reinforce import ReinforceConfig, reinforce_update

    model, fmap, text, proprio = tiny_policy_batch(10)
    n = 10
    tokens = torch.randint(0, model.config.action_bins, (n, 2))
    returns = torch.tensor([3.0] * 5 + [1.0] * 5)    # all positive: centring makes the low ones negative
    cfg = ReinforceConfig(lr=1e-2, minibatch=4, center_returns=True)
    assert cfg.updates_per_batch == 0
    before = torch.log_softmax(model.heads(fmap, text, proprio)[0], -1).gather(-1, tokens[..., None]).sum((1, 2))
    seen = []
    hook = model.heads.action_head.register_forward_hook(lambda m, i, o: seen.append(len(o)))
    reinforce_update(model, torch.optim.SGD(model.heads.parameters(), lr=cfg.lr), fmap, text, proprio, tokens,
                     returns, cfg, torch.Generator().manual_seed(0))
    hook.remove()
    assert seen == [10, 4, 4, 2, 10]   # ceil(10 / 4) steps, every transition once (and the KL's passes around them)
    after = torch.log_softmax(model.heads(fmap, text, proprio)[0], -1).gather(-1, tokens[..., None]).sum((1, 2))
    change = (after - before).detach()
    assert change[:5].mean() > 0 > change[5:].mean(), change


def test_kl_anchor_pulls_the_policy_back_towards_the_stage1_policy():
    from sefm_core.reinforce import ReinforceConfig, kl_to_reference, reinforce_update

    model, fmap, text, proprio = tiny_policy_batch(8)
    n = 8
    logits = model.heads(fmap, text, proprio)[0].detach()
    assert kl_to_reference(logits, logits).item() == pytest.approx(0.0, abs=1e-6)
    reference = logits + torch.randn_like(logits)            # a different "Stage-1" policy
    before = kl_to_reference(logits, reference).item()
    cfg = ReinforceConfig(lr=1e-2, minibatch=n, kl_weight=1.0)
    # zero returns: only the anchor acts
    reinforce_update(model, torch.optim.Adam(model.heads.parameters(), lr=cfg.lr), fmap, text, proprio,
                     torch.zeros(n, 2, dtype=torch.long), torch.zeros(n), cfg, reference_logits=reference)
    assert kl_to_reference(model.heads(fmap, text, proprio)[0].detach(), reference).item() < before


def tiny_policy_batch(n: int):
    """A tiny policy and n random tower outputs (seeded): inputs for the REINFORCE update tests."""
    from sefm_core.model import EFM, ModelConfig

    torch.manual_seed(0)
    model = EFM(ModelConfig(backbone="pretrained", channels=16, hidden=32, dropout=0.0))
    fmap = torch.randn(n, model.backbone.out_channels, 3, 4)
    return model, fmap, torch.randn(n, model.backbone.text_dim), torch.randn(n, 4)


def test_frozen_towers_give_the_acting_features_in_train_mode():
    # A trainer whose model is in train mode must still see the features the policy acted on: batch norm
    # with batch statistics (and dropout) in the frozen towers once made Stage 2 through the graph collapse.
    from sefm_core.model import EFM, ModelConfig

    model = EFM(ModelConfig(backbone="scratch", channels=16, hidden=32))
    images = torch.randint(0, 255, (3, 36, 64, 3), dtype=torch.uint8)
    acting = model.eval().tower_features(images[:1], ["push the red moon"])
    stats = [b.clone() for b in model.backbone.buffers()]
    model.train()
    assert not model.backbone.training and model.heads.training
    fmap, text = model.tower_features(images, ["push the red moon"] * 3)   # another batch around it
    assert torch.allclose(fmap[:1], acting[0], rtol=1e-4, atol=1e-10) and torch.allclose(text[:1], acting[1])
    assert all(torch.equal(a, b) for a, b in zip(stats, model.backbone.buffers()))  # running stats untouched


def test_the_update_moves_every_part_of_the_heads():
    # AdamW over every trainable parameter of the heads: the paper fine-tunes the whole model
    from sefm_core.reinforce import ReinforceConfig, make_optimizer, reinforce_update

    model, fmap, text, proprio = tiny_policy_batch(8)
    cfg = ReinforceConfig(lr=1e-2, minibatch=8)
    optimizer = make_optimizer(model.heads, cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in model.heads.parameters()}
    before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    _, moved_kl = reinforce_update(model, optimizer, fmap, text, proprio,
                                   torch.randint(0, model.config.action_bins, (8, 2)), torch.ones(8), cfg)
    assert moved_kl > 0   # the update reports how far it moved the policy
    moved = {k.split(".")[0] for k, v in model.heads.state_dict().items() if not torch.equal(v, before[k])}
    assert {"blocks", "trunk", "action_head"} <= moved   # the perception (FiLM maps) moves too


def test_a_reissued_observation_replaces_the_one_it_repeats():
    """A station re-issues its current observation under a new stamp (after a resume): the newer one, the one
    acted on, is the episode's step; the older one and the action nobody executed are left out."""
    buf = make_buffer()
    buf.steps[(15, 0)] = 2   # step 2 again, later: the same state as a new observation
    buf.images[(15, 0)], buf.states[(15, 0)] = buf.images[(12, 0)], buf.states[(12, 0)]
    buf.actions[(15, 0)] = buf.actions[(12, 0)]
    buf.scores[(15, 0)] = buf.scores[(12, 0)]
    buf.steps[(13, 0)] = 3
    ep = assemble("s", 7, buf, outcome=1, version=3)
    assert [t.stamp for t in ep.transitions] == [(10, 0), (11, 0), (15, 0)] and ep.dropped == {}


def test_the_detector_fires_once_d_holds_below_s_for_k_observations_and_never_at_step_0():
    from sefm_core.episode_rules import detector_fires

    d = [0.2, 0.3, 2.0, 0.5, 0.4, 0.1]
    assert [detector_fires(d[:t + 1], t, 1.0) for t in range(6)] == [False, True, False, True, True, True]
    assert [detector_fires(d[:t + 1], t, 1.0, hold=3) for t in range(6)] == [False] * 5 + [True]
    assert [detector_fires(d[:t + 1], t, 1.0, hold=2) for t in range(3)] == [False, True, False]
    assert not detector_fires(d, 5, -1.0) and not detector_fires([float("nan"), 0.1], 1, 1.0, hold=2)


def test_the_regression_guard_credits_windows_keeps_the_best_and_rolls_back_on_a_drop():
    from sefm_core.regression_guard import RegressionGuard

    g = RegressionGuard(every=2, drop=0.1)
    assert g.observe(1, 3, 4) is None and not g.history            # the window v0..v1 is still open
    assert g.observe(2, 3, 4) is None and g.history[-1]["decision"] == "best" and g.best_version == 0
    assert g.observe(4, 8, 8) is None and g.best_version == 2      # v2..v3: 8 of 8 (one update may carry it all)
    assert g.observe(6, 17, 18) is None and g.history[-1]["decision"] == "keep"   # 0.94: within the drop
    assert g.observe(8, 4, 8) == 2 and g.history[-1]["rate"] == 0.5 and g.window_start == 8
    again = RegressionGuard.resume(g.summary())                    # a restarted trainer goes on where it was
    assert again == g and RegressionGuard(every=0, drop=0.1).observe(5, 0, 8) is None   # off


def test_the_regression_guard_restores_the_best_version_in_a_seeded_practice_run():
    """`sefm practice` with a guard that rolls back on any drop (window 1): each roll-back makes the new version
    the best one's policy, exactly."""
    from sefm_experiments.practice import practice
    from sefm_core.model import EFM, ModelConfig
    from sefm_core.reinforce import ReinforceConfig

    torch.manual_seed(0)
    policy = EFM(ModelConfig(backbone="pretrained", channels=16, hidden=32))
    reward_model = EFM(ModelConfig(backbone="pretrained", channels=16, hidden=32))
    heads = {0: [p.detach().clone() for p in policy.heads.parameters()]}
    result = practice(policy, reward_model, ReinforceConfig(episodes_per_batch=4, lr=0.05, guard_every=1, guard_drop=0.0),
                      versions=6, threshold=49.94, families=["point2block"], image_size=(64, 36), max_steps=4,
                      on_version=lambda v, m: heads.__setitem__(v, [p.detach().clone() for p in m.heads.parameters()]),
                      log=lambda *a: None)   # s about the untrained model's d: the detector fires now and then
    rates = [row["detected"] for row in result.versions]
    rolled = [(row["version"], int(row["guard"].split("v")[-1])) for row in result.versions if row["guard"]]
    assert rolled, (rates, result.guard)
    for version, best in rolled:
        assert all(torch.equal(a, b) for a, b in zip(heads[version], heads[best])), (version, best)
        window = next(w for w in result.guard["windows"] if w["versions"][1] == version - 1)
        assert window["rate"] < window["best_rate"] and window["best_version"] == best
    assert result.guard["windows"][-1]["best_version"] in heads


def test_the_detector_study_replays_a_rule_with_and_without_the_operator_band():
    from sefm_experiments.detector_study import end_of, replay

    d = [5.0, 0.9, 0.8, 0.4, 0.3, 0.2]
    goal = [False, False, False, False, True, True]
    assert end_of(d, goal, 1.0, 1) == (1, False, 0)                  # fires at once: a false end
    assert end_of(d, goal, 1.0, 1, ask_above=0.5, ask_every=2) == (3, False, 1)   # asked at 1 (not yet), then sure
    assert end_of(d, goal, 1.0, 1, ask_above=0.1, ask_every=2) == (5, True, 3)    # 1, 3: not yet; 5: success
    rows = [replay([{"d": d, "goal": goal}], 1.0, 1, held=2, ask_above=a, ask_every=2) for a in (-1.0, 0.1)]
    assert [(r["false_ends"], r["asks"], r["misses"]) for r in rows] == [(1, 0, 0), (0, 3, 0)]
