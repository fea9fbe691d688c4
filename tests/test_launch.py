"""The launch files are installed with sefm_bringup, and they start the graph runner's nodes with its parameters.

`launch` and `launch_ros` are not available as wheels here, so the test builds sefm_bringup's wheel (the
install layout `colcon build` produces: share/sefm_bringup/launch, config), loads the installed launch files
with the launch API replaced by a recorder of what it is asked to start, and compares that with
`sefm_bringup.graph.node_specs`, which the runner starts (tests/test_parameters.py builds those into nodes).
"""
import dataclasses
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import types
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def share(tmp_path_factory):
    """share/sefm_bringup of the installed package (from its wheel)."""
    out = tmp_path_factory.mktemp("wheel")
    source = shutil.copytree(ROOT / "src" / "sefm_bringup", out / "source")   # a build writes into its source
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True)
    wheel = next(out.glob("sefm_bringup-*.whl"))
    zipfile.ZipFile(wheel).extractall(out / "x")
    return next((out / "x").glob("sefm_bringup-*.data")) / "data" / "share" / "sefm_bringup"


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


def fake_launch_api(monkeypatch, share_dir):
    """Just enough of `launch`, `launch_ros` and `ament_index_python` to record a launch description."""
    modules = {name: types.ModuleType(name) for name in (
        "launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions",
        "launch_ros.parameter_descriptions", "ament_index_python", "ament_index_python.packages")}
    modules["launch"].LaunchDescription = lambda entities: list(entities)
    modules["launch.actions"].DeclareLaunchArgument = type("DeclareLaunchArgument", (Recorded,), {})
    modules["launch.actions"].OpaqueFunction = type("OpaqueFunction", (Recorded,), {})
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch_ros.actions"].Node = type("Node", (Recorded,), {})
    modules["launch_ros.parameter_descriptions"].ParameterValue = type("ParameterValue", (Recorded,), {})
    modules["ament_index_python.packages"].get_package_share_directory = \
        lambda package: str(share_dir) if package == "sefm_bringup" else pytest.fail(f"asked for {package}")
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def run(description, given: dict):
    """What `ros2 launch` does with the description: arguments with defaults, then the opaque functions."""
    arguments = {a.args[0]: a.kwargs.get("default_value") for a in description
                 if type(a).__name__ == "DeclareLaunchArgument"}
    unknown = set(given) - set(arguments)
    assert not unknown, f"not launch arguments: {unknown}"
    context = types.SimpleNamespace(launch_configurations={**arguments, **given})
    nodes = [e for e in description if type(e).__name__ == "Node"]
    for e in description:
        if type(e).__name__ == "OpaqueFunction":
            nodes += e.kwargs["function"](context)
    return arguments, nodes


def entry_points(package: str) -> set[str]:
    text = (ROOT / "src" / package / "setup.py").read_text()
    return set(re.findall(r"'(\w+) = [\w.]+:main'", text))


def test_the_launch_files_and_configs_are_installed(share):
    assert {p.name for p in (share / "launch").iterdir()} == {"improve.launch.py", "record.launch.py"}
    shipped = {p.name for p in (ROOT / "src" / "sefm_bringup" / "config").glob("*.yaml")}
    assert shipped and {p.name for p in (share / "config").iterdir()} == shipped


def test_improve_launch_starts_the_runners_graph_with_its_parameters(share, monkeypatch):
    from sefm_bringup.graph import load_config, node_specs

    fake_launch_api(monkeypatch, share)
    description = load(share / "launch" / "improve.launch.py")
    arguments, nodes = run(description, {"checkpoint": "runs/sft/checkpoints/final", "namespace": "fleet_a",
                                         "stations": "3"})
    assert {"config", "checkpoint", "namespace"} <= set(arguments)
    cfg = load_config(str(share / "config" / "improve_fleet_language_table.yaml"),
                      {"checkpoint": "runs/sft/checkpoints/final", "stations": 3})
    specs = node_specs(cfg, "fleet_a")
    assert len(nodes) == len(specs) == 5 + 3 * 3   # learning nodes, e-stop latch, lifecycle manager; 3 per station
    for node, spec in zip(nodes, specs):
        k = node.kwargs
        assert (k["package"], k["executable"], k["name"], k["namespace"]) == \
            (spec.package, spec.executable, spec.name, spec.namespace)
        assert k["executable"] in entry_points(k["package"])   # `ros2 run` finds it
        assert k["parameters"] == [dataclasses.asdict(spec.params)]
        assert k["remappings"] == list(spec.remappings)
    assert {n.kwargs["namespace"] for n in nodes} == {"/fleet_a", *(f"/fleet_a/station_{i}{d}" for i in range(3)
                                                                    for d in ("", "/driver"))}
    assert nodes[-1].kwargs["parameters"][0]["nodes"].split(",")[:4] == ["/fleet_a/trainer", "/fleet_a/reward",
                                                                     "/fleet_a/policy", "/fleet_a/station_0/safety_gate"]
    assert all(n.kwargs["parameters"][0]["checkpoint"] == "runs/sft/checkpoints/final" for n in nodes[:3])
    # the shipped default config is the demo's fleet recipe
    _, default = run(description, {"checkpoint": "ckpt"})
    assert len(default) == 5 + 3 * load_config(str(share / "config" / "improve_fleet_language_table.yaml"),
                                           {"checkpoint": "ckpt"}).stations


def test_record_launch_arguments_are_the_recorders_parameters(share, monkeypatch):
    from sefm_bags.params import RecorderParams

    fake_launch_api(monkeypatch, share)
    arguments, nodes = run(load(share / "launch" / "record.launch.py"), {"stations": "station_0,station_1"})
    fields = dataclasses.fields(RecorderParams)
    assert set(arguments) == {f.name for f in fields}
    (recorder,) = nodes
    assert (recorder.kwargs["package"], recorder.kwargs["executable"]) == ("sefm_bags", "recorder")
    assert "recorder" in entry_points("sefm_bags")
    values = recorder.kwargs["parameters"][0]
    assert {name: v.kwargs["value_type"] for name, v in values.items()} == {f.name: type(f.default) for f in fields}


def test_launching_applies_the_localhost_dds_default(share, monkeypatch):
    from sefm_ros.dds import LOCALHOST_PROFILE

    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    fake_launch_api(monkeypatch, share)
    load(share / "launch" / "record.launch.py")
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == str(LOCALHOST_PROFILE)
