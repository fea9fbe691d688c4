"""Episode boundaries on a real graph: every observation is acted on, scored and stored under its own episode,
and every episode leaves exactly one record, also across bridge and trainer restarts."""
import contextlib
import json
import signal
import time
import uuid
from collections import Counter

import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState

from sefm_bringup.graph import terminate
from sefm_core.data import EpisodeDataset
from sefm_interfaces.msg import EpisodeEvent, EpisodeStep, Task
from sefm_interfaces.srv import PauseStation, ResumeStation
from sefm_ros.common import EPISODES

from helpers import Driver, RELIABLE, spawn, tiny_checkpoint

pytestmark = pytest.mark.slow   # an end-to-end run: `make test` runs it, `make test-fast` does not


def key_of(stamp):
    return (stamp.sec, stamp.nanosec)


def ns_of(key):
    return key[0] * 1_000_000_000 + key[1]


def bridge_args(ns, estop, max_steps, driven=True):
    """A lockstep station as Stage 2 runs it (wait_for_score: every observation scored before the next step).
    min_subscribers: policy, reward, trainer and the test's go signal, and the Driver's own camera
    subscription on the station it drives: the station starts only once the test hears everything."""
    return ("sefm_sim_bridge.bridge_node", "-r", f"__ns:=/{ns}", "-r", f"/estop:={estop}", "-p", "image_width:=64",
            "-p", "image_height:=36", "-p", f"max_steps:={max_steps}", "-p", "families:=block2block",
            "-p", "wait_for_score:=true", "-p", f"min_subscribers:={5 if driven else 4}")


def node_args(tmp_path, stations):
    """policy, reward (no detected success: only the step cap or the simulator end episodes) and trainer
    (no update before the test ends: every stored episode is acted by version 0)."""
    ckpt, run = tmp_path / "stage1", tmp_path / "run"
    remap = ("-r", f"/policy/version:=/policy_version_{uuid.uuid4().hex[:6]}")
    policy = ("sefm_policy.policy_node", "-p", "autostart:=true", *remap, "-p", f"checkpoint:={ckpt}", "-p", f"stations:={stations}")
    reward = ("sefm_reward.reward_node", "-p", "autostart:=true", "-p", f"checkpoint:={ckpt}", "-p", f"stations:={stations}",
              "-p", "success_threshold:=-1.0")
    trainer = ("sefm_trainer.trainer_node", "-p", "autostart:=true", *remap, "-p", f"checkpoint:={ckpt}", "-p", f"stations:={stations}",
               "-p", f"run_dir:={run}", "-p", "episodes_per_batch:=1000", "-p", "updates_per_batch:=1")
    return policy, reward, trainer


