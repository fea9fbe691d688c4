"""The Stage-2 update's settings: the one definition the trainer node's parameters, `sefm improve`'s config
and flags, and `sefm practice`'s flags are all derived from (no torch here, so commands check it at once)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, get_args, get_type_hints

from sefm_core.config import setting

TrainScope = Literal["heads", "trunk", "action"]
TRAIN_SCOPES = get_args(TrainScope)


@dataclass(frozen=True)
class ReinforceConfig:
    gamma: float = setting(0.9, "discount of the Monte-Carlo returns (paper: 0.9)")
    loss_weight: float = setting(5e-2, "c in loss = -c * R_t * log p(a_t) (paper summaries)")
    lr: float = setting(1e-5, "learning rate of the policy heads; with AdamW about 0.02 nats of KL per update "
                              "(experiments/sefm_experiments/update_size.py)")
    updates_per_batch: int = setting(0, "gradient steps per batch; 0: one pass, each transition used once")
    episodes_per_batch: int = setting(8, "on-policy episodes collected before an update")
    minibatch: int = setting(64, "transitions per gradient step (successive slices of a shuffled batch)")
    normalize_returns: bool = setting(False, "subtract the batch mean return, divide by its std (not in the paper)")
    center_returns: bool = setting(False, "subtract the batch mean return: a constant baseline (not in the paper)")
    kl_weight: float = setting(0.0, "> 0: + kl_weight * KL(policy || Stage-1 policy) per state (not in the paper)")
    train_scope: TrainScope = setting("heads", "parameters REINFORCE moves: heads (all trainable), trunk (trunk + "
                                               "action head: Stage 1's perception stays frozen), action (the "
                                               "action head alone)")
    optimizer: Literal["adamw", "sgd"] = setting("adamw", "adamw, or sgd (steps proportional to the gradient)")

    def check(self) -> None:
        """A ValueError naming the first setting out of range."""
        if self.lr <= 0 or self.loss_weight <= 0 or not 0 <= self.gamma <= 1 or self.kl_weight < 0:
            raise ValueError(f"lr ({self.lr}) and loss_weight ({self.loss_weight}) must be > 0, gamma "
                             f"({self.gamma}) in [0, 1], kl_weight ({self.kl_weight}) >= 0")
        if self.episodes_per_batch < 1 or self.minibatch < 1 or self.updates_per_batch < 0:
            raise ValueError("episodes_per_batch and minibatch must be at least 1, updates_per_batch at least 0")


def node_parameters() -> dict[str, tuple]:
    """{name: (default, description)} of every setting: the trainer node declares these as its parameters."""
    return {f.name: (f.default, f.metadata["help"]) for f in fields(ReinforceConfig)}


def from_parameters(params: dict) -> ReinforceConfig:
    """The settings from a node's parameter values (checked: a ValueError names the first bad one)."""
    cfg = ReinforceConfig(**{f.name: params[f.name] for f in fields(ReinforceConfig)})
    for f in fields(ReinforceConfig):   # choices, as from_dict checks them for a config file
        choices = get_args(get_type_hints(ReinforceConfig)[f.name])
        if choices and getattr(cfg, f.name) not in choices:
            raise ValueError(f"parameter {f.name}={getattr(cfg, f.name)!r}; valid: {', '.join(choices)}")
    cfg.check()
    return cfg
