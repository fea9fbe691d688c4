"""The trainer node: assembles on-policy episodes from every station and improves the policy by REINFORCE.

For each station namespace in `stations`:
  subscribes camera/image_raw, joint_states, episode_step, task, action, steps_to_go, episode_event
Globally:
  publishes  /policy/version (latched) after every batch: version, file:// URI, sha256

An episode is assembled when its END event arrives (`episodes.assemble`: an
exact join by observation stamp, each observation under the episode its
`episode_step` names; stale policy versions dropped and counted). Every episode
a station ran leaves a record: stored in <run_dir>/episodes (the episode data
set format, with its log-probs, tokens, rewards, d, the detector's decisions,
how it ended and the simulator's verdict where there is one, for measurement
only), or, with no usable transition, a line with its reasons in
<run_dir>/unused_episodes.jsonl. `task` and `episode_event` keep their recent
history, so a restarted trainer records the episodes that ended while it was
down, and never records one twice. After `episodes_per_batch` episodes
of the current version: `updates_per_batch` REINFORCE updates, the buffer is
cleared, checkpoint <run_dir>/checkpoints/v<N> is written and announced. With
`guard_every` the regression guard (sefm_core.regression_guard) judges every
window of versions by the stations' own success verdicts and may make v<N> the
best earlier version's policy again (<run_dir>/guard.json). On a restart the
trainer resumes from its newest checkpoint.
"""
from __future__ import annotations

import csv
import json
import pathlib
import sys
import time

import numpy as np
import torch
from sensor_msgs.msg import Image, JointState

from sefm_core import checkpoint
from sefm_core import episode_rules as rules
from sefm_core.data import Episode, EpisodeDataset
from sefm_core.regression_guard import RegressionGuard
from sefm_core.reinforce import discounted_returns, make_optimizer, reinforce_update
from sefm_interfaces.msg import EpisodeEvent, EpisodeStep, PolicyAction, PolicyVersion, StepsToGo, Task
from sefm_trainer.params import TrainerParams
from sefm_ros.common import (EPISODE_EVENTS, EPISODES, LATCHED, image_to_array, reliable, spin_main, node_names,
                             stamp_key, station_list, subscribe_from)
from sefm_ros.managed import ManagedNode
from sefm_trainer.episodes import STALE, AssembledEpisode, EpisodeBuffer, assemble, latest_per_step, observed_steps

MAX_WAIT_SECONDS = 10.0  # how long an ended episode may wait for its last actions and scores


