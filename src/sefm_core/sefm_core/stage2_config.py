"""The Stage-2 update's settings: the one definition the trainer node's parameters (sefm_trainer.params),
`sefm improve`'s config and flags, and `sefm practice`'s flags are all derived from (no torch here, so
commands check it at once)."""
from __future__ import annotations

from dataclasses import dataclass

from sefm_core.config import setting


@dataclass(frozen=True)
class ReinforceConfig:
    gamma: float = setting(0.9, "discount of the Monte-Carlo returns (paper: 0.9)", low=0.0, high=1.0)
    loss_weight: float = setting(5e-2, "c in loss = -c * R_t * log p(a_t) (paper summaries)", low=0.0)
    lr: float = setting(1e-5, "AdamW learning rate of the policy heads: about 0.02 nats of KL per update "
                              "(experiments/sefm_experiments/update_size.py)", low=0.0)
    updates_per_batch: int = setting(0, "gradient steps per batch; 0: one pass, each transition used once", low=0)
    episodes_per_batch: int = setting(8, "on-policy episodes collected before an update", low=1)
    minibatch: int = setting(64, "transitions per gradient step (successive slices of a shuffled batch)", low=1)
    center_returns: bool = setting(False, "subtract the batch mean return: a constant baseline (not in the paper)")
    kl_weight: float = setting(0.0, "> 0: + kl_weight * KL(policy || Stage-1 policy) per state (not in the paper)",
                               low=0.0)
    guard_every: int = setting(0, "the regression guard (sefm_core.regression_guard): every this many versions, "
                                  "judge the policy by the stations' own success verdicts (the detector's, the "
                                  "operator's) on those versions' practice episodes; 0: off", low=0)
    guard_drop: float = setting(0.1, "the guard rolls the policy back to the best window's version when a window's "
                                     "success rate falls more than this below the best's", low=0.0, high=1.0)

    def check(self) -> None:
        """A ValueError naming the first setting out of range (the ranges `from_dict` does not cover)."""
        if self.lr <= 0 or self.loss_weight <= 0:
            raise ValueError(f"lr ({self.lr}) and loss_weight ({self.loss_weight}) must be > 0")
