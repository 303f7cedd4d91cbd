"""Calibration by folds (``training.calibrate=cv``, chosen by ``auto`` when the held-out split holds too little
evidence): folds spread succeeding episodes, a rendered set gets a threshold with its evidence, the reward
function uses it, and the cases that cannot fold say why."""

from __future__ import annotations

import json
import math
from pathlib import Path
import shutil
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from hilreward.config import DatasetConfig, LabelConfig, compose
from hilreward.data import load_frame_data
from hilreward.deploy import RewardFunction
from hilreward.models import RewardClassifier
from hilreward.training.calibrate import MEMBER_BUDGET, plan_calibration
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
    data = labelled({e: (8 if e % 4 != 3 else 0) for e in range(20)})
    def train(held):
        return [e for e in range(20) if e not in held]
    short = plan_calibration("auto", data, train([3, 7, 9]), [3, 7, 9], 4, seed=0)  # 8 positives, 1 succeeding
    assert short.method == "cv" and len(short.folds) == 4
    assert "hold 8 positive frames in 1 succeeding episodes, too little for the rule" in short.reason
    # folds are dealt from the training episodes only: held out means held out
    assert sorted(e for f in short.folds for e in f) == train([3, 7, 9])
    assert "out of fold over the 17 training episodes (the held-out episodes [3, 7, 9] stay held out)" in short.reason
    enough = plan_calibration("auto", data, train([0, 1, 2, 5]), [0, 1, 2, 5], 4, seed=0)
    assert enough.method == "heldout" and "enough evidence" in enough.reason
    assert plan_calibration("heldout", data, train([3]), [3], 4, seed=0).method == "heldout"
    assert plan_calibration("off", data, train([3]), [3], 4, seed=0).method == "off"
    assert plan_calibration("cv", data, train([0, 1, 2, 5]), [0, 1, 2, 5], 4, seed=0).method == "cv"
    nothing_held = plan_calibration("auto", data, list(range(20)), [], 4, seed=0)
    assert nothing_held.method == "cv" and "(none is held out)" in nothing_held.reason

    few = plan_calibration("cv", labelled({0: 5, 1: 5, 2: 5, 3: 0}), [0, 1, 3], [2], 4, seed=0)
    assert few.method == "heldout"
    assert "3 training episodes are too few for 4 folds (calibration by folds needs >= 8): calibrating on the " \
           "held-out" in few.reason
    none = plan_calibration("auto", labelled({e: 0 for e in range(16)}), train([3])[:15], [3], 4, seed=0)
    assert none.method == "off" and "no episode of the dataset succeeds" in none.describe()
    thin = plan_calibration("auto", labelled({e: (2 if e < 2 else 0) for e in range(16)}), train([3])[:15], [3], 4,
                            seed=0)
    assert thin.method == "heldout" and "the training episodes hold only 4 positive frames in 2 succeeding" \
        in thin.reason


FAST = ["model.encoder=tiny", "model.pretrained=false", "model.image_size=[32,32]", "training.threads=1",
        "training.lr=3e-3"]


@pytest.mark.slow
def test_frozen_encoder_calibrates_with_fold_heads_and_keeps_the_split(tmp_path, capsys):
    out = tmp_path / "run"
    episodes = list(range(12))  # the default 20 % split holds out 2: too few succeeding episodes for the rule
    best = train(compose([f"dataset.root={DEMO}", f"dataset.episodes={episodes}", *FAST, "training.steps=300",
                          "training.eval_freq=100", f"output_dir={out}"]))
    printed = capsys.readouterr().out
    assert "calibration: by 4 folds (the held-out episodes" in printed and "too little for the rule" in printed
    assert "stay held out" in printed and "fold heads of 300 steps on the cached features" in printed

    # held out means held out: the stratified split holds a succeeding episode out, and no fold trains on it
    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    held, trained = saved["split"]["val_episodes"], metrics["train_episodes"]
    assert held == metrics["val_episodes"] and len(held) == 2 and sorted(held + trained) == episodes
    data = load_frame_data(DatasetConfig(root=str(DEMO), episodes=held), LabelConfig(), (32, 32))
    assert data.labels.any() and data.labels[data.episode_index == held[0]].any() != \
        data.labels[data.episode_index == held[1]].any()  # one succeeds, one fails
    assert metrics["calibration_plan"]["method"] == "cv" and "eval/accuracy" in metrics

    config = json.loads((best / "config.json").read_text())
    cal = config["calibration"]
    assert cal["method"] == "cv" and cal["fold_models"] == "fold heads" and cal["episodes"] == trained
    assert sorted(e for f in cal["folds"] for e in f) == trained
    oof = np.load(out / "calibration" / "out_of_fold.npz")
    assert sorted(np.unique(oof["episode"]).tolist()) == trained and np.isfinite(oof["logits"]).all()
    # the evidence rule said enough, so the threshold moved, and it says what it rests on
    assert cal["enough"] and cal["positives"] >= 20 and cal["success_episodes"] >= 3 and cal["interval"]
    assert config["threshold"] == cal["threshold"] != 0.5 and config["temperature"] == cal["temperature"]
    assert config["members"] == 1  # the deployed head is the one trained on every training episode
    fn = RewardFunction.from_pretrained(best, mode="dense")
    assert fn.options.success_threshold == config["threshold"]


