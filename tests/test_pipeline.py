"""A miniature of `make demo`: every stage of the pipeline on a few episodes and a few training steps."""
import json
import os
import subprocess
import sys

import yaml

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")


def test_pipeline_miniature_runs_every_stage_and_writes_the_report(tmp_path):
    config = {
        "run_dir": str(tmp_path / "run"), "demos": 3, "demo_stations": 1, "families": "block2block",
        "image_size": "64x36", "sft_overrides": ["--steps", "5", "--batch-size", "16"],
        "improve_overrides": ["--stations", "1", "--versions", "1", "--episodes-per-batch", "1",
                              "--updates-per-batch", "1", "--max-steps", "8", "--rounds", "true"],
        "eval_episodes": 2, "eval_every": 1, "eval_policy": "sampled", "eval_max_steps": 8, "success_threshold": -1,
    }
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    run = subprocess.run([SEFM, "pipeline", "--config", str(path)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = tmp_path / "run" / "report"
    text = (report / "report.md").read_text()
    assert "BC (Stage 1)" in text and "self-improved (Stage 2, v1)" in text and "detector was off" in text
    assert json.loads((tmp_path / "run" / "eval" / "v1.json").read_text())["max_steps"] == 8
    for picture in ("success_vs_practice.png", "episode_curves.png", "filmstrip.png"):
        assert (report / picture).stat().st_size > 1000
    results = json.loads((report / "results.json").read_text())
    assert set(results["results"]) == {"0", "1"} and results["practice_episodes"]["1"] >= 1
    # a second run finds every stage done and only rewrites the report
    again = subprocess.run([SEFM, "pipeline", "--config", str(path)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("done already") >= 5
    # a bad config is a clear error
    bad = tmp_path / "bad.yaml"
    bad.write_text("demos: many\n")
    failed = subprocess.run([SEFM, "pipeline", "--config", str(bad)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "demos" in failed.stderr


def test_pipeline_config_threshold_is_unset_a_number_or_a_clear_error(tmp_path):
    from sefm_bringup.pipeline import load_pipeline_config
    from sefm_core.config import ConfigError

    path = tmp_path / "demo.yaml"
    for text, want in (("demos: 3\n", None), ("success_threshold: null\n", None), ("success_threshold: -1\n", -1.0),
                       ("success_threshold: 2.5\n", 2.5)):
        path.write_text(text)
        assert load_pipeline_config(str(path), None).success_threshold == want
    path.write_text("success_threshold: low\n")
    try:
        load_pipeline_config(str(path), None)
    except ConfigError as exc:
        assert "success_threshold" in str(exc)
    else:
        raise AssertionError("a word for a threshold must be an error")