class Recorder:
    """What the test hears of each station: tasks (all of them, by episode id), END events, episode steps and
    the policy's joint commands (by the observation stamp they answer)."""

    def __init__(self, node, stations):
        self.node = node
        self.tasks = {s: {} for s in stations}        # station -> episode id -> [Task, ...]
        self.ends = {s: {} for s in stations}         # station -> episode id -> [EpisodeEvent, ...]
        self.steps = {s: {} for s in stations}        # station -> stamp -> {(episode id, step)}
        self.commands = {s: {} for s in stations}     # station -> stamp -> [position, ...]
        for s in stations:
            node.create_subscription(Task, f"/{s}/task", lambda m, s=s: self.tasks[s].setdefault(
                m.episode_id, []).append(m), EPISODES)
            node.create_subscription(EpisodeEvent, f"/{s}/episode_event", lambda m, s=s: self.on_event(s, m), EPISODES)
            node.create_subscription(EpisodeStep, f"/{s}/episode_step", lambda m, s=s: self.steps[s].setdefault(
                key_of(m.header.stamp), set()).add((m.episode_id, m.step)), RELIABLE)
            node.create_subscription(JointState, f"/{s}/joint_command", lambda m, s=s: self.commands[s].setdefault(
                key_of(m.header.stamp), []).append(list(m.position)), RELIABLE)

    def on_event(self, station, msg):
        if msg.event == EpisodeEvent.END:
            events = self.ends[station].setdefault(msg.episode_id, [])
            # transient local: a re-matched reader may get the history again; the same event is not a new END
            if all(key_of(e.header.stamp) != key_of(msg.header.stamp) for e in events):
                events.append(msg)

    def end_keys(self):
        return {(s, e) for s, ends in self.ends.items() for e in ends}

    def wired(self, stations, nodes=("policy", "reward", "trainer")):
        """Every node is on the graph with the endpoints it uses for every station (so that the first episode,
        which starts once the test's go signal is there, reaches everyone), and the test hears the policy's
        commands and the bridge's episode steps."""
        def pubs(topic):
            return {i.node_name for i in self.node.get_publishers_info_by_topic(topic)}

        def subs(topic):
            return {i.node_name for i in self.node.get_subscriptions_info_by_topic(topic)}

        observation = ("camera/image_raw", "joint_states", "episode_step", "task")
        need = {"policy": observation, "reward": observation,
                "trainer": observation + ("action", "steps_to_go", "episode_event")}
        return all("policy" in pubs(f"/{s}/joint_command") and "policy" in pubs(f"/{s}/action") and
                   "sim_bridge" in pubs(f"/{s}/episode_step") and "reward" in pubs(f"/{s}/steps_to_go") and
                   all(n in subs(f"/{s}/{t}") for n in nodes for t in need[n]) for s in stations)

    def subscriptions(self, station, node_name):
        """{(topic, endpoint gid)} of a node's subscriptions to the station's topics, as the graph shows them."""
        return {(t, bytes(i.endpoint_gid)) for t, _ in self.node.get_topic_names_and_types()
                if t.startswith(f"/{station}/") for i in self.node.get_subscriptions_info_by_topic(t)
                if i.node_name == node_name}

    def go(self, stations):
        """Let the stations start (the last camera subscriber they wait for)."""
        for s in stations:
            self.node.create_subscription(Image, f"/{s}/camera/image_raw", lambda _: None, RELIABLE)


def records(run):
    """[(where, station, episode id, record)] of every record the trainer wrote, in order."""
    out = []
    for where, path in (("dataset", run / "episodes" / "episodes.jsonl"), ("unused", run / "unused_episodes.jsonl")):
        if not path.exists():
            continue
        text = path.read_text()
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break   # being written
            r = json.loads(line)
            meta = r["metadata"] if where == "dataset" else r
            out.append((where, meta["station"], meta["episode_id"], r))
    return out


def summary(recs):
    return [(w, s, e, r.get("metadata", r).get("end_reason"), r.get("metadata", r).get("dropped"))
            for w, s, e, r in recs]


@contextlib.contextmanager
def graph(procs, driver):
    """Stop every process at the end; on a failure, add each process's last output to the message."""
    try:
        yield
    except AssertionError as exc:
        terminate(procs)
        logs = "\n".join(f"--- {p.args[2]} (rc {p.returncode}):\n{(p.stdout.read() or '')[-2500:]}" for p in procs)
        raise AssertionError(f"{exc}\n{logs}") from None
    finally:
        driver.close()
        terminate(procs)