def flipped_copy(src: Path, dst: Path, episodes: list[int]) -> Path:
    """``src`` with the success labels of ``episodes`` inverted (``next.reward`` and ``observation.success``)."""
    shutil.copytree(src, dst)
    for path in (dst / "data").rglob("*.parquet"):
        table = pq.read_table(path)
        flip = np.isin(table.column("episode_index").to_numpy(), episodes)
        for name in ("next.reward", "observation.success"):
            col = table.column(name)
            values = np.asarray(col.to_pylist())
            values = np.where(flip.reshape(-1, *[1] * (values.ndim - 1)), 1 - values, values).astype(values.dtype)
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(list(values), col.type))
        pq.write_table(table, path)
    return dst


# fold heads on cached features (11 s: make test only) / the deployed ensemble
@pytest.mark.parametrize("freeze", [pytest.param("all", marks=pytest.mark.slow), "none"])
def test_explicit_heldout_episodes_are_never_trained_on(freeze, tmp_path):
    """Inverting every label of the held-out episodes changes nothing that was trained or calibrated."""
    episodes, held = list(range(10)), [2, 5]
    base = [f"dataset.episodes={episodes}", f"split.val_episodes={held}", *FAST, f"model.freeze={freeze}",
            "training.steps=40", "training.eval_freq=20", "training.calibrate=cv", "augmentation.pad=2"]
    runs = {}
    for name, root in (("as recorded", DEMO), ("held-out labels inverted", flipped_copy(DEMO, tmp_path / "f", held))):
        best = train(compose([f"dataset.root={root}", *base, f"output_dir={tmp_path / name.replace(' ', '-')}"]))
        runs[name] = (RewardClassifier.from_pretrained(best), json.loads((best / "config.json").read_text()),
                      json.loads((best.parent.parent / "metrics.json").read_text()))
    (a, cfg_a, m_a), (b, cfg_b, m_b) = runs.values()
    assert m_a["val_episodes"] == m_b["val_episodes"] == held and m_a["train_episodes"] == [0, 1, 3, 4, 6, 7, 8, 9]
    assert a.config.members == (1 if freeze == "all" else 4)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert cfg_a["threshold"] == cfg_b["threshold"] and cfg_a["temperature"] == cfg_b["temperature"]
    assert m_a["eval/accuracy"] != m_b["eval/accuracy"]  # the held-out evaluation did see the inverted labels


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, checkpoints/best) of a scratch-style run (the encoder trains) calibrated by 4 folds."""
    out = tmp_path_factory.mktemp("ensemble") / "run"
    best = train(compose([f"dataset.root={DEMO}", "dataset.episodes=[0,1,2,3,4,5,6,7,8,9]", *FAST,
                          "model.freeze=none", "training.steps=40", "training.calibrate=cv", f"output_dir={out}"]))
    return out, best


def test_an_ensemble_checkpoint_is_its_fold_members(ensemble):
    """Scratch-style (the encoder trains): the fold models are the deployed model; each member's logits on its own
    fold are the out-of-fold logits the calibration used, and the ensemble's logit is their mean."""
    out, best = ensemble
    model = RewardClassifier.from_pretrained(best)
    cal = json.loads((best / "config.json").read_text())["calibration"]
    assert model.config.members == 4 and cal["fold_models"] == "ensemble members"
    assert cal["fold_steps"] == math.ceil(MEMBER_BUDGET * 40 / 4)  # the members share the run's budget
    oof = np.load(out / "calibration" / "out_of_fold.npz")
    data = load_frame_data(DatasetConfig(root=str(DEMO), episodes=list(range(10))), LabelConfig(), (32, 32))
    for i, fold in enumerate(cal["folds"]):
        rows = np.flatnonzero(np.isin(data.episode_index, fold))[:20]
        pixels = model.preprocess({c: np.asarray(data.images[c][rows]) for c in model.camera_keys})
        with torch.inference_mode():
            mine, every = model.member_forward(i, pixels), model.member_logits(pixels)
            ensemble = model(pixels)
        at = np.flatnonzero(np.isin(oof["episode"], fold))[:20]
        assert np.allclose(mine.numpy(), oof["logits"][at], atol=1e-5)
        assert torch.allclose(every[:, i], mine, atol=1e-5) and torch.allclose(every.mean(1), ensemble, atol=1e-6)


