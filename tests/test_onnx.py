"""ONNX export (preprocessing inside the graph) checked against torch with real ONNX Runtime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hilreward import cli
from hilreward.config import ModelConfig
from hilreward.deploy import RewardFunction, import_lerobot
from hilreward.models.loading import checkpoint_hash
from hilreward.deploy.export import main as export_main
from hilreward.errors import ConfigError
from hilreward.models import ClassifierConfig, RewardClassifier

from conftest import FIXTURES

CAMERAS = ["observation.images.front", "observation.images.wrist"]


def tiny_checkpoint(path, num_classes=2):
    torch.manual_seed(1)
    cfg = ClassifierConfig(encoder="tiny", camera_keys=CAMERAS, image_size=[32, 32], num_classes=num_classes,
                           latent_dim=16, hidden_dim=16, spatial_features=4)
    return RewardClassifier(cfg).save_pretrained(path)


def random_frames(n, size=32, seed=3):
    rng = np.random.default_rng(seed)
    return {k: rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8) for k in CAMERAS}


def onnx_probs(path, frames):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [k.replace(".", "_") for k in CAMERAS]
    assert session.get_inputs()[0].type == "tensor(uint8)"
    return session.run(["probability"], {k.replace(".", "_"): v for k, v in frames.items()})[0]


def test_onnx_backend_exports_once_into_the_cache_and_matches_torch(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    onnx_fn = RewardFunction.from_pretrained(ckpt, backend="onnx", mode="dense")
    torch_fn = RewardFunction.from_pretrained(ckpt, backend="torch", mode="dense")
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors"]  # folder left alone
    cached = onnx_fn.backend.path
    assert cached.is_file() and onnx_fn.model_version == torch_fn.model_version
    assert cached.parent.name == checkpoint_hash(ckpt)[:24]  # keyed by the files' content
    stamp = cached.stat().st_mtime_ns
    assert RewardFunction.from_pretrained(ckpt, backend="onnx").backend.path.stat().st_mtime_ns == stamp  # not again
    frames = random_frames(5)
    np.testing.assert_allclose(onnx_fn.relabel(frames), torch_fn.relabel(frames), atol=1e-4, rtol=0)
    for i in range(2):
        single = {k: v[i] for k, v in frames.items()}
        assert onnx_fn(single).probability == pytest.approx(torch_fn(single).probability, abs=1e-4)


def test_cli_export_multiclass_parity(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "mc", num_classes=3)
    assert export_main([f"checkpoint={ckpt}", "format=onnx"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["max_abs_diff"] < 1e-4
    frames = random_frames(3, seed=9)
    got = onnx_probs(ckpt / "model.onnx", frames)
    want = RewardClassifier.from_pretrained(ckpt).predict_proba(frames)
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert not [p.name for p in ckpt.iterdir() if p.name.startswith(".")]  # no temp files left


def test_lerobot_checkpoint_exports_with_its_normalisation(tmp_path):
    ckpt = tmp_path / "lerobot"
    shutil.copytree(FIXTURES / "lerobot_classifier" / "checkpoint", ckpt)
    assert cli.main(["export", f"checkpoint={ckpt}", "format=onnx"]) == 0
    expected = json.loads((FIXTURES / "lerobot_classifier" / "expected.json").read_text())
    stored = np.load(FIXTURES / "lerobot_classifier" / "frames.npz", allow_pickle=False)
    frames = {k: stored[k.replace(".", "_")] for k in CAMERAS}
    np.testing.assert_allclose(onnx_probs(ckpt / "model.onnx", frames), expected["probabilities"], atol=1e-4, rtol=0)
    assert import_lerobot(ckpt).config.camera_keys == CAMERAS


def test_export_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="format"):
        export_main([f"checkpoint={tmp_path}", "format=tflite"])
    with pytest.raises(ConfigError, match="checkpoint="):
        export_main([])
    assert cli.main(["export", f"checkpoint={tmp_path / 'nope'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope" in err and len(err.splitlines()) == 1


def test_an_ensemble_checkpoint_loads_and_exports_as_one_model(tmp_path):
    """A checkpoint of 4 members (calibration by folds of a scratch model): safetensors only, rebuilt from its
    config, and the same mean-of-members probability in torch and ONNX Runtime."""
    torch.manual_seed(2)
    cfg = ModelConfig(encoder="tiny", pretrained=False, freeze="none", image_size=[32, 32], latent_dim=16,
                      hidden_dim=16, spatial_features=4)
    model = RewardClassifier.from_train_config(cfg, CAMERAS, members=4)
    assert model.config.members == 4 and model.config.feature_shape[0] == 4 * 16
    ckpt = model.save_pretrained(tmp_path / "ens")
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors"]
    loaded = RewardClassifier.from_pretrained(ckpt)
    frames = random_frames(6)
    with torch.inference_mode():
        pixels = loaded.preprocess(frames)
        members, mean = loaded.member_logits(pixels), loaded(pixels)
        alone = torch.stack([loaded.member_forward(i, pixels) for i in range(4)], dim=1)
    assert members.shape == (6, 4) and torch.allclose(members.mean(1), mean, atol=1e-6)
    assert torch.allclose(alone, members, atol=1e-5) and members.std(1).min() > 0  # four different models
    assert np.allclose(loaded.predict_proba(frames), model.eval().predict_proba(frames), atol=1e-6)
    onnx_fn = RewardFunction.from_pretrained(ckpt, backend="onnx", mode="dense")
    torch_fn = RewardFunction.from_pretrained(ckpt, backend="torch", mode="dense")
    np.testing.assert_allclose(onnx_fn.relabel(frames), torch_fn.relabel(frames), atol=1e-4, rtol=0)
