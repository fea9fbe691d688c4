"""The sim bridge's parameters: the station (`sefm_sim.station.StationConfig`) plus how it runs as a robot.
ROS-free: the graph runner and the launch files build the same dataclass."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sefm_core.config import project, setting
from sefm_sim.station import StationConfig


@dataclass(frozen=True)
class BridgeParams(StationConfig):
    seed: int = setting(0, "reset seed of the first episode; episode k uses seed + k", low=0)
    mode: Literal["lockstep", "realtime"] = setting("lockstep", "lockstep: step when the command arrives; "
                                                    "realtime: fixed rate, zero-order hold")
    rate_hz: float = setting(0.0, "realtime mode: control rate; 0 = the env's own (LanguageTable 10 Hz, "
                                  "ALOHA 50 Hz)", low=0.0)
    watchdog_timeout: float = setting(0.5, "realtime mode: hold position when no command arrived for this long "
                                           "(s)", low=1e-3)
    station: str = setting("", "station name in messages (default: the node's namespace)")
    wait_for_score: bool = setting(False, "lockstep: step only once the reward node has scored the current "
                                          "observation too, so no score is late and a detected success is "
                                          "never stepped past (Stage 2 sets it)")
    score_from: str = setting("reward", "steps_to_go (a detected success ends the episode) is accepted only from "
                                        "publishers whose node has one of these comma-separated names (empty: "
                                        "from anyone)")
    settle_steps: int = setting(0, "after the simulator's success, keep the episode for this many more commands "
                                   "while the goal holds and publish the final observation (recorded demos: "
                                   "resting states at the goal)", low=0)
    min_subscribers: int = setting(0, "hold the first episode until camera/image_raw has this many subscribers "
                                      "(the policy, reward and trainer), so no node misses its start", low=0)
    min_ground_truth_subscribers: int = setting(0, "also hold it until sim/ground_truth has this many (a "
                                                   "recorder: recorded demos then carry their training labels "
                                                   "from the first frame)", low=0)

    def station_config(self) -> StationConfig:
        return project(self, StationConfig)
