"""Training end to end on real frames (tests/fixtures/drawer4: 4 Meta-World drawer episodes, AV1 video):
gradients, resume exactness, CLI, W&B offline, binary and multi-class learning, feature path, input sizes."""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from hilreward.config import compose
from hilreward.data import load_frame_data
from hilreward.errors import CheckpointError, ConfigError
from hilreward.models.classifier import RewardClassifier
from hilreward.models.preprocessing import to_float_chw
import hilreward.training.loop as train_module
from hilreward.training.loop import main, train, train_step

FIXTURES = Path(__file__).parent / "fixtures"
DRAWER4 = FIXTURES / "drawer4"
METRIC_NAMES = {"train/loss", "train/accuracy", "train/dataloading_s", "eval/loss", "eval/accuracy",
                "eval/precision", "eval/recall", "eval/eval_s"}


# ---- helpers ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One frame/feature cache for the module (module fixtures run before the per-test HILREWARD_CACHE)."""
    return tmp_path_factory.mktemp("train-cache")


def overrides(output_dir: Path, cache_dir: Path, *extra: str, root: Path = DRAWER4) -> list[str]:
    """A fast run: tiny frozen encoder at 32x32, one thread, episode 2 held out (binary drawer labels)."""
    return [f"dataset.root={root}", "model.encoder=tiny", "model.pretrained=false", "model.image_size=[32,32]",
            "split.val_episodes=[2]", "training.threads=1", "training.batch_size=32", "training.log_freq=5",
            f"output_dir={output_dir}", f"cache_dir={cache_dir}", *extra]


def config(output_dir: Path, cache_dir: Path, *extra: str, root: Path = DRAWER4):
    return compose(overrides(output_dir, cache_dir, *extra, root=root))


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return RewardClassifier.from_pretrained(checkpoint).state_dict()


def write_phase_dataset(dst: Path, success_class: int = 2) -> Path:
    """drawer4 plus an int64 column ``phase``: ``success_class`` where the drawer is open (observation.success),
    else the lower of the two other classes in the first half of an episode and the higher in the second: a
    3-class label visible in the frames."""
    shutil.copytree(DRAWER4, dst)
    data_file = next((dst / "data").rglob("*.parquet"))
    table = pq.read_table(data_file)
    frame = table.column("frame_index").to_numpy()
    success = np.asarray(table.column("observation.success").to_pylist(), dtype=bool).reshape(len(frame), -1)[:, 0]
    first, second = [c for c in range(3) if c != success_class]
    phase = np.where(success, success_class, np.where(frame >= 75, second, first)).astype(np.int64)
    pq.write_table(table.append_column("phase", pa.array(phase)), data_file)
    info_path = dst / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["phase"] = {"dtype": "int64", "shape": [1], "names": None}
    info_path.write_text(json.dumps(info, indent=4))
    return dst


def wandb_records(run_dir: Path):
    """Protobuf records of an offline run's ``.wandb`` file, read without syncing (LevelDB log format:
    the 7-byte ``:W&B`` header, then 32 KiB blocks of chunks with a 7-byte header each)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = next(Path(run_dir).glob("*.wandb")).read_bytes()
    assert raw[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(raw):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        data = raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            continue
        buf = data if kind in (1, 2) else buf + data
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def finished_records(run_dir: Path, timeout: float = 30.0) -> list:
    """All records once the run's ``exit`` record is on disk (wandb's service writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(wandb_records(run_dir))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


class Interrupt(Exception):
    pass


def interrupt_after(monkeypatch, steps: int) -> None:
    """Make the training loop die (like a killed process) when it starts step ``steps + 1``."""
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > steps:
            raise Interrupt()
        return train_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", dying)


# ---- tests --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("freeze", ["all", "last", "none"])
def test_one_backward_pass_reaches_every_trainable_parameter(freeze, cache, tmp_path):
    cfg = config(tmp_path, cache, f"model.freeze={freeze}")
    data = load_frame_data(cfg.dataset, cfg.label, (32, 32), cache_dir=str(cache))
    torch.manual_seed(0)
    model = RewardClassifier.from_train_config(cfg, data.camera_keys)
    idx = np.concatenate([np.flatnonzero(data.labels == 0)[:8], np.flatnonzero(data.labels == 1)[:8]])
    inputs = {c: to_float_chw(data.images[c][idx], c) for c in data.camera_keys}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    metrics = train_step(model, inputs, torch.from_numpy(data.labels[idx]), optimizer)
    assert set(metrics) >= {"loss", "accuracy"} and np.isfinite(metrics["loss"])
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"
        else:
            assert p.grad is None, f"frozen {name} got a gradient"
    encoder_trainable = [p.requires_grad for p in model.encoder.parameters()]
    assert any(encoder_trainable) == (freeze != "all") and all(encoder_trainable) == (freeze == "none")


