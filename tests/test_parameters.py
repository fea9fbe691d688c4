"""Node parameters the ROS way: typed descriptors from one dataclass per node, every override checked, params
files, and the graph runner's parameters equal to what each node declares."""
import dataclasses
import subprocess
import sys

import pytest
import rclpy
from rcl_interfaces.msg import ParameterType

from helpers import tiny_checkpoint
from sefm_ros.parameters import ParameterError, params_file

ROS_TYPE = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def declared(node) -> dict:
    names = [n for n in node._parameters if n not in ("use_sim_time", "start_type_description_service")]
    return {n: node.get_parameter(n).value for n in names}


def test_the_graph_runner_starts_every_node_with_exactly_the_parameters_it_declares(tmp_path, context):
    """node_specs is the one list the runner (both process modes) and the launch files start: built into real
    nodes, each declares exactly its dataclass's fields, typed and read-only, with the spec's values."""
    from sefm_bringup.graph import load_config, node_class, node_specs

    tiny_checkpoint(ckpt := tmp_path / "ckpt", 0)
    cfg = load_config(None, {"checkpoint": str(ckpt), "stations": 2, "run_dir": str(tmp_path / "run"),
                             "image_width": 32, "image_height": 18})
    specs = node_specs(cfg)
    station = ["language_table_driver", "safety_gate", "station_manager"]
    assert [s.name for s in specs] == ["trainer", "reward", "policy", "estop_latch", *station, *station,
                                       "lifecycle_manager"]
    assert specs[-1].params.nodes == ("/trainer,/reward,/policy,/station_0/safety_gate,/station_1/safety_gate,"
                                      "/station_0/station_manager,/station_1/station_manager")
    for spec in specs:
        node = node_class(spec)(namespace=spec.namespace, context=context, **dataclasses.asdict(spec.params))
        try:
            assert node.get_fully_qualified_name() == spec.full_name
            assert declared(node) == dataclasses.asdict(spec.params), spec.name
            for f in dataclasses.fields(spec.params):
                d = node.describe_parameter(f.name)
                assert d.read_only and d.description == f.metadata["help"], (spec.name, f.name)
                assert d.type == ROS_TYPE[type(f.default) if not isinstance(f.default, str) else str], f.name
                if f.metadata["low"] is not None:
                    assert (d.integer_range or d.floating_point_range)[0].from_value == f.metadata["low"]
        finally:
            node.destroy_node()


def test_the_trainer_and_bridge_parameters_extend_the_configs_they_come_from():
    from sefm_core.stage2_config import ReinforceConfig
    from sefm_sim.station import StationConfig
    from sefm_sim_bridge.params import BridgeParams
    from sefm_trainer.params import TrainerParams
    from sefm_bringup.graph import ImproveConfig

    for child, parent in ((TrainerParams, ReinforceConfig), (BridgeParams, StationConfig),
                          (ImproveConfig, StationConfig)):
        inherited = {f.name: f.default for f in dataclasses.fields(child) if f.name in
                     {g.name for g in dataclasses.fields(parent)}}
        assert inherited == {g.name: g.default for g in dataclasses.fields(parent)}, child


def test_an_integer_is_a_valid_number_and_a_params_file_is_read(tmp_path):
    from sefm_sim_bridge.bridge_node import BridgeNode
    from sefm_sim_bridge.params import BridgeParams

    path = params_file(tmp_path / "params.yaml",
                       {"/station_p/sim_bridge": BridgeParams(max_steps=7, image_width=32, image_height=18,
                                                              families="point2block", seed=11)})
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(path), "-p", "watchdog_timeout:=2"])
    try:
        node = BridgeNode(namespace="/station_p", context=ctx)
        assert (node.params.max_steps, node.params.seed, node.params.families) == (7, 11, "point2block")
        assert node.params.watchdog_timeout == 2.0 and isinstance(node.params.watchdog_timeout, float)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


@pytest.mark.parametrize("override, reason", [
    ("segment_secnds:=10", "unknown parameter(s) segment_secnds (did you mean segment_seconds?)"),
    ("storage:=zip", "recorder.storage: 'zip' is not one of mcap, sqlite3"),
    ("segment_seconds:=0", "recorder.segment_seconds: 0.0 is out of range [0.1, inf]"),
    ("segment_seconds:=abc", "recorder.segment_seconds: expected a number, got 'abc'"),
    ("acknowledge:=maybe", "recorder.acknowledge: expected a bool (true/false), got 'maybe'"),
])
def test_a_bad_override_stops_the_node_with_one_line_and_exit_2(tmp_path, override, reason):
    out = tmp_path / "bag"
    proc = subprocess.run([sys.executable, "-m", "sefm_bags.recorder_node", "--ros-args", "-p", f"output:={out}",
                           "-p", override], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert reason in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()   # refused before it made anything


def test_required_parameters_are_named(context):
    from sefm_policy.policy_node import PolicyNode

    with pytest.raises(ParameterError, match="checkpoint is required"):
        PolicyNode(context=context)
    with pytest.raises(ParameterError, match="round_timeout"):
        PolicyNode(context=context, checkpoint="x", round_timeout=0.0)
