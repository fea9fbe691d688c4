"""`sefm sft`: Stage 1 (behavioural cloning + steps-to-go) on an episode data set.

    sefm sft DATASET [--config sft.yaml] [--run-dir runs/sft] [--backbone pretrained|scratch] [--steps N] [--resume]

A YAML config has two sections, `sft:` (SFTConfig) and `model:` (ModelConfig);
command-line flags override it. The losses read LanguageTable's privileged labels
(`sefm_sim.labels.LANGUAGE_TABLE`) where the data set recorded them (`sefm collect`,
or a bag with the sim bridge's ground truth); without them they train on the demos alone.
"""
from __future__ import annotations

import argparse
import sys

from sefm_core.config import ConfigError, from_dict, load_yaml
from sefm_core.data import DatasetError, EpisodeDataset
from sefm_core.model import ModelConfig
from sefm_core.sft import SFTConfig, train
from sefm_sim.labels import LANGUAGE_TABLE


def build_configs(args) -> tuple[SFTConfig, ModelConfig]:
    raw = load_yaml(args.config) if args.config else {}
    sft = dict(raw.get("sft", {}))
    model = dict(raw.get("model", {}))
    unknown = sorted(set(raw) - {"sft", "model"})
    if unknown:
        raise ConfigError(f"{args.config}: unknown section(s) {unknown}; valid: sft, model")
    sft["dataset"] = args.dataset
    for key in ("run_dir", "steps", "batch_size", "lr", "seed"):
        if getattr(args, key) is not None:
            sft[key] = getattr(args, key)
    if args.backbone:
        model["backbone"] = args.backbone
    if args.stg_input:
        model["stg_input"] = args.stg_input
    meta = EpisodeDataset(args.dataset).meta.get("shapes") or {}
    model.setdefault("proprio_dim", meta.get("proprio", 4))
    return from_dict(SFTConfig, sft, "sft"), from_dict(ModelConfig, model, "model")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sefm sft", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="the episode data set to train on")
    parser.add_argument("--config", help="YAML with sft: and model: sections")
    parser.add_argument("--run-dir", help="checkpoints and logs (overrides sft.run_dir)")
    parser.add_argument("--backbone", choices=["pretrained", "scratch", "siglip", "paligemma"],
                        help="the towers (overrides model.backbone)")
    parser.add_argument("--stg-input", choices=["trunk", "pointer"],
                        help="what the steps-to-go head reads (overrides model.stg_input)")
    parser.add_argument("--steps", type=int, help="training steps (overrides sft.steps)")
    parser.add_argument("--batch-size", type=int, help="samples per step (overrides sft.batch_size)")
    parser.add_argument("--lr", type=float, help="learning rate (overrides sft.lr)")
    parser.add_argument("--seed", type=int, help="training seed (overrides sft.seed)")
    parser.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoints/latest")
    args = parser.parse_args(argv)
    try:
        sft, model = build_configs(args)
        train(sft, model, resume=args.resume, labels=LANGUAGE_TABLE)
    except (ConfigError, DatasetError, ValueError) as exc:
        print(f"sefm sft: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
