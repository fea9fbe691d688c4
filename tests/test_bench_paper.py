"""A miniature of `sefm bench paper`: experiments 1 and 4 on a few demos, steps and rollouts."""
import json
import os
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow   # an end-to-end run: `make test` runs it, `make test-fast` does not

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")


def test_bench_paper_miniature_writes_the_tables_and_resumes(tmp_path):
    sft = tmp_path / "sft.yaml"
    sft.write_text(yaml.safe_dump({"sft": {"steps": 5, "batch_size": 16, "val_every": 5, "val_fraction": 0.34},
                                   "model": {"channels": 16, "hidden": 32, "pointer_heads": 3,
                                             "stg_input": "pointer"}}))
    config = {"out": str(tmp_path / "paper"), "image_size": "64x36", "base_demos": 3, "budgets": [1.0],
              "test_demos": 2, "sft_config": str(sft), "max_steps": 6, "eval_episodes": 2,
              "practice": {"versions": 1, "episodes-per-batch": 2, "updates-per-batch": 1, "gamma": 0.0,
                           "center-returns": True},
              "calibrate": True, "calibration_episodes": 4, "max_miss": 1.0}   # s, k from `sefm detector`
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [SEFM, "bench", "paper", "--config", str(path), "--experiments", "1,4"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "paper" / "results.json").read_text())
    arm = results["exp1"]["3"]
    assert arm["bc"]["n"] == 2 and arm["si"]["n"] == 2 and arm["extra_episodes"] == 2
    assert 0.0 <= arm["steps_to_go"]["f1"] <= 1.0 and results["exp4"]["extra_episodes"] == 2
    assert (tmp_path / "paper" / "budget_3" / "practised" / "model.safetensors").exists()
    practice_args = json.loads((tmp_path / "paper" / "budget_3" / "practice.json").read_text())["args"]
    rule = arm["detector"]
    assert practice_args["center_returns"] is True and (practice_args["threshold"], practice_args["hold"]) == \
        (pytest.approx(rule["s"], abs=1e-3), rule["k"])
    calibration = json.loads((tmp_path / "paper" / "budget_3" / "detector.json").read_text())
    assert calibration["pick"] == rule and calibration["seeds"]["calibration"]["used"][0][0] == 40_000_000
    assert arm["practice_false_ends"] <= arm["practice_detected"] <= arm["extra_episodes"]
    sft_config = json.loads((tmp_path / "paper" / "budget_3" / "sft" / "checkpoints" / "final" / "config.json").read_text())
    assert "pointer" in json.dumps(sft_config)
    text = (tmp_path / "paper" / "results.md").read_text()
    assert "## 1. Demo budgets" in text and "## 4. BananaTable" in text and f"s {rule['s']:g}, k {rule['k']}" in text
    # a rerun finds every stage done
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "sft\n" not in again.stdout and again.stdout.count("done already") >= 6
    bad = subprocess.run([SEFM, "bench", "paper", "--config", str(path), "--experiments", "5"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "ALOHA" in bad.stderr