@pytest.mark.parametrize("path", ["pixels", "features"])
def test_interrupted_run_resumes_to_the_same_weights(path, cache, tmp_path, monkeypatch):
    # batch 128 x 20 steps makes the automatic choice take the feature path (2384 encoder passes < 2560).
    extra = ["training.steps=20", "training.eval_freq=5", "training.save_freq=10", "training.lr=1e-3",
             "training.batch_size=128" if path == "features" else "training.batch_size=16"]
    train(config(tmp_path / "full", cache, *extra))
    interrupt_after(monkeypatch, 13)
    with pytest.raises(Interrupt):
        train(config(tmp_path / "cut", cache, *extra))
    assert json.loads((tmp_path / "cut/checkpoints/last/training_state.json").read_text())["step"] == 10
    monkeypatch.undo()
    train(config(tmp_path / "cut", cache, *extra, "resume=true"))
    full, resumed = weights(tmp_path / "full/checkpoints/last"), weights(tmp_path / "cut/checkpoints/last")
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.allclose(full[k], resumed[k], atol=1e-6, rtol=0), k
    start = weights(tmp_path / "full/checkpoints/10")
    assert any(not torch.equal(start[k], full[k]) for k in full)  # training moved on after step 10
    # the history: what the cut run logged up to step 10, then the resumed run's lines; as if never cut
    def history(run):
        return [{k: v for k, v in r.items() if k != "elapsed_s"}
                for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())]
    assert history("cut") == history("full") and [r["step"] for r in history("full")][-1] == 20


def test_progress_in_a_log_file_and_the_local_history(cache, tmp_path, capsys):
    out = tmp_path / "run"
    train(config(out, cache, "training.steps=40", "training.eval_freq=10", "training.log_freq=5"))
    captured = capsys.readouterr()
    # output that is not a terminal: a plain line every tenth of the run, no carriage-return updates
    assert "\r" not in captured.err and "\r" not in captured.out
    progress = [line for line in captured.err.splitlines() if line.startswith("Training")]
    assert 4 <= len(progress) <= 11 and progress[-1].startswith("Training: 40/40 steps (100 %)")
    assert "ETA" in progress[0] and "loss" in progress[-1]
    assert captured.out.count("hilreward train: resolved config") == 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == list(range(5, 41, 5))
    assert [r["step"] for r in records if "eval/accuracy" in r] == [10, 20, 30, 40]
    assert all(0 <= r["eval/accuracy"] <= 1 and r["eval/loss"] >= 0 for r in records if "eval/loss" in r)
    assert (out / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "checkpoints" / "best" / "metrics.jsonl").read_text() == (out / "metrics.jsonl").read_text()


