"""The policy node: acts for one or many stations with the current policy version.

For each station namespace in `stations`:
  subscribes camera/image_raw, joint_states, episode_step (joined by header stamp), task
  publishes  joint_command (sensor_msgs/JointState, header.stamp = the observation answered)
             action        (PolicyAction: tokens, log-prob, policy version, observation stamp)
Globally:
  subscribes /policy/version (PolicyVersion, latched): loads the checkpoint in the
             background, verifies its sha256, and gives it to each station when
             that station's next episode starts (never mid-episode, never half-loaded).

Rounds (`episodes_per_version` > 0, lockstep): at most that many episodes, all
stations together, start on one policy version. A station whose next episode
would exceed it gets no action (a lockstep station then waits) until the next
version arrives. With the trainer's batch size here, every practice episode is
acted by the version being trained: the paper's collect -> update -> clear loop,
with no episode lost as stale. If no action went out for `round_timeout` s and
no version came (an episode the trainer could not use, a dead station), the
waiting stations go on with the current version, so the fleet never deadlocks.

Observations that are ready at the same time are batched into one forward pass.
Every action is decoded from tokens inside the action bounds, checked finite and
clipped again before it is published.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import torch
from sensor_msgs.msg import JointState

from sefm_core import checkpoint
from sefm_interfaces.msg import PolicyAction, PolicyVersion
from sefm_policy.params import PolicyParams
from sefm_ros.common import (LATCHED, StationObservations, hold_for_batch, node_names, observe_station, reliable,
                             spin_main, station_list, subscribe_from, time_of)
from sefm_ros.managed import ManagedNode


class StationView(StationObservations):
    def __init__(self, name: str):
        super().__init__(name)
        self.episode: int | None = None        # the episode the station is acting in (by its episode_step)
        self.version: int | None = None       # the policy version of that episode
        self.waiting_since: float | None = None  # rounds: its version's quota was full when this episode began

    def ready(self):
        """The newest complete observation not answered yet (older ones are stale for acting)."""
        stamps = self.pending()
        return stamps[-1] if stamps else None


class PolicyNode(ManagedNode):
    PARAMETERS = PolicyParams

    def __init__(self, namespace: str = "", context=None, **overrides):
        self.loaders: list[threading.Thread] = []   # background checkpoint loads, joined on shutdown
        super().__init__("policy", namespace, context, **overrides)

    def setup(self) -> None:
        """configure: load version 0, make the stations' topics; acting starts on activate."""
        p = self.params
        self.greedy, self.batch_wait = p.greedy, p.batch_wait
        self.quota, self.round_timeout = p.episodes_per_version, p.round_timeout
        self.round: tuple[int, set] = (0, set())   # rounds: the newest version and the (station, episode)s on it
        self.last_action = time.monotonic()
        self.command_names = [n for n in p.command_names.split(",") if n]
        model, meta = checkpoint.load(p.checkpoint)
        self.models = {0: (model.eval(), meta["weights_sha256"])}
        self.latest = 0
        self.pending: tuple[int, object] | None = None
        self.lock = threading.Lock()
        self.generator = torch.Generator().manual_seed(p.seed)
        self.views: dict[str, StationView] = {}
        self.cmd_pubs, self.action_pubs = {}, {}
        for name in station_list(p.stations):
            view = self.views[name] = StationView(name)
            observe_station(self, view, on_observation=self.maybe_act)   # an episode starts at its first observation
            self.cmd_pubs[name] = self.create_publisher(JointState, f"{name}/joint_command", reliable(10))
            self.action_pubs[name] = self.create_publisher(PolicyAction, f"{name}/action", reliable(50))
        subscribe_from(self, PolicyVersion, "policy/version", self.on_version, LATCHED, node_names(p.version_from))
        self.create_timer(0.005, self.maybe_act)   # acts on arrival; the timer ends a batch wait
        self.get_logger().info(f"acting for {', '.join(self.views)} with {p.checkpoint} (version 0)")

    # --- inputs -----------------------------------------------------------------------------

    def _enter_episodes(self) -> None:
        """A station whose newest observation belongs to a new episode starts that episode here."""
        for view in self.views.values():
            stamps = view.pending()
            episode = view.steps[stamps[-1]][0] if stamps else None
            if episode is not None and episode != view.episode:
                view.episode, view.version, view.waiting_since = episode, None, None
                self._start_episode(view)

    def _start_episode(self, view: StationView, force: bool = False) -> None:
        with self.lock:  # a new episode starts on the newest complete policy version
            self._adopt_pending()
            if self.round[0] != self.latest:   # a new version opens a new round (older ones are never joined)
                self.round = (self.latest, set())
            started = self.round[1]
            episode = (view.name, view.episode)
            if self.quota and episode not in started and len(started) >= self.quota and not force:
                view.waiting_since = view.waiting_since or time.monotonic()
                return   # its version's round is full: no action until the next version
            view.version, view.waiting_since = self.latest, None
            started.add(episode)
        self._drop_unused_versions()

    def _release_waiting(self) -> None:
        """Rounds: start the waiting stations' episodes on a new version, or after round_timeout on this one."""
        waiting = [v for v in self.views.values() if v.waiting_since is not None]
        if not waiting:
            return
        with self.lock:
            new_version = self.pending is not None and self.pending[0] > self.latest
            overdue = time.monotonic() - max(self.last_action, *(v.waiting_since for v in waiting)) > self.round_timeout
            room = self.round[0] != self.latest or len(self.round[1]) < self.quota
            force = overdue and not new_version
        if not (new_version or room or force):
            return   # nothing can start yet: checked on every tick, so cheaply
        if force:
            self.get_logger().warn(f"no policy version after v{self.latest} and no action for "
                                   f"{self.round_timeout:.0f} s; {len(waiting)} station(s) go on with v{self.latest}")
        for view in waiting:
            self._start_episode(view, force)

    def on_version(self, msg: PolicyVersion) -> None:
        if msg.version in self.models or (self.pending and self.pending[0] == msg.version):
            return
        uri = msg.checkpoint_uri.removeprefix("file://")
        self.loaders = [t for t in self.loaders if t.is_alive()]
        loader = threading.Thread(target=self._load, args=(msg.version, uri, msg.sha256), daemon=True)
        self.loaders.append(loader)
        loader.start()

    def _load(self, version: int, path: str, sha256: str) -> None:
        try:
            model, _ = checkpoint.load(path, expected_sha256=sha256)
        except Exception as exc:  # a bad checkpoint must never replace a working policy
            self.get_logger().error(f"policy version {version} rejected: {exc}")
            return
        with self.lock:
            self.pending = (version, (model.eval(), sha256))
        self.get_logger().info(f"policy version {version} loaded and verified; used from each station's next episode")

    def destroy_node(self) -> None:
        # A load still running when the process exits would die inside torch and abort the process:
        # let it finish first (a checkpoint load takes well under a second).
        for loader in self.loaders:
            loader.join(timeout=30.0)
        super().destroy_node()

    def _adopt_pending(self) -> None:
        if self.pending and self.pending[0] > self.latest:
            version, entry = self.pending
            self.models[version], self.latest, self.pending = entry, version, None

    def _drop_unused_versions(self) -> None:
        in_use = {v.version for v in self.views.values()} | {self.latest}
        for version in [v for v in self.models if v not in in_use]:
            del self.models[version]

    # --- acting ---------------------------------------------------------------------------------

    def maybe_act(self) -> None:
        if not self.active:
            return   # inactive: no commands (a station's safety gate holds once its watchdog lapses)
        self._enter_episodes()
        if self.quota:
            self._release_waiting()
        active = [v for v in self.views.values() if v.waiting_since is None and v.version is not None]
        ready = {v.name: v.ready() for v in active}
        # an older episode's leftover observation is never answered under the current episode's version
        ready = {name: key for name, key in ready.items()
                 if key is not None and self.views[name].steps[key][0] == self.views[name].episode}
        if not ready:
            return
        if hold_for_batch(active, self.batch_wait):
            return  # give the other stations a moment to join the batch
        by_version: dict[int, list[tuple[str, tuple[int, int]]]] = {}
        for name, key in ready.items():
            by_version.setdefault(self.views[name].version, []).append((name, key))
        for version, items in by_version.items():
            self.act(version, items)

    def act(self, version: int, items) -> None:
        model = self.models[version][0]
        views = [self.views[n] for n, _ in items]
        images = torch.from_numpy(np.stack([v.images[k] for v, (_, k) in zip(views, items)]))
        proprio = torch.from_numpy(np.stack([v.states[k] for v, (_, k) in zip(views, items)]))
        episodes = [v.episode_of(k) for v, (_, k) in zip(views, items)]
        texts = [task.instruction for task, _ in episodes]
        tokens, actions, logp, _ = model.act(images, texts, proprio, greedy=self.greedy, generator=self.generator)
        low, high = model.tokenizer.low, model.tokenizer.high
        for view, (name, key), (task, step), tok, action, lp in zip(views, items, episodes, tokens.numpy(), actions,
                                                                  logp.numpy()):
            view.mark_done(key)   # and any older unanswered one: too late to act on
            if not np.all(np.isfinite(action)):
                self.get_logger().error(f"{name}: non-finite action {action}; not sent")
                continue
            action = np.clip(action, low, high)
            stamp = time_of(key)
            command = JointState(name=self.command_names, position=action.astype(float).tolist())
            command.header.stamp = stamp
            self.cmd_pubs[name].publish(command)
            msg = PolicyAction(observation_stamp=stamp, episode_id=task.episode_id, step=step,
                               values=action.astype(np.float32).tolist(), tokens=tok.astype(np.int32).tolist(),
                               log_prob=float(lp), policy_version=version, greedy=self.greedy)
            self.last_action = time.monotonic()
            msg.header.stamp = self.get_clock().now().to_msg()
            self.action_pubs[name].publish(msg)


def main(argv=None) -> int:
    return spin_main(PolicyNode, argv)


if __name__ == "__main__":
    sys.exit(main())
