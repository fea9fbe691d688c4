"""The station manager: a lifecycle node per station, robot-agnostic (console script `station_manager`).

It turns a robot driver's own topics into the learning layer's observations and runs the station's episodes
(the role the sim bridge played as driver and station at once). Per station namespace (pushed from outside);
the driver's names are the profile's, under `driver_namespace` ('' = the station's namespace):

  subscribes <driver>/<camera topic>      sensor_msgs/Image (rgb8 or bgr8), best effort depth 2 (matches a
                                          reliable or a best-effort camera), the profile's camera (`camera`)
             <driver>/<arm state_topic>   sensor_msgs/JointState of every arm of the profile, reliable depth 10
             steps_to_go                  StepsToGo: a success for the current observation ends the episode,
                                          or with d above `ask_above` asks the operator (ASK; the station
                                          holds until abort or resume answers; `score_from`: only from
                                          publishers with these node names)
             /estop                       EStop, latched
             safety_status                the station's safety gate (`gate_status`, std_msgs/String JSON,
                                          latched): a new episode starts only while the gate passes commands
             <driver>/sim/ground_truth    SimGroundTruth (tasks: sim only): checks the scene, env_success
  publishes  camera/image_raw  (`image_topic`)        sensor_msgs/Image rgb8, reliable depth 2 } one stamp per
             joint_states      (`joint_states_topic`) sensor_msgs/JointState, reliable depth 10 } observation,
             episode_step      EpisodeStep, reliable depth 10                                   } new, increasing
             task              Task, transient local keep-last 32 (one per episode, before its START)
             episode_event     EpisodeEvent, transient local keep-last 64 (START, END with its outcome and
                               how often it asked the operator, ASK, LABEL: the operator's "not yet")
             status            StationStatus, reliable depth 1, every `status_period` (0.5 s)
  services   reset (ResetStation), pause (PauseStation), resume (ResumeStation), abort (AbortEpisode: with
             success=true the operator's success mark, OPERATOR_SUCCESS; success=false the failure mark, an
             OPERATOR_ABORT; reset=false leaves the station idle until `reset`)
  client     <driver>/sim/reset (ResetStation; resets: sim)

An observation: at the policy rate, while an episode runs, the newest camera frame and the newest joint state
of every arm go out with ONE new header stamp (strictly increasing), the joint state in the profile's
observation order (`Profile.observation_names`: ALOHA the 14 command values, per arm 6 joints then the gripper
normalised 0..1 from `left_finger` with the profile's gripper constants; LanguageTable the driver's 4 values
effector_x, effector_y, target_x, target_y). A frame or joint state counts as new when its driver stamp
changes; with `new_frame_only` (default) a frame goes out in one observation only: a tick that finds no new
frame publishes when the next one arrives (no repeated frames; a slower camera sets the rate). None new within
`stale_timeout` -> the station faults (a running episode ends as FAULT) and `status`
says which input; fresh inputs clear the fault. A failed sim reset (no `sim/reset` service, no answer or no
observation after it within `reset_timeout`, a refusal, or a scene that differs from the manager's copy) faults
the station until the operator's `reset`. The episode logic is `sefm_station.episodes`.

Lockstep (`lockstep`, a simulated driver that steps once per command): no timer paces the observations;
the next goes out as soon as the driver's new frame and every arm's joint state of that step are in (with
`wait_for_score` also the current observation's score; with `end_on_sim_success` the simulator's verdict on
the frame), the inputs are not stale while the driver waits, and the current observation is re-sent (same
stamp) every second while nothing new comes. `end_on_sim_success` (tasks: sim) ends an episode after the
action that made the simulator's goal predicate hold (ENV_SUCCESS). A new episode starts only while the
station's safety gate passes commands (`gate_status`).

Recommended layout: the manager in `/<station>`, the driver where its names cannot meet the manager's
outputs. ALOHA's topics (`follower_*/joint_states`, `cam_high/camera/color/image_rect_raw`) do not: the driver
can share the station's namespace. A LanguageTable driver publishes `camera/image_raw` and `joint_states`
itself: run it under `/<station>/driver` and the manager with `driver_namespace:=driver` (the safety gate then
with its namespace or remaps pointing at the driver's topics and the policy's `/<station>/joint_command`).

Lifecycle: configure loads the profile and makes the topics, services and timers (a bad profile or setting
fails the transition with its reason); activate starts episodes; deactivate ends a running episode as an
operator abort and stops observations; cleanup removes it all.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from sefm_core import episode_rules as rules
from sefm_core.seeds import SeedPlanError
from sefm_interfaces.msg import EpisodeEvent, EpisodeStep, EStop, SimGroundTruth, StationStatus, StepsToGo, Task
from sefm_interfaces.srv import AbortEpisode, PauseStation, ResetStation, ResumeStation
from sefm_ros.common import EPISODE_EVENTS, EPISODES, LATCHED, ns_of, reliable, spin_main, subscribe_from, time_of
from sefm_station.episodes import End, Episodes, ListTasks, SimLanguageTableTasks, TaskInfo, practice_seed
from sefm_station.managed import StationNode
from sefm_station.params import StationManagerParams
from sefm_station.profiles import Profile, ProfileError, load_profile

INPUT_FAULT = "no new data from"        # faults the inputs clear themselves when they are fresh again
BAD_INPUT = "unusable driver data:"
WAITING = "waiting for the driver:"
CAMERA_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.BEST_EFFORT)


class Input:
    """The newest message of one driver topic and when a message with a new stamp last arrived."""

    def __init__(self, name: str):
        self.name, self.msg, self.stamp_ns, self.received = name, None, -1, 0.0

    def put(self, msg) -> None:
        stamp = ns_of(msg.header.stamp)
        if stamp != self.stamp_ns:
            self.msg, self.stamp_ns, self.received = msg, stamp, time.monotonic()


def rgb8(msg: Image) -> Image:
    """A copy of a camera frame as rgb8 (bgr8 swapped); its header is set by the caller."""
    if msg.encoding == "rgb8":
        return Image(height=msg.height, width=msg.width, encoding="rgb8", is_bigendian=0, step=msg.step,
                     data=msg.data)
    if msg.encoding == "bgr8":
        rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        rgb = rows[:, :msg.width * 3].reshape(msg.height, msg.width, 3)[..., ::-1]
        return Image(height=msg.height, width=msg.width, encoding="rgb8", is_bigendian=0, step=msg.width * 3,
                     data=np.ascontiguousarray(rgb).tobytes())
    raise ValueError(f"camera encoding {msg.encoding!r}: the station takes rgb8 or bgr8")


class StationManagerNode(StationNode):
    PARAMETERS = StationManagerParams

    def __init__(self, namespace: str = "", context=None, **overrides):
        self.profile: Profile | None = None
        self.episodes: Episodes | None = None
        self.tasks = None
        self.active = False
        self.obs_ns = 0
        super().__init__("station_manager", namespace, context, **overrides)

    # --- lifecycle ------------------------------------------------------------------------------------

    def on_configure(self, state) -> TransitionCallbackReturn:
        p = self.params
        try:
            self.profile = profile = load_profile(p.profile)
            st = profile.station
            self.rate = p.policy_rate_hz or st.policy_rate_hz
            self.stale_timeout = p.stale_timeout or st.stale_timeout
            self.max_steps = p.max_steps or st.max_steps
            self.task_source = p.tasks or st.tasks
            resets = p.resets or st.resets
            if self.task_source == "sim" and resets != "sim":
                raise ProfileError("tasks: sim comes from the reset seed: it needs resets: sim")
            if p.end_on_sim_success and self.task_source != "sim":
                raise ProfileError("end_on_sim_success reads the simulator's goal predicate: it needs tasks: sim")
            cameras = [c for c in profile.cameras if not p.camera or c.name == p.camera]
            if not cameras:
                raise ProfileError(f"camera {p.camera!r}: the profile {profile.name} has "
                                   f"{[c.name for c in profile.cameras] or 'no cameras'}")
            self.camera = cameras[0]
            env_id = st.env_id or profile.name
            first_seed = practice_seed(p.station_index, p.seed) if resets == "sim" else 0
            if self.task_source == "sim":
                self.tasks = SimLanguageTableTasks(p.sim_block_mode or st.sim_block_mode,
                                                   p.family_list() or st.sim_families, st.env_id)
            else:
                self.tasks = ListTasks(p.instruction_list() or st.instructions, env_id)
            self.episodes = Episodes(self.max_steps, resets, first_seed, p.ask_above, p.ask_every)
        except (ProfileError, SeedPlanError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            if self.tasks is not None and hasattr(self.tasks, "close"):
                self.tasks.close()
            self.tasks = self.episodes = None
            return TransitionCallbackReturn.FAILURE
        self.names = list(profile.observation_names())
        self.image_in = Input(self.camera.topic)
        self.arm_in = [Input(arm.state_topic) for arm in profile.arms]
        self.task: TaskInfo | None = None
        self.pending_task: TaskInfo | None = None
        self.reset_future = None
        self.reset_started = 0.0
        self.reset_stamp_ns: int | None = None   # the sim reset's first observation: inputs must be this new
        self.truth: dict[int, SimGroundTruth] = {}
        self.last_frame_ns = 0                   # the driver stamp of the frame of the last observation
        self.due = False                         # new_frame_only: a tick is waiting for a new frame
        self.env_successes = 0
        self.lockstep = p.lockstep
        self.end_on_sim_success = p.end_on_sim_success
        self.scored_ns = -1                      # the observation whose score arrived last (lockstep)
        self.last_sent: tuple | None = None      # the last observation's messages, sent again while waiting
        self.sent_at = 0.0

        self.image_pub = self.create_publisher(Image, p.image_topic, reliable(2))
        self.state_pub = self.create_publisher(JointState, p.joint_states_topic, reliable(10))
        self.step_pub = self.create_publisher(EpisodeStep, "episode_step", reliable(10))
        self.task_pub = self.create_publisher(Task, "task", EPISODES)
        self.event_pub = self.create_publisher(EpisodeEvent, "episode_event", EPISODE_EVENTS)
        self.status_pub = self.create_publisher(StationStatus, "status", reliable(1))
        self.entities = [self.image_pub, self.state_pub, self.step_pub, self.task_pub, self.event_pub,
                         self.status_pub]
        self.entities.append(self.create_subscription(Image, self.driver_topic(self.camera.topic),
                                                      self.on_image, CAMERA_QOS))
        for arm, box in zip(profile.arms, self.arm_in):
            self.entities.append(self.create_subscription(JointState, self.driver_topic(arm.state_topic),
                                                          lambda msg, box=box: self.on_state(box, msg),
                                                          reliable(10)))
        self.score_sub = subscribe_from(self, StepsToGo, "steps_to_go", self.on_steps_to_go, reliable(50),
                                        p.score_sources())   # score_from: only those nodes may end an episode
        self.entities.append(self.score_sub)
        self.entities.append(self.create_subscription(EStop, "/estop", self.on_estop, LATCHED))
        self.gate_state = "" if p.gate_status else "active"   # no gate to wait for: as if it passed commands
        if p.gate_status:
            self.entities.append(self.create_subscription(String, p.gate_status, self.on_gate_status, LATCHED))
        if self.task_source == "sim":
            self.entities.append(self.create_subscription(SimGroundTruth, self.driver_topic("sim/ground_truth"),
                                                          self.on_truth, reliable(10)))
        self.reset_client = self.create_client(ResetStation, self.driver_topic("sim/reset")) \
            if resets == "sim" else None
        if self.reset_client is not None:
            self.entities.append(self.reset_client)
        if self.lockstep and resets != "sim":
            self.get_logger().warning("lockstep without sim resets: the driver must step once per command")
        for kind, name, callback in ((ResetStation, "reset", self.on_reset), (PauseStation, "pause", self.on_pause),
                                     (ResumeStation, "resume", self.on_resume),
                                     (AbortEpisode, "abort", self.on_abort)):
            self.entities.append(self.create_service(kind, name, callback))
        self.tick_timer = self.create_timer(1.0 / self.rate, self.on_tick)
        self.entities.append(self.tick_timer)
        self.entities.append(self.create_timer(p.status_period, self.publish_status))
        self.get_logger().info(
            f"configured with profile {profile.name}: {self.rate:g} Hz, step cap {self.max_steps}, tasks "
            f"{self.task_source}, resets {resets}, camera {self.driver_topic(self.camera.topic)}, arms "
            f"{[self.driver_topic(a.state_topic) for a in profile.arms]}, "
            + ("lockstep: one observation per driver step" if self.lockstep else
               f"stale after {self.stale_timeout:g} s"))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.active = True
        if self.reset_started:   # a sim reset made before a deactivation: its time runs from now
            self.reset_started = time.monotonic()
        self.get_logger().info("active: running episodes")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.publish_end(self.episodes.end(rules.OPERATOR_ABORT, "station manager deactivated"))
        self.active = False
        self.publish_status()
        return super().on_deactivate(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        if self.episodes is not None and self.active:
            self.publish_end(self.episodes.end(rules.OPERATOR_ABORT, "station manager shut down"))
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    def _forget(self) -> None:
        if self.tasks is not None and hasattr(self.tasks, "close"):
            self.tasks.close()
        self.tasks = self.episodes = None
        self.active = False

    # --- inputs ---------------------------------------------------------------------------------------

    def on_image(self, msg: Image) -> None:
        self.image_in.put(msg)
        if self.lockstep:
            self.advance()
        elif self.due and self.image_in.stamp_ns != self.last_frame_ns:
            self.due = False   # a tick waited for this new frame
            self.publish_observation()

    def on_gate_status(self, msg: String) -> None:
        try:
            state = str(json.loads(msg.data)["state"])
        except (ValueError, KeyError, TypeError):
            self.get_logger().error(f"unreadable {self.params.gate_status}: {msg.data[:80]!r}",
                                    throttle_duration_sec=5.0)
            return
        was, self.gate_state = self.gate_state, state
        if self.lockstep and state != was:
            self.advance()

    def gate_passes(self) -> bool:
        return self.gate_state in ("active", "holding")

    def on_state(self, box: Input, msg: JointState) -> None:
        box.put(msg)
        if self.lockstep:
            self.advance()

    def on_truth(self, msg: SimGroundTruth) -> None:
        self.truth[ns_of(msg.header.stamp)] = msg
        for old in sorted(self.truth)[:-20]:
            del self.truth[old]
        if self.lockstep and self.end_on_sim_success:
            self.advance()

    def on_steps_to_go(self, msg: StepsToGo) -> None:
        if self.episodes is None or not self.active:
            return
        e = self.episodes
        if msg.episode_id == e.episode_id:
            self.scored_ns = ns_of(msg.observation_stamp)
        asks = e.asks
        self.publish_end(e.score(msg.episode_id, ns_of(msg.observation_stamp), msg.step, msg.success,
                                 float(msg.expected_steps_to_go), float(msg.success_threshold)))
        if e.asks > asks:
            self.publish_event(EpisodeEvent.ASK, EpisodeEvent.OUTCOME_NONE, e.episode_id, e.step, e.last_ns, e.asking)
            self.get_logger().info(f"episode {e.episode_id}, step {e.step}: {e.asking}")
            self.publish_status()
        if self.lockstep:
            self.advance()

    def on_estop(self, msg: EStop) -> None:
        if self.episodes is None:
            return
        text = f"e-stop by {msg.source}: {msg.reason}"
        was = self.episodes.estopped
        self.publish_end(self.episodes.estop(msg.engaged, text))
        if msg.engaged != was:
            self.get_logger().warning(text if msg.engaged else self.episodes.message)
        self.publish_status()

    def stale_inputs(self) -> tuple[list[str], list[str]]:
        """(inputs never received, inputs with nothing new for longer than the timeout)."""
        now = time.monotonic()
        boxes = [self.image_in, *self.arm_in]
        missing = [self.driver_topic(b.name) for b in boxes if b.msg is None]
        stale = [f"{self.driver_topic(b.name)} ({now - b.received:.1f} s)" for b in boxes
                 if b.msg is not None and now - b.received > self.stale_timeout]
        return missing, stale

    # --- the tick: resets, faults, observations -----------------------------------------------------------

    def on_tick(self) -> None:
        if not self.active or self.episodes is None:
            return
        if self.lockstep:
            self.advance()
            self.resend_if_waiting()
            return
        e = self.episodes
        self.due = False
        if self.reset_future is not None or self.reset_stamp_ns is not None:
            self.check_reset()
            if self.reset_future is not None or self.reset_stamp_ns is not None:
                return   # the driver is busy resetting: its silence is no fault
        missing, stale = self.stale_inputs()
        if stale:
            was = e.fault
            end = e.set_fault(f"{INPUT_FAULT} {', '.join(stale)} (timeout {self.stale_timeout:g} s)")
            if not was:
                self.get_logger().error(e.message)
            self.publish_end(end)
            return
        if e.fault.startswith(("fault: " + INPUT_FAULT, "fault: " + BAD_INPUT)) and not missing:
            e.clear_fault()   # fresh inputs again (unusable ones fault again below)
        if missing:
            if not e.fault and not e.halted:
                e.message = f"{WAITING} {', '.join(missing)}"
            return
        if e.message.startswith(WAITING) and (e.phase != "ready" or self.gate_passes()):
            e.message = e.phase_message()
        if e.wants_sim_reset():
            self.start_sim_reset()
            return
        if self.params.new_frame_only and self.image_in.stamp_ns == self.last_frame_ns \
                and e.phase in ("ready", "running") and not e.halted:
            self.due = True   # this frame went out already: the next one goes out when it arrives
            return
        self.publish_observation()

    def start_sim_reset(self) -> None:
        e = self.episodes
        if not self.reset_client.service_is_ready():
            if not self.reset_started:
                self.reset_started = time.monotonic()
            if time.monotonic() - self.reset_started > self.params.reset_timeout:
                self.reset_started = 0.0
                e.set_fault(f"the driver offers no {self.driver_topic('sim/reset')} service")
                self.get_logger().error(e.message)
            else:
                e.message = f"waiting for the driver's {self.driver_topic('sim/reset')}"
            return
        seed = e.take_seed()
        try:
            self.pending_task = self.tasks.task(seed)
        except (RuntimeError, ValueError) as exc:
            e.set_fault(f"no task for seed {seed}: {exc}")
            self.get_logger().error(e.message)
            return
        self.reset_started = time.monotonic()
        self.reset_future = self.reset_client.call_async(ResetStation.Request(seed=seed, reason="next episode"))
        if self.lockstep:
            self.reset_future.add_done_callback(lambda _: self.advance())
        e.message = f"resetting the simulated scene with seed {seed}"

    def check_reset(self) -> None:
        """A sim reset in flight: its answer, then the driver's first observation after it."""
        e = self.episodes
        if time.monotonic() - self.reset_started > self.params.reset_timeout:
            self.reset_future = self.reset_stamp_ns = None
            self.reset_started = 0.0
            e.phase = e.first_phase()   # try again once the fault clears
            e.set_fault(f"sim reset: no answer or no observation after it within {self.params.reset_timeout:g} s")
            self.get_logger().error(e.message)
            return
        if self.reset_future is not None:
            if not self.reset_future.done():
                return
            answer = self.reset_future.result()
            self.reset_future = None
            if answer is None or not answer.success:
                self.reset_started = 0.0
                e.set_fault(f"sim reset failed: {answer.message if answer is not None else 'no answer'}")
                self.get_logger().error(e.message)
                return
            self.reset_stamp_ns = int(answer.episode_id)   # the stamp of the driver's first observation after it
        boxes = [self.image_in, *self.arm_in]
        if any(b.stamp_ns < self.reset_stamp_ns for b in boxes):
            return
        truth = self.truth.get(self.image_in.stamp_ns) or self.truth.get(self.reset_stamp_ns)
        if truth is not None and isinstance(self.tasks, SimLanguageTableTasks):
            why = self.tasks.check_truth(list(truth.object_names), list(truth.object_xy))
            if why:
                self.reset_stamp_ns, self.reset_started = None, 0.0
                e.phase = e.first_phase()
                e.set_fault(why)
                self.get_logger().error(e.message)
                return
        self.reset_stamp_ns, self.reset_started = None, 0.0
        self.task = self.pending_task
        e.reset_done()

    # --- lockstep: a simulated driver that steps once per command ---------------------------------------

    def advance(self) -> None:
        """The next observation as soon as what it needs is in: the driver's new frame, every arm's joint state
        of the same step, and (wait_for_score) the current observation's score (end_on_sim_success: and the
        simulator's verdict on the frame); a sim reset once an episode ended."""
        if not self.active or self.episodes is None:
            return
        e = self.episodes
        if self.reset_future is not None or self.reset_stamp_ns is not None:
            self.check_reset()
            if self.reset_future is not None or self.reset_stamp_ns is not None:
                return
        if e.halted:
            return
        if not e.wants_sim_reset() and self.lockstep_ready():
            self.publish_observation()
        if e.wants_sim_reset() and not e.halted and self.reset_future is None:
            self.start_sim_reset()

    def lockstep_ready(self) -> bool:
        e, frame = self.episodes, self.image_in.stamp_ns
        if e.phase not in ("ready", "running") or self.image_in.msg is None or frame == self.last_frame_ns:
            return False
        if any(b.msg is None or b.stamp_ns < frame for b in self.arm_in):
            return False   # the joint states of the driver's step are not all in yet
        if e.phase == "running":
            if self.params.wait_for_score and self.scored_ns != e.last_ns:
                return False
            if self.end_on_sim_success and frame not in self.truth:
                return False
        return True

    def resend_if_waiting(self) -> None:
        """The last observation again (same stamp) while no command has come for it for a second: a node that
        matched late, or missed it, still gets to answer (the driver stands still until it does)."""
        e = self.episodes
        if self.last_sent is None or e.halted or e.phase != "running" or time.monotonic() - self.sent_at < 1.0:
            return
        for pub, msg in zip((self.step_pub, self.image_pub, self.state_pub), self.last_sent):
            pub.publish(msg)
        self.sent_at = time.monotonic()

    def next_stamp(self) -> int:
        self.obs_ns = max(self.get_clock().now().nanoseconds, self.obs_ns + 1)
        return self.obs_ns

    def publish_observation(self) -> int | None:
        """One observation now, if the episode logic wants one: the step, else None."""
        e = self.episodes
        if e.halted or e.phase not in ("ready", "running"):
            return None
        if e.phase == "ready" and not self.gate_passes():
            e.message = f"{WAITING} its safety gate passes no commands ({self.gate_state or 'no status yet'})"
            return None
        try:
            values = self.profile.observation_state([(b.msg.name, b.msg.position) for b in self.arm_in])
            image = rgb8(self.image_in.msg)
        except (KeyError, ValueError) as exc:
            self.publish_end(e.set_fault(f"{BAD_INPUT} {exc}"))
            self.get_logger().error(e.message, throttle_duration_sec=5.0)
            return None
        if not np.all(np.isfinite(values)):
            self.publish_end(e.set_fault(f"{BAD_INPUT} non-finite joint states {values.tolist()}"))
            return None
        stamp_ns = self.next_stamp()
        step = e.observe(stamp_ns)
        if step is None:
            return None
        stamp = time_of(stamp_ns)
        if step == 0:
            if e.resets != "sim" or self.task is None:
                self.task = self.tasks.task(0)
            t = self.task
            task = Task(station=self.station_name, episode_id=e.episode_id, env_id=t.env_id, family=t.family,
                        instruction=t.instruction, goal_json=t.goal_json, seed=t.seed, max_steps=self.max_steps)
            task.header.stamp = stamp
            self.task_pub.publish(task)
            self.publish_event(EpisodeEvent.START, EpisodeEvent.OUTCOME_NONE, e.episode_id, 0, stamp_ns, "")
        msg = EpisodeStep(station=self.station_name, episode_id=e.episode_id, step=step)
        msg.header.stamp = stamp
        self.step_pub.publish(msg)
        image.header.stamp, image.header.frame_id = stamp, self.image_in.msg.header.frame_id or self.camera.name
        self.image_pub.publish(image)
        state = JointState(name=self.names, position=[float(v) for v in values])
        state.header.stamp = stamp
        self.state_pub.publish(state)
        self.last_frame_ns = self.image_in.stamp_ns
        self.last_sent, self.sent_at = (msg, image, state), time.monotonic()
        if self.end_on_sim_success and step > 0:
            truth = self.truth.get(self.last_frame_ns)
            if truth is not None and truth.goal_holds:   # the action that led here reached the goal
                self.publish_end(e.end(rules.ENV_SUCCESS, "the simulator's success predicate held"))
                return step
        self.publish_end(e.after_observation())
        return step

    # --- outputs --------------------------------------------------------------------------------------

    def publish_event(self, kind: int, outcome: int, episode_id: int, num_steps: int, last_ns: int,
                      detail: str, env_success: bool = False, known: bool = False, asks: int = 0) -> None:
        event = EpisodeEvent(station=self.station_name, episode_id=episode_id, event=kind, outcome=outcome,
                             num_steps=num_steps, env_success=env_success, env_success_known=known,
                             operator_asks=asks, detail=detail)
        event.header.stamp = self.get_clock().now().to_msg()
        event.last_observation_stamp = time_of(last_ns)
        self.event_pub.publish(event)

    def publish_end(self, end: End | None) -> None:
        if end is None:
            return
        truth = None
        if self.task_source == "sim":   # the simulator's verdict at the last frame (or the newest before it)
            earlier = [k for k in self.truth if k <= self.last_frame_ns]
            truth = self.truth[max(earlier)] if earlier else None
        success = bool(truth.goal_holds) if truth is not None else False
        self.env_successes += int(success)
        self.publish_event(EpisodeEvent.END, end.outcome, end.episode_id, end.num_steps, end.last_observation_ns,
                           end.detail, success, truth is not None, end.operator_asks)
        self.get_logger().info(f"episode {end.episode_id} ended after {end.num_steps} steps: "
                               f"{rules.OUTCOMES[end.outcome]} ({end.detail})")
        self.publish_status()

    def publish_status(self) -> None:
        if self.episodes is None:
            return
        e = self.episodes
        status = StationStatus(station=self.station_name, state=e.state(), episode_id=e.episode_id, step=e.step,
                               instruction=self.task.instruction if self.task is not None else "",
                               episodes_done=e.episodes_done, env_successes=self.env_successes,
                               detected_successes=e.detected_successes, asking_operator=bool(e.asking),
                               operator_asks=e.asks, operator_answers=e.answers,
                               message=e.message if self.active else f"inactive; {e.message}")
        status.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(status)

    # --- the operator ---------------------------------------------------------------------------------

    def on_reset(self, request, response):
        if self.episodes is None or not self.active:
            response.success, response.message = False, "station manager not active"
            return response
        end, ok, text = self.episodes.operator_reset(request.seed, request.reason)
        self.publish_end(end)
        response.success, response.message = ok, text
        if ok and self.episodes.phase == "ready" and not self.episodes.halted:
            missing, stale = self.stale_inputs()
            if not missing and not stale and self.publish_observation() == 0:
                self.tick_timer.reset()   # the next observation a full period later
                response.episode_id, response.message = self.episodes.episode_id, "new episode started"
        self.publish_status()
        return response

    def on_pause(self, request, response):
        return self._operator_call("pause", request, response)

    def on_resume(self, request, response):
        e, answers = self.episodes, self.episodes.answers if self.episodes is not None else 0
        response = self._operator_call("resume", request, response)
        if e is not None and e.answers > answers and e.running:   # the operator's "not yet": a label, no end
            self.publish_event(EpisodeEvent.LABEL, EpisodeEvent.OUTCOME_NONE, e.episode_id, e.step, e.last_ns,
                               e.message)
        return response

    def _operator_call(self, action: str, request, response):
        """pause / resume: the episode logic's answer, and the new status at once."""
        if self.episodes is None:
            response.success, response.message = False, "station manager not configured"
            return response
        response.success, response.message = getattr(self.episodes, action)(request.reason)
        self.publish_status()
        return response

    def on_abort(self, request, response):
        if self.episodes is None or not self.active:
            response.success, response.message = False, "station manager not active"
            return response
        episode = self.episodes.episode_id
        end, ok, text = self.episodes.abort(request.success, request.reset, request.reason)
        self.publish_end(end)
        response.success, response.message = ok, text
        response.episode_id = episode if ok else 0
        return response

    def destroy_node(self):
        if getattr(self, "tasks", None) is not None and hasattr(self.tasks, "close"):
            self.tasks.close()
            self.tasks = None
        return super().destroy_node()


def main(argv=None) -> int:
    return spin_main(StationManagerNode, argv)


if __name__ == "__main__":
    sys.exit(main())
