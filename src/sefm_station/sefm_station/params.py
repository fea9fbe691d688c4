"""The station layer nodes' parameters (ROS-free: a launch file or the graph runner builds the same dataclass)."""
from __future__ import annotations

from dataclasses import dataclass

from sefm_core.config import ManagedParams, setting


@dataclass(frozen=True)
class GateParams(ManagedParams):
    profile: str = setting("sim_aloha", "robot profile: a shipped name (sim_aloha, aloha_ros2_interbotix, "
                                        "sim_language_table, ros2_control_arm) or a path to a .yaml file")
    station: str = setting("", "station name in the status (default: the node's namespace)")
    command_topic: str = setting("joint_command", "the policy's target (sensor_msgs/JointState: name + position)")
    driver_namespace: str = setting("", "where the driver's joint states and command topics live, relative to the "
                                        "station ('' = the station's own namespace)")
    sim_lockstep: bool = setting(False, "the driver is a lockstep simulator (simulated time stands still between "
                                        "commands): no watchdog hold (it would advance the simulation a step) and "
                                        "no ramp-in (wall time is not the robot's time there); never on a robot")
    status_period: float = setting(1.0, "publish safety_status (std_msgs/String, JSON counters) this often (s)",
                                   low=0.01)
    log_throttle: float = setting(2.0, "at most one log line per refusal reason this often (s)", low=0.0)


@dataclass(frozen=True)
class StationManagerParams(ManagedParams):
    """The station manager's parameters. A value left at its default ('' or 0) takes the profile's `station:`
    section (sefm_station.profiles.StationSettings)."""
    profile: str = setting("sim_language_table", "robot profile: a shipped name or a path to a .yaml file")
    station: str = setting("", "station name in messages (default: the node's namespace)")
    driver_namespace: str = setting("", "where the driver's topics and sim/reset live, relative to the station "
                                        "('' = the station's own namespace; a LanguageTable driver, whose "
                                        "camera/image_raw and joint_states are the manager's output names, runs "
                                        "under `driver`)")
    image_topic: str = setting("camera/image_raw", "output: the observation's camera frame (sensor_msgs/Image "
                                                   "rgb8), the topic the policy, reward and trainer read")
    joint_states_topic: str = setting("joint_states", "output: the observation's joint state (sensor_msgs/"
                                                      "JointState, the profile's observation order)")
    camera: str = setting("", "which of the profile's cameras is the observation's ('' = the first)")
    policy_rate_hz: float = setting(0.0, "observations per second while an episode runs (0 = the profile's)",
                                    low=0.0)
    stale_timeout: float = setting(0.0, "input staleness that faults the station, s (0 = the profile's)", low=0.0)
    max_steps: int = setting(0, "step cap (0 = the profile's)", low=0)
    tasks: str = setting("", "task source: sim or list ('' = the profile's)")
    instructions: str = setting("", "tasks list: the instructions, separated by '|' ('' = the profile's)")
    resets: str = setting("", "reset mode: sim, operator or none ('' = the profile's)")
    sim_block_mode: str = setting("", "tasks sim: the simulated LanguageTable driver's block_mode ('' = the "
                                      "profile's station.sim_block_mode)")
    sim_families: str = setting("", "tasks sim: the driver's comma-separated instruction families ('' = the "
                                    "profile's station.sim_families)")
    new_frame_only: bool = setting(True, "an observation only with a camera frame not used before: a tick that "
                                         "finds none waits for the next frame (no repeated frames; a camera "
                                         "slower than the policy rate sets the rate); false: the newest frame "
                                         "at every tick")
    score_from: str = setting("reward", "accept steps_to_go only from nodes of these names (comma-separated; "
                                        "'' = from any node): a check of the publisher's node name, not "
                                        "authentication (SROS2 enclaves with DDS security are that)")
    gate_status: str = setting("safety_status", "the station's safety gate status (std_msgs/String JSON, latched): "
                                                "a new episode starts only while the gate passes commands ('' = "
                                                "no gate to wait for)")
    lockstep: bool = setting(False, "a lockstep simulated driver (one step per command): an observation goes out "
                                    "as soon as the driver's next frame and joint states (and with "
                                    "wait_for_score the current observation's score) are in, not on a timer; "
                                    "inputs are not stale while the driver waits for a command; the current "
                                    "observation is sent again every second while nothing new comes")
    wait_for_score: bool = setting(False, "lockstep: the next observation waits for the current one's score, so "
                                          "a slow reward node never falls behind and a detected success is never "
                                          "stepped past")
    end_on_sim_success: bool = setting(False, "tasks sim: the simulator's goal predicate (sim/ground_truth) ends "
                                              "the episode after the action that reached it (ENV_SUCCESS): the "
                                              "simulator standing in for the success detector, which a real "
                                              "station cannot have")
    ask_above: float = setting(-1.0, "a detected success whose steps-to-go is above this asks the operator instead "
                                     "of ending the episode: the station holds until the operator's abort "
                                     "(success or failure) or resume (not yet); negative: never ask")
    ask_every: int = setting(10, "after the operator's \"not yet\", ask again at the earliest this many observations "
                                 "later (unsure detections before that are let pass)", low=1)
    station_index: int = setting(0, "this station's block of the practice seed range (sefm_core.seeds)", low=0)
    seed: int = setting(-1, "sim resets: the first episode's seed (-1 = the first of the station's practice "
                            "block); episode k uses seed + k", low=-1)
    status_period: float = setting(0.5, "publish `status` this often (s)", low=0.01)
    reset_timeout: float = setting(10.0, "sim resets: the driver's sim/reset must answer, and its first "
                                         "observation after the reset arrive, within this (s), else a fault",
                                   low=0.1)

    def score_sources(self) -> frozenset[str]:
        return frozenset(n.strip().strip("/") for n in self.score_from.split(",") if n.strip())

    def family_list(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.sim_families.split(",") if f.strip())

    def instruction_list(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.instructions.split("|") if t.strip())

    def check(self) -> None:
        if self.tasks not in ("", "sim", "list"):
            raise ValueError(f"tasks: {self.tasks!r} is not one of sim, list")
        if self.resets not in ("", "sim", "operator", "none"):
            raise ValueError(f"resets: {self.resets!r} is not one of sim, operator, none")
        if self.sim_block_mode not in ("", "BLOCK_4", "BLOCK_8", "N_CHOOSE_K", "BANANA"):
            raise ValueError(f"sim_block_mode: {self.sim_block_mode!r} is not one of BLOCK_4, BLOCK_8, N_CHOOSE_K, "
                             "BANANA")


