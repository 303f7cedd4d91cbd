"""examples/: the env loop runs (short), and over gRPC it picks up the versions the server retrains."""

from __future__ import annotations

import runpy
import shutil

import pytest
import torch

from hilreward.config import DatasetConfig
from hilreward.models import RewardClassifier
from hilreward.online.options import RetrainOptions
from hilreward.serving.config import ServeConfig
from hilreward.serving.server import RewardServer

from conftest import ROOT
from support import DRAWER4, TOKEN, make_checkpoint

example = runpy.run_path(str(ROOT / "examples" / "hil_env_loop.py"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cache = str(tmp_path_factory.getbasetemp() / "hilreward-cache")
    return make_checkpoint(tmp_path_factory.mktemp("example") / "best", cache)


def test_env_loop_prints_rewards_terminations_and_versions(ckpt):
    lines: list[str] = []
    args = example["parse"](["--checkpoint", str(ckpt), "--episodes", "2", "--steps", "4", "--image-size", "64",
                             "--no-lerobot"])
    records = example["run"](args, echo=lines.append)
    assert len(records) == 8 and [r["episode"] for r in records] == [0] * 4 + [1] * 4
    assert lines[0] == "drawer-open: reward from RewardClassifierWrapper, backend=auto"
    assert lines[1] == f"model version {records[0]['model_version']}"
    assert all("reward=" in line and "done=" in line and "env success=" in line for line in lines[2:])
    assert all(r["reward"] == (1.0 if r["success"] else 0.0) and r["done"] == r["success"] for r in records)


class Swapped(Exception):
    pass


@pytest.mark.slow
def test_env_loop_over_grpc_hot_swaps_to_the_retrained_version(ckpt, tmp_path):
    """A served classifier that is exactly wrong: the oracle's corrections make the server publish a fixed one."""
    wrong = tmp_path / "wrong"
    shutil.copytree(ckpt, wrong)
    model = RewardClassifier.from_pretrained(ckpt)
    with torch.no_grad():
        last = model.reward_head.mlp[-1]
        last.weight.neg_(), last.bias.neg_()  # p -> 1 - p
    model.save_pretrained(wrong, train_config_yaml=(ckpt / "train_config.yaml").read_text())
    cfg = ServeConfig(checkpoint=str(wrong), port=0, state_dir=str(tmp_path / "state"), token=TOKEN,
                      cache_dir=str(tmp_path.parent / "hilreward-cache"), dataset=DatasetConfig(root=str(DRAWER4)),
                      retrain=RetrainOptions(every=1, min_interval_s=0.0))
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if " -> " in line:
            raise Swapped

    with RewardServer(cfg) as server:
        assert server.retrainer_ready.wait(120), "the retrainer did not start"
        args = example["parse"](["--backend", "grpc", "--address", server.address, "--token", TOKEN, "--oracle",
                                 "--episodes", "30", "--steps", "100", "--image-size", "64", "--no-lerobot"])
        with pytest.raises(Swapped):
            example["run"](args, echo=echo)
    first = lines[1].split()[-1]
    before = [line for line in lines[2:-1]]
    # the oracle overrules the wrong success until the env succeeds
    assert before and all("human=failure" in line for line in before if "env success=False" in line)
    assert lines[-1].startswith(f"model version {first} -> ") and lines[-1].split()[-1] != first
    # a version never changes inside an episode: the new one comes with the next episode's first step
    assert "done=True" in lines[-2] or " step  99 " in lines[-2]
