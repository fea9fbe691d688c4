"""`sefm pipeline` (what `make demo` runs): demos as rosbag2 -> import -> Stage 1 -> Stage 2 on the graph -> report.

    sefm pipeline --config src/sefm_bringup/config/demo_language_table.yaml [--run-dir runs/demo]

Every stage is the `sefm` command a user would type, run as its own process
with its output in <run_dir>/logs/<stage>.log. A stage is done when it wrote
its completion marker (<run_dir>/stages/, `sefm_cli.stages`): a rerun skips
finished stages, resumes or redoes an interrupted one (and says which), and
refuses a finished stage whose configuration changed. Seeds come from the seed
plan (`sefm_core.seeds`); the report states the ranges used. The report
folder (<run_dir>/report) holds report.md (BC against self-improved held-out
success with Wilson 95% intervals, the extra episodes used) and the plots.
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal

from sefm_cli.stages import SEFM, StageError, run_stage
from sefm_core import metrics, seeds
from sefm_core.config import ConfigError, from_dict, load_yaml, setting
from sefm_sim.station import BlockMode


@dataclass(frozen=True)
class PipelineConfig:
    run_dir: str = setting("runs/demo", "the run folder: bags, data set, checkpoints, evaluations, report")
    demos: int = setting(200, "oracle demonstrations recorded through the graph", low=1)
    demo_stations: int = setting(2, "stations recording demonstrations", low=1)
    families: str = setting("point2block", "LanguageTable instruction families (docs/stage1.md)")
    block_mode: BlockMode = setting("BLOCK_4", "LanguageTable blocks")
    settle_steps: int = setting(10, "resting frames recorded at the goal after success", low=0)
    image_size: str = setting("128x72", "camera image size WxH")
    seed: int | None = setting(None, "first demo seed (default: the seed plan's train_demos start)")
    sft_config: str = setting("src/sefm_bringup/config/sft_language_table.yaml", "the Stage-1 recipe (sft: and "
                                                                                "model: sections)")
    sft: dict = setting({}, "values put over the Stage-1 recipe's sections, e.g. {sft: {steps: 5}}")
    improve_config: str = setting("src/sefm_bringup/config/improve_language_table.yaml", "the Stage-2 recipe "
                                                                                        "(ImproveConfig)")
    improve: dict = setting({}, "ImproveConfig values put over the Stage-2 recipe, e.g. {versions: 1}")
    eval_episodes: int = setting(100, "held-out evaluation episodes per policy version", low=1)
    eval_seed: int | None = setting(None, "first evaluation seed (default: the seed plan's eval start)")
    eval_every: int = setting(5, "also evaluate every this many policy versions (the practice curve)", low=1)
    eval_policy: Literal["greedy", "sampled"] = setting("greedy", "greedy, or sampled: the policy REINFORCE "
                                                                  "trains (docs/results.md)")
    eval_max_steps: int = setting(200, "step cap of an evaluation episode (as Stage 2's practice cap)", low=1)
    success_threshold: float | None = setting(None, "the reward node's detector d <= s over the Stage-2 recipe's; "
                                                    "unset: the recipe's; negative: detector off (then the "
                                                    "recipe's sim_success_ends decides)")


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def stage_configs(cfg: PipelineConfig, run: pathlib.Path, checkpoint: str = "<Stage-1 checkpoint>",
                  threshold: float | None = None) -> tuple[dict, "ImproveConfig"]:
    """The Stage-1 and Stage-2 configs this run uses: the recipes with the pipeline's values on top, checked
    whole (a ConfigError before anything runs)."""
    from sefm_bringup.graph import load_config

    sft = deep_merge(load_yaml(cfg.sft_config), cfg.sft)
    unknown = sorted(set(sft) - {"sft", "model"})
    if unknown:
        raise ConfigError(f"sft: unknown section(s) {unknown}; valid: sft, model")
    from sefm_core.model import ModelConfig
    from sefm_core.sft import SFTConfig

    from_dict(SFTConfig, sft.get("sft", {}), "sft.sft")
    from_dict(ModelConfig, sft.get("model", {}), "sft.model")
    width, height = cfg.image_size.lower().split("x")
    improve = deep_merge(load_yaml(cfg.improve_config), {
        "checkpoint": checkpoint, "run_dir": str(run / "improve"), "families": cfg.families,
        "block_mode": cfg.block_mode, "image_width": int(width), "image_height": int(height),
        **({} if threshold is None else {"success_threshold": threshold})})
    improve = deep_merge(improve, cfg.improve)
    return sft, load_config(None, improve)


PipelineError = StageError


def evaluate(run: pathlib.Path, cfg: PipelineConfig, checkpoint: pathlib.Path, name: str, log,
             extra: tuple[str, ...] = ()) -> dict:
    out = run / "eval" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    run_stage(f"eval_{name}", SEFM + ["eval", str(checkpoint), "--episodes", str(cfg.eval_episodes), "--families",
                                      cfg.families, "--block-mode", cfg.block_mode, "--seed", str(eval_seed(cfg)),
                                      "--image-size", cfg.image_size, "--policy", cfg.eval_policy,
                                      "--max-steps", str(cfg.eval_max_steps), "--json", str(out), *extra],
              run, [out], out, log)
    return json.loads(out.read_text())


def eval_seed(cfg: PipelineConfig) -> int:
    return seeds.first_seed("eval") if cfg.eval_seed is None else cfg.eval_seed


def seed_use(cfg: PipelineConfig) -> dict:
    """The demo and evaluation seeds the pipeline will use; a SeedPlanError if one leaves its range.
    (Stage 2 states its practice seeds itself: <run_dir>/improve/seeds.json.)"""
    quota = -(-cfg.demos // cfg.demo_stations)
    starts = seeds.station_seeds("train_demos", cfg.demo_stations, quota, cfg.seed)
    return {"train_demos": [(s, quota) for s in starts],
            "eval": seeds.check("eval", eval_seed(cfg), cfg.eval_episodes)}


def run_pipeline(cfg: PipelineConfig, log=print) -> pathlib.Path:
    run = pathlib.Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "pipeline_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    start = time.monotonic()
    bag, dataset, sft_run = run / "bags" / "demos", run / "dataset", run / "sft"
    demo_seed = seed_use(cfg)["train_demos"][0][0]
    run_stage("demos", SEFM + ["demos", str(bag), "--episodes", str(cfg.demos), "--stations", str(cfg.demo_stations),
                               "--families", cfg.families, "--block-mode", cfg.block_mode, "--seed", str(demo_seed),
                               "--image-size", cfg.image_size, "--settle-steps", str(cfg.settle_steps)],
              run, [bag], bag / "metadata.yaml", log)
    run_stage("import", SEFM + ["bag", "import", str(bag), "--out", str(dataset)], run, [dataset],
              dataset / "episodes.jsonl", log)
    sft_config, _ = stage_configs(cfg, run)
    sft_path = run / "configs" / "sft.yaml"   # the recipe as this run trains it (its stage signature hashes it)
    write_yaml(sft_path, sft_config)
    run_stage("sft", SEFM + ["sft", str(dataset), "--config", str(sft_path), "--run-dir", str(sft_run)],
              run, [sft_run], sft_run / "checkpoints" / "final" / "model.safetensors", log, resume=["--resume"])
    bc_checkpoint = sft_run / "checkpoints" / "final"
    # BC, and the steps-to-go quality on held-out demos
    bc = evaluate(run, cfg, bc_checkpoint, "v0", log, ("--dataset", str(dataset), "--run-dir", str(sft_run)))
    results = {0: bc["success"]["all"]}
    _, improve = stage_configs(cfg, run, str(bc_checkpoint), cfg.success_threshold)
    improve_path = run / "configs" / "improve.yaml"
    write_yaml(improve_path, asdict(improve))
    versions, improve_run = improve.versions, pathlib.Path(improve.run_dir)
    # an interrupted Stage 2 resumes: the trainer continues from its newest checkpoint
    run_stage("improve", SEFM + ["improve", "--config", str(improve_path)],
              run, [improve_run], improve_run / "checkpoints" / f"v{versions}" / "model.safetensors", log, resume=[])
    for v in sorted({*range(cfg.eval_every, versions, cfg.eval_every), versions}):
        results[v] = evaluate(run, cfg, improve_run / "checkpoints" / f"v{v}", f"v{v}", log)["success"]["all"]
    report = write_report(run, cfg, improve, results, bc.get("steps_to_go", {}), time.monotonic() - start)
    log(f"report: {report}")
    return report


def practice_episodes(improve_run: pathlib.Path) -> dict[int, int]:
    """Policy version -> on-policy episodes used to reach it (from the trainer's metrics.csv)."""
    total, out = 0, {0: 0}
    with open(improve_run / "metrics.csv") as f:
        for row in csv.DictReader(f):
            total += int(row["episodes"])
            out[int(row["version"])] = total
    return out


def practice_outcomes(improve_run: pathlib.Path, episodes) -> dict:
    """Counts over every practice episode the trainer recorded (stored or unused): how each ended, how many
    the detector ended, and the simulator's verdict where it gave one."""
    records = [e["metadata"] for e in episodes.index]
    unused = improve_run / "unused_episodes.jsonl"
    if unused.exists():
        records += [json.loads(line) for line in unused.read_text().splitlines()]
    reasons: dict[str, int] = {}
    for r in records:
        reasons[r.get("end_reason", "?")] = reasons.get(r.get("end_reason", "?"), 0) + 1
    judged = [r["oracle_success"] for r in records if r.get("oracle_success") is not None]
    out = {"records": len(records), "end_reason": reasons, "detected": sum(bool(r.get("detector_success"))
                                                                            for r in records),
           "oracle_judged": len(judged), "oracle_success": sum(judged), "detector_by_versions": [],
           "operator_asks": sum(int(r.get("operator_asks", 0)) for r in records),
           "steps": sum(int(r.get("steps", 0)) for r in records)}
    # the detector's false ends and misses, and how they drift: four blocks of policy versions
    version = [r.get("policy_version", r.get("trainer_version", 0)) for r in records]
    size = max(1, -(-(max(version, default=0) + 1) // 4))
    for first in range(0, max(version, default=0) + 1, size):
        block = [r for r, v in zip(records, version) if first <= v < first + size]
        m = metrics.detector_on_practice((r.get("detector_success"), r.get("oracle_success")) for r in block)
        out["detector_by_versions"].append({"versions": [first, first + size - 1], **asdict(m),
                                            "false_end_rate": m.false_end_rate, "miss_rate": m.miss_rate})
    return out


def detector_table(outcomes: dict) -> list[str]:
    """The detector against the simulator's verdict at the end of each practice episode, by version block."""
    rows = [b for b in outcomes["detector_by_versions"] if b["episodes"]]
    if not rows or not any(b["detected"] for b in rows):
        return []
    lines = ["", "The learned detector on the policy's own practice episodes (the simulator's verdict at each "
             "episode's end, measurement only). False end: the detector ended it and the goal did not hold. Miss: "
             "the goal held at the end and the detector had not ended it.", "",
             "| versions | episodes judged | detector ends | false ends | goal held at the end | missed |",
             "|---|---|---|---|---|---|"]
    for b in rows:
        low, high = b["versions"]
        lines.append(f"| v{low}-v{high} | {b['episodes']} | {b['detected']} | {b['false_ends']} "
                     f"({b['false_end_rate']:.2f}) | {b['goal_at_end']} | {b['missed']} ({b['miss_rate']:.2f}) |")
    return lines


def verdict(bc: dict, improved: dict) -> str:
    """What the two 95% intervals say: above BC, below BC, or no separation."""
    if improved["low"] > bc["high"]:
        return "Intervals do not overlap: self-improvement is above BC"
    if improved["high"] < bc["low"]:
        return "Intervals do not overlap: self-improvement is BELOW BC (practice made the policy worse)"
    return "Intervals overlap: no separation at this scale"


def detector_note(improve) -> str:
    """What ended the practice episodes, from the Stage-2 config the run used (ImproveConfig)."""
    if improve.success_threshold < 0:
        return ("The reward node's detector was off (success_threshold < 0): practice episodes ended at the "
                + ("simulator's success (the Stage-2 recipe's sim_success_ends: a simulator-only stand-in for the "
                   "detector) or at " if improve.sim_success_ends else "") + "the step cap.")
    return (f"Practice episodes ended at the learned detector, d <= {improve.success_threshold:.2f} on "
            f"{improve.success_hold} observation(s) in a row, or at the step cap ({improve.max_steps})"
            + (", or at the simulator's success (sim_success_ends)" if improve.sim_success_ends else
               "; nothing from the simulator ended one") + ".")


def write_report(run: pathlib.Path, cfg: PipelineConfig, improve, results: dict, stg: dict,
                 seconds: float) -> pathlib.Path:
    from sefm_cli import plots
    from sefm_core.data import EpisodeDataset

    report = run / "report"
    report.mkdir(exist_ok=True)
    used = practice_episodes(run / "improve")
    final = max(results)
    bc, improved = results[0], results[final]

    def cell(r):
        return f"{r['rate']:.2f} [{r['low']:.2f}, {r['high']:.2f}] ({round(r['rate'] * r['n'])}/{r['n']})"

    separated = improved["low"] > bc["high"]
    lines = ["# SEFM pipeline report", "",
             f"`sefm pipeline`; LanguageTable {cfg.block_mode}, families `{cfg.families}`, {cfg.demos} oracle "
             f"demos recorded as rosbag2; held-out evaluation on {cfg.eval_episodes} seeded episodes from seed "
             f"{eval_seed(cfg)}, {cfg.eval_policy} actions, at most {cfg.eval_max_steps} steps; Wilson 95% "
             f"intervals. Wall clock {seconds / 60:.1f} min.", "",
             "| policy | held-out success | extra (practice) episodes |", "|---|---|---|",
             f"| BC (Stage 1) | {cell(bc)} | 0 |",
             f"| self-improved (Stage 2, v{final}) | {cell(improved)} | {used.get(final, '?')} |", "",
             f"{verdict(bc, improved)}.", "",
             f"Stage-1 steps-to-go on {stg.get('episodes', '?')} held-out demos: rank correlation per episode "
             f"{stg.get('approach_spearman', float('nan')):.2f} over the approach, "
             f"{stg.get('per_episode_spearman', float('nan')):.2f} over every state, pooled {stg.get('pooled_spearman', float('nan')):.2f}"
             f"; on those demos the detector d <= s does best at s = {stg.get('threshold', float('nan')):.2f} (F1 "
             f"{stg.get('f1', float('nan')):.2f}). {detector_note(improve)}", "",
             "| version | practice episodes | held-out success |", "|---|---|---|"]
    lines += [f"| v{v} | {used.get(v, '?')} | {cell(r)} |" for v, r in sorted(results.items())]
    episodes = EpisodeDataset(run / "improve" / "episodes")
    plots.success_curve(report / "success_vs_practice.png",
                        [(used.get(v, 0), r["rate"], r["low"], r["high"]) for v, r in sorted(results.items())])
    outcomes = practice_outcomes(run / "improve", episodes)
    lines += ["", "Practice episodes, by how they ended (every record the trainer kept, used or not):", "",
              "| ended by | episodes |", "|---|---|"]
    lines += [f"| {reason} | {n} |" for reason, n in sorted(outcomes["end_reason"].items())]
    judged = outcomes["oracle_judged"]
    lines += ["", f"The learned detector ended {outcomes['detected']} of {outcomes['records']} practice episodes; "
              + (f"the simulator judged {outcomes['oracle_success']} of {judged} a success (measurement only: "
                 "it never enters a reward)." if judged else "no simulator judged them.")]
    lines += detector_table(outcomes)
    from sefm_bringup.graph import PROFILES
    from sefm_station.profiles import load_profile

    hz = load_profile(improve.profile or PROFILES[improve.env]).station.policy_rate_hz   # an action's robot time
    hours = outcomes["steps"] / hz / 3600
    lines += ["", f"Operator: asked {outcomes['operator_asks']} times over {outcomes['records']} practice episodes, "
              f"{outcomes['operator_asks'] / hours if hours else 0:.0f} per station-hour of robot time "
              f"({outcomes['steps']} actions at {hz:g} Hz = {hours:.2f} station-hours)"
              + (f"; answered by the scripted operator ({improve.scripted_operator.operator_delay:g} s a question, "
                 f"error rate {improve.scripted_operator.operator_error_rate:g})." if improve.operator == "scripted"
                 else ".")]
    # sample episodes chosen by outcome: an early one, and a late success and failure by the simulator's verdict
    meta = [e["metadata"] for e in episodes.index]
    last_version = max(m["policy_version"] for m in meta)
    late = [i for i, m in enumerate(meta) if m["policy_version"] == last_version]
    pick = {"early (v0)": 0}
    for label, judged_success in (("success", True), ("failure", False)):
        chosen = [i for i in late if meta[i].get("oracle_success") is judged_success]
        if chosen:   # the longest of them: most to see
            pick[f"late {label} (v{last_version})"] = max(chosen, key=lambda i: episodes.index[i]["steps"])
    chosen = {label: episodes[i] for label, i in pick.items()}
    plots.episode_curves(report / "episode_curves.png", chosen)
    plots.filmstrip(report / "filmstrip.png", {k: v.rgb for k, v in chosen.items()})
    lines += ["", "![success vs practice](success_vs_practice.png)", "",
              "![steps-to-go and reward of sample practice episodes](episode_curves.png)", "",
              "![a practice episode before and after](filmstrip.png)", ""]
    used_seeds = {k: v for k, v in seed_use(cfg).items()}
    practice_seeds = run / "improve" / "seeds.json"
    stated = seeds.describe(used_seeds)
    if practice_seeds.exists():
        stated.update(json.loads(practice_seeds.read_text()))
    lines += ["## Seeds", "", "Every reset seed comes from the seed plan (`sefm_core.seeds`); the ranges are disjoint.",
              ""] + [f"- `{role}` (range {d['range'][0]}..{d['range'][1]}): "
                     f"{', '.join(f'{a}..{b}' for a, b in d['used'])}" for role, d in stated.items()] + [""]
    path = report / "report.md"
    path.write_text("\n".join(lines))
    (report / "results.json").write_text(json.dumps({"results": {str(k): v for k, v in results.items()},
                                                     "practice_episodes": used, "separated": separated,
                                                     "seeds": stated, "practice_outcomes": outcomes,
                                                     "seconds": seconds}, indent=2))
    print("\n".join(lines[:12]))
    return path


def load_pipeline_config(path: str | None, run_dir: str | None) -> PipelineConfig:
    values = load_yaml(path) if path else {}
    if run_dir:
        values["run_dir"] = run_dir
    cfg = from_dict(PipelineConfig, values, path or "pipeline")
    try:
        size = [int(v) for v in cfg.image_size.lower().split("x")]
    except ValueError:
        size = []
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"{path or 'pipeline'}: image_size {cfg.image_size!r}: WxH, each at least 1")
    try:
        seed_use(cfg)
    except seeds.SeedPlanError as exc:
        raise ConfigError(f"{path or 'pipeline'}: {exc}") from None
    stage_configs(cfg, pathlib.Path(cfg.run_dir))   # both recipes with this run's values: checked now
    return cfg


def write_yaml(path: pathlib.Path, values: dict) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sefm pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML with PipelineConfig fields")
    parser.add_argument("--run-dir", help="override the config's run folder")
    args = parser.parse_args(argv)
    try:
        cfg = load_pipeline_config(args.config, args.run_dir)
        run_pipeline(cfg)
    except (ConfigError, PipelineError) as exc:
        print(f"sefm pipeline: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
