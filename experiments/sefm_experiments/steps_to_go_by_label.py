"""d(o, g) against the true remaining steps on held-out demos: mean and spread of d per label, and the
episodes whose approach is ranked worst. Shows where steps-to-go stops telling distances apart.

    .venv/bin/python experiments/sefm_experiments/steps_to_go_by_label.py runs/p2bc_s2/checkpoints/final data/p2bc_test
"""
import argparse

import numpy as np

from sefm_core import checkpoint
from sefm_core.data import EpisodeDataset
from sefm_core.metrics import approach_states, spearman
from sefm_core.stg_eval import held_out_states, observation_steps_to_go
from sefm_sim.labels import LANGUAGE_TABLE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("dataset", help="held-out demos (their successful episodes are used)")
    parser.add_argument("--max-label", type=int, default=12)
    parser.add_argument("--worst", type=int, default=5, help="print this many worst-ranked approaches")
    args = parser.parse_args()
    model, _ = checkpoint.load(args.checkpoint)
    model.eval()
    dataset = EpisodeDataset(args.dataset)
    data, _ = held_out_states(model, dataset, [i for i in range(len(dataset)) if dataset.index[i]["success"]],
                              LANGUAGE_TABLE)
    d, labels, episode = observation_steps_to_go(model, data), data.stg.numpy(), data.episode.numpy()
    print("label  states  d mean  d std")
    for label in range(args.max_label + 1):
        rows = labels == label
        if rows.any():
            print(f"{label:5d}  {rows.sum():6d}  {d[rows].mean():6.2f}  {d[rows].std():5.2f}")
    ranked = sorted((spearman(*approach_states(d[episode == e], labels[episode == e])), e)
                    for e in np.unique(episode))
    for rho, e in ranked[:args.worst]:
        approach, _ = approach_states(d[episode == e], labels[episode == e])
        print(f"episode {e}: approach rank corr. {rho:.2f}, d along it {[round(float(x), 1) for x in approach]}")


if __name__ == "__main__":
    main()
