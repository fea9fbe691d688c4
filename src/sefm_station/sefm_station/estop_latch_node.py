"""The fleet e-stop's memory: a tiny long-lived node that keeps the last e-stop state on `/estop` (console script
`estop_latch`).

  subscribes /estop  (EStop, reliable, transient local, depth 1)
  publishes  /estop  (the same QoS): the newest state it heard, again, from its own publisher

`/estop` is transient local, but a DDS writer's history lives only as long as its process: once the operator's
process (a one-shot `sefm operator estop`, or the console) is gone, a safety gate started or restarted later
would hear nothing and run. The latch is the writer that stays: every state change it hears (engaged <->
released, by header stamp: an older message never overrides a newer one) it republishes unchanged (same stamp,
source and reason), so a late-joining gate gets it on matching. Its own echo carries the same state and stamp and
is ignored, so there is no loop. Start one per fleet, with the stations (the graph runner or a launch file), on the
same domain and e-stop topic (remap `/estop` like the gates). With `state_file` the state also survives a restart
of the latch itself (read at start, written on every change).
"""
from __future__ import annotations

import json
import pathlib
import sys

from sefm_interfaces.msg import EStop
from sefm_ros.common import LATCHED, SefmNode, ns_of, spin_main, time_of
from sefm_station.params import LatchParams


class EStopLatch(SefmNode):
    PARAMETERS = LatchParams

    def __init__(self, namespace: str = "", context=None, **overrides):
        super().__init__("estop_latch", namespace, context, **overrides)
        self.last: EStop | None = None
        self.pub = self.create_publisher(EStop, "/estop", LATCHED)
        self.create_subscription(EStop, "/estop", self.on_estop, LATCHED)
        start = self._read() or (EStop(engaged=True, source="estop_latch", reason="engaged at start")
                                 if self.params.engaged_at_start else None)
        if start is not None:
            if not ns_of(start.header.stamp):
                start.header.stamp = self.get_clock().now().to_msg()
            self.last = start
            self.pub.publish(start)
            self.get_logger().warning(f"e-stop {'engaged' if start.engaged else 'released'} at start "
                                      f"({start.source}: {start.reason})")

    def on_estop(self, msg: EStop) -> None:
        last = self.last
        if last is not None and ns_of(msg.header.stamp) < ns_of(last.header.stamp):
            return   # older than what we hold (e.g. a stale writer's history): the newest state wins
        changed = last is None or msg.engaged != last.engaged
        self.last = msg
        if changed:
            self.pub.publish(msg)
            self._write(msg)
            self.get_logger().info(f"latched: e-stop {'engaged' if msg.engaged else 'released'} "
                                   f"by {msg.source} ({msg.reason})")

    def _read(self) -> EStop | None:
        path = pathlib.Path(self.params.state_file) if self.params.state_file else None
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            msg = EStop(engaged=bool(data["engaged"]), source=str(data.get("source", "")),
                        reason=str(data.get("reason", "")))
            msg.header.stamp = time_of(int(data.get("stamp_ns", 0)))
            return msg
        except (ValueError, KeyError, TypeError) as exc:
            self.get_logger().error(f"state_file {path}: unreadable ({exc}); starting engaged")
            return EStop(engaged=True, source="estop_latch", reason=f"unreadable state file {path}")

    def _write(self, msg: EStop) -> None:
        if not self.params.state_file:
            return
        path = pathlib.Path(self.params.state_file)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({"engaged": msg.engaged, "source": msg.source, "reason": msg.reason,
                                   "stamp_ns": ns_of(msg.header.stamp)}))
        tmp.replace(path)


def main(argv=None) -> int:
    return spin_main(EStopLatch, argv)


if __name__ == "__main__":
    sys.exit(main())
