"""`sefm bench paper`: the paper's experiments at our scale (LanguageTable sim, CPU, small model).

    sefm bench paper [--config experiments/config/bench_paper.yaml] [--experiments 1,2,3,4] [--out DIR]

  1. demo budgets (fractions of `base_demos`) x {BC, BC + self-improvement}, with the extra episodes;
  2. BC with more demos (multiples of the smallest budget) against self-improvement from that budget;
  3. the reward-model ablation: the middle budget with randomly initialised towers (scratch);
  4. BananaTable: the LanguageTable policy of the largest budget practises with the unseen banana.

Every arm is a chain of `sefm` commands (collect -> sft -> eval -> practice -> eval), each a
stage of its own with a completion marker (`sefm_cli.stages`): a rerun skips finished stages
and resumes or redoes an interrupted one. Every arm draws its seeds from the seed plan
(`sefm_core.seeds`): demos from train_demos (a smaller budget is a prefix of a larger one), held-out
demos from test_demos, practice and evaluation from their own ranges; results.json states them. Stage 2 here is `sefm practice` (the ROS-free loop: same env, reward, detector and
update as `sefm improve`), because the bench needs many Stage-2 runs. Results: <out>/results.json
and <out>/results.md (tables with Wilson 95% intervals).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from dataclasses import asdict, dataclass, field

from sefm_cli.stages import SEFM, StageError, run_stage
from sefm_core import seeds
from sefm_core.config import ConfigError, from_dict, load_yaml


@dataclass(frozen=True)
class PaperConfig:
    out: str = "runs/paper"
    families: str = "point2block"
    block_mode: str = "BLOCK_4"
    image_size: str = "128x72"
    hold_steps: int = 10
    base_demos: int = 200
    budgets: tuple[float, ...] = (0.25, 0.5, 1.0)
    more_demos: tuple[int, ...] = (4, 8)       # exp 2: BC on these multiples of the smallest budget
    test_demos: int = 60                       # held-out demos: steps-to-go quality and the threshold s
    sft_config: str = "src/sefm_bringup/config/sft_language_table.yaml"   # the Stage-1 recipe; `seed` below wins
    # the detector d <= s of practice: unset, the s chosen by F1 on each arm's val demos; negative, off
    # (the simulator's success ends an episode, standing in for the operator)
    success_threshold: float | None = None
    # calibrate: each arm's s and k come from `sefm detector` on its own policy's states (calibration seeds),
    # the rule with the fewest false ends whose miss rate is at most max_miss; success_threshold is then unused
    calibrate: bool = False
    calibration_episodes: int = 200
    max_miss: float = 0.3
    practice: dict = field(default_factory=lambda: {"versions": 10, "episodes-per-batch": 16})  # `sefm practice` flags
    max_steps: int = 100                       # step cap of practice and evaluation episodes
    eval_episodes: int = 100
    eval_policy: str = "sampled"               # sampled | greedy, for every success rate (BC and after practice)
    seed: int = 0                              # training and sampling seed (torch), not a reset seed


class Bench:
    def __init__(self, cfg: PaperConfig, log=print):
        self.cfg, self.log = cfg, log
        self.out = pathlib.Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)

    def demos(self, episodes: int, mode: str | None = None, role: str = "train_demos") -> pathlib.Path:
        """Oracle demos from the start of the seed range `role` up: a smaller budget is a prefix of a larger one."""
        mode = mode or self.cfg.block_mode
        path = self.out / "data" / f"{mode}_{role}_{episodes}"
        run_stage(f"collect {path.name}", SEFM + [
            "collect", "language_table", str(path), "--episodes", str(episodes), "--families", self.cfg.families,
            "--block-mode", mode, "--seeds", role, "--hold-steps", str(self.cfg.hold_steps), "--image-size",
            self.cfg.image_size], self.out, [path], path / "meta.json", self.log)
        return path

    def sft(self, name: str, data: pathlib.Path, backbone: str = "pretrained") -> pathlib.Path:
        run = self.out / name / "sft"
        run_stage(f"{name} sft", SEFM + ["sft", str(data), "--config", self.cfg.sft_config, "--run-dir", str(run),
                                         "--backbone", backbone, "--seed", str(self.cfg.seed)],
                  self.out, [run], run / "checkpoints" / "final" / "model.safetensors", self.log, resume=["--resume"])
        return run

    def evaluate(self, name: str, checkpoint: pathlib.Path, mode: str | None = None,
                 stg: tuple[pathlib.Path, pathlib.Path] | None = None, rollouts: bool = True) -> dict:
        """Held-out success (unless rollouts=False: `sefm practice` measures v0 itself); with
        stg=(data, sft run) also the steps-to-go quality and the threshold s."""
        out = self.out / name / "eval" / f"{checkpoint.name}{'' if rollouts else '_steps_to_go'}.json"
        extra = []
        if stg:
            extra = ["--dataset", str(stg[0]), "--run-dir", str(stg[1]), "--test-dataset", str(self.test_demos(mode))]
        run_stage(f"{name} eval {out.stem}", SEFM + [
            "eval", str(checkpoint), "--episodes", str(self.cfg.eval_episodes if rollouts else 0), "--families",
            self.cfg.families, "--block-mode", mode or self.cfg.block_mode, "--image-size", self.cfg.image_size,
            "--max-steps", str(self.cfg.max_steps), "--policy", self.cfg.eval_policy, "--json", str(out), *extra],
            self.out, [out], out, self.log)
        return json.loads(out.read_text())

    def test_demos(self, mode: str | None = None) -> pathlib.Path:
        return self.demos(self.cfg.test_demos, mode, role="test_demos")

    def calibrate(self, name: str, checkpoint: pathlib.Path, mode: str | None = None) -> dict:
        """`sefm detector` on the policy's own states: the (s, k) practice uses, and its calibration row."""
        out = self.out / name / "detector.json"
        run_stage(f"{name} detector", SEFM + [
            "detector", str(checkpoint), "--episodes", str(self.cfg.calibration_episodes), "--families",
            self.cfg.families, "--block-mode", mode or self.cfg.block_mode, "--image-size", self.cfg.image_size,
            "--max-steps", str(self.cfg.max_steps), "--max-miss", str(self.cfg.max_miss), "--json", str(out)],
            self.out, [out], out, self.log)
        result = json.loads(out.read_text())
        if result["pick"] is None:
            raise StageError(f"{name}: no detector rule keeps the miss rate within {self.cfg.max_miss:g} on the "
                             f"policy's own states ({out})")
        return result["pick"]

    def practice(self, name: str, checkpoint: pathlib.Path, threshold: float, mode: str | None = None,
                 hold: int = 1) -> dict:
        out = self.out / name / "practice.json"
        options = []
        for key, value in self.cfg.practice.items():
            options += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
        if self.cfg.success_threshold is not None and not self.cfg.calibrate:
            threshold = self.cfg.success_threshold
        run_stage(f"{name} practice", SEFM + [
            "practice", str(checkpoint), "--threshold", f"{threshold:.3f}", "--hold", str(hold),
            "--families", self.cfg.families,
            "--block-mode", mode or self.cfg.block_mode, "--max-steps", str(self.cfg.max_steps), "--eval-episodes",
            str(self.cfg.eval_episodes), "--eval-policy", self.cfg.eval_policy, "--seed", str(self.cfg.seed),
            "--image-size", self.cfg.image_size, "--save", str(self.out / name / "practised"),
            "--json", str(out), *options], self.out, [out, self.out / name / "practised"], out, self.log)
        return json.loads(out.read_text())

    def arm(self, name: str, demos: int, backbone: str = "pretrained", practise: bool = True) -> dict:
        """BC on `demos` demos, then (practise) self-improvement from it."""
        data = self.demos(demos)
        run = self.sft(name, data, backbone)
        ev = self.evaluate(name, run / "checkpoints" / "final", stg=(data, run), rollouts=not practise)
        row = {"demos": demos, "backbone": backbone, "steps_to_go": ev["steps_to_go"]}
        if not practise:
            return {**row, "bc": ev["success"]["all"]}
        return {**row, **self.practise(name, run / "checkpoints" / "final", ev["steps_to_go"]["threshold"])}

    def practise(self, name: str, checkpoint: pathlib.Path, threshold: float, mode: str | None = None) -> dict:
        """BC (v0) and self-improved success, both measured by the same `sefm practice` run (with calibrate,
        after `sefm detector` has picked the detector's s and k on the policy's own states)."""
        rule = self.calibrate(name, checkpoint, mode) if self.cfg.calibrate else {"s": threshold, "k": 1}
        result = self.practice(name, checkpoint, rule["s"], mode, rule["k"])
        evaluations, rows = result["evaluations"], result["versions"]
        n = result["reinforce"]["episodes_per_batch"]
        return {"bc": evaluations["0"], "si": evaluations[str(result["args"]["versions"])],
                "extra_episodes": result["episodes"], "practice": rows, "practice_seconds": result["seconds"],
                "detector": rule, "practice_detected": round(sum(r["detected"] * n for r in rows)),
                "practice_false_ends": sum(r["false_detections"] for r in rows)}