def test_short_episodes_on_two_stations_are_acted_and_stored_under_their_own_episode(tmp_path):
    """Episodes of 2 steps on two stations under one policy, reward and trainer: many boundaries. Each stored
    episode is this station's observations of that episode, its actions are the commands the policy sent for
    them (one per observation), its instruction is its own episode's task, and no episode has two records."""
    tiny_checkpoint(tmp_path / "stage1", 0)
    tag = uuid.uuid4().hex[:6]
    stations, estop, max_steps = [f"station_{tag}_a", f"station_{tag}_b"], f"/estop_{tag}", 2
    policy, reward, trainer = node_args(tmp_path, ",".join(stations))
    procs = [spawn(*bridge_args(s, estop, max_steps, driven=s == stations[0])) for s in stations]
    procs += [spawn(*a) for a in (policy, reward, trainer)]
    d = Driver(f"/{stations[0]}", estop)
    rec = Recorder(d.node, stations)
    run = tmp_path / "run"
    with graph(procs, d):
        assert d.spin_until(lambda: rec.wired(stations), timeout=60), "the graph never came up"
        rec.go(stations)
        t0 = time.monotonic()
        ok = d.spin_until(lambda: sum(w == "dataset" for w, *_ in records(run)) >= 20, timeout=120)
        assert ok, f"only {summary(records(run))} after {time.monotonic() - t0:.0f} s; ends {rec.end_keys()}"
        print(f"{len(records(run))} records in {time.monotonic() - t0:.0f} s")
        for s in stations:   # hold the stations, so that everything published so far has arrived when checked
            assert d.call(PauseStation, f"/{s}/pause", reason="check").success
        d.spin_for(1.5)
        recs = records(run)
        keys = [(s, e) for _, s, e, _ in recs]
        assert len(keys) == len(set(keys)), [k for k, n in Counter(keys).items() if n > 1]
        assert all(k in rec.end_keys() for k in keys), set(keys) - rec.end_keys()  # a record only for an ended episode
        # exactly one command per observation the station stepped from, at most one for an episode's final
        # observation (the policy cannot tell it is final), and none for anything that is not an observation
        answered_final = 0
        for s in stations:
            assert all(len(v) == 1 for v in rec.steps[s].values()), "an observation named two episodes"
            twice = {k: v for k, v in rec.commands[s].items() if len(v) != 1}
            assert not twice, f"{s}: stamps answered more than once: {twice}"
            assert set(rec.commands[s]) <= set(rec.steps[s]), set(rec.commands[s]) - set(rec.steps[s])
            for eid, ends in rec.ends[s].items():
                assert len(ends) == 1, (s, eid, ends)
                end = ends[0]
                obs = {step: k for k, ((e, step),) in rec.steps[s].items() if e == eid}
                assert sorted(obs) == list(range(end.num_steps + 1)), (s, eid, end.num_steps, obs)
                unanswered = [step for step in range(end.num_steps) if obs[step] not in rec.commands[s]]
                assert not unanswered, f"{s}/{eid}: steps {unanswered} stepped without a command the test heard"
                answered_final += obs[end.num_steps] in rec.commands[s]
        data = EpisodeDataset(run / "episodes")
        per_station = Counter(e.metadata["station"] for e in data)
        assert set(per_station) == set(stations), per_station   # one policy, reward and trainer serve both
        not_whole = []
        for i, episode in enumerate(data):
            m = episode.metadata
            s, eid = m["station"], m["episode_id"]
            stamps = [tuple(int(x) for x in st) for st in episode.extras["stamps"]]
            where = f"episode {i} {s}/{eid} {m}, stamps {stamps}"
            assert m["policy_version"] == 0 and m["end_reason"] in ("timeout", "env_success"), where
            assert len(stamps) == episode.steps + 1 and episode.steps <= m["steps"], where
            assert ns_of(stamps[0]) == eid, where      # the episode id is its first observation's stamp
            assert [rec.steps[s].get(k) for k in stamps] == [{(eid, t)} for t in range(len(stamps))], \
                (where, [rec.steps[s].get(k) for k in stamps])    # every stored observation is this episode's
            for t, k in enumerate(stamps[:-1]):   # the action stored is the command the policy sent for that stamp
                sent = rec.commands[s].get(k)
                assert sent and len(sent) == 1, (where, t, sent)
                assert np.array_equal(np.float32(sent[0]), episode.actions[t]), (where, t, sent, episode.actions)
            tasks = rec.tasks[s].get(eid, [])
            assert tasks and {t.instruction for t in tasks} == {episode.instruction} and tasks[0].station == s, \
                (where, episode.instruction, [(t.episode_id, t.instruction) for t in tasks])
            end = rec.ends[s][eid][0]
            if m["dropped"] or episode.steps != end.num_steps or key_of(end.last_observation_stamp) != stamps[-1]:
                not_whole.append((where, end.num_steps, key_of(end.last_observation_stamp)))
        # consecutive episodes of a station may share an instruction; the join must still pick each one's own task
        instructions = {s: [rec.tasks[s][e][0].instruction for e in sorted(rec.tasks[s])] for s in stations}
        print({s: sum(a != b for a, b in zip(v, v[1:])) for s, v in instructions.items()}, "instruction changes;",
              f"{answered_final} final observations answered")
        # Lockstep with wait_for_score loses nothing on the way: every episode is stored whole, up to the final
        # observation its END names (an END handled before that observation's parts arrived must wait for them).
        unused = [r for w, _, _, r in recs if w == "unused"]
        assert not not_whole and not unused, f"not stored whole: {not_whole}; unused: {unused}"


