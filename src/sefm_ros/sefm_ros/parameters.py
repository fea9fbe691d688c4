"""Node parameters the ROS way, from one typed dataclass per node.

A node's parameters are the fields of a frozen dataclass (`sefm_core.config.setting`: type, help, range;
choices as `Literal`). `declare` gives every field a typed descriptor (type, description, range, read-only:
the nodes read their parameters once, at start), checks every override before anything is declared (an
unknown name, a wrong type or a value out of range is one clear error, never ignored) and returns the
dataclass. The graph runner builds the same dataclasses, so the runner, the launch files, a params file and
the node agree by construction (`params_file` writes the `node: ros__parameters:` form that `--params-file`
reads).
"""
from __future__ import annotations

import dataclasses
import difflib
import pathlib
import typing

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.parameter import Parameter

from sefm_core.config import from_dict

_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_ROS_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
              float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
_TYPE_NAMES = {bool: "a bool (true/false)", int: "an integer", float: "a number", str: "a string"}
# Declared by rclpy itself on every node.
_BUILTIN = {"use_sim_time", "start_type_description_service"}


class ParameterError(ValueError):
    """A bad parameter override: the node refuses to start, with this one-line reason."""


def _base_type(hint):
    return str if typing.get_origin(hint) is typing.Literal else hint


def fields_of(cls) -> list[tuple[dataclasses.Field, type]]:
    """(field, type) of every parameter of `cls`; only bool, int, float, str and Literal choices."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if _base_type(hints[f.name]) not in _ROS_TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: {hints[f.name]} cannot be a ROS parameter")
        out.append((f, hints[f.name]))
    return out


def descriptor(f: dataclasses.Field, hint) -> ParameterDescriptor:
    base = _base_type(hint)
    text = f.metadata.get("help", "")
    d = ParameterDescriptor(name=f.name, type=_ROS_TYPES[base], description=text, read_only=True)
    if typing.get_origin(hint) is typing.Literal:
        d.additional_constraints = "one of: " + ", ".join(typing.get_args(hint))
    low, high = f.metadata.get("low"), f.metadata.get("high")
    if base is int and (low is not None or high is not None):
        d.integer_range = [IntegerRange(from_value=int(low if low is not None else _INT64[0]),
                                        to_value=int(high if high is not None else _INT64[1]), step=0)]
    elif base is float and (low is not None or high is not None):
        d.floating_point_range = [FloatingPointRange(from_value=float(low if low is not None else -1e308),
                                                     to_value=float(high if high is not None else 1e308),
                                                     step=0.0)]
    return d


def _override_value(where: str, hint, value):
    """An override's value as the field's type: an integer is a valid number (`-p segment_seconds:=10`)."""
    base = _base_type(hint)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise ParameterError(f"{where}: expected {_TYPE_NAMES[base]}, got {value!r}")
    return value


def declare(node, cls):
    """Declare the fields of dataclass `cls` as `node`'s parameters and return their values as a `cls`.

    Every override (from `parameter_overrides`, `-p`, or `--params-file`) is checked first: an unknown name
    (with the closest valid ones), a wrong type, a choice or range it leaves raise ParameterError.
    """
    table = fields_of(cls)
    names = [f.name for f, _ in table]
    overrides = dict(node._parameter_overrides)   # rclpy's merged overrides for this node (no public accessor)
    unknown = sorted(set(overrides) - set(names) - _BUILTIN)
    if unknown:
        hints = {u: difflib.get_close_matches(u, names, n=1) for u in unknown}
        said = ", ".join(f"{u} (did you mean {h[0]}?)" if h else u for u, h in hints.items())
        raise ParameterError(f"{node.get_name()}: unknown parameter(s) {said}; valid: {', '.join(names)}")
    given = {}
    for f, hint in table:
        if f.name in overrides:
            given[f.name] = _override_value(f"{node.get_name()}.{f.name}", hint, overrides[f.name].value)
            node._parameter_overrides[f.name] = Parameter(f.name, value=given[f.name])
    try:
        values = from_dict(cls, given, node.get_name())
        if hasattr(values, "check"):   # rules across fields, or beyond a range (e.g. > 0)
            values.check()
    except ValueError as exc:
        raise ParameterError(f"{node.get_name()}: {exc}" if not str(exc).startswith(node.get_name()) else str(exc)) \
            from None
    for f, hint in table:
        node.declare_parameter(f.name, getattr(values, f.name), descriptor(f, hint))
    return values


def values_of(params) -> dict:
    """{name: value} of a parameters dataclass: what a launch file or the graph runner passes."""
    return dataclasses.asdict(params)


def params_file(path: str | pathlib.Path, nodes: dict[str, object]) -> pathlib.Path:
    """Write `{node's full name: {ros__parameters: values}}` for `--params-file`; returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({name: {"ros__parameters": values_of(p)} for name, p in nodes.items()},
                                   sort_keys=False))
    return path
