"""Checks shared by every env: an action reaches the physics only if it is sound."""
from __future__ import annotations

import numpy as np


class InvalidActionError(ValueError):
    """An action that must never reach a robot: wrong shape, NaN or infinite."""


def checked_action(action, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Return `action` as float64 clipped to [low, high]; raise on wrong shape or non-finite values.

    Out-of-range values are clipped (a policy may legitimately overshoot);
    malformed ones raise, because no clipping can make them meaningful.
    """
    try:
        array = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidActionError(f"action is not numeric: {action!r}") from exc
    if array.shape != low.shape:
        raise InvalidActionError(f"action has shape {array.shape}, expected {low.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidActionError(f"action has non-finite values: {array.tolist()}")
    return np.clip(array, low, high)


def with_overrides(config, overrides: dict, kind: str):
    """A copy of the frozen dataclass `config` with `overrides`; unknown names raise, listing the valid ones."""
    if not overrides:
        return config
    valid = set(type(config).__dataclass_fields__)
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown {kind} option(s) {unknown}; valid: {', '.join(sorted(valid))}")
    # YAML and JSON give lists where the configs hold tuples.
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return type(config)(**{**config.__dict__, **fixed})


def choice_error(kind: str, value, valid) -> ValueError:
    return ValueError(f"unknown {kind} {value!r}; valid: {', '.join(map(str, valid))}")
