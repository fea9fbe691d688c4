"""A small lifecycle manager (console script `lifecycle_manager`): brings managed nodes up in order.

  clients   <node>/get_state, <node>/change_state   (lifecycle_msgs, every node in `nodes`)
  publishes lifecycle_status                         (std_msgs/String, JSON, transient local, depth 1):
                                                     {"state": "starting" | "active" | "failed", "nodes":
                                                     {name: lifecycle state label}, "message": ...}

Bring-up, as navigation2's manager does it: every node in the order of `nodes` is configured (one at a time,
each once its services exist), then every node is activated in the same order. Put the nodes that others
depend on first: the learning nodes (trainer, reward, policy), then the safety gates, then the station
managers, whose activation starts the episodes. A fleet is therefore ready when the manager's status says
`active`: readiness comes from the nodes' lifecycle states, not from counting subscribers. A node already in
the target state is left alone (a restarted manager picks up a running graph). A transition that fails, or a
node that offers no lifecycle services within `timeout`, stops the bring-up (`failed`, with the reason): the
nodes configured so far stay as they are, and nothing after them is activated. A request unanswered for
`retry` seconds is checked and repeated (see `retry`): DDS can drop the answer to a request sent the moment
a service is discovered, and a bring-up must not hang on that.

Supervision, after bring-up (every `supervise_period`): each node is asked its state. A node that answers
`unconfigured` was restarted (a launch file's `respawn`, the graph runner's restart of a crashed process): it
is configured and activated again, alone, so a fleet survives a crashed policy or reward node; one that
answers `inactive` is activated. A node that does not answer is reported `lost` in the status until it is back.

Names in `nodes` are relative to this node's namespace unless they start with `/`. Everything is asynchronous
(a timer and service futures), so the manager can share a single-threaded executor with the nodes it manages.
"""
from __future__ import annotations

import json
import sys
import time

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from std_msgs.msg import String

from sefm_ros.common import LATCHED, SefmNode, spin_main
from sefm_station.params import LifecycleManagerParams

STEPS = (("configure", Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE),
         ("activate", Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE))
LABELS = {State.PRIMARY_STATE_UNKNOWN: "unknown", State.PRIMARY_STATE_UNCONFIGURED: "unconfigured",
          State.PRIMARY_STATE_INACTIVE: "inactive", State.PRIMARY_STATE_ACTIVE: "active",
          State.PRIMARY_STATE_FINALIZED: "finalized"}


