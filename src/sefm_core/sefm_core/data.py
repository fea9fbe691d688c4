"""The episode data set: one on-disk format for demonstrations and rollouts.

    <dataset>/
      meta.json            format, version, and the shapes every episode shares
      episodes.jsonl       one JSON line per episode: file, length, success, instruction, metadata
      episodes/000042.safetensors
                           rgb      uint8   (T+1, H, W, 3)  observations o_0..o_T
                           proprio  float32 (T+1, P)        e.g. effector and target xy, or joint positions
                           actions  float32 (T, A)          the action applied after o_t
                           rewards  float32 (T,)
                           + optional per-step arrays (log_probs, tokens, steps_to_go, stamps, ...)

safetensors is a plain, pickle-free tensor container (a JSON header, then raw
arrays), memory-mapped on load; any safetensors reader can inspect an episode.
Episode files are written to a temporary name and renamed, and the index line
is appended only after that, so a crash never leaves a half-written episode
in the index; `transaction()` takes back every episode appended inside a block that fails.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import pathlib
from dataclasses import dataclass, field

import numpy as np
from safetensors.numpy import load_file, save_file

FORMAT = "sefm-episodes"
VERSION = 1
REQUIRED = ("rgb", "proprio", "actions", "rewards")


class DatasetError(RuntimeError):
    """A data set or episode that cannot be read or does not fit the data set."""


@dataclass
class Episode:
    rgb: np.ndarray
    proprio: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    instruction: str
    success: bool
    metadata: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rgb = np.ascontiguousarray(self.rgb, dtype=np.uint8)
        self.proprio = np.ascontiguousarray(self.proprio, dtype=np.float32)
        self.actions = np.ascontiguousarray(self.actions, dtype=np.float32)
        self.rewards = np.ascontiguousarray(self.rewards, dtype=np.float32)
        steps = len(self.actions)
        if self.rgb.ndim != 4 or self.rgb.shape[-1] != 3:
            raise DatasetError(f"rgb must be (T+1, H, W, 3), got {self.rgb.shape}")
        if len(self.rgb) != steps + 1 or len(self.proprio) != steps + 1:
            raise DatasetError(f"{steps} actions need {steps + 1} observations; got rgb {len(self.rgb)}, "
                               f"proprio {len(self.proprio)}")
        if len(self.rewards) != steps:
            raise DatasetError(f"{steps} actions need {steps} rewards, got {len(self.rewards)}")
        if steps == 0:
            raise DatasetError("an episode needs at least one action")
        for name, value in (("proprio", self.proprio), ("actions", self.actions), ("rewards", self.rewards)):
            if not np.all(np.isfinite(value)):
                raise DatasetError(f"{name} contains NaN or infinite values")

    @property
    def steps(self) -> int:
        return len(self.actions)

    @property
    def success_index(self) -> int | None:
        """Index of the observation at which the goal held (the last one), or None."""
        return self.steps if self.success else None


class EpisodeDataset:
    """Append episodes to, and read them from, a data set directory."""

    def __init__(self, root: str | os.PathLike, create: bool = False):
        self.root = pathlib.Path(root)
        self._meta_path = self.root / "meta.json"
        self._index_path = self.root / "episodes.jsonl"
        if not self._meta_path.exists():
            if not create:
                raise DatasetError(f"{self.root} is not an episode data set (no meta.json)")
            (self.root / "episodes").mkdir(parents=True, exist_ok=True)
            self.meta = {"format": FORMAT, "version": VERSION, "shapes": None}
            self._write_meta()
        else:
            try:
                self.meta = json.loads(self._meta_path.read_text())
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{self._meta_path}: not valid JSON ({exc})") from exc
            if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
                raise DatasetError(f"{self._meta_path}: format {self.meta.get('format')!r} "
                                   f"v{self.meta.get('version')}, expected {FORMAT!r} v{VERSION}")
        self.index = self._read_index()

    # --- reading -------------------------------------------------------------------------

    def _read_index(self) -> list[dict]:
        if not self._index_path.exists():
            return []
        entries = []
        for n, line in enumerate(self._index_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{self._index_path}:{n}: not valid JSON ({exc})") from exc
        return entries

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Episode:
        entry = self.index[i]
        path = self.root / entry["file"]
        try:
            arrays = load_file(str(path))
        except FileNotFoundError as exc:
            raise DatasetError(f"episode {entry['id']}: {path} is missing") from exc
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise DatasetError(f"episode {entry['id']}: {path} is not a readable safetensors file ({exc})") from exc
        missing = [k for k in REQUIRED if k not in arrays]
        if missing:
            raise DatasetError(f"episode {entry['id']}: {path} lacks {missing}")
        extras = {k: v for k, v in arrays.items() if k not in REQUIRED}
        return Episode(arrays["rgb"], arrays["proprio"], arrays["actions"], arrays["rewards"],
                       entry["instruction"], entry["success"], entry.get("metadata", {}), extras)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # --- writing -------------------------------------------------------------------------

    def append(self, episode: Episode) -> int:
        """Write an episode; returns its id."""
        shapes = {"rgb": list(episode.rgb.shape[1:]), "proprio": episode.proprio.shape[1],
                  "actions": episode.actions.shape[1]}
        if self.meta["shapes"] is None:
            self.meta["shapes"] = shapes
            self._write_meta()
        elif self.meta["shapes"] != shapes:
            raise DatasetError(f"episode shapes {shapes} do not match the data set's {self.meta['shapes']}")
        episode_id = (self.index[-1]["id"] + 1) if self.index else 0
        relative = f"episodes/{episode_id:06d}.safetensors"
        path = self.root / relative
        tmp = path.with_suffix(".tmp")
        arrays = {"rgb": episode.rgb, "proprio": episode.proprio, "actions": episode.actions,
                  "rewards": episode.rewards}
        for name, value in episode.extras.items():
            if name in arrays:
                raise DatasetError(f"extra array {name!r} would shadow a required one")
            arrays[name] = np.ascontiguousarray(value)
        save_file(arrays, str(tmp))
        os.replace(tmp, path)
        entry = {"id": episode_id, "file": relative, "steps": episode.steps, "success": bool(episode.success),
                 "instruction": episode.instruction, "metadata": episode.metadata}
        with open(self._index_path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.index.append(entry)
        return episode_id

    @contextlib.contextmanager
    def transaction(self):
        """Episodes appended inside the block stay only if it finishes: on an exception their files and index
        lines are removed and meta.json is restored, so the data set is as it was (then the exception goes on)."""
        count, meta = len(self.index), copy.deepcopy(self.meta)
        try:
            yield self
        except BaseException:
            for entry in self.index[count:]:
                (self.root / entry["file"]).unlink(missing_ok=True)
            del self.index[count:]
            tmp = self._index_path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in self.index))
            os.replace(tmp, self._index_path)
            if meta != self.meta:
                self.meta = meta
                self._write_meta()
            raise

    def _write_meta(self) -> None:
        tmp = self._meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.meta, indent=2, sort_keys=True))
        os.replace(tmp, self._meta_path)
