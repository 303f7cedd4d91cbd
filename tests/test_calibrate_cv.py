"""Calibration by folds (``training.calibrate=cv``, chosen by ``auto`` when the held-out split holds too little
evidence): folds spread succeeding episodes, a rendered set gets a threshold with its evidence, the reward
function uses it, and the cases that cannot fold say why."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from hilreward.config import compose
from hilreward.deploy import RewardFunction
from hilreward.training.calibrate import plan_calibration
from hilreward.training.folds import episode_folds
from hilreward.training.loop import main, train

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"  # rendered Meta-World drawer-open, 24 episodes (0, 1 expert, 2 noisy, 3 random)
DRAWER4 = Path(__file__).parent / "fixtures" / "drawer4"


def labelled(successes: dict[int, int], frames: int = 10) -> SimpleNamespace:
    """Frame data stand-in: ``frames`` rows per episode, the last ``successes[e]`` of them positive."""
    eps = sorted(successes)
    episode_index = np.repeat(eps, frames)
    labels = np.concatenate([(np.arange(frames) >= frames - successes[e]).astype(np.int64) for e in eps])
    return SimpleNamespace(episode_index=episode_index, labels=labels)


def test_folds_spread_succeeding_episodes():
    data = labelled({e: (8 if e % 4 != 3 else 0) for e in range(16)})  # 12 succeed, 4 fail
    folds = episode_folds(list(range(16)), data.episode_index, data.labels, 4, seed=0)
    assert sorted(e for f in folds for e in f) == list(range(16))  # every episode out of fold exactly once
    succeeding = [sum(e % 4 != 3 for e in f) for f in folds]
    assert succeeding == [3, 3, 3, 3] and all(len(f) == 4 for f in folds)
    assert folds != episode_folds(list(range(16)), data.episode_index, data.labels, 4, seed=1)  # seeded shuffle


def test_plan_takes_folds_only_when_the_heldout_split_is_short_of_evidence():
    data = labelled({e: (8 if e % 4 != 3 else 0) for e in range(16)})
    eps = list(range(16))
    short = plan_calibration("auto", data, eps, [3, 7, 9], 4, seed=0)  # 8 positives in 1 succeeding episode
    assert short.method == "cv" and len(short.folds) == 4
    assert "hold 8 positive frames in 1 succeeding episodes, too little for the rule" in short.reason
    enough = plan_calibration("auto", data, eps, [0, 1, 2, 5], 4, seed=0)
    assert enough.method == "heldout" and "enough evidence" in enough.reason
    assert plan_calibration("heldout", data, eps, [3], 4, seed=0).method == "heldout"
    assert plan_calibration("off", data, eps, [3], 4, seed=0).method == "off"
    assert plan_calibration("cv", data, eps, [0, 1, 2, 5], 4, seed=0).method == "cv"

    few = plan_calibration("cv", labelled({0: 5, 1: 5, 2: 5, 3: 0}), [0, 1, 2, 3], [2], 4, seed=0)
    assert few.method == "heldout"
    assert "4 episodes are too few for 4 folds (calibration by folds needs >= 8): calibrating on the held-out" \
        in few.reason
    none = plan_calibration("auto", labelled({e: 0 for e in range(16)}), eps, [3], 4, seed=0)
    assert none.method == "off" and "no episode of the dataset succeeds" in none.describe()
    thin = plan_calibration("auto", labelled({e: (2 if e < 2 else 0) for e in range(16)}), eps, [3], 4, seed=0)
    assert thin.method == "heldout" and "the whole dataset holds only 4 positive frames in 2 succeeding" in thin.reason


@pytest.mark.slow
def test_cv_on_a_rendered_set_stores_a_threshold_with_its_evidence(tmp_path, capsys):
    out = tmp_path / "run"
    episodes = list(range(10))  # the default 20 % split holds out 2: too few succeeding episodes for the rule
    best = train(compose([f"dataset.root={DEMO}", f"dataset.episodes={episodes}", "model.encoder=tiny",
                          "model.pretrained=false", "model.image_size=[32,32]", "training.threads=1",
                          "training.steps=60", "training.eval_freq=20", "training.calibrate_fold_steps=40",
                          "training.lr=3e-3", f"output_dir={out}"]))
    printed = capsys.readouterr().out
    assert "calibration: by 4 folds (the held-out episodes" in printed and "too little for the rule" in printed
    assert "calibration by 4 folds over episodes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] (out of fold, fold models of 40 " \
        "steps)" in printed and "the final model trained on every episode" in printed

    # nothing held out: the final model trained on every episode, its best checkpoint is its last
    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert saved["split"]["val_episodes"] == [] and saved["training"]["calibrate"] == "auto"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_episodes"] == episodes and metrics["val_episodes"] == []
    assert metrics["calibration_plan"]["method"] == "cv"

    config = json.loads((best / "config.json").read_text())
    cal = config["calibration"]
    assert cal["method"] == "cv" and cal["fold_steps"] == 40 and cal["episodes"] == episodes
    assert sorted(e for f in cal["folds"] for e in f) == episodes
    for i, held in enumerate(cal["folds"]):  # each fold model trained without its episodes
        fold = yaml.safe_load((out / "calibration/folds" / str(i) / "train_config.yaml").read_text())
        assert fold["split"]["val_episodes"] == held and fold["training"]["steps"] == 40
    # the evidence rule said enough, so the threshold moved, and it says what it rests on
    assert cal["enough"] and cal["positives"] >= 20 and cal["success_episodes"] >= 3 and cal["interval"]
    assert config["threshold"] == cal["threshold"] != 0.5 and config["temperature"] == cal["temperature"]
    assert set(cal["out_of_fold"]) == {"calibrated", "at_0.5"}
    assert 0.5 <= cal["out_of_fold"]["calibrated"]["accuracy"] <= 1

    fn = RewardFunction.from_pretrained(best, mode="dense")
    assert fn.options.success_threshold == config["threshold"]


def test_too_few_episodes_for_folds_and_no_success_say_so(tmp_path, capsys):
    common = [f"dataset.root={DRAWER4}", "model.encoder=tiny", "model.pretrained=false", "model.image_size=[32,32]",
              "training.threads=1", "training.steps=4", "training.eval_freq=0"]
    assert main([*common, "training.calibrate=cv", f"output_dir={tmp_path / 'a'}"]) == 0
    printed = capsys.readouterr().out
    assert "4 episodes are too few for 4 folds (calibration by folds needs >= 8): calibrating on the held-out " \
           "episodes instead" in printed
    assert "calibration on held-out episodes [2]: temperature 1, threshold 0.5 (too little evidence" in printed

    assert main([*common, "label.threshold=2.0", f"output_dir={tmp_path / 'b'}"]) == 0  # no frame reaches 2
    printed = capsys.readouterr().out
    assert printed.count("calibration: none (not possible: no episode of the dataset succeeds") == 2  # plan, summary
    stored = json.loads((tmp_path / "b/checkpoints/best/config.json").read_text())
    assert stored["threshold"] == 0.5 and stored["temperature"] == 1.0 and stored["calibration"] is None
