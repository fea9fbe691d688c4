"""Stage 1: supervised fine-tuning with behavioural cloning + steps-to-go.

    loss = CE(action tokens of a_t | o_t, g)  +  stg_weight * CE(t' - t | o_t, g)

t' is the step at which the episode succeeded (hindsight label); episodes that
never succeeded contribute behavioural cloning only. With frozen towers, their
outputs are computed once per data set and cached next to it
(`<dataset>/cache/<backbone>.safetensors`), so an epoch touches only the heads.

The auxiliary, pointer and referring losses need labels that only privileged
state gives (where the named object is, where the camera sees it). This module
knows no simulator: a `Labels` object reads them from the episodes (LanguageTable:
`sefm_sim.labels.LANGUAGE_TABLE`), and `NO_LABELS`, the default, gives none,
as a real robot's bags do; the losses skip unknown labels.
"""
from __future__ import annotations

import csv
import json
import math
import pathlib
import time
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from sefm_core import checkpoint
from sefm_core.data import EpisodeDataset
from sefm_core.model import EFM, ModelConfig
from sefm_core.steps_to_go import expected_steps, hindsight_labels


@dataclass(frozen=True)
class SFTConfig:
    dataset: str = ""
    run_dir: str = "runs/sft"
    steps: int = 3000
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 1e-4
    stg_weight: float = 1.0
    val_fraction: float = 0.1
    val_every: int = 250
    checkpoint_every: int = 1000
    seed: int = 0
    stg_sigma: float = 0.0        # >0: Gaussian-smoothed steps-to-go target (std in steps): near misses cost less
    aux_weight: float = 0.0       # weight of the auxiliary position loss (model.aux_outputs must be AUX_LABELS)
    paraphrase: bool = False      # train on a random stored wording of each goal (metadata "paraphrases")
    bc_rest_frames: int = -1      # clone the zero actions of only this many resting frames after success
                                  # (-1: all). A few teach stopping at the goal; many teach standing still.
                                  # Every resting state still trains steps-to-go.
    negative_weight: float = 0.0  # mismatched goals: each sample is also paired with another episode's goal
    negative_min_steps: int = 10  # ... and must then put its steps-to-go mass on k >= this (far from done).
                                  # Demos never show the robot at the wrong object; without these the detector
                                  # learns "at an object" instead of "at the named object".
    pointer_weight: float = 0.0   # teach pointer head j to find pointer label j in the image (cross-entropy
                                  # over feature-map cells; labels from `Labels.pointer`)
    pointer_subcell: bool = False  # pointer targets spread over the 4 cells around the label (bilinear), so the
                                  # attended position can fall between cell centres: one cell is about a step
                                  # of the robot, and whole cells cap steps-to-go's ranking (docs/stage1.md)


@dataclass
class Arrays:
    """Every observation of a set of episodes, flattened, with its labels."""
    fmap: torch.Tensor        # (N, C, h, w) tower output (float16 when cached)
    text_index: torch.Tensor  # (N,) into `texts`
    texts: list[str]
    proprio: torch.Tensor     # (N, P)
    tokens: torch.Tensor      # (N, A) action tokens; -1 where the observation has no action (the last)
    stg: torch.Tensor         # (N,) steps-to-go label; -1 where there is none (failed episodes)
    episode: torch.Tensor     # (N,) episode index
    text_vectors: torch.Tensor  # (len(texts), D)
    aux: torch.Tensor | None = None  # (N, AUX_LABELS) what the aux head regresses (`Labels.aux`); nan: unknown
    wordings: torch.Tensor | None = None  # (N, P) indices into `texts` of the goal's wordings (padded by repeats)
    goal: torch.Tensor | None = None      # (N,) goal id: equal ids, equal goals (for mismatched-goal negatives)
    pointer: torch.Tensor | None = None   # (N, POINTER_LABELS, 2) where pointer head j should look; nan: unknown
    scene_blocks: torch.Tensor | None = None  # (N, B, 2) image position of every object in the scene; nan: none
    scene_names: torch.Tensor | None = None   # (N, B) each of those objects' index into `name_wordings`; -1: none
    name_wordings: torch.Tensor | None = None  # (names, W) wordings (indices into `texts`) of goals naming each
                                               # object, padded by repeats; -1 rows: no goal names it
    wording_points: torch.Tensor | None = None  # (names, W) True where that wording's goal is to reach the object
                                                # itself, so pointer head 1 (the target) finds it too


