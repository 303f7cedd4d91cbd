"""The console script and the public API: one-line errors, non-zero exits, every exported name resolves."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

import hilreward
from hilreward.cli import COMMANDS, main
from hilreward.config import compose, parse_overrides
from hilreward.errors import ConfigError
from hilreward.evaluation.cli import EvalOptions


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
             "suspects": "folds", "label": "allowed_hosts", "relabel": "edits", "console": "address",
             "push": "repo_id"}


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
    assert proc.stderr.startswith("error: unknown key 'training.nosuchkey'"), proc.stderr


# ---- config that forgives typing
def test_ranges_and_one_name_lists_as_a_person_types_them():
    cfg = compose(["dataset.episodes=0-15", "dataset.cameras=front", "split.val_episodes=[16-17, 19]"])
    assert cfg.dataset.episodes == list(range(16)) and cfg.dataset.cameras == ["front"]
    assert cfg.split.val_episodes == [16, 17, 19]
    cfg = compose(["dataset.episodes=0-2,7", "dataset.cameras=front,wrist", "dataset_repo_id=user/set"])
    assert cfg.dataset.episodes == [0, 1, 2, 7] and cfg.dataset.cameras == ["front", "wrist"]
    assert cfg.dataset.repo_id == "user/set"
    assert compose(["dataset.episodes=[3,4]", "dataset.cameras=[front]"]).dataset.episodes == [3, 4]
    assert compose(["dataset.episodes=null"]).dataset.episodes is None
    opts = parse_overrides(EvalOptions, ["checkpoint=c", "dataset.episodes=1-3", "dataset.cameras=wrist"])
    assert opts.dataset.episodes == [1, 2, 3] and opts.dataset.cameras == ["wrist"]
    with pytest.raises(ConfigError, match="range '5-2': the end comes before the start; write 2-5"):
        compose(["dataset.episodes=5-2"])


@pytest.mark.parametrize("args, line", [
    (["train", "trainig.steps=3"], "error: unknown key 'trainig.steps' (did you mean 'training.steps'?); "
                                   "`hilreward train --help` lists the keys"),
    (["train", "model=scrach"], "error: model=scrach: no such preset (did you mean 'scratch'?); presets: resnet10, "
                                "scratch"),
    (["eval", "checkpont=x"], "error: unknown key 'checkpont' (did you mean 'checkpoint'?); `--help` lists the keys"),
    (["serve", "checkpoint=x", "mode=spares"], "error: mode='spares' (did you mean 'sparse'?): use one of sparse, "
                                               "dense"),
])
def test_a_typo_gets_did_you_mean_without_internal_names(args, line, capsys):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.strip() == line and "Options" not in err and "Config" not in err


def test_unknown_command_suggests_the_close_one(capsys):
    assert main(["evl"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command 'evl' (did you mean 'eval'?); known: ")


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hilreward {hilreward.__version__}"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from hilreward.models import ClassifierConfig, RewardClassifier

    return RewardClassifier(ClassifierConfig(encoder="tiny", camera_keys=["front"], image_size=[32, 32], latent_dim=16,
                                             hidden_dim=16)).save_pretrained(tmp_path_factory.mktemp("cli") / "ckpt")


@pytest.mark.parametrize("kwargs, message", [
    ({"success_threshold": "high"}, "success_threshold='high': give a number"),
    ({"consecutive": 1.5}, "consecutive=1.5: give an integer"),
    ({"terminate_on_success": "yes"}, "terminate_on_success='yes': give true or false"),
    ({"mode": "spares"}, "mode='spares' (did you mean 'sparse'?): use one of sparse, dense"),
    ({"mode": None}, "mode=None: use one of sparse, dense"),
    ({"threads": "2"}, "threads='2': give an integer"),
    ({"device": "gpu"}, "device='gpu' is not a torch device: use cpu, cuda or cuda:<n>"),
])
def test_python_api_argument_errors_are_hilreward_errors(tiny_ckpt, kwargs, message):
    with pytest.raises(hilreward.HilrewardError) as caught:
        hilreward.RewardFunction.from_pretrained(tiny_ckpt, **kwargs)
    assert isinstance(caught.value, ConfigError) and str(caught.value) == message


def test_a_taken_port_is_one_line_naming_its_key(tiny_ckpt, tmp_path, capfd):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        state = f"state_dir={tmp_path}"
        assert main(["serve", f"checkpoint={tiny_ckpt}", f"port={port}", state]) == 1
        err = capfd.readouterr().err  # the file descriptor: gRPC's C-core writes there, not to sys.stderr
        assert err.splitlines() == [f"error: cannot bind 127.0.0.1:{port} (address already in use); pick another "
                                    "port= (0 = any free port)"]
        assert main(["serve", f"checkpoint={tiny_ckpt}", "port=0", "console=true", f"console_port={port}", state]) == 1
        err = capfd.readouterr().err
        assert err.splitlines() == [f"error: cannot listen on 127.0.0.1:{port} (Address already in use); pick "
                                    "another console_port= (0 picks a free one) or host="]