def budget_demos(cfg: PaperConfig) -> list[int]:
    return [max(2, int(round(cfg.base_demos * b))) for b in cfg.budgets]


def run(cfg: PaperConfig, experiments: list[int], log=print) -> dict:
    bench = Bench(cfg, log)
    results_path = bench.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["config"] = asdict(cfg)
    results["seed_ranges"] = {role: [r.start, r.end - 1] for role, r in seeds.PLAN.items()
                              if role in ("train_demos", "test_demos", "eval", "practice", "calibration")}
    start = time.monotonic()
    budgets = budget_demos(cfg)

    def save():
        results["seconds_this_run"] = round(time.monotonic() - start)
        results_path.write_text(json.dumps(results, indent=2))
        (bench.out / "results.md").write_text(tables(results))

    if 1 in experiments or 2 in experiments:
        results["exp1"] = {str(n): bench.arm(f"budget_{n}", n) for n in (budgets if 1 in experiments else budgets[:1])}
        save()
    if 2 in experiments:
        results["exp2"] = {str(k * budgets[0]): bench.arm(f"budget_{k * budgets[0]}", k * budgets[0], practise=False)
                           for k in cfg.more_demos}
        save()
    if 3 in experiments:
        middle = budgets[len(budgets) // 2]
        results["exp3"] = {"pretrained": bench.arm(f"budget_{middle}", middle),
                           "scratch": bench.arm(f"scratch_{middle}", middle, backbone="scratch")}
        save()
    if 4 in experiments:
        largest = budgets[-1]
        data = bench.demos(largest)
        sft_run = bench.sft(f"budget_{largest}", data)
        policy = sft_run / "checkpoints" / "final"
        # s from the LanguageTable val demos (as a user would have it); quality on BananaTable test demos
        ev = bench.evaluate("banana", policy, "BANANA", stg=(data, sft_run), rollouts=False)
        results["exp4"] = {"steps_to_go": ev["steps_to_go"],
                           **bench.practise("banana", policy, ev["steps_to_go"]["threshold"], "BANANA")}
        save()
    save()
    return results


def cell(rate: dict | None) -> str:
    if not rate:
        return "-"
    return f"{rate['rate']:.2f} [{rate['low']:.2f}, {rate['high']:.2f}] ({round(rate['rate'] * rate['n'])}/{rate['n']})"


def rank_cell(q: dict) -> str:
    """Per-episode rank correlation over the approach and over every state (docs/stage1.md, the measures)."""
    return f"{q.get('approach_spearman', float('nan')):.3f} / {q['per_episode_spearman']:.3f}"


def practice_cells(row: dict) -> list[str]:
    """SI / BC, the practice episodes, the detector's rule and its false ends among its ends in practice."""
    bc, si, rule = row["bc"], row.get("si"), row.get("detector")
    ratio = f"x{si['rate'] / bc['rate']:.2f}" if si and bc["rate"] > 0 else "-"
    if not rule or rule["s"] < 0:
        detector = "off"
    else:
        detector = f"s {rule['s']:g}, k {rule['k']}"
        if "practice_detected" in row:
            detector += f"; {row['practice_false_ends']} false of {row['practice_detected']} ends"
    return [ratio, str(row.get("extra_episodes", "-")), detector]


def arm_rows(arms: dict, extra_episodes: bool, threshold: bool) -> list[str]:
    """One table row per arm (name, BC, + self-improvement, [SI / BC, extra episodes, the detector in
    practice,] rank corr., detector F1 on demos [(s)]), then the blank line that ends the table."""
    rows = []
    for name, row in arms.items():
        q = row["steps_to_go"]
        cells = [name, cell(row["bc"]), cell(row.get("si"))]
        if extra_episodes:
            cells += practice_cells(row)
        cells += [rank_cell(q), f"{q['f1']:.2f} ({q['threshold']:.1f})" if threshold else f"{q['f1']:.2f}"]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return rows + [""]


def tables(results: dict) -> str:
    lines = ["# sefm bench paper", ""]
    if "exp1" in results:
        lines += ["## 1. Demo budgets: BC against BC + self-improvement", "",
                  "| demos | BC | + self-improvement | SI / BC | extra episodes | detector in practice (false ends) "
                  "| rank corr. (approach / every state) | detector F1 on demos (s) |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += arm_rows(results["exp1"], extra_episodes=True, threshold=True)
    if "exp2" in results:
        lines += ["## 2. More demonstrations against self-improvement", "", "| arm | demos | success |", "|---|---|---|"]
        small = min(results.get("exp1", {}).items(), key=lambda kv: int(kv[0]), default=None)
        if small:
            lines.append(f"| BC | {small[0]} | {cell(small[1]['bc'])} |")
            lines.append(f"| BC + self-improvement (+{small[1].get('extra_episodes', 0)} practice episodes) | "
                         f"{small[0]} | {cell(small[1].get('si'))} |")
        for n, row in results["exp2"].items():
            lines.append(f"| BC | {n} | {cell(row['bc'])} |")
        lines.append("")
    if "exp3" in results:
        lines += ["## 3. Reward-model pretraining", "",
                  "| towers | BC | + self-improvement | rank corr. (approach / every state) | detector F1 |", "|---|---|---|---|---|"]
        lines += arm_rows(results["exp3"], extra_episodes=False, threshold=False)
    if "exp4" in results:
        r = results["exp4"]
        lines += ["## 4. BananaTable (the LanguageTable policy with an unseen banana)", "",
                  "| BC | + self-improvement | extra episodes |", "|---|---|---|",
                  f"| {cell(r['bc'])} | {cell(r['si'])} | {r['extra_episodes']} |", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sefm bench paper", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/config/bench_paper.yaml",
                        help="YAML with PaperConfig fields")
    parser.add_argument("--experiments", default="1,2,3,4", help="comma-separated experiments to run (1-4)")
    parser.add_argument("--out", help="override the config's output folder")
    args = parser.parse_args(argv)
    try:
        raw = load_yaml(args.config)
        if args.out:
            raw["out"] = args.out
        cfg = from_dict(PaperConfig, raw, args.config)
        if cfg.eval_policy not in ("sampled", "greedy"):
            raise ConfigError(f"{args.config}: eval_policy must be sampled or greedy, got {cfg.eval_policy!r}")
        experiments = [int(x) for x in args.experiments.split(",") if x]
        if not set(experiments) <= {1, 2, 3, 4}:
            raise ConfigError(f"--experiments: choose from 1,2,3,4 (got {args.experiments}); "
                              "ALOHA (5) is not in the bench yet")
        results = run(cfg, experiments)
    except (ConfigError, StageError, seeds.SeedPlanError) as exc:
        print(f"sefm bench paper: {exc}", file=sys.stderr)
        return 2
    print(tables(results))
    print(f"results: {pathlib.Path(cfg.out) / 'results.md'}")
    return 0
