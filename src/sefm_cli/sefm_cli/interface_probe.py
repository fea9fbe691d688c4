"""Exchange sefm_interfaces messages between two real processes over DDS.

Used by `sefm doctor` and the tests. The publisher side runs as its own
process (``python -m sefm_cli.interface_probe publish ...``) so the
exchange crosses a process boundary, exactly as between two nodes of a fleet.

Every message is filled from its own type description with values derived from
a nonce, so the receiver can check field-by-field equality without knowing the
type in advance.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
import uuid

from sefm_cli.runtime_env import apply_runtime_defaults

MESSAGE_TYPES = ("Task", "PolicyAction", "StepsToGo", "EpisodeEvent", "PolicyVersion", "StationStatus", "EStop")
SERVICE_TYPES = ("ResetStation", "PauseStation", "ResumeStation", "AbortEpisode")
RETRY = 2.0   # s a service call waits for its answer before it is sent again


def load_type(kind: str, name: str):
    """kind: 'msg' or 'srv'."""
    module = importlib.import_module(f"sefm_interfaces.{kind}")
    return getattr(module, name)


def fill(message, nonce: int):
    """Set every field of a ROS message to a value derived from `nonce` (recursively)."""
    for index, (field, ros_type) in enumerate(message.get_fields_and_field_types().items()):
        value = _sample_value(ros_type, getattr(message, field), nonce + index)
        setattr(message, field, value)
    return message


def _sample_value(ros_type: str, current, seed: int):
    if ros_type.startswith("sequence<"):
        inner = ros_type[len("sequence<"):-1]
        return [_sample_value(inner, None, seed + i) for i in range(3)]
    if ros_type == "string":
        return f"value-{seed}"
    if ros_type == "boolean":
        return bool(seed % 2)
    if ros_type in ("float", "double"):
        return float(seed) + 0.5  # exactly representable in float32
    if ros_type.startswith(("int", "uint")) or ros_type in ("octet", "byte", "char"):
        return seed % 100
    if "/" in ros_type:  # nested message, e.g. builtin_interfaces/Time
        return fill(type(current)(), seed)
    raise TypeError(f"no sample value for ROS type {ros_type!r}")


def expected(name: str, nonce: int):
    return fill(load_type("msg", name)(), nonce)


def publish(prefix: str, names: list[str], nonce: int, seconds: float) -> int:
    """Publish the sample message of each type on `<prefix>/<type>` every 50 ms for `seconds`."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    rclpy.init()
    node = rclpy.create_node(f"sefm_probe_pub_{os.getpid()}")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    outbox = [(node.create_publisher(load_type("msg", name), topic_for(prefix, name), qos), expected(name, nonce))
              for name in names]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pub, message in outbox:
            pub.publish(message)
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def topic_for(prefix: str, name: str) -> str:
    return f"{prefix}/{name.lower()}"