@dataclass(frozen=True)
class OperatorSettings:
    """How the scripted operator (simulation only) answers a station's question."""
    operator_delay: float = setting(2.0, "scripted operator: seconds it takes to answer (a person looking at the "
                                         "scene)", low=0.0)
    operator_error_rate: float = setting(0.0, "scripted operator: the chance that an answer is wrong (success <-> "
                                              "not yet)", low=0.0, high=1.0)
    operator_seed: int = setting(0, "scripted operator: the seed of its mistakes", low=0)


@dataclass(frozen=True)
class ScriptedOperatorParams(OperatorSettings):
    stations: str = setting("station_0", "the stations it supervises (comma-separated, relative names)")
    driver_namespace: str = setting("driver", "where each station's simulated driver publishes sim/ground_truth, "
                                              "relative to the station ('' = the station's namespace)")


@dataclass(frozen=True)
class LatchParams:
    state_file: str = setting("", "keep the last e-stop state in this JSON file too (read at start, written on "
                                  "every change; '' = in memory only)")
    engaged_at_start: bool = setting(False, "with no state file to read: start engaged (a fleet that must be "
                                            "released by the operator before anything moves)")


@dataclass(frozen=True)
class LifecycleManagerParams:
    nodes: str = setting("", "comma-separated managed nodes in bring-up order (relative to this node's "
                              "namespace unless absolute)")
    timeout: float = setting(60.0, "a node must offer its lifecycle services, and answer a transition, within "
                                   "this many seconds (s)", low=0.1)
    retry: float = setting(2.0, "ask a node again when its lifecycle service has not answered in this many seconds "
                                "(s): a request sent as soon as a service is discovered can lose its answer", low=0.05)
    status_period: float = setting(1.0, "publish lifecycle_status this often (s)", low=0.01)
    supervise_period: float = setting(1.0, "after bring-up, ask every node its state this often (s): a node that "
                                           "came back unconfigured (restarted by its launcher) is configured and "
                                           "activated again; 0 = no supervision", low=0.0)

    def node_list(self) -> list[str]:
        return [n.strip() for n in self.nodes.split(",") if n.strip()]

    def check(self) -> None:
        names = self.node_list()
        if len(set(names)) != len(names):
            raise ValueError(f"nodes: {self.nodes!r} names a node twice")
