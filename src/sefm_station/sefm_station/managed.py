"""The station layer's lifecycle nodes: `sefm_ros.managed.ManagedNode` with a station name and the driver's
namespace."""
from __future__ import annotations

from sefm_ros.managed import ManagedNode


class StationNode(ManagedNode):
    def __init__(self, name: str, namespace: str = "", context=None, **overrides):
        super().__init__(name, namespace, context, **overrides)
        self.station_name = self.params.station or self.get_namespace().strip("/") or "station"

    def driver_topic(self, name: str) -> str:
        """A driver topic or service under the `driver_namespace` parameter ('' = the station's namespace)."""
        ns = self.params.driver_namespace.strip("/")
        return f"{ns}/{name}" if ns else name
