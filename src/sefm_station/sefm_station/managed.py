"""What the station layer's lifecycle nodes share: typed parameters, the entities configure makes and cleanup
destroys, and `autostart` (configure + activate at start, for use without a lifecycle manager)."""
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
        self.station_name = self.params.station or self.get_namespace().strip("/") or "station"
        self.entities: list = []       # subscriptions, publishers, timers, services, clients made by configure
        self._autostart = self.create_timer(0.01, self._autostart_once) if self.params.autostart else None

    def driver_topic(self, name: str) -> str:
        """A driver topic or service under the `driver_namespace` parameter ('' = the station's namespace)."""
        ns = self.params.driver_namespace.strip("/")
        return f"{ns}/{name}" if ns else name

    def _autostart_once(self) -> None:
        self.destroy_timer(self._autostart)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

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
