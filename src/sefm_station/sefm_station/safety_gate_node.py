"""The safety gate: a lifecycle node between the policy and a robot's driver (console script `safety_gate`).

Per station namespace (pushed from outside); the driver's topics are under `driver_namespace` ('' = the
station's own):
  subscribes joint_command   (sensor_msgs/JointState: the policy's target, names + position in command order)
             <driver>/<arm state topics of the profile> (sensor_msgs/JointState: the driver's measured state)
             /estop          (EStop, transient local: latched fleet e-stop)
  publishes  the driver's commands, by the profile's output type:
               interbotix            <arm>/commands/joint_group (JointGroupCommand, the arm group's joints, rad)
                                     <arm>/commands/joint_single (JointSingleCommand, the gripper, rad)
               ros2_control_forward  <topic> (std_msgs/Float64MultiArray, the arms' joints in profile order)
               joint_trajectory      <topic> (trajectory_msgs/JointTrajectory, one point at now + one period)
               effector_delta        <topic> (geometry_msgs/TwistStamped, linear.x/y = delta in m per period)
             safety_status   (std_msgs/String, JSON: state, counters per reason; transient local, depth 1)

Lifecycle: configure loads and checks the profile (a bad one fails the transition with its reason) and
creates the subscriptions, publishers and the watchdog timer (the control rate); activate starts passing
checked commands, with the ramp-in from the measured state; deactivate publishes the hold target once and
stops passing; cleanup removes it all. The rules are `sefm_station.safety.Gate`. An e-stop publishes the
hold in its callback and latches: no later command passes until it is released. Configure starts the gate held (e-stop
reason) until it has heard the fleet's e-stop state: from `estop_latch` or an operator's latched writer as it
matches (the rule for when none is coming: `_estop_unknown`). Of several latched e-stop
writers (an operator, `estop_latch`, which keeps the state after the operator's process is gone) the newest
message by header stamp wins. A refused command sends
nothing (the driver keeps the last safe target), except on a delta output, whose driver repeats its last
command: there the refusal sends the hold (zero). A delta carries the stamp of the command it answers.
`sim_lockstep` (a simulator that steps once per command): no watchdog hold and no ramp-in.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import TwistStamped
from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from sefm_interfaces.msg import EStop
from sefm_ros.common import LATCHED, ns_of, reliable, spin_main
from sefm_station.managed import StationNode
from sefm_station.params import GateParams
from sefm_station.profiles import Profile, ProfileError, load_profile
from sefm_station.safety import Gate

# --- messages per output type (pure: the profile does the math) ---------------------------------------


def command_messages(profile: Profile, target, stamp=None) -> list[tuple[str, object]]:
    """(topic, message) pairs that send a checked target (command order) to the profile's driver."""
    kind = profile.output.type
    if kind == "interbotix":
        out = []
        for arm, joints, values in profile.arm_targets(target):
            arm_values = [float(v) for j, v in zip(joints, values) if j != arm.gripper]
            out.append((arm.topic("commands/joint_group"), JointGroupCommand(name=arm.group, cmd=arm_values)))
            if arm.gripper:
                rad = float(values[list(joints).index(arm.gripper)])
                out.append((arm.topic("commands/joint_single"), JointSingleCommand(name=arm.gripper, cmd=rad)))
        return out
    if kind == "ros2_control_forward":
        _, values = profile.driver_order(target)
        return [(profile.output.topic, Float64MultiArray(data=[float(v) for v in values]))]
    if kind == "joint_trajectory":
        names, values = profile.driver_order(target)
        period_ns = int(round(profile.period * 1e9))
        msg = JointTrajectory(joint_names=list(names), points=[JointTrajectoryPoint(
            positions=[float(v) for v in values],
            time_from_start=Duration(sec=period_ns // 1_000_000_000, nanosec=period_ns % 1_000_000_000))])
        if stamp is not None:
            msg.header.stamp = stamp
        return [(profile.output.topic, msg)]
    if kind == "effector_delta":
        msg = TwistStamped()
        for axis, value in zip("xyz", target):
            setattr(msg.twist.linear, axis, float(value))
        msg.header.frame_id = profile.output.frame_id
        if stamp is not None:
            msg.header.stamp = stamp
        return [(profile.output.topic, msg)]
    raise ValueError(f"unknown output type {kind!r}")


def message_types(profile: Profile) -> dict[str, type]:
    """{topic: message type} of every command publisher the profile needs."""
    kind = profile.output.type
    if kind == "interbotix":
        out = {}
        for arm in profile.arms:
            out[arm.topic("commands/joint_group")] = JointGroupCommand
            if arm.gripper:
                out[arm.topic("commands/joint_single")] = JointSingleCommand
        return out
    return {profile.output.topic: {"ros2_control_forward": Float64MultiArray, "joint_trajectory": JointTrajectory,
                                   "effector_delta": TwistStamped}[kind]}


class SafetyGateNode(StationNode):
    PARAMETERS = GateParams

    ESTOP_WAIT = 2.0    # s: no e-stop writer known this long after start (or a latch silent after matching): run
    ESTOP_GRACE = 0.0   # s after all (non-latch) writers matched: a latched sample comes on matching
    def __init__(self, namespace: str = "", context=None, **overrides):
        self.profile: Profile | None = None
        self.gate: Gate | None = None
        self.pubs: dict[str, object] = {}
        self.status_pub = None
        self.logged: dict[str, float] = {}
        self.estop_stamp = 0      # ns: the newest e-stop message applied
        self.created_at = time.monotonic()
        self.estop_sub, self.estop_known, self.estop_matched_at = None, True, None
        super().__init__("safety_gate", namespace, context, **overrides)

    # --- lifecycle ------------------------------------------------------------------------------------

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.profile = load_profile(self.params.profile)
        except ProfileError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        p = self.profile
        if self.params.sim_lockstep:   # wall time is not the simulated robot's time: no ramp by it
            p = self.profile = replace(p, control=replace(p.control, ramp_in=0.0))
        self.gate = Gate(p)
        for topic, kind in message_types(p).items():
            self.pubs[topic] = self.create_publisher(kind, self.driver_topic(topic), reliable(10))
        self.status_pub = self.create_publisher(String, "safety_status", LATCHED)
        self.entities = list(self.pubs.values()) + [self.status_pub]
        for arm in p.arms:
            self.entities.append(self.create_subscription(JointState, self.driver_topic(arm.state_topic),
                                                          self._state_callback(arm), reliable(10)))
        self.entities.append(self.create_subscription(JointState, self.params.command_topic, self.on_command,
                                                      reliable(10)))
        self.estop_sub = self.create_subscription(EStop, "/estop", self.on_estop, LATCHED)
        self.entities.append(self.estop_sub)
        # held until the fleet's e-stop state is known: a gate (re)started during an e-stop must not run in the
        # moment before the latched state (from estop_latch or a live operator) reaches it
        now = time.monotonic()
        self.gate.estop(True, now)
        self.estop_known, self.estop_matched_at = False, None
        self._estop_unknown(now)
        self.entities.append(self.create_timer(p.period, self.on_tick))
        self.entities.append(self.create_timer(self.params.status_period, self.publish_status))
        self.get_logger().info(f"configured with profile {p.name} ({p.output.type}, {p.size} commands, "
                               f"{p.control.rate_hz:g} Hz" + (", lockstep simulator: no watchdog, no ramp-in)"
                                                              if self.params.sim_lockstep else ")"))
        self.publish_status()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.gate.activate(time.monotonic())
        if not self.gate.has_state and self.gate.needs_state():
            self.get_logger().warning("activated before the driver's first joint states: commands wait for them")
        self.get_logger().info(f"active: passing checked commands (ramp-in {self.profile.control.ramp_in:g} s)")
        self.publish_status()
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        hold = self.gate.deactivate()
        if hold is not None:
            self.send(hold)
        self.get_logger().info("inactive: holding position, no commands pass")
        self.publish_status()
        return super().on_deactivate(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        if self.gate is not None:
            hold = self.gate.deactivate()
            if hold is not None:
                self.send(hold)
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    def _forget(self) -> None:
        self.pubs, self.status_pub, self.estop_stamp = {}, None, 0
        self.gate = None

    # --- inputs -----------------------------------------------------------------------------------------

    def _state_callback(self, arm):
        def callback(msg: JointState) -> None:
            if self.gate is not None:
                self.gate.set_measured(self.profile.measured(arm, msg.name, msg.position), time.monotonic())
        return callback

    def on_command(self, msg: JointState) -> None:
        if self.gate is None:
            return
        if not self.estop_known:
            self._estop_unknown(time.monotonic())
        decision = self.gate.check(msg.position, msg.name, time.monotonic())
        # a delta carries the time of the command it answers (a lockstep simulator drops one from before its reset)
        stamp = msg.header.stamp if self.profile.delta and ns_of(msg.header.stamp) else None
        if decision.ok:
            self.send(decision.target, stamp)
            for note in decision.notes:
                if note != "rate_limited":   # the ramp and the rate limit shape most commands: counted only
                    self.log_throttled(note, f"command adjusted: {note}")
        else:
            if self.profile.delta and self.gate.active and not self.gate.estopped:
                # a delta driver repeats its last command (zero-order hold): a refused one must stop it
                self.send(self.gate.hold_target(), stamp)
            self.log_throttled(decision.reason, f"command refused ({decision.reason}): {decision.detail}")

    def on_estop(self, msg: EStop) -> None:
        if self.gate is None:
            return
        stamp = ns_of(msg.header.stamp)
        if stamp and stamp < self.estop_stamp:
            return   # several latched writers (an operator, the estop_latch): the newest state wins
        self.estop_stamp = max(self.estop_stamp, stamp)
        if not self.estop_known:
            self.estop_known = True
            self.get_logger().info(f"fleet e-stop state heard: {'engaged' if msg.engaged else 'released'}")
            if msg.engaged:
                return   # held since configure already; the status says so
        was = self.gate.estopped
        hold = self.gate.estop(msg.engaged, time.monotonic())
        if hold is not None:
            self.send(hold)   # first: the latency of a stop matters more than its log line
        if msg.engaged and not was:
            self.get_logger().warning(f"e-stop by {msg.source}: {msg.reason}; holding, every command dropped")
        elif not msg.engaged and was:
            self.get_logger().warning("e-stop released: re-armed with a new ramp-in from the measured state")
        self.publish_status()

    def on_tick(self) -> None:
        if self.gate is None:
            return
        if not self.estop_known:
            self._estop_unknown(time.monotonic())
        if self.params.sim_lockstep:
            return   # a lockstep simulator stands still without commands; a hold would step it
        hold = self.gate.tick(time.monotonic())
        if hold is not None:
            self.send(hold)
            self.get_logger().warning(f"watchdog: no command for {self.profile.control.watchdog_timeout:g} s, "
                                   "holding the last safe target")

    def _estop_unknown(self, now: float) -> None:
        """Held for want of the fleet's e-stop state; run once none can be coming:
        an `estop_latch` on the graph: only its state (or ESTOP_WAIT s after it matched) ends the hold;
        other latched writers only: once all have matched, ESTOP_GRACE s later (a sample comes on matching);
        no writer known: ESTOP_WAIT s after the node started (discovery has found a running latch by then)."""
        topic = self.estop_sub.topic_name
        writers = self.get_publishers_info_by_topic(topic)
        matched = writers and self.estop_sub.get_publisher_count() >= len(writers)
        if matched and self.estop_matched_at is None:
            self.estop_matched_at = now
        if not writers:
            if now - self.created_at < self.ESTOP_WAIT:
                return
        elif any(w.node_name == "estop_latch" or w.node_name.startswith("_NODE_") for w in writers):
            # (a writer whose node name is not discovered yet may be the latch: wait for it as for one)
            if self.estop_matched_at is None or now - self.estop_matched_at < self.ESTOP_WAIT:
                return
        elif not matched or now - self.estop_matched_at < self.ESTOP_GRACE:
            return
        self.estop_known = True
        self.gate.estop(False, now)
        self.get_logger().warning("no fleet e-stop state heard (is an estop_latch running?): passing commands")
        self.publish_status()

    # --- outputs ----------------------------------------------------------------------------------------

    def send(self, target, stamp=None) -> None:
        stamp = stamp or self.get_clock().now().to_msg()
        for topic, msg in command_messages(self.profile, target, stamp):
            self.pubs[topic].publish(msg)

    def log_throttled(self, reason: str, text: str) -> None:
        now = time.monotonic()
        if now - self.logged.get(reason, -1e9) >= self.params.log_throttle:
            self.logged[reason] = now
            count = self.gate.counts[reason] if self.gate is not None else 0
            self.get_logger().warning(f"{text} [{reason}: {count} so far]")

    def publish_status(self) -> None:
        if self.status_pub is None or self.gate is None:
            return
        body = {"station": self.station_name, "profile": self.profile.name, **self.gate.status()}
        self.status_pub.publish(String(data=json.dumps(body, sort_keys=True)))


def main(argv=None) -> int:
    return spin_main(SafetyGateNode, argv)


if __name__ == "__main__":
    sys.exit(main())
