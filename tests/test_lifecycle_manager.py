"""The lifecycle manager (sefm_station.lifecycle_manager_node): ordered bring-up, and a bring-up that does not
hang when DDS loses a request or its answer. The managed side is a small lifecycle server written here whose
services can swallow a call: an async callback that never returns sends no answer, as a lost one."""
import json
import uuid

import rclpy
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.task import Future
from std_msgs.msg import String

from sefm_station.lifecycle_manager_node import LifecycleManager
from helpers import LATCHED, Spinning

GOAL = {Transition.TRANSITION_CONFIGURE: State.PRIMARY_STATE_INACTIVE,
        Transition.TRANSITION_ACTIVATE: State.PRIMARY_STATE_ACTIVE}


class LossyLifecycleServer:
    """`<name>/get_state` and `<name>/change_state` on a plain node. `lose` lists what to swallow, once each:
    ("get_state", None), or (transition id, "request") = not applied, (transition id, "answer") = applied."""

    def __init__(self, node, name: str, lose=(), log=None):
        self.state, self.lose, self.calls = State.PRIMARY_STATE_UNCONFIGURED, list(lose), []
        self.name, self.log = name, log if log is not None else []
        group = ReentrantCallbackGroup()   # a swallowed call must not block the next (its answer was lost, the
        node.create_service(GetState, f"{name}/get_state", self.get_state, callback_group=group)  # node is free)
        node.create_service(ChangeState, f"{name}/change_state", self.change_state, callback_group=group)

    async def get_state(self, request, response):
        self.calls.append("get_state")
        if ("get_state", None) in self.lose:
            self.lose.remove(("get_state", None))
            await Future()   # never answered
        response.current_state.id = self.state
        return response

    async def change_state(self, request, response):
        transition = request.transition.id
        self.calls.append(transition)
        self.log.append((self.name, transition))
        lost = next((how for t, how in self.lose if t == transition), None)
        if lost is not None:
            self.lose.remove((transition, lost))
        if lost != "request":
            self.state = GOAL[transition]
        if lost is not None:
            await Future()
        response.success = True
        return response


class Graph(Spinning):
    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.ns = f"/lm_{uuid.uuid4().hex[:6]}"
        self.node = rclpy.create_node("servers", namespace=self.ns, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.status = []
        self.node.create_subscription(String, "lifecycle_status", lambda m: self.status.append(json.loads(m.data)),
                                      LATCHED)

    def manager(self, **params):
        manager = LifecycleManager(self.ns, self.context, **params)
        self.executor.add_node(manager)
        return manager

    def close(self):
        self.executor.shutdown()
        rclpy.shutdown(context=self.context)


def test_bring_up_configures_then_activates_in_order_through_lost_requests_and_answers():
    graph = Graph()
    try:
        # `a` loses its first get_state answer and its configure answer (configured all the same); `b` loses
        # its activate request (not applied); `c` loses nothing.
        log = []
        a = LossyLifecycleServer(graph.node, "a", [("get_state", None), (Transition.TRANSITION_CONFIGURE, "answer")], log)
        b = LossyLifecycleServer(graph.node, "b", [(Transition.TRANSITION_ACTIVATE, "request")], log)
        c = LossyLifecycleServer(graph.node, "c", log=log)
        manager = graph.manager(nodes="a,b,c", retry=0.3, timeout=15.0, supervise_period=0.0)
        assert graph.spin_until(lambda: manager.done, timeout=30)
        assert manager.state == "active", manager.message
        assert [s.state for s in (a, b, c)] == [State.PRIMARY_STATE_ACTIVE] * 3
        # each transition was applied once: a lost answer is not repeated, a lost request is
        assert a.calls.count(Transition.TRANSITION_CONFIGURE) == 1
        assert b.calls.count(Transition.TRANSITION_ACTIVATE) == 2
        assert c.calls.count(Transition.TRANSITION_CONFIGURE) == c.calls.count(Transition.TRANSITION_ACTIVATE) == 1
        configure, activate = Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE
        assert log == [("a", configure), ("b", configure), ("c", configure), ("a", activate), ("b", activate),
                       ("b", activate), ("c", activate)]
        graph.spin_until(lambda: graph.status and graph.status[-1]["state"] == "active", timeout=5)
        assert graph.status[-1]["nodes"] == {"a": "active", "b": "active", "c": "active"}
    finally:
        graph.close()


def test_a_node_that_never_answers_fails_the_bring_up_with_its_name():
    graph = Graph()
    try:
        LossyLifecycleServer(graph.node, "slow", [(Transition.TRANSITION_CONFIGURE, "request")] * 50)  # every retry lost
        manager = graph.manager(nodes="slow", retry=0.2, timeout=2.0, supervise_period=0.0)
        assert graph.spin_until(lambda: manager.done, timeout=20)
        assert manager.state == "failed" and "slow: no answer to change_state within 2 s" in manager.message
    finally:
        graph.close()


def test_supervision_brings_a_restarted_node_back_up():
    graph = Graph()
    try:
        server = LossyLifecycleServer(graph.node, "n")
        manager = graph.manager(nodes="n", retry=0.3, timeout=10.0, supervise_period=0.2)
        assert graph.spin_until(lambda: manager.done, timeout=20) and manager.state == "active"
        server.state = State.PRIMARY_STATE_UNCONFIGURED   # as a respawned process comes back
        server.lose = [("get_state", None)]                # and its first answer is lost
        assert graph.spin_until(lambda: server.state == State.PRIMARY_STATE_ACTIVE, timeout=20)
        assert manager.restarts == {"n": 1}
    finally:
        graph.close()
