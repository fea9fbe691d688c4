"""The sim bridge node: a MuJoCo station that looks like a robot driver on ROS 2.

Per station namespace (pushed from outside, e.g. /station_0):
  publishes  camera/image_raw (sensor_msgs/Image rgb8, reliable, depth 2)
             joint_states     (sensor_msgs/JointState, reliable, depth 10)
             episode_step     (EpisodeStep, reliable, depth 10: which episode and step each observation is)
             task             (Task, transient local, keep-last 32: one per episode)
             episode_event    (EpisodeEvent, transient local, keep-last 64: a START and an END per episode)
             status           (StationStatus, 2 Hz)
             sim/ground_truth (SimGroundTruth, reliable, depth 10: the simulator's block positions, goal
                               predicate and camera per observation, for recorded demos' training labels)
  subscribes joint_command    (sensor_msgs/JointState: the command; header.stamp = the observation it answers)
             steps_to_go      (StepsToGo: a detected success ends the episode)
             /estop           (EStop, transient local: halts every station)
  services   reset, pause, resume, abort

Modes: lockstep (the env steps when the command for the current observation
arrives: fast and deterministic; the observation is re-sent, same stamp, every
second while it waits) or realtime (fixed rate, zero-order hold of
the last command; a watchdog holds position when commands stop). Commands are
validated and clipped by the env before they reach the physics; an invalid
one is rejected and the robot holds.
"""
from __future__ import annotations

import sys

import numpy as np
from sensor_msgs.msg import Image, JointState

from sefm_core import episode_rules as rules
from sefm_interfaces.msg import EpisodeEvent, EpisodeStep, EStop, SimGroundTruth, StationStatus, StepsToGo, Task
from sefm_interfaces.srv import AbortEpisode, PauseStation, ResetStation, ResumeStation
from sefm_sim_bridge.params import BridgeParams
from sefm_ros.common import (EPISODE_EVENTS, EPISODES, LATCHED, SefmNode, node_names, ns_of, reliable, spin_main,
                             subscribe_from, time_of)
from sefm_sim.envs.validation import InvalidActionError
from sefm_sim.station import Station


