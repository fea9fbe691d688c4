"""Command-line flags derived from the config dataclasses: help, choices and one-line errors before anything runs."""
import os
import subprocess
import sys

SEFM = os.path.join(os.path.dirname(sys.executable), "sefm")


def test_improve_flags_come_from_the_config_fields_and_bad_values_are_one_line_errors(tmp_path):
    """Typed flags (sefm_core.config.add_flags): strict bools, choices from Literal types, finite numbers."""
    for args, says in ((["--rounds", "yes", "--lr", "nan"], "finite"), (["--rounds", "maybe"], "true or false"),
                       (["--mode", "fast"], "invalid choice"), (["--stations", "0"], "out of range [1, inf]"),
                       (["--gamma", "2"], "gamma")):
        run = subprocess.run([SEFM, "improve", "--checkpoint", "x", "--run-dir", str(tmp_path / "run"), *args],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and says in run.stderr and "Traceback" not in run.stderr, (args, run.stderr)
        assert not (tmp_path / "run").exists()
    text = subprocess.run([SEFM, "improve", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "--rounds ROUNDS" in text and "{lockstep,realtime}" in text and "(default: 1e-05)" in text


def test_every_option_of_every_sefm_command_has_help_text(monkeypatch):
    """Each command's parser, captured as it parses `--help`: every option and argument explains itself."""
    import argparse
    import importlib

    from sefm_cli.cli import COMMANDS

    class Captured(Exception):
        pass

    def capture(self, args=None, namespace=None):
        raise Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    missing = []
    for name, (module, _) in COMMANDS.items():
        try:
            importlib.import_module(module).main(["--help"])
        except Captured as got:
            parsers = [got.args[0]]
        else:
            raise AssertionError(f"sefm {name} parsed nothing")
        while parsers:
            parser = parsers.pop()
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    parsers += list(action.choices.values())
                elif not isinstance(action, argparse._HelpAction) and not action.help:
                    missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_bad_inputs_of_the_other_commands_are_one_line_errors_before_anything_is_made(tmp_path):
    out = tmp_path / "out"
    cases = ((["eval", "x", "--episodes", "0"], "--dataset"), (["eval", "x", "--max-steps", "0"], "at least 1"),
             (["eval", str(out), "--episodes", "2"], "not a checkpoint"),
             (["eval", "x", "--parallel", "abc"], "expected an integer"),
             (["collect", "language_table", str(out), "--episodes", "0"], "at least 1"),
             (["demos", str(out), "--stations", "0"], "at least 1"),
             (["demos", str(out), "--image-size", "0x3"], "at least 1"),
             (["sft", str(out)], "data set"))
    for args, says in cases:
        run = subprocess.run([SEFM, *args], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and says in run.stderr and "Traceback" not in run.stderr, (args, run.stderr)
        assert not out.exists(), args
