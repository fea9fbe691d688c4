"""Diagnostic: how well can steps-to-go be predicted from the TRUE geometry?

Trains a small MLP on privileged state recorded by `sefm collect` (the two
blocks a block2block instruction names, the effector and its target) and
reports held-out rank correlations. An image model cannot beat this on the
same demonstrations; the gap to it is what perception and grounding lose.

    .venv/bin/python experiments/sefm_experiments/stg_geometry_ceiling.py DATASET [--val-fraction 0.1] [--seed 0]
"""
import argparse

import numpy as np
import torch

from sefm_core.data import EpisodeDataset
from sefm_core.metrics import spearman
from sefm_core.sft import split_episodes
from sefm_core.steps_to_go import hindsight_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=100)
    args = parser.parse_args()
    ds = EpisodeDataset(args.dataset)
    train_ids, val_ids = split_episodes(len(ds), args.val_fraction, args.seed)

    def arrays(ids):
        x, y, e = [], [], []
        for i in ids:
            ep = ds[i]
            goal, names = ep.metadata["goal"], ep.metadata["blocks"]
            if goal["family"] != "block2block" or "block_xy" not in ep.extras:
                raise SystemExit(f"episode {i}: needs block2block demos with block_xy (from `sefm collect`)")
            xy = ep.extras["block_xy"]
            a, b = names.index(goal["block"]), names.index(goal["reference"])
            x.append(np.concatenate([xy[:, a], xy[:, b], ep.proprio], 1))
            y.append(hindsight_labels(len(xy), ep.metadata["first_success_step"], args.max_steps))
            e.append(np.full(len(xy), i))
        return torch.tensor(np.concatenate(x)), torch.tensor(np.concatenate(y)), np.concatenate(e)

    (xt, yt, _), (xv, yv, ev) = arrays(train_ids), arrays(val_ids)
    torch.manual_seed(args.seed)
    k = args.max_steps + 1
    net = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                              torch.nn.ReLU(), torch.nn.Linear(128, k))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(3000):
        idx = torch.randint(0, len(xt), (256,))
        loss = torch.nn.functional.cross_entropy(net(xt[idx].float()), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        d = (torch.softmax(net(xv.float()), -1) * torch.arange(k)).sum(-1).numpy()
    y = yv.numpy()
    per = np.nanmean([spearman(d[ev == e], y[ev == e]) for e in np.unique(ev)])
    print(f"{len(train_ids)} train / {len(val_ids)} held-out demos; true geometry -> steps-to-go: "
          f"rank correlation per episode {per:.3f}, pooled {spearman(d, y):.3f}, MAE {np.abs(d - y).mean():.1f}")


if __name__ == "__main__":
    main()
