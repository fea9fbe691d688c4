"""The reward node: a frozen Stage-1 model scores every observation of every station.

For each station namespace in `stations`:
  subscribes camera/image_raw, joint_states, episode_step (joined by header stamp), task
  publishes  steps_to_go (StepsToGo) for every observation, in order:
             d(o_t, g), reward d(o_{t-1}, g) - d(o_t, g) (none at step 0), success: the detector's
             decision (sefm_core.episode_rules: d <= s on `success_hold` observations in a row, never at
             step 0; off for s < 0)

The station manager ends the episode on a detected success. A lifecycle node: configure loads the model,
activate starts scoring. The model is loaded once
and never updated: the reward cannot drift while the policy trains.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from sefm_core import checkpoint
from sefm_core.episode_rules import detector_fires, transition_reward
from sefm_interfaces.msg import StepsToGo
from sefm_reward.params import RewardParams
from sefm_ros.common import StationObservations, hold_for_batch, observe_station, reliable, spin_main, station_list, time_of
from sefm_ros.managed import ManagedNode


class Scored(StationObservations):
    def __init__(self, name: str):
        super().__init__(name)
        self.episode: int | None = None        # the episode of the last observation scored ...
        self.d: dict[int, float] = {}          # ... and d of its observations by step (a station may re-issue one)


class RewardNode(ManagedNode):
    PARAMETERS = RewardParams

    def __init__(self, namespace: str = "", context=None, **overrides):
        super().__init__("reward", namespace, context, **overrides)

    def setup(self) -> None:
        """configure: load the frozen model, make the stations' topics; scoring starts on activate."""
        p = self.params
        self.model, meta = checkpoint.load(p.checkpoint)
        self.model.eval().requires_grad_(False)
        self.sha256 = meta["weights_sha256"]
        self.threshold, self.hold = float(p.success_threshold), int(p.success_hold)
        self.stations: dict[str, Scored] = {}
        self.pubs = {}
        for name in station_list(p.stations):
            view = self.stations[name] = Scored(name)
            observe_station(self, view, on_observation=self.score)
            self.pubs[name] = self.create_publisher(StepsToGo, f"{name}/steps_to_go", reliable(50))
        self.batch_wait = float(p.batch_wait)
        self.create_timer(0.005, self.score)   # scores on arrival; the timer ends a batch wait
        self.get_logger().info(f"scoring {', '.join(self.stations)} with frozen {p.checkpoint} "
                               f"(sha256 {self.sha256[:12]}), success at d <= {self.threshold}")

    def score(self) -> None:
        if not self.active:
            return
        batch = [(v, k) for v in self.stations.values() for k in v.pending()]
        if not batch:
            return
        if hold_for_batch(self.stations.values(), self.batch_wait):
            return  # give the other stations a moment to join the batch
        images = torch.from_numpy(np.stack([v.images[k] for v, k in batch]))
        proprio = torch.from_numpy(np.stack([v.states[k] for v, k in batch]))
        episodes = [v.episode_of(k) for v, k in batch]
        d = self.model.steps_to_go(images, [task.instruction for task, _ in episodes], proprio).numpy()
        for (view, key), (task, step), d_t in zip(batch, episodes, d):  # oldest first: the episode's order
            view.mark_done(key)
            if view.episode != task.episode_id:
                view.episode, view.d = task.episode_id, {}
            recent = [view.d.get(u, float("nan")) for u in range(step - self.hold + 1, step)] + [float(d_t)]
            msg = StepsToGo(observation_stamp=time_of(key), episode_id=task.episode_id, step=step,
                            expected_steps_to_go=float(d_t),
                            success=detector_fires(recent, step, self.threshold, self.hold),
                            success_threshold=self.threshold, reward_model_sha256=self.sha256)
            # the reward of the step into this observation: d of the same episode's previous step minus its d
            if step - 1 in view.d:
                msg.reward, msg.has_reward = transition_reward(view.d[step - 1], float(d_t)), True
            msg.header.stamp = self.get_clock().now().to_msg()
            self.pubs[view.name].publish(msg)
            view.d[step] = float(d_t)


def main(argv=None) -> int:
    return spin_main(RewardNode, argv)


if __name__ == "__main__":
    sys.exit(main())
