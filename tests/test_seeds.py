"""The seed plan: named disjoint ranges, and every command refuses seeds that leave theirs before it starts."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from sefm_core import seeds

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")


def test_the_ranges_are_disjoint_and_station_blocks_stay_inside_their_range():
    ranges = sorted(seeds.PLAN.values(), key=lambda r: r.start)
    for a, b in zip(ranges, ranges[1:]):
        assert a.end <= b.start, (a, b)
    for r in ranges:
        first, end = r.block(r.stations - 1)
        assert r.start <= first < end <= r.end
    assert seeds.station_seeds("practice", 3, 10) == [30_000_000, 30_100_000, 30_200_000]


def test_seeds_that_leave_their_range_are_refused_naming_the_range_they_meet():
    with pytest.raises(seeds.SeedPlanError, match="overlap train_demos"):
        seeds.check("eval", 0, 100)
    with pytest.raises(seeds.SeedPlanError, match="overlap eval"):
        seeds.check("test_demos", 10_999_990, 20_000_000)
    with pytest.raises(seeds.SeedPlanError, match="station 0"):   # station 0's demos would run into station 1's
        seeds.station_seeds("train_demos", 2, 1_000_001)
    with pytest.raises(seeds.SeedPlanError, match="integers"):
        seeds.check("eval", -5, 1)
    assert seeds.check("eval", 20_000_000, 1000) == (20_000_000, 1000)


@pytest.mark.parametrize("args, where", [
    (["eval", "ckpt", "--episodes", "10", "--seed", "0"], "train_demos"),
    (["collect", "language_table", "OUT", "--episodes", "5", "--seeds", "test_demos", "--seed", "20000000"], "eval"),
    (["demos", "OUT", "--episodes", "4", "--stations", "2", "--seed", "999999"], "station 0"),
    (["practice", "ckpt", "--threshold", "1", "--eval-seed", "30000000"], "practice"),
])
def test_commands_refuse_overlapping_seed_flags_before_anything_runs(tmp_path, args, where):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    run = subprocess.run([SEFM, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 2 and where in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "out").exists()


def test_a_pipeline_config_whose_seeds_overlap_is_refused(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "eval_seed": 100}))
    run = subprocess.run([SEFM, "pipeline", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "train_demos" in run.stderr
    assert not (tmp_path / "run").exists()
    improve = tmp_path / "improve.yaml"
    improve.write_text(yaml.safe_dump({"checkpoint": "x", "stations": 2, "seed": 30_099_999, "versions": 2}))
    run = subprocess.run([SEFM, "improve", "--config", str(improve)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "practice seeds" in run.stderr, run.stderr
    assert json.dumps(seeds.describe({"eval": (20_000_000, 5)})) == \
        '{"eval": {"range": [20000000, 20999999], "used": [[20000000, 20000004]]}}'

