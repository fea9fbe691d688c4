"""A miniature of `make demo`: every stage of the pipeline on a few episodes and a few training steps."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from sefm_core.data import EpisodeDataset

pytestmark = pytest.mark.slow   # an end-to-end run: `make test` runs it, `make test-fast` does not

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")


def dataset_sizes(run) -> tuple:
    """What the run produced: demo episodes imported, Stage-2 versions trained and practice records."""
    versions = sorted(p.name for p in (run / "improve" / "checkpoints").glob("v*"))
    return (len(EpisodeDataset(run / "dataset")), versions,
            len((run / "improve" / "metrics.csv").read_text().splitlines()))


def kill_while_recording(config_path, bag):
    """A real interruption: `sefm pipeline` and its children are SIGKILLed once the recording has begun."""
    shutil.rmtree(bag)
    proc = subprocess.Popen([SEFM, "pipeline", "--config", str(config_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (bag.exists() and any(bag.iterdir())) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # killed inside the stage: its output exists (the crash-safe bag keeps its closed segments), its marker not
    assert bag.exists() and not (bag.parent.parent / "stages" / "demos.json").exists(), "killed too late"


def drop_index_lines(dataset):
    """An interrupted import: the data set holds fewer episodes than the bag."""
    index = dataset / "episodes.jsonl"
    index.write_text("\n".join(index.read_text().splitlines()[:1]) + "\n")


def drop_last_version(improve):
    """Stage 2 interrupted before its last update: the checkpoint and its metrics row are not written yet."""
    shutil.rmtree(improve / "checkpoints" / "v1")
    metrics = improve / "metrics.csv"
    metrics.write_text("\n".join(metrics.read_text().splitlines()[:-1]) + "\n")


def test_pipeline_miniature_runs_every_stage_and_writes_the_report(tmp_path):
    sft = tmp_path / "sft.yaml"
    sft.write_text(yaml.safe_dump({"sft": {"steps": 5, "batch_size": 16}}))
    config = {
        "run_dir": str(tmp_path / "run"), "demos": 3, "demo_stations": 1, "families": "block2block",
        "image_size": "64x36", "sft_config": str(sft),
        "improve": {"stations": 1, "versions": 1, "max_steps": 8, "rounds": True,
                    "reinforce": {"episodes_per_batch": 1, "updates_per_batch": 1}},
        "eval_episodes": 2, "eval_every": 1, "eval_policy": "sampled", "eval_max_steps": 8,
        "success_threshold": 100.0,   # the detector ends every practice episode at its first judged observation
    }
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    run = subprocess.run([SEFM, "pipeline", "--config", str(path)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = tmp_path / "run" / "report"
    text = (report / "report.md").read_text()
    assert "BC (Stage 1)" in text and "self-improved (Stage 2, v1)" in text
    assert "Practice episodes ended at the learned detector, d <= 100.00" in text and "| false ends |" in text
    assert json.loads((tmp_path / "run" / "eval" / "v1.json").read_text())["max_steps"] == 8
    for picture in ("success_vs_practice.png", "episode_curves.png", "filmstrip.png"):
        assert (report / picture).stat().st_size > 1000
    results = json.loads((report / "results.json").read_text())
    assert set(results["results"]) == {"0", "1"} and results["practice_episodes"]["1"] >= 1
    assert results["seeds"]["train_demos"]["used"] == [[0, 2]] and results["seeds"]["eval"]["range"][0] == 20_000_000
    assert "## Seeds" in text and "practice" in results["seeds"]
    outcomes = results["practice_outcomes"]
    assert sum(outcomes["end_reason"].values()) == outcomes["records"] >= 1
    assert outcomes["end_reason"].get("success_detected", 0) == outcomes["detected"] >= 1
    assert sum(b["detected"] for b in outcomes["detector_by_versions"]) == outcomes["detected"]
    assert outcomes["operator_asks"] == 0 and "Operator: asked 0 times" in text and "per station-hour" in text
    # a second run finds every stage done and only rewrites the report
    again = subprocess.run([SEFM, "pipeline", "--config", str(path)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("done already") >= 5
    sizes = dataset_sizes(tmp_path / "run")
    # A stage interrupted before its marker: redone (demos, import) or resumed (Stage 1, Stage 2), the log says
    # which, and the run ends with the same data as the uninterrupted one.
    run_dir = tmp_path / "run"
    for stage, partial, word in (("demos", lambda: kill_while_recording(path, run_dir / "bags" / "demos"), "redoing"),
                                 ("import", lambda: drop_index_lines(run_dir / "dataset"), "redoing"),
                                 ("sft", lambda: shutil.rmtree(run_dir / "sft" / "checkpoints" / "final"), "resuming"),
                                 ("improve", lambda: drop_last_version(run_dir / "improve"), "resuming")):
        for later in ("demos", "import", "sft", "improve", "eval_v0", "eval_v1")[
                ("demos", "import", "sft", "improve").index(stage):]:
            (run_dir / "stages" / f"{later}.json").unlink()
        partial()
        resumed = subprocess.run([SEFM, "pipeline", "--config", str(path)], capture_output=True, text=True,
                                 timeout=600)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert f"[{stage}] an interrupted run left" in resumed.stdout and word in resumed.stdout, resumed.stdout
        assert dataset_sizes(run_dir) == sizes, stage
    # a finished stage with a changed configuration is refused, naming the stage and what changed
    sft.write_text(yaml.safe_dump({"sft": {"steps": 6, "batch_size": 16}}))
    changed = subprocess.run([SEFM, "pipeline", "--config", str(path)], capture_output=True, text=True, timeout=120)
    assert changed.returncode == 1 and "stage sft finished earlier with another configuration" in changed.stderr
    assert "configs/sft.yaml" in changed.stderr
    # a bad config is a clear error
    bad = tmp_path / "bad.yaml"
    bad.write_text("demos: many\n")
    failed = subprocess.run([SEFM, "pipeline", "--config", str(bad)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "demos" in failed.stderr


def test_pipeline_config_threshold_is_unset_a_number_or_a_clear_error(tmp_path):
    from sefm_cli.pipeline import load_pipeline_config
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
    for text, word in (("improve: {stations: 0}\n", "stations"), ("improve: {reinforce: {lr: nan}}\n", "lr"),
                       ("sft: {sft: {steps: many}}\n", "steps"), ("sft: {optim: {}}\n", "optim"),
                       ("image_size: 0x3\n", "image_size"), ("eval_policy: best\n", "eval_policy")):
        path.write_text(text)
        try:
            load_pipeline_config(str(path), str(tmp_path / "never"))
        except ConfigError as exc:
            assert word in str(exc), (text, exc)
        else:
            raise AssertionError(f"{text!r} must be a config error")
    assert not (tmp_path / "never").exists()   # refused before any folder is made
