"""Data-parallel training: ``accelerate launch -m hilreward train`` with 2 CPU processes (gloo) on real frames
(tests/fixtures/drawer4), against the same run in one process.

Each of the two launches (pixel path, feature path) is the command the README gives. A step of 2
processes is the same update as one process on the whole batch, so with dropout off the weights match
the 1-process run's up to float rounding of the gradient average; with dropout on, only the random
noise differs and the held-out accuracy stays within noise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hilreward.config import compose
from hilreward.data import balanced_weights, load_frame_data
from hilreward.deploy import RewardFunction
from hilreward.models.classifier import RewardClassifier
from hilreward.training import train
from hilreward.training.batches import FeatureBatches, PixelBatches

pytestmark = pytest.mark.slow

DRAWER4 = Path(__file__).parent / "fixtures" / "drawer4"
ACCELERATE = Path(sys.executable).parent / "accelerate"
LAUNCH = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes=2", "--num_machines=1", "--mixed_precision=no",
          "--dynamo_backend=no", "--main_process_port=0", "-m", "hilreward", "train"]
# 20 steps, checkpoints at 10 and 20; a tiny encoder at 32x32, episode 2 held out.
COMMON = [f"dataset.root={DRAWER4}", "model.encoder=tiny", "model.pretrained=false", "model.image_size=[32,32]",
          "split.val_episodes=[2]", "training.threads=1", "training.steps=20", "training.eval_freq=10",
          "training.save_freq=10", "training.lr=1e-3", "training.device=cpu"]
PATHS = {  # the encoder trains (pixel path), or it is frozen and its features are cached (feature path)
    "pixels": ["model.freeze=none", "training.batch_size=16", "model.dropout=0.0"],
    "features": ["training.batch_size=128", "training.augment_views=2", "wandb.enable=true", "wandb.mode=offline",
                 "wandb.project=hilreward-test", "wandb.num_samples_to_log=2"],
}


def args(path: str, out: Path, cache: Path, *extra: str) -> list[str]:
    return [*COMMON, *PATHS[path], f"output_dir={out}", f"cache_dir={cache}", *extra]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return RewardClassifier.from_pretrained(checkpoint).state_dict()


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def held_out_accuracy(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["eval/accuracy"]


@pytest.fixture(scope="module", params=list(PATHS))
def runs(request, tmp_path_factory) -> dict:
    """The same training as 2 processes (accelerate launch) and as 1 (in this process), separate caches."""
    path, tmp = request.param, tmp_path_factory.mktemp(f"dp-{request.param}")
    two = subprocess.run([*LAUNCH, *args(path, tmp / "two", tmp / "cache-two")], capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-4000:]
    train(compose(args(path, tmp / "one", tmp / "cache-one")))
    return {"path": path, "tmp": tmp, "two": tmp / "two", "one": tmp / "one", "stdout": two.stdout}


def test_two_processes_train_like_one(runs):
    two, one = runs["two"], runs["one"]
    assert "2 processes (data-parallel)" in runs["stdout"]
    for line in ("hilreward train: resolved config", "held-out episodes [2]: accuracy", "best checkpoint:",
                 "calibration on held-out episodes [2]"):
        assert runs["stdout"].count(line) == 1, line  # printed by the main process only
    acc_two, acc_one = held_out_accuracy(two), held_out_accuracy(one)
    assert acc_one >= 0.9 and abs(acc_two - acc_one) <= 3 / 149, (acc_two, acc_one)  # 149 held-out frames
    if runs["path"] == "pixels":  # dropout off: the same updates, up to float rounding of the gradient average
        assert max_difference(weights(two / "checkpoints/last"), weights(one / "checkpoints/last")) < 1e-5
    else:  # the feature cache: computed in turns by 2 processes, written by one, the same as 1 process writes
        cache_two, cache_one = (runs["tmp"] / f"cache-{n}" / "features" for n in ("two", "one"))
        keys = sorted(p.name for p in cache_two.iterdir())
        assert keys == sorted(p.name for p in cache_one.iterdir()) and len(keys) == 2  # view 0 + 1 augmented
        for key in keys:
            files = sorted(p.name for p in (cache_two / key).iterdir())
            assert files == ["done.json", "observation.images.front.npy", "observation.images.wrist.npy"], files
            for name in files[1:]:
                assert np.array_equal(np.load(cache_two / key / name), np.load(cache_one / key / name))


def test_checkpoints_are_written_once_and_load_as_usual(runs):
    two = runs["two"]
    ckpts = two / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["10", "20", "best", "last"]  # no temporary leftovers
    state = json.loads((ckpts / "last/training_state.json").read_text())
    assert state["step"] == 20 and len(state["rng_others"]) == 1  # process 1's RNG state is saved too
    cfg = compose(args(runs["path"], two, runs["tmp"] / "cache-one", "dataset.episodes=[2]"))
    data = load_frame_data(cfg.dataset, cfg.label, (32, 32), cache_dir=str(runs["tmp"] / "cache-one"))
    model = RewardClassifier.from_pretrained(ckpts / "best")
    assert model.config.calibration["episodes"] == [2]  # calibrated once, by the main process, after the run
    prob = model.predict_proba(data.images)
    assert ((prob >= 0.5) == data.labels).mean() >= 0.9
    reward = RewardFunction.from_pretrained(ckpts / "best")
    frame = {cam: np.asarray(data.images[cam][-1]) for cam in data.camera_keys}
    assert reward(frame).probability == pytest.approx(float(prob[-1]), abs=1e-5)
    if runs["path"] == "features":
        wandb_runs = list((two / "wandb").glob("offline-run-*"))
        assert len(wandb_runs) == 1, wandb_runs  # only the main process logs


def test_resume_from_two_processes_with_one(runs):
    """The 2-process run, stopped after step 10, finishes in one process."""
    cut = runs["tmp"] / "cut"
    shutil.copytree(runs["two"], cut)
    for name in ("last", "best", "20"):
        shutil.rmtree(cut / "checkpoints" / name)
    shutil.copytree(cut / "checkpoints/10", cut / "checkpoints/last")
    train(compose(args(runs["path"], cut, runs["tmp"] / "cache-one", "resume=true")))
    resumed, full = weights(cut / "checkpoints/last"), weights(runs["two"] / "checkpoints/last")
    if runs["path"] == "pixels":  # dropout off: the uninterrupted 2-process run's weights, up to float rounding
        assert max_difference(resumed, full) < 1e-5
    else:  # other dropout noise after step 10, same batches: close weights, accuracy within noise
        assert max_difference(resumed, full) < 0.05
        assert abs(held_out_accuracy(cut) - held_out_accuracy(runs["two"])) <= 3 / 149
    start = weights(runs["two"] / "checkpoints/10")
    assert max_difference(resumed, start) > 1e-3  # it did train on after step 10


def test_process_shares_make_up_the_whole_batch(runs):
    """Every process draws the step's batch and augmentation the same way and keeps its share."""
    cache = runs["tmp"] / "cache-one"
    cfg = compose(args("pixels", runs["tmp"], cache))
    data = load_frame_data(cfg.dataset, cfg.label, (32, 32), cache_dir=str(cache))
    rows, labels = np.arange(len(data)), data.labels
    views = [{c: np.random.default_rng(v).standard_normal((len(data), 4, 2, 2)).astype(np.float32)
              for c in data.camera_keys} for v in range(2)]

    def source(share=slice(None)):
        if runs["path"] == "pixels":
            return PixelBatches(data.images, rows, labels, 12, 7, True, balanced_weights(labels), pad=4, share=share)
        return FeatureBatches(views, rows, labels, 12, 7, True, balanced_weights(labels), share=share)

    whole = source()
    for processes in (2, 3, 4):
        parts = [source(slice(i * 12 // processes, (i + 1) * 12 // processes)) for i in range(processes)]
        for step in (1, 9):
            inputs, labels_ = whole[step]
            pieces = [p[step] for p in parts]
            assert torch.equal(torch.cat([y for _, y in pieces]), labels_)
            for cam in inputs:
                assert torch.equal(torch.cat([x[cam] for x, _ in pieces]), inputs[cam])


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "hilreward", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "train" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "hilreward", "nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown command" in proc.stderr