# --- labels from privileged state ------------------------------------------------------------------

AUX_LABELS = 4        # the aux head's targets per observation (model.aux_outputs)
POINTER_LABELS = 3    # pointer label j teaches pointer head j; heads beyond the labels are not supervised


class Labels(Protocol):
    """What privileged state says about an episode, for the losses that need more than the demo itself.
    Every array is per observation (T+1 rows), nan where unknown; the losses skip unknown labels."""

    def aux(self, episode) -> np.ndarray:
        """(T+1, AUX_LABELS): the aux head's regression targets."""

    def pointer(self, episode) -> np.ndarray:
        """(T+1, POINTER_LABELS, 2): where pointer head j should look, in image coordinates in [-1, 1]."""

    def scene_blocks(self, episode) -> tuple[np.ndarray, list[str]]:
        """Where every nameable object of the scene appears in the image ((T+1, B, 2) in [-1, 1]) and the
        objects' names; (T+1, 0, 2) and [] without them."""

    def goal_key(self, entry: dict) -> str:
        """What the goal of a data-set index entry is, independent of its wording: equal keys, equal goals."""

    def goal_object(self, episode) -> tuple[str | None, bool]:
        """The scene object the goal names (None: unknown), and whether the goal is to reach that object
        itself (so the target is the object too)."""


class NoLabels:
    """No privileged state (a real robot's bags): every label unknown, and a goal is its instruction."""

    def aux(self, episode) -> np.ndarray:
        return np.full((episode.steps + 1, AUX_LABELS), np.nan, np.float32)

    def pointer(self, episode) -> np.ndarray:
        return np.full((episode.steps + 1, POINTER_LABELS, 2), np.nan, np.float32)

    def scene_blocks(self, episode) -> tuple[np.ndarray, list[str]]:
        return np.zeros((episode.steps + 1, 0, 2), np.float32), []

    def goal_key(self, entry: dict) -> str:
        return entry["instruction"]

    def goal_object(self, episode) -> tuple[str | None, bool]:
        return None, False


NO_LABELS: Labels = NoLabels()


def referring_labels(scene_xy, scene_names, lengths, n_names, wordings_of):
    """Pad the per-episode scene objects to one width and tabulate each object name's wordings (and whether each
    asks to reach the object itself); all None without scene objects or wordings."""
    width = max((len(n) for n in scene_names), default=0)
    if width == 0 or not wordings_of:
        return None, None, None, None
    xy = np.full((sum(lengths), width, 2), np.nan, np.float32)
    names = np.full((sum(lengths), width), -1, np.int64)
    start = 0
    for positions, ids, n in zip(scene_xy, scene_names, lengths):
        xy[start:start + n, :len(ids)] = positions
        names[start:start + n, :len(ids)] = ids
        start += n
    most = max(len(w) for w in wordings_of.values())
    table, points = np.full((n_names, most), -1, np.int64), np.zeros((n_names, most), bool)
    for name, words in wordings_of.items():
        table[name] = np.resize(list(words), most)
        points[name] = np.resize(list(words.values()), most)
    return torch.from_numpy(xy), torch.from_numpy(names), torch.from_numpy(table), torch.from_numpy(points)


def all_texts(dataset: EpisodeDataset) -> list[str]:
    """Every instruction, then every stored paraphrase, each once."""
    texts = [e["instruction"] for e in dataset.index]
    texts += [t for e in dataset.index for t in e.get("metadata", {}).get("paraphrases", [])]
    return list(dict.fromkeys(texts))


def tower_cache(model: EFM, dataset: EpisodeDataset, log=print, batch: int = 64):
    """Tower outputs for every observation of the data set, computed once and stored beside it."""
    key = model.config.backbone_key()
    ids = [e["id"] for e in dataset.index]
    path = dataset.root / "cache" / f"{key}.safetensors"
    if path.exists():
        cached = load_file(str(path))
        meta = json.loads((path.with_suffix(".json")).read_text())
        if meta["episode_ids"] == ids and meta["texts"] == all_texts(dataset):
            return cached["fmap"], meta["texts"], cached["text_vectors"]
    log(f"computing {model.config.backbone} tower features for {sum(e['steps'] + 1 for e in dataset.index)} "
        f"frames (cached for later runs) ...")
    start = time.monotonic()
    maps, texts = [], all_texts(dataset)
    model.eval()
    with torch.no_grad():
        for episode in dataset:
            images = torch.from_numpy(episode.rgb)
            for i in range(0, len(images), batch):
                maps.append(model.backbone.image_features(images[i:i + batch]).half())
        text_vectors = torch.cat([model.backbone.text_features(texts[i:i + 256]) for i in range(0, len(texts), 256)])
    fmap = torch.cat(maps)
    path.parent.mkdir(exist_ok=True)
    save_file({"fmap": fmap.contiguous(), "text_vectors": text_vectors.contiguous()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"episode_ids": ids, "texts": texts}))
    log(f"  {len(fmap)} frames in {time.monotonic() - start:.0f} s -> {path}")
    return fmap, texts, text_vectors