class LifecycleManager(SefmNode):
    PARAMETERS = LifecycleManagerParams

    def __init__(self, namespace: str = "", context=None, **overrides):
        super().__init__("lifecycle_manager", namespace, context, **overrides)
        self.names = self.params.node_list()
        self.clients_ = {n: (self.create_client(GetState, f"{n}/get_state"),
                             self.create_client(ChangeState, f"{n}/change_state")) for n in self.names}
        self.states = {n: State.PRIMARY_STATE_UNKNOWN for n in self.names}
        self.step, self.index = 0, 0          # STEPS[step] applied to names[index]
        self.future, self.asked, self.since = None, "", time.monotonic()
        self.sent = self.probed = self.since   # the current request, and the state probe for a change_state
        self.probe = None
        self.state, self.message = ("starting", "") if self.names else ("active", "no nodes to manage")
        self.status_pub = self.create_publisher(String, "lifecycle_status", LATCHED)
        self.timer = self.create_timer(0.02, self.tick)
        self.status_timer = self.create_timer(self.params.status_period, self.publish_status)
        self.checks: dict[str, object] = {}   # supervision: the get_state / change_state futures in flight
        self.restarts: dict[str, int] = {n: 0 for n in self.names}
        self.supervisor = None
        self.publish_status()

    @property
    def done(self) -> bool:
        return self.state in ("active", "failed")

    def tick(self) -> None:
        if self.done:
            return
        name = self.names[self.index]
        label, transition, goal = STEPS[self.step]
        if self.future is not None:
            if not self.future.done():
                if time.monotonic() - self.since > self.params.timeout:
                    self.fail(f"{name}: no answer to {self.asked} within {self.params.timeout:g} s")
                else:
                    self.retry(name, goal, transition)
                return
            answer, asked, self.future, self.probe = self.future.result(), self.asked, None, None
            if asked == "get_state":
                self.states[name] = answer.current_state.id
                if answer.current_state.id == goal:
                    return self.next_node(f"{name} already {LABELS[goal]}")
                self.ask(name, "change_state", ChangeState.Request(transition=Transition(id=transition)))
            elif answer.success:
                self.states[name] = goal
                self.next_node(f"{name} {LABELS[goal]}")
            else:
                self.fail(f"{name}: {label} failed (its log says why)")
            return
        get_state, change_state = self.clients_[name]
        if not (get_state.service_is_ready() and change_state.service_is_ready()):
            if time.monotonic() - self.since > self.params.timeout:
                self.fail(f"{name}: no lifecycle services ({name}/get_state, change_state) within "
                          f"{self.params.timeout:g} s: is it running, and is it a lifecycle node?")
            return
        self.ask(name, "get_state", GetState.Request())

    def ask(self, name: str, service: str, request, again: bool = False) -> None:
        client = self.clients_[name][0 if service == "get_state" else 1]
        self.future, self.asked, self.sent = client.call_async(request), service, time.monotonic()
        if not again:
            self.since = self.sent

    def retry(self, name: str, goal: int, transition: int) -> None:
        """A request unanswered for `retry` s may have lost its answer (DDS matches a new client's reply path
        after the service looks ready). get_state is asked again; for a pending change_state the node is asked
        its state: the goal means the reply was lost, the old state means the request was, and it is sent again.
        A node busy in its transition answers neither until it is done, so nothing is repeated meanwhile."""
        now = time.monotonic()
        if self.asked == "get_state":
            if now - self.sent > self.params.retry:
                self.ask(name, "get_state", GetState.Request(), again=True)
            return
        if self.probe is not None and self.probe.done():
            state, self.probe = self.probe.result().current_state.id, None
            if state == goal:
                self.future, self.states[name] = None, goal
                return self.next_node(f"{name} {LABELS[goal]}")
            if state == self.states[name]:
                self.ask(name, "change_state", ChangeState.Request(transition=Transition(id=transition)), again=True)
            return
        if now - max(self.sent, self.probed) > self.params.retry:
            self.probe, self.probed = self.clients_[name][0].call_async(GetState.Request()), now

    def next_node(self, text: str) -> None:
        self.get_logger().info(text)
        self.index += 1
        self.since = time.monotonic()
        if self.index == len(self.names):
            self.index, self.step = 0, self.step + 1
            if self.step == len(STEPS):
                self.state, self.message = "active", f"{len(self.names)} nodes active"
                self.get_logger().info(f"bring-up done: {self.message}")
                self.destroy_timer(self.timer)
                self.publish_status()
                if self.params.supervise_period > 0:
                    self.supervisor = self.create_timer(self.params.supervise_period, self.supervise)

    def fail(self, reason: str) -> None:
        self.state, self.message = "failed", reason
        self.get_logger().error(f"bring-up stopped: {reason}")
        self.destroy_timer(self.timer)
        self.publish_status()

    # --- supervision ----------------------------------------------------------------------------------

    def supervise(self) -> None:
        """Ask each node its state; bring a restarted one back up (one transition per node per period)."""
        for name in self.names:
            future, asked, kind = self.checks.get(name, (None, 0.0, ""))
            if future is not None:
                if not future.done():
                    # asked a process that died, or the answer was lost: ask afresh (a get_state soon, a
                    # transition, which may be loading a model, only after `timeout`)
                    wait = self.params.retry if kind == "get_state" else self.params.timeout
                    if time.monotonic() - asked > wait:
                        del self.checks[name]
                    continue
                del self.checks[name]
                self.answered(name, future.result())
                continue
            get_state, change_state = self.clients_[name]
            if not get_state.service_is_ready():
                if self.states[name] != "lost":
                    self.get_logger().error(f"{name}: lost (no lifecycle services); waiting for it to come back")
                    self.states[name] = "lost"
                    self.publish_status()
                continue
            self.checks[name] = (get_state.call_async(GetState.Request()), time.monotonic(), "get_state")

    def answered(self, name: str, answer) -> None:
        if isinstance(answer, GetState.Response):
            state = answer.current_state.id
            was, self.states[name] = self.states[name], state
            transition = {State.PRIMARY_STATE_UNCONFIGURED: Transition.TRANSITION_CONFIGURE,
                          State.PRIMARY_STATE_INACTIVE: Transition.TRANSITION_ACTIVATE}.get(state)
            if transition is None:
                if was != state:
                    self.publish_status()
                return
            if state == State.PRIMARY_STATE_UNCONFIGURED:
                self.restarts[name] += 1
                self.get_logger().warning(f"{name} is back unconfigured (restart {self.restarts[name]}): "
                                          "configuring and activating it again")
            self.checks[name] = (self.clients_[name][1].call_async(
                ChangeState.Request(transition=Transition(id=transition))), time.monotonic(), "change_state")
        elif answer is not None and not answer.success:
            self.get_logger().error(f"{name}: bringing it back failed (its log says why); trying again")
        self.publish_status()

    def publish_status(self) -> None:
        body = {"state": self.state, "message": self.message, "restarts": self.restarts,
                "nodes": {n: LABELS.get(s, str(s)) for n, s in self.states.items()}}
        self.status_pub.publish(String(data=json.dumps(body, sort_keys=True)))


def main(argv=None) -> int:
    return spin_main(LifecycleManager, argv)


if __name__ == "__main__":
    sys.exit(main())
