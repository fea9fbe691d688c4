"""The reward node's parameters (ROS-free: the graph runner and the launch files build the same dataclass)."""
from __future__ import annotations

from dataclasses import dataclass

from sefm_core.config import ManagedParams, setting


@dataclass(frozen=True)
class RewardParams(ManagedParams):
    checkpoint: str = setting("", "the frozen Stage-1 checkpoint directory")
    stations: str = setting("station_0", "comma-separated station namespaces to score")
    success_threshold: float = setting(1.0, "s of the detector: an observation with d(o, g) <= s counts as "
                                            "success (negative: detector off)")
    success_hold: int = setting(1, "k of the detector: success once k observations in a row have d <= s "
                                   "(1: the paper's rule)", low=1)
    batch_wait: float = setting(0.005, "seconds to wait for more stations' observations before a forward pass",
                                low=0.0)

    def check(self) -> None:
        if not self.checkpoint:
            raise ValueError("parameter checkpoint is required (the frozen Stage-1 checkpoint)")
