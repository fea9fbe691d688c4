"""The trainer node's parameters: the Stage-2 update's settings (`ReinforceConfig`) plus where it runs.
ROS-free: the graph runner and the launch files build the same dataclass."""
from __future__ import annotations

from dataclasses import dataclass

from sefm_core.config import ManagedParams, project, setting
from sefm_core.stage2_config import ReinforceConfig


@dataclass(frozen=True)
class TrainerParams(ReinforceConfig, ManagedParams):
    checkpoint: str = setting("", "Stage-1 checkpoint: policy version 0")
    stations: str = setting("station_0", "comma-separated station namespaces")
    run_dir: str = setting("runs/improve", "checkpoints, episodes and metrics of this run")
    rounds: bool = setting(False, "the policy node runs rounds: every episode run on the current version fills "
                                  "its place in the batch, usable or not (as the policy node counts them)")
    score_from: str = setting("reward", "steps_to_go (rewards and the detector) is accepted only from publishers "
                                        "whose node has one of these comma-separated names (empty: from anyone)")
    max_versions: int = setting(0, "stop updating after this many new versions (0: no limit)", low=0)

    def check(self) -> None:
        super().check()
        if not self.checkpoint:
            raise ValueError("parameter checkpoint is required (a Stage-1 checkpoint directory)")

    def reinforce(self) -> ReinforceConfig:
        return project(self, ReinforceConfig)