@pytest.mark.parametrize("scope", ["head", "last"])
def test_an_ensemble_keeps_a_support_bank_of_its_own_encoder_and_the_retrainer_publishes_versions_of_it(
        ensemble, scope, tmp_path):
    """The members' encoders trained, so the support bank describes frames with its own frozen encoder; the
    cautious reward runs on it; the online retrainer retrains the ensemble (its heads on the members' features, and
    with ``scope=last`` every member's last stage) and publishes a version that is still the 4 members, with the
    bank extended by the corrections; its uncertainty heads train while it is idle."""
    from hilreward.online.ensemble import load_members, member_success, members_path
    from hilreward.online.options import RetrainOptions
    from hilreward.online.store import CorrectionStore
    from hilreward.online.trainer import HeadRetrainer, RetrainSpec
    from hilreward.online.versions import VersionStore
    from hilreward.deploy.corrections import Correction

    _, best = ensemble
    model = RewardClassifier.from_pretrained(best)
    assert model.support is not None and model.support.encoder is not None  # not the members' own features
    assert json.loads((best / "config.json").read_text())["support"]["encoder"]
    data = load_frame_data(DatasetConfig(root=str(DEMO), episodes=list(range(10))), LabelConfig(), (32, 32))
    step = {c.rsplit(".", 1)[-1]: np.array(data.images[c][5]) for c in data.camera_keys}
    result = RewardFunction.from_pretrained(best, cautious=True)(step)
    assert result.support is not None and 0.0 <= result.support <= 1.0

    versions = VersionStore(tmp_path / "versions")
    versions.init_base(best, "base", {})
    store = CorrectionStore(tmp_path / "c.sqlite")
    trained = json.loads((best.parent.parent / "metrics.json").read_text())["train_episodes"]
    rows = np.flatnonzero(np.isin(data.episode_index, trained) & (data.labels == 1))[::9][:6]
    for i in rows:  # corrections that agree with the labels: nothing for the gate to refuse
        store.add(Correction(frames={c.rsplit(".", 1)[-1]: np.array(data.images[c][i]) for c in data.camera_keys},
                             label=1, probability=0.5, model_version="base", time=0.0,
                             episode=int(data.episode_index[i]), step=int(data.frame_index[i])))
    trainer = HeadRetrainer(RetrainSpec(versions_root=str(tmp_path / "versions"), store=str(store.path),
                                        dataset=DatasetConfig(root=str(DEMO), episodes=list(range(10))),
                                        options=RetrainOptions(min_fixed=0.0, veto=[], ensemble=2, ensemble_steps=20,
                                                               scope=scope, steps=60),
                                        cache_dir=str(tmp_path / "cache")))
    attempt = trainer.attempt(store.read(), store.verdicts())
    assert attempt.passed, attempt.reason
    # while idle: the uncertainty heads of the served version, on the members' features side by side
    ready = [e for e in trainer.idle_work(store, lambda: False) if e is not None]
    assert [(e.number, e.members) for e in ready] == [(0, 2)]
    heads = load_members(members_path(tmp_path, 0), model)
    features = model.encode(model.preprocess({c: np.asarray(data.images[c][:8]) for c in model.camera_keys}))
    with torch.inference_mode():
        assert member_success(model, heads, features).shape == (2, 8)
    record = trainer.publish(attempt)
    version = RewardClassifier.from_pretrained(versions.path(record.number))
    assert record.number == 1 and version.config.members == 4
    assert version.support is not None and version.support.encoder is not None
    assert version.support.size["frames"] > model.support.size["frames"]  # the corrections joined the bank
    before, after = model.state_dict(), version.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    last = "encoder.backbone.1.stages."  # tiny: stages 0 and 1, each holding the 4 members' own
    moving = ("reward_head.heads.", "support.") + ((last,) if scope == "last" else ())
    assert changed and all(k.startswith(moving) for k in changed), sorted(changed)
    assert {k.split(".")[2] for k in changed if k.startswith("reward_head.")} == {"0", "1", "2", "3"}
    if scope == "last":
        assert attempt.metrics["adapted_last_stage"] == 1
        assert {k.split(".")[4] for k in changed if k.startswith(last)} == {"0", "1", "2", "3"}
    store.close()


def test_too_few_episodes_for_folds_and_no_success_say_so(tmp_path, capsys):
    common = [f"dataset.root={DRAWER4}", "model.encoder=tiny", "model.pretrained=false", "model.image_size=[32,32]",
              "training.threads=1", "training.steps=4", "training.eval_freq=0"]
    assert main([*common, "training.calibrate=cv", f"output_dir={tmp_path / 'a'}"]) == 0
    printed = capsys.readouterr().out
    assert "3 training episodes are too few for 4 folds (calibration by folds needs >= 8): calibrating on the " \
           "held-out episodes instead" in printed
    assert "calibration on held-out episodes [2]: temperature 1, threshold 0.5 (too little evidence" in printed

    assert main([*common, "label.threshold=2.0", f"output_dir={tmp_path / 'b'}"]) == 0  # no frame reaches 2
    printed = capsys.readouterr().out
    assert printed.count("calibration: none (not possible: no episode of the dataset succeeds") == 2  # plan, summary
    stored = json.loads((tmp_path / "b/checkpoints/best/config.json").read_text())
    assert stored["threshold"] == 0.5 and stored["temperature"] == 1.0 and stored["calibration"] is None
