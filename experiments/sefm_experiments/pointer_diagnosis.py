"""Does the pointer find what the words name? On held-out demos (with camera metadata): each pointer head's
share of observations whose most-attended feature-map cell is within one cell of the labelled one, and how far
its attended (expected) position is from the label, in cells (a cell is about one step of the robot); head 0 on
first frames (robot far from the block), and head 0 on first frames when the instruction is swapped for one
naming another block of the scene (grounded: it moves to the newly named block).

    .venv/bin/python experiments/sefm_experiments/pointer_diagnosis.py runs/stage1/checkpoints/final data/stage1_test
"""
import argparse

import numpy as np
import torch

from sefm_core import checkpoint
from sefm_core.data import EpisodeDataset
from sefm_core.model import expected_position
from sefm_core.sft import pointer_cross_entropy
from sefm_sim.labels import POINTER_TARGETS, pointer_labels, scene_block_labels


def hit_share(logits: torch.Tensor, labels: np.ndarray) -> float:
    """Share of labelled positions (n, 2) whose most-attended cell of the (n, h, w) logits is within one cell."""
    return pointer_cross_entropy(logits[:, None], torch.from_numpy(labels)[:, None])[1]


def position_error(logits: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    """Distance, in cells, from the attended (expected) position of the (n, h, w) logits to each label (n, 2)."""
    n, h, w = logits.shape
    attention = torch.softmax(logits.flatten(1), -1).view(n, 1, h, w)
    error = (expected_position(attention).numpy() - labels) * np.array([(w - 1) / 2, (h - 1) / 2])
    return np.linalg.norm(error, axis=-1)[~np.isnan(labels).any(-1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("dataset")
    args = parser.parse_args()
    model, _ = checkpoint.load(args.checkpoint)
    model.eval()
    episodes = list(EpisodeDataset(args.dataset))
    hits, first, swapped = {j: [] for j in range(len(POINTER_TARGETS))}, [], []  # (share, observations)
    errors = {j: [] for j in range(len(POINTER_TARGETS))}
    for k, ep in enumerate(episodes):
        labels = pointer_labels(ep)
        with torch.no_grad():
            fmap, text = model.tower_features(torch.from_numpy(ep.rgb), [ep.instruction] * (ep.steps + 1))
            logits = model.heads.features(fmap, text, torch.from_numpy(ep.proprio)).pointer_logits
        if logits is None or np.isnan(labels).all():
            raise SystemExit("needs a checkpoint with pointer heads and demos with camera metadata (sefm collect)")
        for j in range(min(logits.shape[1], len(POINTER_TARGETS))):
            hits[j].append((hit_share(logits[:, j], labels[:, j]), ep.steps + 1))
            errors[j].append(position_error(logits[:, j], labels[:, j]))
        first.append(hit_share(logits[:1, 0], labels[:1, 0]))
        # The first frame again, with another demo's instruction that names a different block of this scene.
        block = ep.metadata["goal"]["block"]
        other = next((e for e in episodes[k + 1:] + episodes[:k] if e.metadata["goal"]["block"] != block), None)
        if other is None:
            continue
        positions, names = scene_block_labels(ep)
        with torch.no_grad():
            _, other_text = model.tower_features(torch.from_numpy(ep.rgb[:1]), [other.instruction])
            moved = model.heads.features(fmap[:1], other_text, torch.from_numpy(ep.proprio[:1])).pointer_logits
        swapped.append(hit_share(moved[:, 0], positions[:1, names.index(other.metadata["goal"]["block"])]))
    for j, found in hits.items():
        if found:
            share, count = np.array(found).T
            print(f"head {j} ({POINTER_TARGETS[j]}): within one cell on {np.average(share, weights=count):.2f} "
                  f"of {int(count.sum())} observations; attended position off by "
                  f"{np.mean(np.concatenate(errors[j])):.2f} cells (median {np.median(np.concatenate(errors[j])):.2f})")
    print(f"head 0 on first frames: {np.mean(first):.2f} of {len(first)}")
    print(f"head 0 with a swapped instruction (first frames): finds the newly named block on {np.mean(swapped):.2f} "
          f"of {len(swapped)}")


if __name__ == "__main__":
    main()
