"""The backend registry, backend="auto", and every backend seeing training's pixels at any input size."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from hilreward.deploy import RewardFunction, list_backends, register_backend
from hilreward.deploy import backends as B
from hilreward.errors import ConfigError
from hilreward.images import resize
from hilreward.integrations.lerobot import reward_classifier
from hilreward.models import ClassifierConfig, RewardClassifier
from hilreward.models.preprocessing import normalize

CAMERAS = ["observation.images.front", "observation.images.wrist"]
SIZES = [(32, 32), (48, 48), (20, 28), (97, 131), (128, 128)]


def tiny_checkpoint(path, seed=1):
    torch.manual_seed(seed)
    cfg = ClassifierConfig(encoder="tiny", camera_keys=CAMERAS, image_size=[32, 32], latent_dim=16, hidden_dim=16,
                           spatial_features=4)
    return RewardClassifier(cfg).save_pretrained(path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("backends") / "ckpt")


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(B.BACKENDS, "_entries", dict(B.BACKENDS._entries))  # entries a test adds go away with it


def test_unknown_backend_lists_the_known_ones_and_entries_register_themselves(ckpt, registry):
    assert {"auto", "torch", "onnx", "grpc"} <= set(list_backends())
    with pytest.raises(ConfigError, match=r"known: auto, torch, onnx, grpc"):
        RewardFunction.from_pretrained(ckpt, backend="tflite")
    register_backend("mine", "hilreward.deploy.backends:TorchBackend.load")  # resolved on first use
    assert isinstance(B.BACKENDS._entries["mine"], str)
    fn = RewardFunction.from_pretrained(ckpt, backend="mine")
    assert isinstance(fn.backend, B.TorchBackend) and B.BACKENDS._entries["mine"] == B.TorchBackend.load
    assert fn.model_version == RewardFunction.from_pretrained(ckpt, backend="torch").model_version
    with pytest.raises(ConfigError, match="module:attr"):
        register_backend("bad", "no_colon_here")
    with pytest.raises(ConfigError, match="address"):
        RewardFunction.from_pretrained(None, backend="grpc")


def test_auto_runs_onnx_on_the_cpu_and_torch_when_asked_for_torch_options(ckpt):
    auto = RewardFunction.from_pretrained(ckpt)
    assert isinstance(auto.backend, B.OnnxBackend)
    assert auto.backend.path.is_file() and not (ckpt / "model.onnx").exists()  # exported into the cache
    assert isinstance(RewardFunction.from_pretrained(ckpt, channels_last=True).backend, B.TorchBackend)


def test_auto_falls_back_to_torch_when_the_onnx_file_does_not_match(ckpt, tmp_path, caplog):
    other = tiny_checkpoint(tmp_path / "other", seed=7)
    stale = tmp_path / "stale"
    shutil.copytree(ckpt, stale)
    shutil.copy(RewardFunction.from_pretrained(other, backend="onnx").backend.path, stale / "model.onnx")
    with caplog.at_level(logging.WARNING, logger="hilreward.deploy.backends"):
        fn = RewardFunction.from_pretrained(stale)
    assert isinstance(fn.backend, B.TorchBackend)
    assert "differs from the checkpoint" in caplog.text


def test_versions_of_one_name_with_other_weights_never_share_an_onnx_file(tmp_path):
    """Two servers retraining from one checkpoint name their versions alike (``<base>-r1``) with other weights."""
    from hilreward.models.checkpoint import update_config

    frames = {k: np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8) for k in ("front", "wrist")}
    got = []
    for seed in (3, 4):
        version = tiny_checkpoint(tmp_path / f"server{seed}" / "versions" / "1", seed=seed)
        update_config(version, {"model_version": "base-r1"})
        onnx = RewardFunction.from_pretrained(version, backend="onnx")
        torch_fn = RewardFunction.from_pretrained(version, backend="torch")
        assert onnx.model_version == torch_fn.model_version == "base-r1"
        assert onnx.relabel(frames) == pytest.approx(torch_fn.relabel(frames), abs=1e-4)
        got.append(onnx.relabel(frames))
    assert np.abs(got[0] - got[1]).max() > 1e-3  # the two versions do differ


def test_the_onnx_cache_keeps_the_most_recently_used_exports(tmp_path, monkeypatch):
    """A retraining server's versions are each exported once a client loads them: the cache must not grow for
    ever (it filled this machine's disk), and the export a client keeps using must stay."""
    monkeypatch.setenv("HILREWARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(B, "ONNX_CACHE_KEEP", 2)
    versions = [tiny_checkpoint(tmp_path / "versions" / str(i), seed=10 + i) for i in range(4)]
    RewardFunction.from_pretrained(versions[0], backend="auto")
    RewardFunction.from_pretrained(versions[1], backend="onnx")
    RewardFunction.from_pretrained(versions[0], backend="auto")  # used again: now the newest
    RewardFunction.from_pretrained(versions[2], backend="onnx")
    kept = {p.parent for p in (tmp_path / "cache" / "onnx").glob("*/model.onnx")}
    assert kept == {B.onnx_path(versions[0]).parent, B.onnx_path(versions[2]).parent}
    # an evicted version exports again when it is loaded again, and gives the same probabilities as torch
    frames = {k: np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8) for k in ("front", "wrist")}
    again = RewardFunction.from_pretrained(versions[1], backend="onnx")
    assert B.onnx_path(versions[1]).exists()
    assert again.relabel(frames) == pytest.approx(
        RewardFunction.from_pretrained(versions[1], backend="torch").relabel(frames), abs=1e-4)
    assert len(list((tmp_path / "cache" / "onnx").glob("*/model.onnx"))) == 2


def test_every_backend_and_the_lerobot_adapter_give_the_same_probabilities_at_any_size(ckpt):
    fns = {name: RewardFunction.from_pretrained(ckpt, backend=name) for name in ("torch", "onnx")}
    adapter = reward_classifier(ckpt, backend="torch")
    onnx_adapter = reward_classifier(ckpt, backend="onnx")
    model = fns["torch"].backend.model
    rng = np.random.default_rng(0)
    unrounded_gap = 0.0
    for h, w in SIZES:
        frames = {k: rng.integers(0, 256, (4, h, w, 3), dtype=np.uint8) for k in CAMERAS}
        lerobot = {k: torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255.0 for k, v in frames.items()}
        p = {name: fn.relabel(frames) for name, fn in fns.items()}
        p["torch, float CHW"] = fns["torch"].relabel(lerobot)
        p["onnx, float CHW"] = fns["onnx"].relabel(lerobot)
        p["adapter, torch"] = adapter.probabilities(lerobot).numpy()
        p["adapter, onnx"] = onnx_adapter.probabilities(lerobot).numpy()
        for name, probs in p.items():
            np.testing.assert_allclose(probs, p["onnx"], atol=1e-4, rtol=0, err_msg=f"{name} at {h}x{w}")
        with torch.inference_mode():  # the float resize without rounding: what the torch backend did before
            pixels = {k: normalize(resize(v, (32, 32)), model.config.mean, model.config.std) for k, v in lerobot.items()}
            unrounded = model.probabilities(model(pixels)).numpy()
        unrounded_gap = max(unrounded_gap, float(np.abs(unrounded - p["onnx"]).max()))
    assert unrounded_gap > 1e-4  # so this test sees the difference the rounding makes