def flatten(model: EFM, dataset: EpisodeDataset, episode_ids: list[int], fmap_all, texts, text_vectors,
            bc_rest_frames: int = -1, labels: Labels = NO_LABELS) -> Arrays:
    """Every observation of the episodes with its labels; `labels` reads what privileged state the data set has."""
    tokenizer, k = model.tokenizer, model.config.max_steps_to_go
    text_of = {t: i for i, t in enumerate(texts)}
    offsets = np.cumsum([0] + [e["steps"] + 1 for e in dataset.index])
    rows, proprio, tokens, stg, episode_of, text_index, aux, wordings, pointer = [], [], [], [], [], [], [], [], []
    goal_ids, goal_of = [], {}
    scene_xy, scene_names, name_of, wordings_of = [], [], {}, {}
    width = max(len(dataset.index[i].get("metadata", {}).get("paraphrases", [])) for i in episode_ids) or 1
    for i in episode_ids:
        ep = dataset[i]
        n = ep.steps + 1
        rows.append(np.arange(offsets[i], offsets[i] + n))
        proprio.append(ep.proprio)
        toks = np.full((n, tokenizer.dims), -1, np.int64)
        toks[:-1] = tokenizer.encode(ep.actions)
        tokens.append(toks)
        first = ep.metadata.get("first_success_step")
        if bc_rest_frames >= 0 and ep.success and first is not None:
            toks[first + bc_rest_frames:] = -1  # the goal holds: the robot only rests
        stg.append(hindsight_labels(n, first if ep.success and first is not None else ep.success_index, k))
        episode_of.append(np.full(n, i))
        text_index.append(np.full(n, text_of[ep.instruction]))
        aux.append(labels.aux(ep))
        pointer.append(labels.pointer(ep))
        positions, names = labels.scene_blocks(ep)
        scene_xy.append(positions)
        scene_names.append(np.array([name_of.setdefault(b, len(name_of)) for b in names], np.int64))
        words = [text_of[t] for t in ep.metadata.get("paraphrases", [])] or [text_of[ep.instruction]]
        named, reach = labels.goal_object(ep)
        if named in names:
            wordings_of.setdefault(name_of[named], {}).update(dict.fromkeys(words, reach))
        wordings.append(np.tile(np.resize(words, width), (n, 1)))
        goal_ids.append(np.full(n, goal_of.setdefault(labels.goal_key(dataset.index[i]), len(goal_of))))
    scene = referring_labels(scene_xy, scene_names, [len(r) for r in rows], len(name_of), wordings_of)
    rows = np.concatenate(rows)
    return Arrays(fmap_all[torch.from_numpy(rows)], torch.from_numpy(np.concatenate(text_index)), texts,
                  torch.from_numpy(np.concatenate(proprio)), torch.from_numpy(np.concatenate(tokens)),
                  torch.from_numpy(np.concatenate(stg)), torch.from_numpy(np.concatenate(episode_of)), text_vectors,
                  torch.from_numpy(np.concatenate(aux)), torch.from_numpy(np.concatenate(wordings)),
                  torch.from_numpy(np.concatenate(goal_ids)), torch.from_numpy(np.concatenate(pointer)), *scene)


def smoothed_targets(labels: torch.Tensor, classes: int, sigma: float) -> torch.Tensor:
    """A Gaussian over 0..K centred on each label (std sigma steps), normalised."""
    k = torch.arange(classes, dtype=torch.float32)
    w = torch.exp(-0.5 * ((k[None] - labels[:, None].float()) / sigma) ** 2)
    return w / w.sum(-1, keepdim=True)