def test_a_bridge_restart_replays_its_seeds_without_storing_an_episode_twice(tmp_path):
    """The bridge killed mid-episode and started again with the same parameters replays its seeds (the same
    tasks) under new episode ids: no (station, episode id) is stored twice and the trainer goes on storing."""
    tiny_checkpoint(tmp_path / "stage1", 0)
    tag = uuid.uuid4().hex[:6]
    station, estop = f"station_{tag}", f"/estop_{tag}"
    procs = [spawn(*bridge_args(station, estop, 3))] + [spawn(*a) for a in node_args(tmp_path, station)]
    d = Driver(f"/{station}", estop)
    rec = Recorder(d.node, [station])
    run = tmp_path / "run"
    stored = lambda ids: [e for w, _, e, _ in records(run) if w == "dataset" and e in ids]  # noqa: E731
    with graph(procs, d):
        assert d.spin_until(lambda: rec.wired([station]), timeout=60), "the graph never came up"
        rec.go([station])
        assert d.spin_until(lambda: len(stored(rec.tasks[station])) >= 4, timeout=90), summary(records(run))
        # kill it mid-episode: its newest observation is not an episode's first
        newest_step = lambda: min(rec.steps[station][max(rec.steps[station])])[1]  # noqa: E731
        assert d.spin_until(lambda: 1 <= newest_step() < 3, timeout=30)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        d.spin_for(1.0)   # what it sent before it died has arrived
        before = dict(rec.tasks[station])
        interrupted = max(before)
        n_before = len(records(run))
        procs.append(spawn(*bridge_args(station, estop, 3)))   # the same parameters: episode k has seed k again
        t0 = time.monotonic()
        after = lambda: {e: t for e, t in rec.tasks[station].items() if e not in before}  # noqa: E731
        ok = d.spin_until(lambda: len(stored(after())) >= 4, timeout=90)
        recs = records(run)
        assert ok, f"nothing stored after the restart: {summary(recs)}; tasks after {sorted(after())}"
        print(f"{len(stored(after()))} stored {time.monotonic() - t0:.0f} s after the restart; {n_before} before")
        keys = [(s, e) for _, s, e, _ in recs]
        assert len(keys) == len(set(keys)), [k for k, n in Counter(keys).items() if n > 1]
        first_old, first_new = before[min(before)][0], after()[min(after())][0]
        assert (first_new.seed, first_new.instruction) == (first_old.seed, first_old.instruction)   # replayed
        assert min(after()) > max(before)              # and yet a new episode id
        assert interrupted not in rec.ends[station] and (station, interrupted) not in keys   # it never ended
        # every record is one ended episode of one of the two bridges, stored under its own task
        assert set(keys) <= rec.end_keys(), set(keys) - rec.end_keys()
        for episode in EpisodeDataset(run / "episodes"):
            eid = episode.metadata["episode_id"]
            stamps = [tuple(int(x) for x in st) for st in episode.extras["stamps"]]
            assert ns_of(stamps[0]) == eid and episode.instruction == rec.tasks[station][eid][0].instruction, \
                (episode.metadata, stamps)
            assert [rec.steps[station].get(k) for k in stamps] == [{(eid, t)} for t in range(len(stamps))]


