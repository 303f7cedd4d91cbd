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
    for name in COMMANDS:
        assert name in out


def test_unknown_command_exits_2(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_user_error_is_one_line_and_exit_1(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hilreward.cli", "inspect", f"dataset.root={tmp_path}/missing"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_override_is_a_config_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hilreward.cli", "train", "training.nosuchkey=3"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: bad config override"), proc.stderr
