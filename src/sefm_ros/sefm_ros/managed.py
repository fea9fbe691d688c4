"""What SEFM's lifecycle nodes share: typed parameters, the entities configure makes and cleanup destroys, an
`active` flag, and `autostart` (configure + activate at start, for use without a lifecycle manager).

A node either overrides `on_configure` and lists what it makes in `self.entities` (the station layer's nodes),
or implements `setup()`: the default `on_configure` runs it (loading models, making topics and timers), keeps
what it made for cleanup, and turns a failure into a failed transition with its reason in the log (the
learning nodes). Activation sets `active`; a node does its work (acting, scoring, training) only while active.
"""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter

from sefm_ros.parameters import declare


class ManagedNode(LifecycleNode):
    PARAMETERS: type = None   # the node's parameters dataclass

    def __init__(self, name: str, namespace: str = "", context=None, **overrides):
        super().__init__(name, namespace=namespace, context=context,
                         parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        try:
            self.params = declare(self, self.PARAMETERS)   # works on any rclpy Node, a LifecycleNode included
        except ValueError:
            self.destroy_node()
            raise
        self.active = False
        self.entities: list = []       # subscriptions, publishers, timers, services, clients made by configure
        self._autostart = self.create_timer(0.01, self._autostart_once) if self.params.autostart else None

    def _autostart_once(self) -> None:
        self.destroy_timer(self._autostart)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # --- the default transitions --------------------------------------------------------------------

    def setup(self) -> None:
        """Configure's work (nodes that do not override on_configure): raise OSError, ValueError, KeyError or
        RuntimeError with the reason to fail the transition."""
        raise NotImplementedError

    def on_configure(self, state) -> TransitionCallbackReturn:
        before = {id(e) for e in self._made()}
        try:
            self.setup()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return self._undo(before, TransitionCallbackReturn.FAILURE)
        self.entities = [e for e in self._made() if id(e) not in before]
        return TransitionCallbackReturn.SUCCESS

    def _undo(self, before: set, result):
        self.entities = [e for e in self._made() if id(e) not in before]
        self._destroy_entities()
        return result

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.active = False
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    # --- entities ------------------------------------------------------------------------------------

    def _made(self) -> list:
        return [*self.publishers, *self.subscriptions, *self.timers, *self.services, *self.clients]

    def _destroy_entities(self) -> None:
        for entity in self.entities:
            destroy = {"Publisher": self.destroy_publisher, "Subscription": self.destroy_subscription,
                       "Timer": self.destroy_timer, "Service": self.destroy_service,
                       "Client": self.destroy_client}.get(type(entity).__name__)
            if destroy is not None:
                destroy(entity)
        self.entities = []
        self._forget()

    def _forget(self) -> None:
        """What a node drops with its entities (its configured state)."""