def serve(prefix: str, names: list[str], seconds: float) -> int:
    """Answer requests of each service type on `<prefix>/<type>` for `seconds`.

    Replies success=True with the request's repr as the message, so the caller
    can check the request crossed intact.
    """
    import rclpy

    rclpy.init()
    node = rclpy.create_node(f"sefm_probe_srv_{os.getpid()}")

    def handle(request, response):
        response.success = True
        response.message = repr(request)
        return response

    for name in names:
        node.create_service(load_type("srv", name), topic_for(prefix, name), handle)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def spawn(*args: str) -> subprocess.Popen:
    """Start the other side of a probe as a separate Python process."""
    return subprocess.Popen([sys.executable, "-m", "sefm_cli.interface_probe", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def close_probe(processes, executor, node, context) -> None:
    """End a probe: kill the other side's processes, then shut down this side's executor, node and ROS context."""
    import rclpy

    for proc in processes:
        proc.kill()
        proc.wait()
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def exchange(names=MESSAGE_TYPES, timeout: float = 20.0) -> dict[str, float]:
    """Receive each message type from a publisher in another process.

    Returns the seconds until each type arrived intact. Raises RuntimeError
    naming what did not arrive, or what arrived different.
    """
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    apply_runtime_defaults()
    run = uuid.uuid4().hex[:8]
    nonce = int(run, 16) % 1000
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"sefm_probe_sub_{run}", context=context)
    received: dict[str, float] = {}
    problems: list[str] = []
    start = time.monotonic()

    def make_callback(name):
        want = expected(name, nonce)

        def callback(message):
            if name in received:
                return
            if message == want:
                received[name] = time.monotonic() - start
            else:
                problems.append(f"{name}: received {message!r}, expected {want!r}")
        return callback

    prefix = f"/sefm_probe_{run}"
    for name in names:
        node.create_subscription(load_type("msg", name), topic_for(prefix, name), make_callback(name),
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    publishers = [spawn("publish", prefix, ",".join(names), str(nonce), str(timeout))]
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        while len(received) < len(names) and not problems and time.monotonic() - start < timeout:
            executor.spin_once(timeout_sec=0.05)
            for proc in publishers:
                if proc.poll() not in (None, 0):
                    raise RuntimeError(f"publisher process failed: {proc.stderr.read().strip()[-2000:]}")
    finally:
        close_probe(publishers, executor, node, context)
    if problems:
        raise RuntimeError("; ".join(problems))
    missing = [name for name in names if name not in received]
    if missing:
        raise RuntimeError(f"nothing received within {timeout:.0f} s for: {', '.join(missing)}")
    return received


def call_services(names=SERVICE_TYPES, timeout: float = 20.0) -> dict[str, str]:
    """Call each service type on a server in another process; returns the server's replies."""
    import rclpy

    apply_runtime_defaults()
    run = uuid.uuid4().hex[:8]
    prefix = f"/sefm_probe_{run}"
    servers = [spawn("serve", prefix, ",".join(names), str(timeout))]
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"sefm_probe_client_{run}", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    replies: dict[str, str] = {}
    try:
        deadline = time.monotonic() + timeout
        for name in names:
            srv_type = load_type("srv", name)
            client = node.create_client(srv_type, topic_for(prefix, name))
            if not client.wait_for_service(timeout_sec=max(0.1, deadline - time.monotonic())):
                raise RuntimeError(f"service {name} not available within {timeout:.0f} s")
            request = fill(srv_type.Request(), 7)
            # A request sent the moment the service is discovered can lose its answer (the server's reply
            # writer has not matched this client yet): ask again every RETRY s until the deadline.
            while True:
                future = client.call_async(request)
                wait = max(0.1, min(RETRY, deadline - time.monotonic()))
                executor.spin_until_future_complete(future, timeout_sec=wait)
                if future.done() or time.monotonic() >= deadline:
                    break
                client.remove_pending_request(future)
            if not future.done() or not future.result().success:
                raise RuntimeError(f"service {name}: no successful reply")
            if future.result().message != repr(request):
                raise RuntimeError(f"service {name}: the server saw {future.result().message}, sent {request!r}")
            replies[name] = future.result().message
    finally:
        close_probe(servers, executor, node, context)
    return replies


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish", help="publish sample messages (the other process of `exchange`)")
    p.add_argument("prefix")
    p.add_argument("types", help="comma-separated message type names")
    p.add_argument("nonce", type=int)
    p.add_argument("seconds", type=float)
    s = sub.add_parser("serve", help="serve sample services (the other process of `call_services`)")
    s.add_argument("prefix")
    s.add_argument("types", help="comma-separated service type names")
    s.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    apply_runtime_defaults()
    if args.cmd == "publish":
        return publish(args.prefix, args.types.split(","), args.nonce, args.seconds)
    return serve(args.prefix, args.types.split(","), args.seconds)


if __name__ == "__main__":
    sys.exit(main())
