"""The console script and the public API: one-line errors, non-zero exits, every exported name resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

import hilreward
from hilreward.cli import COMMANDS, main


def test_every_public_name_resolves():
    for name in hilreward.__all__:
        assert getattr(hilreward, name) is not None, name
    assert issubclass(hilreward.RenderError, hilreward.HilrewardError)
    with pytest.raises(AttributeError):
        hilreward.no_such_name  # noqa: B018


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS.names():
        assert name in out


# a key each command must list under --help (generated from its option dataclasses, with docstrings)
HELP_KEYS = {"inspect": "dataset.root", "train": "training.steps", "eval": "checkpoint", "predict": "checkpoint",
             "export": "checkpoint", "serve": "retrain.scope", "corrections": "store", "sim": "brightness",
             "suspects": "folds", "label": "allowed_hosts", "relabel": "edits", "console": "address"}


@pytest.mark.parametrize("name", COMMANDS.names())
def test_every_command_has_help_listing_its_keys_defaults_and_docs(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: hilreward {name} [key=value ...]") and COMMANDS.get(name).summary in out
    key = next(line for line in out.splitlines() if line.strip().startswith(HELP_KEYS[name] + "="))
    doc = out.splitlines()[out.splitlines().index(key) + 1]
    assert doc.startswith("      ") and len(doc.strip()) > 10, (key, doc)  # its docstring under it


def test_an_actions_help_and_typed_choices(capsys):
    assert main(["corrections", "list", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hilreward corrections list") and "  status=none" in out
    assert main(["serve", "--help"]) == 0
    assert "  retrain.scope='auto'  (head|last|auto)" in capsys.readouterr().out  # a choice shows its values
    assert main(["serve", "checkpoint=x", "retrain.scope=deep"]) == 1
    assert capsys.readouterr().err.strip() == "error: retrain.scope='deep': use one of head, last, auto"
    assert main(["train", "label.align=sideways"]) == 1
    assert capsys.readouterr().err.strip() == "error: label.align='sideways': use one of auto, current, next"


def test_unknown_command_exits_2(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.slow
def test_user_error_is_one_line_and_exit_1(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hilreward.cli", "inspect", f"dataset.root={tmp_path}/missing"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_bad_override_is_a_config_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hilreward.cli", "train", "training.nosuchkey=3"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: bad config override"), proc.stderr
