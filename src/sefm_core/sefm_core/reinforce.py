"""Stage 2 policy improvement: on-policy REINFORCE with Monte-Carlo returns.

    R_t  = sum_{i >= t} gamma^(i-t) r_i          (r_i = d(o_i, g) - d(o_i+1, g) from the frozen model)
    loss = -c * mean_t( R_t * log p(a_t | o_t, g) )

No baseline and no value function by default: the steps-to-go reward is
potential-based shaping around V = -d, which already keeps the variance low
(paper, Stage 2). `center_returns` (not in the paper) subtracts the batch
mean return. The batch is collected with the current
policy, used for `updates_per_batch` minibatch steps, and cleared (no replay).
"""
from __future__ import annotations

import numpy as np
import torch

from sefm_core.stage2_config import ReinforceConfig


def make_optimizer(heads: torch.nn.Module, cfg: ReinforceConfig) -> torch.optim.Optimizer:
    """AdamW over every trainable parameter of the heads (the paper fine-tunes the whole model)."""
    return torch.optim.AdamW(heads.parameters(), lr=cfg.lr)


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """R_t = r_t + gamma * R_{t+1}, computed backwards over one episode."""
    returns = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def reinforce_loss(action_logits: torch.Tensor, tokens: torch.Tensor, returns: torch.Tensor,
                   loss_weight: float) -> torch.Tensor:
    """-c * mean(R_t * log p(a_t)); log p(a_t) sums the per-dimension token log-probabilities."""
    logp = torch.log_softmax(action_logits, dim=-1).gather(-1, tokens[..., None]).squeeze(-1).sum(-1)
    return -loss_weight * (returns * logp).mean()


def kl_to_reference(action_logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """Mean over states of KL(policy || reference), summed over the action dimensions."""
    logp, logq = torch.log_softmax(action_logits, -1), torch.log_softmax(reference_logits, -1)
    return (logp.exp() * (logp - logq)).sum(-1).sum(-1).mean()


def reinforce_update(model, optimizer, fmap: torch.Tensor, text: torch.Tensor, proprio: torch.Tensor,
                     tokens: torch.Tensor, returns: torch.Tensor, cfg: ReinforceConfig,
                     generator: torch.Generator | None = None,
                     reference_logits: torch.Tensor | None = None) -> tuple[float, float]:
    """`updates_per_batch` gradient steps on the policy heads over one on-policy batch (tower features
    precomputed: the towers are frozen); 0: one pass, each transition used once. Each step takes the next
    `minibatch` transitions of a shuffled pass over the batch, so the steps spread over all of it instead of
    refitting the same samples. More than one pass is off-policy after the first steps, and REINFORCE has no
    ratio clipping to stop it: with 16 steps of 256 (several passes) the policy collapsed even under a
    perfect reward (docs/notebook/results_2026-11.md, "the update itself").
    The heads stay in eval mode: log p is the acting policy's (no dropout). The caller clears the batch
    afterwards. Returns (the mean loss of the steps, KL(before || after) per state over the batch: how far
    the update moved the policy; PPO-style methods keep it near 0.01-0.02 nats)."""
    if cfg.kl_weight > 0 and reference_logits is None:
        raise ValueError("kl_weight > 0 needs the Stage-1 policy's action logits (reference_logits)")
    if cfg.center_returns:
        returns = returns - returns.mean()
    n = len(tokens)
    order, cursor, losses = torch.randperm(n, generator=generator), 0, []
    model.heads.eval()
    with torch.no_grad():
        before = model.heads(fmap, text, proprio)[0]
    for _ in range(cfg.updates_per_batch or -(-n // cfg.minibatch)):
        if cursor >= n:
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor:cursor + cfg.minibatch]
        cursor += cfg.minibatch
        action_logits, _ = model.heads(fmap[idx], text[idx], proprio[idx])
        loss = reinforce_loss(action_logits, tokens[idx], returns[idx], cfg.loss_weight)
        if cfg.kl_weight > 0:
            loss = loss + cfg.kl_weight * kl_to_reference(action_logits, reference_logits[idx])
        model.heads.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        losses.append(float(loss.item()))
    with torch.no_grad():
        moved = float(kl_to_reference(before, model.heads(fmap, text, proprio)[0]))
    return float(np.mean(losses)), moved
