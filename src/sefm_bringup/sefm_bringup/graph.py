"""`sefm improve`: Stage 2 on a fleet of stations, started from one config.

    sefm improve --config improve.yaml [--checkpoint runs/sft/checkpoints/final] [--stations 2] [--processes per_node]

The graph: per station (/station_0, /station_1, ...) a simulated robot driver on its robot's contract, a
safety gate (the only path from the policy to the driver) and a station manager (observations, tasks,
episodes, resets); for the fleet one policy node and one reward node acting for all stations (batched), one
trainer, the e-stop latch, a lifecycle manager that brings the managed nodes up in order, a monitor that
prints every station's state, and with `operator: scripted` a scripted operator (simulation only) that answers
the stations' questions (`ask_above`: the detector fired but is unsure). Swapping the simulated driver for a
real one changes only the driver and the profile (`sefm_station/profiles`). `processes: single` puts all nodes
on one executor in this process (ROS 2 composition); `per_node` starts each node as its own process. Either
way they are real nodes on the DDS graph, and the launch files in launch/ start the same nodes from the same
config. The run stops after `versions` new policy versions (the practice budget).
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from sefm_core.config import ConfigError, add_flags, apply_flags, from_dict, load_yaml, setting
from sefm_core.stage2_config import ReinforceConfig
from sefm_sim.station import StationConfig
from sefm_station.params import OperatorSettings, StationManagerParams


@dataclass(frozen=True)
class ImproveConfig(StationConfig):
    """`sefm improve`'s config: every station's settings (StationConfig: env, blocks, families, image size, step
    cap) and the fleet's."""
    checkpoint: str = setting("", "Stage-1 checkpoint directory: policy version 0")
    reward_checkpoint: str = setting("", "frozen reward model (empty: the Stage-1 checkpoint)")
    run_dir: str = setting("runs/improve", "checkpoints, episodes and metrics of this run")
    stations: int = setting(2, "simulated stations in the fleet", low=1)
    seed: int | None = setting(None, "station 0's first practice seed (default: the seed plan's practice range; "
                                     "station i starts one block later, sefm_core.seeds)")
    mode: Literal["lockstep", "realtime"] = setting("lockstep", "lockstep: the simulated driver steps once per "
                                                    "command and the station waits for it (LanguageTable only); "
                                                    "realtime: the driver runs at the robot's rate, as a real one")
    drivers: Literal["sim", "external"] = setting("sim", "sim: start a simulated driver per station; external: "
                                                  "start none (a real or vendor driver already runs in each "
                                                  "station's namespace, e.g. Interbotix xs_sdk under "
                                                  "/station_0/follower_left)")
    profile: str = setting("", "the stations' robot profile (sefm_station/profiles: a name or a .yaml path; '' = the "
                               "simulated robot's: sim_language_table or sim_aloha)")
    sim_success_ends: bool = setting(False, "the simulator's goal predicate ends practice episodes (the station "
                                            "manager's end_on_sim_success) beside the detector and the step cap: "
                                            "a simulator-only stand-in for the detector")
    success_threshold: float = setting(1.0, "s of the detector d <= s (negative: detector off)")
    success_hold: int = setting(1, "k of the detector: d <= s on k observations in a row", low=1)
    ask_above: float = setting(StationManagerParams.ask_above, "a detected success with d above this asks the "
                               "operator instead of ending the episode (the station holds until answered); "
                               "negative: never ask")
    ask_every: int = setting(StationManagerParams.ask_every, "after the operator's \"not yet\", a station asks "
                             "again at the earliest this many observations later", low=1)
    operator: Literal["person", "scripted"] = setting("person", "who answers the stations' questions: a person "
                                                      "(`sefm operator`), or scripted (simulation only: the "
                                                      "simulator's verdict after a delay, with an error rate)")
    scripted_operator: OperatorSettings = field(default_factory=OperatorSettings)   # operator: scripted
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)   # the update (sefm_core.stage2_config)
    versions: int = setting(10, "budget: stop after this many new policy versions", low=1)
    rounds: bool = setting(False, "lockstep only: each version's batch runs as one round of the fleet (a station "
                                  "that would start an episode beyond it waits for the next version), so no "
                                  "episode is stale")
    processes: Literal["single", "per_node"] = setting("single", "all nodes in this process, or one per node")
    executor: Literal["single", "events"] = setting("single", "single process: SingleThreadedExecutor, or "
                                                    "rclpy's experimental EventsExecutor (less overhead)")
    batch_wait: float = setting(0.0, "seconds the policy and reward nodes wait for other stations' frames "
                                     "before a forward pass (0: by mode, 50 ms lockstep, 5 ms real time)", low=0.0)
    greedy: bool = setting(False, "act by the argmax (evaluation) instead of sampling (practice)")
    restarts: int = setting(3, "processes: per_node: a node process that exits is started again, up to this many "
                               "times per node (the lifecycle manager then configures and activates it); "
                               "beyond that the graph stops", low=0)

    def station_names(self) -> list[str]:
        return [f"station_{i}" for i in range(self.stations)]

    def station_seeds(self) -> list[int]:
        """Each station's first reset seed: its own block of the practice range (sefm_core.seeds)."""
        from sefm_core import seeds

        return seeds.station_seeds("practice", self.stations, self.versions * self.reinforce.episodes_per_batch,
                                   self.seed)

    def node_batch_wait(self) -> float:
        return self.batch_wait or (0.05 if self.mode == "lockstep" else 0.005)


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph: what the runner starts in-process or as a process, and a launch file as a Node."""
    package: str
    executable: str
    module: str            # python -m <module> runs it (the console script's module)
    name: str
    namespace: str         # "" or "/station_0", under the fleet namespace
    params: object         # the node's parameters dataclass
    remappings: tuple[tuple[str, str], ...] = ()

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else f"/{self.name}"


PROFILES = {"language_table": "sim_language_table", "aloha": "sim_aloha"}   # the simulated drivers' profiles


def station_specs(cfg: ImproveConfig, index: int, name: str, seed: int, ns: str) -> list[NodeSpec]:
    """One station: its simulated driver, its safety gate and its station manager (in that bring-up order)."""
    from sefm_drivers.params import AlohaDriverParams, LanguageTableDriverParams
    from sefm_station.params import GateParams, StationManagerParams

    lockstep = cfg.mode == "lockstep"
    estop = (("/estop", f"{ns}/estop"),) if ns else ()
    driver, driver_ns = None, ""
    if cfg.drivers == "external":
        driver_ns = "driver" if cfg.env == "language_table" else ""
    elif cfg.env == "language_table":
        # its camera/image_raw and joint_states are the manager's output names: the driver lives under driver/
        driver, driver_ns = NodeSpec(
            "sefm_drivers", "language_table_driver", "sefm_drivers.language_table_driver", "language_table_driver",
            f"{ns}/{name}/driver", LanguageTableDriverParams(block_mode=cfg.block_mode, families=cfg.families,
                                                             seed=seed, image_width=cfg.image_width,
                                                             image_height=cfg.image_height, lockstep=lockstep)), "driver"
    else:
        driver, driver_ns = NodeSpec(
            "sefm_drivers", "aloha_driver", "sefm_drivers.aloha_driver", "aloha_driver", f"{ns}/{name}",
            AlohaDriverParams(task=cfg.task, seed=seed, image_width=cfg.image_width,
                              image_height=cfg.image_height)), ""
    profile = cfg.profile or PROFILES[cfg.env]
    gate = GateParams(profile=profile, driver_namespace=driver_ns, sim_lockstep=lockstep)
    manager = StationManagerParams(profile=profile, driver_namespace=driver_ns, max_steps=cfg.max_steps,
                                   station_index=index, seed=seed, lockstep=lockstep, wait_for_score=lockstep,
                                   end_on_sim_success=cfg.sim_success_ends, ask_above=cfg.ask_above,
                                   ask_every=cfg.ask_every,
                                   sim_block_mode=cfg.block_mode if cfg.env == "language_table" else "",
                                   sim_families=cfg.families if cfg.env == "language_table" else "")
    return [*([driver] if driver else []),
            NodeSpec("sefm_station", "safety_gate", "sefm_station.safety_gate_node", "safety_gate", f"{ns}/{name}",
                     gate, estop),
            NodeSpec("sefm_station", "station_manager", "sefm_station.station_manager_node", "station_manager",
                     f"{ns}/{name}", manager, estop)]


def node_specs(cfg: ImproveConfig, namespace: str = "") -> list[NodeSpec]:
    """Every node of the graph with its parameters: the one list the runner and the launch files start.

    `namespace` pushes the whole fleet under it (two fleets on one ROS domain): the multi-station nodes use
    relative names, and the latched e-stop is remapped to the fleet's. The lifecycle manager comes last and
    brings the managed nodes up in order: the trainer, the reward node and the policy (models loaded), every
    safety gate, then every station manager (whose activation starts the episodes), so no episode starts
    before the nodes that act on it, score it and record it are active."""
    from sefm_policy.params import PolicyParams
    from sefm_reward.params import RewardParams
    from sefm_station.params import LatchParams, LifecycleManagerParams
    from sefm_trainer.params import TrainerParams

    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    stations = ",".join(cfg.station_names())
    trainer = TrainerParams(checkpoint=cfg.checkpoint, stations=stations, run_dir=cfg.run_dir,
                            max_versions=cfg.versions, rounds=cfg.rounds, **asdict(cfg.reinforce))
    reward = RewardParams(checkpoint=cfg.reward_checkpoint or cfg.checkpoint, stations=stations,
                          success_threshold=cfg.success_threshold, success_hold=cfg.success_hold,
                          batch_wait=cfg.node_batch_wait())
    policy = PolicyParams(checkpoint=cfg.checkpoint, stations=stations, greedy=cfg.greedy,
                          batch_wait=cfg.node_batch_wait(),
                          episodes_per_version=cfg.reinforce.episodes_per_batch if cfg.rounds else 0,
                          command_names="delta_x,delta_y" if cfg.env == "language_table" else "")
    specs = [NodeSpec("sefm_trainer", "trainer", "sefm_trainer.trainer_node", "trainer", ns, trainer),
             NodeSpec("sefm_reward", "reward", "sefm_reward.reward_node", "reward", ns, reward),
             NodeSpec("sefm_policy", "policy", "sefm_policy.policy_node", "policy", ns, policy)]
    estop = (("/estop", f"{ns}/estop"),) if ns else ()
    specs.append(NodeSpec("sefm_station", "estop_latch", "sefm_station.estop_latch_node", "estop_latch", ns,
                          LatchParams(), estop))
    stations_ = [station_specs(cfg, i, name, seed, ns)
                 for i, (name, seed) in enumerate(zip(cfg.station_names(), cfg.station_seeds()))]
    for station in stations_:
        specs += station
    if cfg.operator == "scripted":
        from sefm_station.params import ScriptedOperatorParams

        specs.append(NodeSpec("sefm_station", "scripted_operator", "sefm_station.scripted_operator_node",
                              "scripted_operator", ns, ScriptedOperatorParams(
                                  stations=stations, driver_namespace="driver" if cfg.env == "language_table" else "",
                                  **asdict(cfg.scripted_operator))))
    managed = [s.full_name for s in specs[:3]] + \
              [s.full_name for station in stations_ for s in station if s.executable == "safety_gate"] + \
              [s.full_name for station in stations_ for s in station if s.executable == "station_manager"]
    specs.append(NodeSpec("sefm_station", "lifecycle_manager", "sefm_station.lifecycle_manager_node",
                          "lifecycle_manager", ns, LifecycleManagerParams(nodes=",".join(managed))))
    return specs


def node_parameters(cfg: ImproveConfig) -> dict[str, dict]:
    """{full node name without the leading '/' (trainer, station_0/safety_gate, ...): parameter values} of the
    graph (node_specs)."""
    return {s.full_name.strip("/"): asdict(s.params) for s in node_specs(cfg)}


class Monitor:
    """The operator's view: every station's state, step, d, reward, and its episodes' outcomes: how many the
    learned detector ended, and (simulated stations) how many the simulator judged a success: a
    measurement beside the detector, not what ends practice episodes when the detector is on."""

    def __init__(self, node, stations: list[str]):
        from sefm_interfaces.msg import EpisodeEvent, PolicyVersion, StationStatus, StepsToGo
        from sefm_ros.common import EPISODE_EVENTS, LATCHED, reliable

        self.rows = {s: {"state": "-", "step": 0, "d": float("nan"), "reward": 0.0, "detected": 0, "oracle": 0,
                         "judged": 0, "episodes": 0, "asked": 0, "message": ""} for s in stations}
        self.seen: set[tuple[str, int]] = set()
        self.version = 0
        self.EpisodeEvent = EpisodeEvent
        for s in stations:
            node.create_subscription(StationStatus, f"/{s}/status", lambda m, s=s: self.on_status(s, m), reliable(5))
            node.create_subscription(StepsToGo, f"/{s}/steps_to_go", lambda m, s=s: self.on_score(s, m), reliable(50))
            node.create_subscription(EpisodeEvent, f"/{s}/episode_event", lambda m, s=s: self.on_event(s, m),
                                     EPISODE_EVENTS)
        node.create_subscription(PolicyVersion, "/policy/version", self.on_version, LATCHED)
        from std_msgs.msg import String

        self.bringup = {"state": "starting", "message": ""}   # the lifecycle manager's lifecycle_status
        node.create_subscription(String, "/lifecycle_status", self.on_bringup, LATCHED)
        self.state_names = {0: "idle", 1: "running", 2: "paused", 3: "E-STOP", 4: "fault"}

    def on_status(self, s, m):
        state = "ASKING" if m.asking_operator else self.state_names.get(m.state, "?")   # waits for an answer
        self.rows[s].update(state=state, step=m.step, message=m.message)

    def on_score(self, s, m):
        self.rows[s].update(d=m.expected_steps_to_go, reward=m.reward if m.has_reward else 0.0)

    def on_event(self, s, m):
        if m.event != self.EpisodeEvent.END or (s, m.episode_id) in self.seen:
            return   # (an END replayed from the topic's history is counted once)
        self.seen.add((s, m.episode_id))
        row = self.rows[s]
        row["episodes"] += 1
        row["detected"] += int(m.outcome == self.EpisodeEvent.OUTCOME_SUCCESS_DETECTED)
        row["asked"] += m.operator_asks
        if m.env_success_known:
            row["judged"] += 1
            row["oracle"] += int(m.env_success)

    def on_version(self, m):
        self.version = m.version

    def on_bringup(self, m):
        import json

        self.bringup = json.loads(m.data)

    @property
    def failed(self) -> str:
        """Why the bring-up failed ('' while it has not)."""
        return self.bringup["message"] if self.bringup["state"] == "failed" else ""

    def table(self) -> str:
        lines = [f"policy version {self.version}; bring-up {self.bringup['state']}",
                 f"{'station':<12}{'state':<9}{'episodes':>9}{'step':>6}{'d':>8}{'reward':>8}{'detected':>10}"
                 f"{'asked':>7}{'sim success':>13}  message"]
        for s, r in self.rows.items():
            oracle = f"{r['oracle']}/{r['judged']}" if r["judged"] else "-"
            lines.append(f"{s:<12}{r['state']:<9}{r['episodes']:>9}{r['step']:>6}{r['d']:>8.2f}{r['reward']:>8.2f}"
                         f"{r['detected']:>10}{r['asked']:>7}{oracle:>13}  {r['message'][:40]}")
        return "\n".join(lines)


def make_executor(kind: str, context):
    """The executor that spins a whole graph in one process."""
    if kind == "events":
        from rclpy.experimental import EventsExecutor
        return EventsExecutor(context=context)
    from rclpy.executors import SingleThreadedExecutor
    return SingleThreadedExecutor(context=context)


def write_seeds(cfg: ImproveConfig) -> None:
    """<run_dir>/seeds.json: the practice seeds each station draws from (reports state them)."""
    import json
    import pathlib

    from sefm_core import seeds

    run = pathlib.Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    count = cfg.versions * cfg.reinforce.episodes_per_batch
    (run / "seeds.json").write_text(json.dumps(seeds.describe({"practice": [(s, count) for s in cfg.station_seeds()]})))


def run_single_process(cfg: ImproveConfig, log=print) -> int:
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    nodes = [node_class(spec)(namespace=spec.namespace, context=context, **asdict(spec.params))
             for spec in node_specs(cfg)]
    trainer = nodes[0]
    monitor_node = rclpy.create_node("sefm_monitor", context=context)
    monitor = Monitor(monitor_node, cfg.station_names())
    executor = make_executor(cfg.executor, context)
    for node in nodes + [monitor_node]:
        executor.add_node(node)
    last_print = 0.0
    try:
        while trainer.version < cfg.versions:
            executor.spin_once(timeout_sec=0.01)
            if monitor.failed:
                log(f"bring-up failed: {monitor.failed}; stopping the graph")
                return 1
            if time.monotonic() - last_print > 2.0:
                log(monitor.table() + "\n")
                last_print = time.monotonic()
        end = time.monotonic() + 1.0  # let the monitor hear the last version and events
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        log(monitor.table())
        log(f"reached policy version {trainer.version}; run directory {cfg.run_dir}")
        executor.shutdown()
        for node in nodes + [monitor_node]:
            node.destroy_node()
        rclpy.shutdown(context=context)
    return 0


def node_class(spec: NodeSpec):
    """The node class behind a spec (its module's node class; imported here, so configs load without torch)."""
    import importlib

    module = importlib.import_module(spec.module)
    return next(v for v in vars(module).values()
                if isinstance(v, type) and getattr(v, "PARAMETERS", None) is type(spec.params))


def node_command(spec: NodeSpec, params_path) -> list[str]:
    """The command line of a node as its own process: its parameters from the graph's params file."""
    args = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        args += ["-r", f"__ns:={spec.namespace}"]
    for old, new in spec.remappings:
        args += ["-r", f"{old}:={new}"]
    return args + ["--params-file", str(params_path)]


def run_per_node(cfg: ImproveConfig, log=print) -> int:
    import pathlib

    import rclpy
    import rclpy.executors

    from sefm_ros.parameters import params_file

    specs = node_specs(cfg)
    # one params file for the graph, `node: ros__parameters:` per node (also a record of what ran)
    path = params_file(pathlib.Path(cfg.run_dir) / "params.yaml", {s.full_name: s.params for s in specs})
    procs: list[subprocess.Popen] = []
    context = node = executor = None
    # `kill` (SIGTERM) stops the graph like Ctrl-C does: the node processes are terminated with it, never orphaned
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        procs += [subprocess.Popen(node_command(s, path)) for s in specs]
        restarts = [0] * len(specs)
        context = rclpy.Context()
        rclpy.init(context=context, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
        node = rclpy.create_node("sefm_monitor", context=context)
        monitor = Monitor(node, cfg.station_names())
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        last_print = 0.0
        while monitor.version < cfg.versions:
            executor.spin_once(timeout_sec=0.1)
            for i, p in enumerate(procs):
                if p.poll() is None:
                    continue
                if restarts[i] >= cfg.restarts:
                    log(f"{specs[i].full_name} exited with code {p.returncode} ({restarts[i]} restarts); "
                        "stopping the graph")
                    return 1
                restarts[i] += 1
                log(f"{specs[i].full_name} exited with code {p.returncode}: starting it again "
                    f"(restart {restarts[i]} of {cfg.restarts})")
                procs[i] = subprocess.Popen(node_command(specs[i], path))
            if monitor.failed:
                log(f"bring-up failed: {monitor.failed}; stopping the graph")
                return 1
            if time.monotonic() - last_print > 2.0:
                log(monitor.table() + "\n")
                last_print = time.monotonic()
        log(monitor.table())
        log(f"reached policy version {monitor.version}; run directory {cfg.run_dir}")
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        terminate(procs)
        if executor is not None:
            executor.shutdown()
            node.destroy_node()
        if context is not None and context.ok():
            rclpy.shutdown(context=context)
    return 0


def terminate(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """Ask every node process to stop (SIGTERM), then kill the ones still running after `grace` seconds."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()


def load_config(path: str | None, overrides: dict) -> ImproveConfig:
    """The config file (if any) with the given flags on top, checked as a whole."""
    cfg = from_dict(ImproveConfig, apply_flags(load_yaml(path) if path else {}, overrides), path or "improve")
    if not cfg.checkpoint:
        raise ConfigError("a Stage-1 checkpoint is required (checkpoint: in the config, or --checkpoint)")
    if min(cfg.stations, cfg.versions, cfg.max_steps, cfg.image_width, cfg.image_height) < 1:
        raise ConfigError("stations, versions, max_steps and the image size must be at least 1")
    try:
        cfg.reinforce.check()
    except ValueError as exc:
        raise ConfigError(f"reinforce: {exc}") from None
    if cfg.batch_wait < 0:
        raise ConfigError(f"batch_wait={cfg.batch_wait}: seconds, at least 0 (0: by mode)")
    from sefm_core.seeds import SeedPlanError

    try:
        cfg.station_seeds()
    except SeedPlanError as exc:
        raise ConfigError(f"practice seeds: {exc}") from None
    if cfg.drivers == "external" and (cfg.mode == "lockstep" or cfg.sim_success_ends):
        raise ConfigError("drivers: external (a real robot) runs in mode: realtime, without sim_success_ends")
    if cfg.env == "aloha" and cfg.mode == "lockstep":
        raise ConfigError("mode: lockstep needs a lockstep simulated driver; the simulated ALOHA runs in real time "
                          "(mode: realtime)")
    if cfg.ask_above >= 0 and not 0 <= cfg.ask_above < cfg.success_threshold:
        raise ConfigError(f"ask_above={cfg.ask_above:g}: the station asks when the detector fires (d <= "
                          f"success_threshold={cfg.success_threshold:g}) with d above ask_above, so it must lie "
                          "below success_threshold (negative: never ask)")
    if cfg.operator == "scripted" and cfg.drivers != "sim":
        raise ConfigError("operator: scripted reads the simulator's verdict: it needs drivers: sim (a real "
                          "station's questions go to a person at `sefm operator`)")
    if cfg.rounds and cfg.mode != "lockstep":
        raise ConfigError("rounds: true needs mode: lockstep (a real-time station cannot wait for a version)")
    return cfg


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sefm improve", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML with ImproveConfig fields (flags override it)")
    add_flags(parser, ImproveConfig)
    args = vars(parser.parse_args(argv))
    config_path = args.pop("config")
    try:
        cfg = load_config(config_path, args)
    except ConfigError as exc:
        print(f"sefm improve: {exc}", file=sys.stderr)
        return 2
    write_seeds(cfg)
    return run_single_process(cfg) if cfg.processes == "single" else run_per_node(cfg)


if __name__ == "__main__":
    sys.exit(main())
