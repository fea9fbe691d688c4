"""The policy node's parameters (ROS-free: the graph runner and the launch files build the same dataclass)."""
from __future__ import annotations

from dataclasses import dataclass

from sefm_core.config import ManagedParams, setting


@dataclass(frozen=True)
class PolicyParams(ManagedParams):
    checkpoint: str = setting("", "checkpoint directory of policy version 0 (later versions arrive on "
                                  "policy/version)")
    stations: str = setting("station_0", "comma-separated station namespaces this node acts for")
    greedy: bool = setting(False, "true: argmax actions (evaluation); false: sample (practice)")
    command_names: str = setting("delta_x,delta_y", "names written into joint_command, in action order")
    batch_wait: float = setting(0.005, "seconds to wait for more stations' observations before a forward pass",
                                low=0.0)
    seed: int = setting(0, "sampling seed", low=0)
    episodes_per_version: int = setting(0, "rounds: episodes (all stations) started per policy version; 0: no "
                                           "limit", low=0)
    version_from: str = setting("trainer", "policy/version is accepted only from publishers whose node has one of "
                                           "these comma-separated names (empty: from anyone)")
    round_timeout: float = setting(30.0, "rounds: with no action sent for this long, waiting stations go on "
                                         "with the current version (s)", low=1e-3)

    def check(self) -> None:
        if not self.checkpoint:
            raise ValueError("parameter checkpoint is required (a Stage-1 checkpoint directory)")
