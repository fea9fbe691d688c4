"""Typed configs from YAML: dataclasses shared by the command line and the launch files."""
from __future__ import annotations

import dataclasses
import pathlib
import typing

import yaml


class ConfigError(ValueError):
    pass


def from_dict(cls, values: dict, where: str = "config"):
    """Build dataclass `cls` from a dict: unknown keys and wrong types raise, naming the key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        out[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**out)


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:  # `X | None`: null in YAML, or an X
        return None if value is None else _coerce(next(a for a in args if a is not type(None)), value, where)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        inner = typing.get_args(hint)[0]
        return tuple(_coerce(inner, v, where) for v in value)
    if hint is dict and isinstance(value, dict):
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def load_yaml(path: str | pathlib.Path) -> dict:
    try:
        data = yaml.safe_load(pathlib.Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data
