"""Typed configs from YAML: dataclasses shared by the command line and the launch files.

A config is a frozen dataclass whose fields carry their type (choices as `Literal`) and their help text
(`setting(default, "help")`). `from_dict` builds one from YAML and checks every value once; `add_flags`
derives the command-line flags from the same fields, so no default or choice is written twice.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
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
        check_range(fields[key], out[key], f"{where}.{key}")
    return cls(**out)


def setting(default, help: str, low: float | None = None, high: float | None = None):  # noqa: A002
    """A config field with its help text (shown by `--help` of every command that derives flags from it) and,
    for numbers, its inclusive range (checked by `from_dict`; a node declares it in its parameter descriptor)."""
    metadata = {"help": help, "low": low, "high": high}
    if isinstance(default, (dict, list)):   # a mutable default: each config gets its own copy
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def project(obj, cls):
    """The `cls` inside `obj`, an instance of a dataclass that extends `cls` (a node's parameters -> the config
    they extend): `cls` built from the fields it declares."""
    return cls(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)})


def check_range(f: dataclasses.Field, value, where: str) -> None:
    low, high = f.metadata.get("low"), f.metadata.get("high")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ConfigError(f"{where}: {value!r} is out of range {bounds}")


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:  # `X | None`: null in YAML, or an X
        return None if value is None else _coerce(next(a for a in args if a is not type(None)), value, where)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):   # a nested section
        return from_dict(hint, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
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


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_text(hint, text: str):
    """A command-line word as a value of type `hint` (bools strictly: true/false, yes/no, on/off, 1/0)."""
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:
        return None if text.lower() in ("none", "null", "") else parse_text(
            next(a for a in args if a is not type(None)), text)
    if hint is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"expected true or false, got {text!r}")
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    return text


def add_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = (), _prefix: str = "") -> None:
    """One `--field-name` flag per field of dataclass `cls`, nested sections included (a nested field keeps
    its own name as the flag, its dotted path as the destination: `--lr` -> "reinforce.lr"). Defaults are
    None ("not given"), so a config file's value stands; help shows the field's text, choices and default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            add_flags(parser, hint, skip, f"{_prefix}{f.name}.")
            continue
        inner = next((a for a in typing.get_args(hint) if a is not type(None)), hint) \
            if type(None) in typing.get_args(hint) else hint
        choices = typing.get_args(inner) if typing.get_origin(inner) is typing.Literal else None
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()

        def convert(text, hint=hint):
            try:
                return parse_text(hint, text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=_prefix + f.name, default=None, choices=choices,
                            type=None if choices else convert, metavar=None if choices else f.name.upper(),
                            help=f"{f.metadata.get('help', '')} (default: {default!r})".strip())


def apply_flags(values: dict, flags: dict) -> dict:
    """`values` (a config file's mapping) with every flag that was given (not None) put in place, dotted
    destinations into their nested sections."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    for dest, value in flags.items():
        if value is None:
            continue
        *sections, key = dest.split(".")
        target = out
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return out


@dataclasses.dataclass(frozen=True)
class ManagedParams:
    """The parameter of every lifecycle node (sefm_ros.managed): a node's parameters dataclass extends it."""
    autostart: bool = setting(False, "configure and activate at start (without a lifecycle manager)")