def test_killed_before_first_checkpoint_restarts_cleanly(cache, tmp_path, monkeypatch):
    extra = ["training.steps=8", "training.eval_freq=4", "training.save_freq=100"]
    interrupt_after(monkeypatch, 3)
    with pytest.raises(Interrupt):
        train(config(tmp_path / "run", cache, *extra))
    monkeypatch.undo()
    train(config(tmp_path / "run", cache, *extra, "resume=true"))
    train(config(tmp_path / "ref", cache, *extra))
    a, b = weights(tmp_path / "run/checkpoints/last"), weights(tmp_path / "ref/checkpoints/last")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_killed_mid_checkpoint_resumes_and_leaves_no_temporary_folder(cache, tmp_path, monkeypatch):
    """A kill -9 while a checkpoint is written leaves its temporary folder (nothing runs to remove it): the resumed
    run removes it, and every folder and file of the run is complete."""
    import shutil

    import hilreward.training.checkpoint as checkpoint_module

    extra = ["training.steps=12", "training.eval_freq=0", "training.save_freq=6"]
    real, calls = checkpoint_module.save_file, {"n": 0}

    def killed_on_the_third_state(*args, **kwargs):  # 6/, last/ at step 6, then 12/ dies half-written
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupt()
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_file", killed_on_the_third_state)
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)  # killed: no cleanup runs
    with pytest.raises(Interrupt):
        train(config(tmp_path, cache, *extra))
    monkeypatch.undo()
    run = tmp_path / "checkpoints"
    assert [p.name for p in run.iterdir() if p.name.startswith(".")], "the kill left no temporary folder to test"
    train(config(tmp_path, cache, *extra, "resume=true"))
    assert sorted(p.name for p in run.iterdir()) == ["12", "6", "best", "last"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert json.loads((run / "last" / "training_state.json").read_text())["step"] == 12


def test_resume_refuses_other_data_existing_runs_and_truncated_state(cache, tmp_path):
    extra = ["training.steps=4", "training.eval_freq=0"]
    train(config(tmp_path, cache, *extra))
    with pytest.raises(ConfigError, match="resume=true"):
        train(config(tmp_path, cache, *extra))  # an existing run is never overwritten silently
    with pytest.raises(ConfigError, match="dataset.cameras"):
        train(config(tmp_path, cache, *extra, "resume=true", "dataset.cameras=[front]"))
    with pytest.raises(ConfigError, match="dataset.root"):
        train(config(tmp_path, cache, *extra, "resume=true", root=FIXTURES / "elsewhere"))
    state = tmp_path / "checkpoints/last/training_state.safetensors"
    state.write_bytes(state.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match="training state is missing or damaged"):
        train(config(tmp_path, cache, *extra, "resume=true"))


def test_cli_overrides_end_to_end(cache, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(overrides(out, cache, "training.steps=30", "training.eval_freq=10", "training.save_freq=20",
                        "training.lr=1e-3", "model.hidden_dim=64", "model.dropout=0.0"))
    assert rc == 0
    printed = capsys.readouterr().out
    assert "resolved config" in printed and "hidden_dim: 64" in printed
    # one held-out episode is too little evidence to calibrate: temperature 1 and threshold 0.5 stay, and it says so
    assert "calibration on held-out episodes [2]: temperature 1, threshold 0.5 (too little evidence" in printed
    ckpts = out / "checkpoints"
    stored = json.loads((ckpts / "best" / "config.json").read_text())
    assert (stored["temperature"], stored["threshold"], stored["calibration"]["enough"]) == (1.0, 0.5, False)
    assert json.loads((out / "metrics.json").read_text())["calibration"]["episodes"] == [2]
    assert sorted(p.name for p in ckpts.iterdir()) == ["20", "30", "best", "last"]
    saved = yaml.safe_load((ckpts / "best/train_config.yaml").read_text())
    assert saved["training"]["steps"] == 30 and saved["model"]["hidden_dim"] == 64
    assert saved["split"]["val_episodes"] == [2]
    assert yaml.safe_load((out / "train_config.yaml").read_text()) == saved
    metrics = json.loads((ckpts / "best/metrics.json").read_text())
    assert metrics["val_episodes"] == [2] and metrics["train_episodes"] == [0, 1, 3]
    for name in ("20", "30", "best", "last"):
        model = RewardClassifier.from_pretrained(ckpts / name)
        assert model.config.hidden_dim == 64 and model.config.image_size == [32, 32]
    # The best checkpoint judges held-out frames (episode 2) well above the majority rate.
    cfg = compose(overrides(out, cache, "dataset.episodes=[2]"))
    data = load_frame_data(cfg.dataset, cfg.label, (128, 128), cache_dir=str(cache))
    prob = RewardClassifier.from_pretrained(ckpts / "best").predict_proba(data.images)
    accuracy = ((prob >= 0.5) == data.labels).mean()
    majority = max(data.labels.mean(), 1 - data.labels.mean())
    assert accuracy >= 0.9 > majority + 0.2, (accuracy, majority)
    assert metrics["eval/accuracy"] == pytest.approx(json.loads((out / "metrics.json").read_text())["best_accuracy"])


def test_bad_overrides_give_config_errors(cache, tmp_path):
    with pytest.raises(ConfigError):
        main(overrides(tmp_path, cache, "training.stepz=3"))
    with pytest.raises(ConfigError, match="feature_cache"):
        main(overrides(tmp_path, cache, "training.feature_cache=sometimes"))
    with pytest.raises(ConfigError, match="num_classes"):  # binary labels, but 1 class asked
        main(overrides(tmp_path, cache, "model.num_classes=1"))


def test_multiclass_learns_on_real_frames(cache, tmp_path):
    root = write_phase_dataset(tmp_path / "phase4")
    out = tmp_path / "run"
    train(config(out, cache, "label.key=phase", "model.num_classes=3", "training.steps=150",
                 "training.eval_freq=50", "training.lr=2e-3", "training.batch_size=64", root=root))
    metrics = json.loads((out / "checkpoints/best/metrics.json").read_text())
    cfg = config(out, cache, "label.key=phase", "dataset.episodes=[2]", root=root)
    labels = load_frame_data(cfg.dataset, cfg.label, (32, 32), cache_dir=str(cache)).labels
    majority = np.bincount(labels).max() / len(labels)
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    assert metrics["eval/accuracy"] >= majority + 0.25, (metrics, majority)
    model = RewardClassifier.from_pretrained(out / "checkpoints/best")
    assert model.config.num_classes == 3


def test_feature_path_with_views_and_offline_wandb(cache, tmp_path, capsys):
    out = tmp_path / "run"
    train(config(out, cache, "training.steps=120", "training.eval_freq=60", "training.lr=1e-3",
                 "training.augment_views=3", "wandb.enable=true", "wandb.mode=offline",
                 "wandb.num_samples_to_log=5", "wandb.project=hilreward-test"))
    printed = capsys.readouterr().out
    # view 0 of every frame; the 2 augmented views only of the training frames (never of held-out ones)
    path = re.search(r"path: feature cache, 596 frames unaugmented \+ 2 augmented view\(s\) x (\d+) training "
                     r"frames = (\d+) encoder passes", printed)
    assert path and 0 < int(path[1]) < 596 and int(path[2]) == 596 + 2 * int(path[1]), printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval/accuracy"] >= 0.9

    run_dir = next((out / "wandb").glob("offline-run-*"))
    records = finished_records(run_dir)
    kinds = [r.WhichOneof("record_type") for r in records]
    history = [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    config_keys = {i.key for r in records if r.WhichOneof("record_type") == "run" for i in r.run.config.update}
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    logged = set().union(*history)
    assert METRIC_NAMES <= logged, (METRIC_NAMES - logged, kinds)
    assert {"dataset", "model", "training", "label"} <= config_keys
    samples = [h for h in history if "eval/prediction_samples/path" in h]
    assert [h["_step"] for h in samples] == [60, 120], ([h.get("_step") for h in history][-5:], kinds)
    table = json.loads((run_dir / "files" / samples[-1]["eval/prediction_samples/path"]).read_text())
    assert table["columns"] == ["front", "wrist", "predicted", "true", "confidence"]
    assert len(table["data"]) == 5
    for row in table["data"]:
        assert row[2] in (0, 1) and row[3] in (0, 1) and 0.5 <= row[4] <= 1.0
    # The images travel in the run's table artifact: one PNG per camera and row.
    pngs = [e for e in artifacts[-1].manifest.contents if e.path.endswith(".png")]
    assert artifacts[-1].type == "run_table" and len(pngs) == 2 * 5
    assert all(Path(e.local_path).read_bytes()[:4] == b"\x89PNG" for e in pngs)


@pytest.mark.parametrize("frame_size,image_size", [((84, 84), [84, 84]), ((480, 640), [60, 80])])
def test_any_input_size_trains(frame_size, image_size, cache, tmp_path):
    from fixtures.datasets import write_synthetic

    root = tmp_path / "data"
    write_synthetic(root, lengths=(12, 9, 10), size=frame_size, codec="libx264")
    out = tmp_path / "run"
    best = train(config(out, cache, f"model.image_size={image_size}", "split.val_episodes=[1]",
                        "training.steps=6", "training.eval_freq=3", root=root))
    model = RewardClassifier.from_pretrained(best)
    assert model.config.image_size == image_size
    cfg = config(out, cache, f"model.image_size={image_size}", root=root)
    data = load_frame_data(cfg.dataset, cfg.label, tuple(image_size), cache_dir=str(cache))
    assert data.images["observation.images.front"].shape[1:3] == tuple(image_size)  # resized once, in the cache
    raw = np.zeros((2, *frame_size, 3), dtype=np.uint8)  # full-size frames, as a camera delivers them
    prob = model.predict_proba({"front": raw, "wrist": raw})
    assert prob.shape == (2,) and np.all((prob >= 0) & (prob <= 1))


def test_a_failed_run_ends_its_wandb_run_so_the_next_run_logs_into_its_own(cache, tmp_path, monkeypatch):
    """A run that raises after W&B started ends that run as failed: left open, the next run's ``wandb.init`` in this
    process logged into it (its offline run under the failed run's folder, none under its own)."""
    import wandb

    wandb_args = ("wandb.enable=true", "wandb.mode=offline", "wandb.project=hilreward-test", "training.steps=10",
                  "training.eval_freq=10", "training.calibrate=off")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(train_module, "attach_support", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        train(config(tmp_path / "failed", cache, *wandb_args))
    assert wandb.run is None
    monkeypatch.undo()
    train(config(tmp_path / "next", cache, *wandb_args))
    assert list((tmp_path / "next" / "wandb").glob("offline-run-*"))