class TrainerNode(ManagedNode):
    PARAMETERS = TrainerParams
    version = 0   # the newest policy version (set by configure: resumed from the run's checkpoints)

    def __init__(self, namespace: str = "", context=None, **overrides):
        super().__init__("trainer", namespace, context, **overrides)

    def setup(self) -> None:
        """configure: resume from the run's newest checkpoint, make the stations' topics. Episodes are recorded
        from then on; REINFORCE updates run only while active (an update due while inactive runs on activate)."""
        p = self.params
        self.cfg = p.reinforce()
        self.max_versions, self.rounds = p.max_versions, p.rounds
        self.run = pathlib.Path(p.run_dir)
        (self.run / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.version, path = self._resume_point(p.checkpoint)
        self.model, meta = checkpoint.load(path)
        self.model.eval()  # log p of the acting policy: no dropout (reinforce_update keeps the heads in eval too)
        self.sha256, self.uri = meta["weights_sha256"], f"file://{path.resolve()}"
        self.optimizer = make_optimizer(self.model.heads, self.cfg)
        # kl_weight > 0 anchors the policy to the Stage-1 policy: its frozen copy gives the reference logits
        self.reference = checkpoint.load(p.checkpoint)[0].eval() if self.cfg.kl_weight > 0 else None
        if self.version > 0:
            checkpoint.load_optimizer(self.optimizer, path)
        self.dataset = EpisodeDataset(self.run / "episodes", create=True)
        self.recorded = self._recorded_episodes()   # (station, episode id) with a record: never stored twice
        self.metrics = self.run / "metrics.csv"
        self.guard_file = self.run / "guard.json"   # the regression guard's windows (it resumes from them)
        self.guard = RegressionGuard(self.cfg.guard_every, self.cfg.guard_drop)
        if self.guard_file.exists():
            self.guard = RegressionGuard.resume(json.loads(self.guard_file.read_text()))
            self.guard.every, self.guard.drop = self.cfg.guard_every, self.cfg.guard_drop
        self.batch: list[AssembledEpisode] = []
        self.batch_places = 0   # episodes run on the version being trained (usable or not)
        # Observations per station by stamp; actions, scores and tasks per (station, episode id):
        # every message names its episode or its stamp, so arrival order never matters.
        self.images: dict[str, dict] = {}
        self.states: dict[str, dict] = {}
        self.episodes: dict[tuple[str, int], EpisodeBuffer] = {}
        self.version_pub = self.create_publisher(PolicyVersion, "policy/version", LATCHED)
        for name in station_list(p.stations):
            sub = lambda t, topic, cb, q: self.create_subscription(t, f"{name}/{topic}", cb, q)  # noqa: E731
            sub(Image, "camera/image_raw", lambda m, n=name: self.on_image(n, m), reliable(10))
            self.images[name], self.states[name] = {}, {}
            sub(JointState, "joint_states", lambda m, n=name: self.states[n].__setitem__(
                stamp_key(m.header.stamp), np.asarray(m.position, np.float32)), reliable(20))
            sub(EpisodeStep, "episode_step", lambda m, n=name: self.episode(n, m.episode_id).steps.__setitem__(
                stamp_key(m.header.stamp), m.step), reliable(20))
            sub(Task, "task", lambda m, n=name: self.on_task(n, m), EPISODES)
            sub(PolicyAction, "action", lambda m, n=name: self.on_action(n, m), reliable(50))
            subscribe_from(self, StepsToGo, f"{name}/steps_to_go", lambda m, n=name: self.on_score(n, m), reliable(50),
                           node_names(p.score_from))
            sub(EpisodeEvent, "episode_event", lambda m, n=name: self.on_event(n, m), EPISODE_EVENTS)
        self.ended: list[tuple[float, str, EpisodeEvent]] = []
        self.create_timer(0.05, self.assemble_due)
        self.publish_version()
        self.get_logger().info(f"training policy version {self.version} ({path}); run directory {self.run}")

    # --- bookkeeping ---------------------------------------------------------------------------

    def _resume_point(self, initial: str) -> tuple[int, pathlib.Path]:
        saved = sorted((int(d.name[1:]), d) for d in (self.run / "checkpoints").glob("v*") if d.name[1:].isdigit()
                       and (d / checkpoint.CONFIG).exists())
        if saved:
            return saved[-1]
        if not initial:
            raise ValueError("parameter checkpoint is required (the Stage-1 checkpoint, policy version 0)")
        return 0, pathlib.Path(initial)

    def _recorded_episodes(self) -> set[tuple[str, int]]:
        keys = {(e["metadata"]["station"], e["metadata"]["episode_id"]) for e in self.dataset.index}
        unused = self.run / "unused_episodes.jsonl"
        if unused.exists():
            for line in unused.read_text().splitlines():
                record = json.loads(line)
                keys.add((record["station"], record["episode_id"]))
        return keys

    def episode(self, station: str, episode_id: int) -> EpisodeBuffer:
        """The episode's buffer; a throwaway one for an episode already recorded (a late message of it must
        not open it again)."""
        if (station, episode_id) in self.recorded:
            return EpisodeBuffer()
        return self.episodes.setdefault((station, episode_id), EpisodeBuffer())

    def on_task(self, station: str, msg: Task) -> None:
        self.episode(station, msg.episode_id).task = msg

    def on_image(self, station: str, msg: Image) -> None:
        try:
            self.images[station][stamp_key(msg.header.stamp)] = image_to_array(msg)
        except ValueError as exc:
            self.get_logger().error(f"{station}: {exc}", throttle_duration_sec=5.0)

    def on_action(self, station: str, msg: PolicyAction) -> None:
        self.episode(station, msg.episode_id).actions[stamp_key(msg.observation_stamp)] = (
            list(msg.tokens), list(msg.values), msg.log_prob, msg.policy_version)

    def on_score(self, station: str, msg: StepsToGo) -> None:
        self.episode(station, msg.episode_id).scores[stamp_key(msg.observation_stamp)] = (
            msg.expected_steps_to_go, msg.reward if msg.has_reward else None, msg.success)

    # --- episodes and updates ------------------------------------------------------------------

    def on_event(self, station: str, msg: EpisodeEvent) -> None:
        # The END event can overtake the last actions and scores of its episode (other nodes,
        # other topics): assemble once every observation has its score and action, or after
        # MAX_WAIT_SECONDS with whatever arrived (and what did not counted as dropped).
        key = (station, msg.episode_id)
        waiting = {(name, m.episode_id) for _, name, m in self.ended}
        if msg.event == EpisodeEvent.END and key not in self.recorded and key not in waiting:
            self.ended.append((time.monotonic() + MAX_WAIT_SECONDS, station, msg))

    def complete(self, station: str, msg: EpisodeEvent) -> bool:
        buf = self.episodes.get((station, msg.episode_id))
        if buf is None or buf.task is None:
            return False   # wait for its task (the history may still be arriving) up to the deadline
        if stamp_key(msg.last_observation_stamp) not in buf.steps:
            return False   # the END overtook its final observation's episode_step: not whole yet
        stamps, _ = observed_steps(buf, self.images[station], self.states[station])
        announced = latest_per_step(buf)
        return len(stamps) == len(announced) and all(k in buf.scores for k in stamps) and \
            all(k in buf.actions for k in stamps[:-1])

    def assemble_due(self) -> None:
        now = time.monotonic()
        due = [e for e in self.ended if e[0] <= now or self.complete(e[1], e[2])]
        self.ended = [e for e in self.ended if e not in due]
        for _, station, msg in due:
            self.finish(station, msg)

    def finish(self, station: str, msg: EpisodeEvent) -> None:
        buf = self.episodes.pop((station, msg.episode_id), None) or EpisodeBuffer()
        last = stamp_key(msg.last_observation_stamp)
        # hand the episode its own observations; forget older ones that no episode still open has announced
        # (an earlier episode still waiting for its last score keeps its observations)
        claimed = {k for (name, _), other in self.episodes.items() if name == station for k in other.steps}
        for table, store in ((buf.images, self.images[station]), (buf.states, self.states[station])):
            for key in [k for k in store if k in buf.steps or (k <= last and k not in claimed)]:
                value = store.pop(key)
                if key in buf.steps:
                    table[key] = value
        if buf.task is None or not buf.instruction:
            reason = "no task received" if buf.task is None else "the task has an empty instruction"
            episode = AssembledEpisode(station, msg.episode_id, buf.instruction, [], msg.outcome,
                                       {reason: len(buf.steps)})
        else:
            episode = assemble(station, msg.episode_id, buf, msg.outcome, self.version)
        episode.oracle_success = bool(msg.env_success) if msg.env_success_known else None
        self.persist(episode, buf, msg)
        if episode.dropped:
            self.get_logger().warn(f"{station} episode {msg.episode_id}: dropped {episode.dropped}")
        if episode.transitions:
            # the frozen towers' features now, while other stations still practise, not all at the update:
            # the model does not change before this batch's update, so they are the same
            with torch.no_grad():
                episode.features = self.model.tower_features(
                    torch.from_numpy(np.stack([t.image for t in episode.transitions])),
                    [episode.instruction] * len(episode.transitions))
            self.batch.append(episode)
        # In rounds, every episode run on this version fills its place in the batch, usable or not (one
        # solved at reset has no transition), as the policy node counts them; otherwise only usable ones.
        if episode.transitions or (self.rounds and STALE not in episode.dropped):
            self.batch_places += 1
        self.update_if_due()

    def update_if_due(self) -> None:
        if self.active and self.batch_places >= self.cfg.episodes_per_batch and self.batch and not self.done():
            self.update()

    def on_activate(self, state):
        result = super().on_activate(state)
        self.update_if_due()
        return result

    def done(self) -> bool:
        return bool(self.max_versions) and self.version >= self.max_versions

    def persist(self, episode: AssembledEpisode, buf: EpisodeBuffer, end: EpisodeEvent) -> None:
        """Every episode leaves one record: stored with its arrays (used for training or not, with why not
        in its metadata), or, with no usable transition at all (stale from its first step, its start
        missed, no task), a line in <run_dir>/unused_episodes.jsonl with the reasons. Both carry how it
        ended and the simulator's verdict (`oracle_success`, measurement only: no learning input reads it)."""
        self.recorded.add((episode.station, episode.episode_id))
        outcome = {"station": episode.station, "episode_id": episode.episode_id, "outcome": int(episode.outcome),
                   "end_reason": rules.OUTCOMES.get(int(episode.outcome), str(episode.outcome)),
                   "detector_success": int(episode.outcome) == rules.SUCCESS_DETECTED,
                   "oracle_success": episode.oracle_success,
                   "steps": int(end.num_steps), "operator_asks": int(end.operator_asks), "dropped": episode.dropped}
        if not episode.transitions:
            record = {**outcome, "trainer_version": self.version}
            with open(self.run / "unused_episodes.jsonl", "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
            return
        tr, final = episode.transitions, episode.final
        rgb = np.stack([t.image for t in tr] + [buf.images[final]])
        proprio = np.stack([t.proprio for t in tr] + [buf.states[final]])
        extras = {"log_probs": np.array([t.log_prob for t in tr], np.float32),
                  "tokens": np.stack([t.tokens for t in tr]).astype(np.int32),
                  "steps_to_go": np.array([t.d for t in tr] + [buf.scores[final][0]], np.float32),
                  "detected": np.array(episode.detections, np.uint8),
                  "stamps": np.array([[*t.stamp] for t in tr] + [[*final]], np.int64)}
        self.dataset.append(Episode(rgb, proprio, np.stack([t.action for t in tr]), episode.rewards, episode.instruction,
                                    int(episode.outcome) in rules.SUCCESS_OUTCOMES,
                                    {**outcome, "policy_version": self.version, "source": "stage2"}, extras))

    def update(self) -> None:
        start = time.monotonic()
        transitions = [t for ep in self.batch for t in ep.transitions]
        returns = [discounted_returns(ep.rewards, self.cfg.gamma) for ep in self.batch]
        proprio = torch.from_numpy(np.stack([t.proprio for t in transitions]))
        tokens = torch.from_numpy(np.stack([t.tokens for t in transitions]).astype(np.int64))
        returns_t = torch.as_tensor(np.concatenate(returns), dtype=torch.float32)
        fmap = torch.cat([ep.features[0] for ep in self.batch])
        text = torch.cat([ep.features[1] for ep in self.batch])
        reference = None
        if self.reference is not None:
            with torch.no_grad():
                reference = self.reference.heads(fmap, text, proprio)[0]
        loss, moved = reinforce_update(self.model, self.optimizer, fmap, text, proprio, tokens, returns_t, self.cfg,
                                       reference_logits=reference)
        detected = sum(ep.outcome == rules.SUCCESS_DETECTED for ep in self.batch)
        station_successes = sum(ep.outcome in (rules.SUCCESS_DETECTED, rules.OPERATOR_SUCCESS) for ep in self.batch)
        back = self.guard.observe(self.version + 1, station_successes, len(self.batch))
        judged = [ep.oracle_success for ep in self.batch if ep.oracle_success is not None]
        row = {"version": self.version + 1, "episodes": len(self.batch), "transitions": len(transitions),
               "mean_return": float(np.mean([r[0] for r in returns])),
               "detected_success_rate": detected / len(self.batch),
               # the simulator's verdict, for measurement only (empty for a real station)
               "oracle_success_rate": sum(judged) / len(judged) if judged else "", "loss": loss,
               "update_kl": moved,  # KL(before || after) per state: how far this update moved the policy
               # -log p of the sampled actions estimates the acting policy's entropy; near 0 it has
               # collapsed onto one action (e.g. one that fools the success detector)
               "policy_entropy": float(np.mean([-t.log_prob for t in transitions])),
               "seconds": time.monotonic() - start, "guard": ""}
        if back is not None:   # the regression guard: this version is the best one's policy again
            self.restore(back)
            row["guard"] = f"rolled back to v{back}"
            self.get_logger().warning(f"regression guard: {json.dumps(self.guard.history[-1])}")
        self.batch.clear()  # on-policy: the batch is never used again
        self.batch_places = 0
        self.version += 1
        path = self.run / "checkpoints" / f"v{self.version}"
        self.sha256 = checkpoint.save(self.model, path, {"version": self.version, **row}, self.optimizer)
        if self.guard.every:   # after the checkpoint: a restart never counts a batch twice
            self.guard_file.write_text(json.dumps(self.guard.summary(), indent=1))
        self.uri = f"file://{path.resolve()}"
        new = not self.metrics.exists()
        with open(self.metrics, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.publish_version()
        self.get_logger().info(f"policy version {self.version}: {json.dumps(row)}")

    def restore(self, version: int) -> None:
        """The policy (and its optimizer moments) of an earlier version: the Stage-1 checkpoint for 0."""
        path = self.run / "checkpoints" / f"v{version}" if version else pathlib.Path(self.params.checkpoint)
        self.model.load_state_dict(checkpoint.load(path)[0].state_dict())
        self.optimizer = make_optimizer(self.model.heads, self.cfg)
        if version:
            checkpoint.load_optimizer(self.optimizer, path)

    def publish_version(self) -> None:
        msg = PolicyVersion(version=self.version, checkpoint_uri=self.uri, sha256=self.sha256,
                            episodes_trained=len(self.dataset))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.version_pub.publish(msg)


def main(argv=None) -> int:
    return spin_main(TrainerNode, argv)


if __name__ == "__main__":
    sys.exit(main())