def test_a_trainer_restart_records_every_ended_episode_exactly_once(tmp_path):
    """The trainer killed while the station runs on, then started again on the same run directory: every
    episode whose END went out has exactly one record, those that ended while it was down included (from the
    `task` and `episode_event` history), and none recorded before the kill is recorded again."""
    tiny_checkpoint(tmp_path / "stage1", 0)
    tag = uuid.uuid4().hex[:6]
    station, estop = f"station_{tag}", f"/estop_{tag}"
    policy, reward, trainer = node_args(tmp_path, station)
    procs = [spawn(*bridge_args(station, estop, 3)), spawn(*policy), spawn(*reward), spawn(*trainer)]
    d = Driver(f"/{station}", estop)
    rec = Recorder(d.node, [station])
    run = tmp_path / "run"
    ends = lambda: sorted(e for e in rec.ends[station])  # noqa: E731

    def per_key():
        return Counter((s, e) for _, s, e, _ in records(run))

    with graph(procs, d):
        assert d.spin_until(lambda: rec.wired([station]), timeout=60), "the graph never came up"
        rec.go([station])
        assert d.spin_until(lambda: sum(w == "dataset" for w, *_ in records(run)) >= 3, timeout=90), \
            summary(records(run))
        dead = rec.subscriptions(station, "trainer")   # a killed process stays on the graph for a while
        assert len({t for t, _ in dead}) == 7, dead
        procs[3].send_signal(signal.SIGKILL)
        procs[3].wait()
        t_kill, recorded_before, ended_before = time.monotonic(), per_key(), set(ends())
        # the station runs on without a trainer: a few episodes end that no trainer saw
        assert d.spin_until(lambda: len(set(ends()) - ended_before) >= 4, timeout=60), ends()
        # then it holds while the new trainer starts: no more episodes end than `episode_event` keeps for it
        assert d.call(PauseStation, "pause", reason="the trainer restarts").success
        assert per_key() == recorded_before, "a record was written while the trainer was down"
        procs.append(spawn(*trainer))   # the same run directory: it reloads what it recorded
        trainer_topics = {t for t, _ in dead}
        assert d.spin_until(lambda: {t for t, _ in rec.subscriptions(station, "trainer") - dead} == trainer_topics,
                            timeout=90), "the restarted trainer never came up"
        assert d.call(ResumeStation, "resume", reason="the trainer is back").success
        down = set(ends()) - ended_before
        # it is back when it stores an episode it saw from the start
        assert d.spin_until(lambda: any(w == "dataset" and (s, e) not in recorded_before
                                        for w, s, e, _ in records(run)), timeout=90), summary(records(run))
        print(f"trainer down {time.monotonic() - t_kill:.0f} s; {len(down)} episodes ended meanwhile")
        # hold the station (no more episodes end), then give the trainer its 10 s wait for the ended episodes' parts
        assert d.call(PauseStation, "pause", reason="count the records").success
        seen = {(station, e) for e in ends()}
        ok = d.spin_until(lambda: seen <= set(per_key()), timeout=40)
        d.spin_for(2.0)   # nothing more comes: no second record of anything
        counts = per_key()
        assert ok, f"no record of {sorted(seen - set(counts))}; ended while the trainer was down {sorted(down)}; " \
                   f"records {summary(records(run))}"
        assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n > 1}
        assert set(counts) == seen, set(counts) - seen   # and no record of an episode that did not end
        missed = [r for w, s, e, r in records(run) if e in down]
        assert all(w == "unused" for w, s, e, _ in records(run) if e in down), missed
        print({r["episode_id"]: r["dropped"] for r in missed})