def losses(model: EFM, batch: Arrays, idx: torch.Tensor, stg_weight: float,
           stg_sigma: float = 0.0, aux_weight: float = 0.0, generator: torch.Generator | None = None,
           negative_weight: float = 0.0, negative_min_steps: int = 10, negatives: torch.Generator | None = None,
           pointer_weight: float = 0.0, pointer_subcell: bool = False):
    text = batch.text_index[idx]
    if generator is not None and batch.wordings is not None:  # language augmentation: any wording of the goal
        pick = torch.randint(0, batch.wordings.shape[1], (len(idx),), generator=generator)
        text = batch.wordings[idx, pick]
    features = model.heads.features(batch.fmap[idx].float(), batch.text_vectors[text], batch.proprio[idx])
    action_logits, stg_logits = model.heads.outputs(features)
    tokens, stg = batch.tokens[idx], batch.stg[idx]
    has_action = tokens[:, 0] >= 0
    bc = F.cross_entropy(action_logits[has_action].flatten(0, 1), tokens[has_action].flatten()) \
        if has_action.any() else action_logits.sum() * 0
    has_stg = stg >= 0
    if not has_stg.any():
        stg_loss = stg_logits.sum() * 0
    elif stg_sigma > 0:
        target = smoothed_targets(stg[has_stg], stg_logits.shape[-1], stg_sigma)
        stg_loss = F.cross_entropy(stg_logits[has_stg], target)
    else:
        stg_loss = F.cross_entropy(stg_logits[has_stg], stg[has_stg])
    total = bc + stg_weight * stg_loss
    negative = 0.0
    if negative_weight > 0 and negatives is not None and batch.goal is not None:
        # The same observations, each with the goal of another sample in the batch: far from done.
        other = torch.randperm(len(idx), generator=negatives)
        mismatched = batch.goal[idx] != batch.goal[idx[other]]
        if mismatched.any():
            _, stg_neg = model.heads(batch.fmap[idx[mismatched]].float(), batch.text_vectors[text[other][mismatched]],
                                     batch.proprio[idx[mismatched]])
            logp = torch.log_softmax(stg_neg, dim=-1)
            far = -torch.logsumexp(logp[:, negative_min_steps:], dim=-1).mean()
            total = total + negative_weight * far
            negative = far.item()
    aux_loss = 0.0
    if aux_weight > 0 and model.heads.aux_head is not None and batch.aux is not None:
        target = batch.aux[idx]
        known = ~torch.isnan(target)
        if known.any():
            aux = F.smooth_l1_loss(model.heads.aux_head(features.hidden)[known], target[known], beta=0.1)
            total = total + aux_weight * aux
            aux_loss = aux.item()
    pointer_loss = pointer_hit = referring_hit = 0.0
    if pointer_weight > 0 and features.pointer_logits is not None and batch.pointer is not None:
        loss, hit = pointer_cross_entropy(features.pointer_logits, batch.pointer[idx], pointer_subcell)
        if loss is not None:
            total = total + pointer_weight * loss
            pointer_loss, pointer_hit = loss.item(), hit
        referring = referring_cross_entropy(model, batch, idx, negatives or generator, pointer_subcell)
        if referring is not None:
            total = total + pointer_weight * referring[0]
            referring_hit = referring[1]
    with torch.no_grad():
        acc = (action_logits[has_action].argmax(-1) == tokens[has_action]).float().mean().item() if has_action.any() else 0.0
        mae = (expected_steps(stg_logits[has_stg]) - stg[has_stg]).abs().mean().item() if has_stg.any() else 0.0
    return total, {"bc": bc.item(), "stg": stg_loss.item(), "token_acc": acc, "stg_mae": mae, "aux": aux_loss,
                   "negative": negative, "pointer": pointer_loss, "pointer_hit": pointer_hit,
                   "referring_hit": referring_hit}


def referring_cross_entropy(model: EFM, batch: Arrays, idx: torch.Tensor, generator: torch.Generator | None,
                            subcell: bool = False):
    """Pointer head 0 must find whichever object the words name, not only the one the demo went to: each
    observation is paired with a wording (from any goal) that names a random object of its scene, and head 0's
    attention is trained towards that object's cell (head 1's too when the words ask to reach the object
    itself). Demos alone let it learn "the object the robot heads for"."""
    if batch.scene_names is None or batch.name_wordings is None:
        return None
    names = batch.scene_names[idx]
    nameable = (names >= 0) & (batch.name_wordings[names.clamp(min=0), 0] >= 0)
    rows = nameable.any(-1)
    if not rows.any():
        return None
    scores = torch.rand(names.shape, generator=generator).masked_fill(~nameable, -1.0)
    column = scores.argmax(-1)[rows]
    sel, name = idx[rows], names[rows, column]
    pick = torch.randint(0, batch.name_wordings.shape[1], (len(sel),), generator=generator)
    text = batch.name_wordings[name, pick]
    logits = model.heads.point(batch.fmap[sel].float(), batch.text_vectors[text])
    block = batch.scene_blocks[sel, column]
    # Head 0 finds the named object; head 1 (the target) too when the words ask to reach the object itself.
    target = torch.where(batch.wording_points[name, pick][:, None], block, torch.full_like(block, float("nan")))
    loss, hit = pointer_cross_entropy(logits[:, :2], torch.stack([block, target], dim=1), subcell)
    return None if loss is None else (loss, hit)