class BridgeNode(SefmNode):
    PARAMETERS = BridgeParams

    def __init__(self, namespace: str = "", context=None, **overrides):
        super().__init__("sim_bridge", namespace, context, **overrides)
        p = self.params
        self.mode = p.mode
        self.station_name = p.station or self.get_namespace().strip("/") or "station"
        self.station = Station(p.station_config(), seed=p.seed)
        self.watchdog_timeout = p.watchdog_timeout

        self.image_pub = self.create_publisher(Image, "camera/image_raw", reliable(2))
        self.state_pub = self.create_publisher(JointState, "joint_states", reliable(10))
        self.step_pub = self.create_publisher(EpisodeStep, "episode_step", reliable(10))
        self.task_pub = self.create_publisher(Task, "task", EPISODES)
        self.event_pub = self.create_publisher(EpisodeEvent, "episode_event", EPISODE_EVENTS)
        self.status_pub = self.create_publisher(StationStatus, "status", reliable(1))
        # Only a station with privileged state advertises it: a recorder waits for every part it sees.
        self.truth_pub = (self.create_publisher(SimGroundTruth, "sim/ground_truth", reliable(10))
                          if self.station.has_ground_truth else None)
        self.create_subscription(JointState, "joint_command", self.on_command, reliable(10))
        subscribe_from(self, StepsToGo, "steps_to_go", self.on_steps_to_go, reliable(50), node_names(p.score_from))
        self.create_subscription(EStop, "/estop", self.on_estop, LATCHED)
        self.create_service(ResetStation, "reset", self.on_reset)
        self.create_service(PauseStation, "pause", self.on_pause)
        self.create_service(ResumeStation, "resume", self.on_resume)
        self.create_service(AbortEpisode, "abort", self.on_abort)

        self.state = StationStatus.STATE_RUNNING
        self.estopped = False
        self.episodes_done = self.env_successes = self.detected_successes = self.rejected = 0
        self.episode_id = 0   # the first observation's stamp (ns): unique across restarts and reruns
        self.last_command: tuple[np.ndarray, float] | None = None   # (values, receive time)
        self.obs_stamp_ns = 0
        self.steps = 0
        self.settle_left: int | None = None   # commands left after the success, while settling
        self.pending_command: np.ndarray | None = None   # lockstep + wait_for_score: the command waiting for its score
        self.scored_stamp_ns = -1
        self.message = ""
        self.started = False
        self.min_subscribers = p.min_subscribers
        self.create_timer(0.1, self.start_when_ready)
        if self.mode == "realtime":
            rate = p.rate_hz or self.station.env.metadata["render_fps"]
            self.create_timer(1.0 / rate, self.realtime_tick)
        else:
            self.create_timer(1.0, self.republish_if_waiting)
        self.create_timer(0.5, self.publish_status)

    # --- episodes ---------------------------------------------------------------------------

    def start_when_ready(self) -> None:
        if self.started or self.count_subscribers("camera/image_raw") < self.min_subscribers:
            return
        if self.truth_pub is not None and \
                self.count_subscribers("sim/ground_truth") < self.params.min_ground_truth_subscribers:
            return
        self.started = True
        self.start_episode()

    def start_episode(self, seed: int | None = None) -> None:
        self.station.reset(seed)
        self.steps = 0
        self.settle_left = None
        self.pending_command = None
        self.last_command = None
        stamp = self.next_stamp()
        self.episode_id = self.obs_stamp_ns
        task = Task(station=self.station_name, episode_id=self.episode_id, env_id=self.station.env_id,
                    family=self.station.family, instruction=self.station.instruction,
                    goal_json=self.station.goal_json, seed=self.station.seed,
                    max_steps=self.station.config.max_steps)
        task.header.stamp = stamp
        self.task_pub.publish(task)
        self.publish_event(EpisodeEvent.START, EpisodeEvent.OUTCOME_NONE, "")
        self.publish_observation(stamp)

    def end_episode(self, outcome: int, detail: str, restart: bool = True, seed: int | None = None) -> None:
        self.publish_event(EpisodeEvent.END, outcome, detail)
        self.episodes_done += 1
        if restart:
            self.start_episode(seed)

    def publish_event(self, kind: int, outcome: int, detail: str) -> None:
        event = EpisodeEvent(station=self.station_name, episode_id=self.episode_id, event=kind,
                             outcome=outcome, num_steps=self.steps, env_success=bool(self.station.info.get("success")),
                             env_success_known=True, detail=detail)
        event.header.stamp = self.get_clock().now().to_msg()
        event.last_observation_stamp = time_of(self.obs_stamp_ns)
        self.event_pub.publish(event)

    # --- observations -----------------------------------------------------------------------

    def next_stamp(self):
        """A stamp strictly later than the last observation's: the key every learning message joins on."""
        self.obs_stamp_ns = max(self.get_clock().now().nanoseconds, self.obs_stamp_ns + 1)
        return time_of(self.obs_stamp_ns)

    def republish_if_waiting(self) -> None:
        """Lockstep: send the current observation again (same stamp) while no command has come for it,
        so a policy that subscribed late, or missed the message, still gets to act."""
        if self.started and self.get_clock().now().nanoseconds - self.obs_stamp_ns > 1_000_000_000:
            self.publish_observation(time_of(self.obs_stamp_ns))

    def publish_observation(self, stamp) -> None:
        step = EpisodeStep(station=self.station_name, episode_id=self.episode_id, step=self.steps)
        step.header.stamp = stamp
        self.step_pub.publish(step)
        rgb = self.station.obs.get("rgb")
        if rgb is not None:
            image = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0,
                          step=rgb.shape[1] * 3, data=rgb.tobytes())
            image.header.stamp, image.header.frame_id = stamp, "camera"
            self.image_pub.publish(image)
        positions, velocities = self.station.state_vector()
        state = JointState(name=list(self.station.state_names), position=positions.tolist(),
                           velocity=[] if velocities is None else velocities.tolist())
        state.header.stamp = stamp
        # Only when someone records it: Stage 2's graph has no subscriber, and this is its hot path.
        truth = (self.station.ground_truth()
                 if self.truth_pub is not None and self.truth_pub.get_subscription_count() else None)
        if truth is not None:
            msg = SimGroundTruth(object_names=truth["names"], object_xy=truth["xy"].ravel().tolist(),
                                 goal_holds=truth["goal_holds"],
                                 world_to_image=np.ravel(truth["camera"]["projection"]).tolist(),
                                 object_z=float(truth["camera"]["block_z"]),
                                 effector_z=float(truth["camera"]["effector_z"]))
            msg.header.stamp, msg.header.frame_id = stamp, "world"
            self.truth_pub.publish(msg)
        self.state_pub.publish(state)

    # --- commands ---------------------------------------------------------------------------

    def on_command(self, msg: JointState) -> None:
        if self.mode == "realtime":
            self.last_command = (np.asarray(msg.position, dtype=np.float64), self.get_clock().now().nanoseconds)
            return
        if ns_of(msg.header.stamp) != self.obs_stamp_ns:
            return  # answers an older observation: lockstep waits for the current one
        command = np.asarray(msg.position, dtype=np.float64)
        if self.params.wait_for_score and self.scored_stamp_ns != self.obs_stamp_ns:
            self.pending_command = command   # applied when the observation's score arrives
            return
        self.apply(command)

    def realtime_tick(self) -> None:
        fresh = (self.last_command is not None and
                 (self.get_clock().now().nanoseconds - self.last_command[1]) * 1e-9 < self.watchdog_timeout)
        watchdog = "watchdog: no command for {:.1f} s, holding position".format(self.watchdog_timeout)
        if not fresh and self.message != watchdog:
            self.get_logger().warn(watchdog)
            self.message = watchdog
        elif fresh and self.message == watchdog:
            self.message = "commands resumed"
        self.apply(self.last_command[0] if fresh else self.station.hold_command())

    def apply(self, command: np.ndarray) -> None:
        if not self.started or self.estopped or self.state != StationStatus.STATE_RUNNING:
            return  # halted: nothing reaches the robot
        try:
            _, terminated, _, info = self.station.step(command)
        except InvalidActionError as exc:
            self.rejected += 1
            self.message = f"rejected command: {exc}"
            self.get_logger().error(self.message)
            return
        self.steps += 1
        if self.settle_left is not None:  # settling at the goal after the success
            if not info.get("success"):   # the goal stopped holding: end at the last observation where it held
                self.end_episode(EpisodeEvent.OUTCOME_ENV_SUCCESS, "the simulator's success predicate held")
                return
            self.settle_left -= 1
            self.publish_observation(self.next_stamp())
            if self.settle_left == 0:
                self.end_episode(EpisodeEvent.OUTCOME_ENV_SUCCESS, "the simulator's success predicate held")
        elif terminated and self.params.settle_steps > 0:
            self.env_successes += 1
            self.settle_left = self.params.settle_steps
            self.publish_observation(self.next_stamp())
        else:
            # the observation the action led to goes out even when it ends the episode: it is scored, and
            # its score is that last action's reward (as in `sefm practice`)
            self.publish_observation(self.next_stamp())
            outcome = rules.end_after_action(self.steps, self.station.config.max_steps, bool(info.get("success")),
                                             oracle_ends=True)
            if outcome == EpisodeEvent.OUTCOME_ENV_SUCCESS:
                self.env_successes += 1
                self.end_episode(outcome, "the simulator's success predicate held")
            elif outcome is not None:
                self.end_episode(outcome, f"step cap {self.station.config.max_steps}")

    def on_steps_to_go(self, msg: StepsToGo) -> None:
        if msg.episode_id != self.episode_id or ns_of(msg.observation_stamp) != self.obs_stamp_ns:
            return
        self.scored_stamp_ns = self.obs_stamp_ns
        if msg.success:   # the reward node applied the detector rule (episode_rules.detector_fires)
            self.detected_successes += 1
            if self.station.info.get("success"):
                self.env_successes += 1
            self.end_episode(EpisodeEvent.OUTCOME_SUCCESS_DETECTED,
                             f"steps-to-go {msg.expected_steps_to_go:.2f} <= {msg.success_threshold:.2f}")
        elif self.pending_command is not None:
            command, self.pending_command = self.pending_command, None
            self.apply(command)

    # --- operator -----------------------------------------------------------------------------

    def on_estop(self, msg: EStop) -> None:
        if msg.engaged and not self.estopped:
            self.estopped, self.state = True, StationStatus.STATE_ESTOPPED
            self.message = f"e-stop by {msg.source}: {msg.reason}"
            self.get_logger().warn(self.message)
            self.publish_event(EpisodeEvent.END, EpisodeEvent.OUTCOME_ESTOP, self.message)
        elif not msg.engaged and self.estopped:
            self.estopped, self.state = False, StationStatus.STATE_PAUSED  # resume is the operator's call
            self.message = "e-stop released; paused until resumed"
            if self.started:
                self.start_episode()

    def on_reset(self, request, response):
        if not self.started:
            response.success, response.message = False, "station not started yet (waiting for subscribers)"
            return response
        self.end_episode(EpisodeEvent.OUTCOME_OPERATOR_ABORT, f"reset: {request.reason}", seed=request.seed)
        response.success, response.message, response.episode_id = True, "new episode started", self.episode_id
        return response

    def on_pause(self, request, response):
        if self.estopped:
            response.success, response.message = False, "e-stop engaged"
        else:
            self.state, self.message = StationStatus.STATE_PAUSED, f"paused: {request.reason}"
            response.success, response.message = True, self.message
        return response

    def on_resume(self, request, response):
        if self.estopped:
            response.success, response.message = False, "e-stop engaged: release it first"
            return response
        self.state, self.message = StationStatus.STATE_RUNNING, f"resumed: {request.reason}"
        if self.started and self.mode == "lockstep":
            # a command that arrived while paused was not applied, and its sender will not answer that stamp
            # again: the current state goes out as a new observation for a fresh command
            self.pending_command = None
            self.publish_observation(self.next_stamp())
        response.success, response.message = True, self.message
        return response

    def on_abort(self, request, response):
        if not self.started:
            response.success, response.message = False, "station not started yet (waiting for subscribers)"
            return response
        aborted = self.episode_id
        if request.success:
            self.end_episode(EpisodeEvent.OUTCOME_OPERATOR_SUCCESS, f"operator: success {request.reason}".strip(),
                             restart=request.reset)
        else:
            self.end_episode(EpisodeEvent.OUTCOME_OPERATOR_ABORT, f"abort: {request.reason}", restart=request.reset)
        response.success, response.message, response.episode_id = True, "episode aborted", aborted
        return response

    def publish_status(self) -> None:
        if not self.started:
            return
        status = StationStatus(station=self.station_name, state=self.state, episode_id=self.episode_id,
                               step=self.steps, instruction=self.station.instruction,
                               episodes_done=self.episodes_done, env_successes=self.env_successes,
                               detected_successes=self.detected_successes,
                               message=self.message)
        status.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(status)

    def destroy_node(self):
        self.station.close()
        return super().destroy_node()


def main(argv=None) -> int:
    return spin_main(BridgeNode, argv)


if __name__ == "__main__":
    sys.exit(main())
