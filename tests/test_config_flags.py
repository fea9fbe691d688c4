"""Command-line flags derived from the config dataclasses: help, choices and one-line errors before anything runs."""
import os
import subprocess
import sys

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")


def test_improve_flags_come_from_the_config_fields_and_bad_values_are_one_line_errors(tmp_path):
    """Typed flags (sefm_core.config.add_flags): strict bools, choices from Literal types, finite numbers."""
    for args, says in ((["--rounds", "yes", "--lr", "nan"], "finite"), (["--rounds", "maybe"], "true or false"),
                       (["--mode", "fast"], "invalid choice"), (["--stations", "0"], "at least 1"),
                       (["--gamma", "2"], "gamma")):
        run = subprocess.run([SEFM, "improve", "--checkpoint", "x", "--run-dir", str(tmp_path / "run"), *args],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and says in run.stderr and "Traceback" not in run.stderr, (args, run.stderr)
        assert not (tmp_path / "run").exists()
    text = subprocess.run([SEFM, "improve", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "--rounds ROUNDS" in text and "{lockstep,realtime}" in text and "(default: 1e-05)" in text