def pointer_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                          subcell: bool = False) -> tuple[torch.Tensor | None, float]:
    """Cross-entropy of pointer attention (B, heads, h, w) against labelled image positions (B, >=heads, 2) in
    [-1, 1]; unknown (nan) or off-image labels are skipped. The target is the cell holding the label, or with
    `subcell` the label spread bilinearly over the 4 nearest cell centres (the grid `expected_position` uses), so
    the attention's expected position can equal the label. Also returns the share of labels whose most-attended
    cell is at most one cell from the label's cell."""
    b, heads, h, w = logits.shape
    labels = labels[:, :heads]
    known = ~torch.isnan(labels).any(-1) & (labels.abs() <= 1).all(-1)
    if not known.any():
        return None, 0.0
    flat = logits.flatten(2)[known]
    if subcell:
        target = bilinear_cells(labels[known], h, w)
        nearest = target.argmax(-1)   # the label's cell: the grid point with the most weight
        col, row = nearest % w, nearest // w
    else:
        col = ((labels[known][:, 0] + 1) / 2 * w).long().clamp(0, w - 1)
        row = ((labels[known][:, 1] + 1) / 2 * h).long().clamp(0, h - 1)
        target = row * w + col
    loss = F.cross_entropy(flat, target)
    with torch.no_grad():
        best = flat.argmax(-1)
        hit = (((best // w) - row).abs() <= 1) & (((best % w) - col).abs() <= 1)
    return loss, hit.float().mean().item()


def bilinear_cells(points: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, 2) positions in [-1, 1] -> (N, h * w) weights on the cell-centre grid of `expected_position`
    (centres at linspace(-1, 1)); the weighted mean of the centres is the position itself."""
    u = ((points[:, 0] + 1) / 2 * (w - 1)).clamp(0, w - 1)
    v = ((points[:, 1] + 1) / 2 * (h - 1)).clamp(0, h - 1)
    c0, r0 = u.floor().long().clamp(max=max(w - 2, 0)), v.floor().long().clamp(max=max(h - 2, 0))
    fu, fv = u - c0, v - r0
    out = torch.zeros(len(points), h * w, dtype=points.dtype, device=points.device)
    rows = torch.arange(len(points), device=points.device)
    for dr, dc, weight in ((0, 0, (1 - fv) * (1 - fu)), (0, 1, (1 - fv) * fu), (1, 0, fv * (1 - fu)), (1, 1, fv * fu)):
        r, c = (r0 + dr).clamp(max=h - 1), (c0 + dc).clamp(max=w - 1)
        out.index_put_((rows, r * w + c), weight, accumulate=True)
    return out


def split_episodes(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def train(cfg: SFTConfig, model_cfg: ModelConfig, resume: bool = False, log=print,
          labels: Labels = NO_LABELS) -> pathlib.Path:
    """Run Stage 1; returns the final checkpoint directory. `labels`: what privileged state the data set holds
    (the aux, pointer and referring losses train only on known labels)."""
    torch.manual_seed(cfg.seed)
    run = pathlib.Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    dataset = EpisodeDataset(cfg.dataset)
    if len(dataset) < 2:
        raise ValueError(f"{cfg.dataset}: need at least 2 episodes, found {len(dataset)}")
    latest = run / "checkpoints" / "latest"
    start_step = 0
    if resume and latest.exists():
        model, meta = checkpoint.load(latest)
        start_step = meta["training"]["step"]
        log(f"resuming from {latest} at step {start_step}")
    else:
        model = EFM(model_cfg)
    if model.config.trainable_backbone or model.config.backbone == "paligemma":
        raise ValueError("`sefm sft` trains heads on cached tower outputs: it needs frozen, separate image and "
                         "text towers (backbone pretrained, scratch or siglip, trainable_backbone false)")
    fmap, texts, text_vectors = tower_cache(model, dataset, log)
    train_ids, val_ids = split_episodes(len(dataset), cfg.val_fraction, cfg.seed)
    train_set = flatten(model, dataset, train_ids, fmap, texts, text_vectors, cfg.bc_rest_frames, labels)
    val_set = flatten(model, dataset, val_ids, fmap, texts, text_vectors, cfg.bc_rest_frames, labels)
    (run / "split.json").write_text(json.dumps({"train": train_ids, "val": val_ids}))
    (run / "config.json").write_text(json.dumps({"sft": asdict(cfg), "model": asdict(model.config)}, indent=2))
    log(f"{len(train_ids)} train / {len(val_ids)} val episodes, {len(train_set.tokens)} / {len(val_set.tokens)} "
        f"observations")

    optimizer = torch.optim.AdamW(model.heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if start_step and checkpoint.load_optimizer(optimizer, latest):
        log("  optimizer state restored")
    schedule = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))  # noqa: E731
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run / "tensorboard"))
    csv_path = run / "metrics.csv"
    fields = ["step", "split", "loss", "bc", "stg", "token_acc", "stg_mae", "aux", "negative", "pointer",
              "pointer_hit", "referring_hit", "lr", "seconds"]
    new_csv = not csv_path.exists() or start_step == 0
    csv_file = open(csv_path, "w" if new_csv else "a", newline="")
    rows = csv.DictWriter(csv_file, fieldnames=fields)
    if new_csv:
        rows.writeheader()
    generator = torch.Generator().manual_seed(cfg.seed + start_step)
    n = len(train_set.tokens)
    t0 = time.monotonic()
    model.heads.train()
    for step in range(start_step + 1, cfg.steps + 1):
        lr = cfg.lr * schedule(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, n, (cfg.batch_size,), generator=generator)
        loss, parts = losses(model, train_set, idx, cfg.stg_weight, cfg.stg_sigma,
                             cfg.aux_weight, generator if cfg.paraphrase else None,
                             cfg.negative_weight, cfg.negative_min_steps, generator, cfg.pointer_weight,
                             cfg.pointer_subcell)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.heads.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == cfg.steps:
            elapsed = time.monotonic() - t0
            log(f"\r  step {step}/{cfg.steps}  loss {loss.item():.3f}  bc {parts['bc']:.3f}  stg {parts['stg']:.3f}  "
                f"acc {parts['token_acc']:.2f}  mae {parts['stg_mae']:.1f}  {elapsed:.0f}s", end="")
            rows.writerow({"step": step, "split": "train", "loss": loss.item(), **parts, "lr": lr, "seconds": elapsed})
            for name, value in parts.items():
                writer.add_scalar(f"train/{name}", value, step)
        if step % cfg.val_every == 0 or step == cfg.steps:
            val = evaluate_losses(model, val_set, cfg)
            log(f"\n  val @ {step}: " + "  ".join(f"{k} {v:.3f}" for k, v in val.items()))
            rows.writerow({"step": step, "split": "val", **val, "lr": lr, "seconds": time.monotonic() - t0})
            for name, value in val.items():
                writer.add_scalar(f"val/{name}", value, step)
            csv_file.flush()
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint.save(model, latest, {"step": step, "dataset": cfg.dataset}, optimizer)
    csv_file.close()
    writer.close()
    final = run / "checkpoints" / "final"
    checkpoint.save(model, final, {"step": cfg.steps, "dataset": cfg.dataset, "val_episodes": val_ids})
    log(f"\nStage-1 checkpoint: {final}")
    return final


@torch.no_grad()
def evaluate_losses(model: EFM, data: Arrays, cfg: SFTConfig) -> dict[str, float]:
    model.heads.eval()
    totals, count = {}, 0
    pairing = torch.Generator().manual_seed(0)  # the same referring wordings at every validation
    for start in range(0, len(data.tokens), 512):
        idx = torch.arange(start, min(start + 512, len(data.tokens)))
        loss, parts = losses(model, data, idx, cfg.stg_weight, cfg.stg_sigma, cfg.aux_weight,
                             negatives=pairing, pointer_weight=cfg.pointer_weight,
                             pointer_subcell=cfg.pointer_subcell)
        for k, v in {"loss": loss.item(), **parts}.items():
            totals[k] = totals.get(k, 0.0) + v * len(idx)
        count += len(idx)
    model.heads.train()
    return {k: v / count for k, v in totals.items()}
