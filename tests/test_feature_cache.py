"""Frozen-feature cache: same logits as the pixel path, reproducible augmented views, invalidation, fit_head."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from hilreward.config import DatasetConfig, LabelConfig, compose
from hilreward.data import load_frame_data
from hilreward.models.classifier import RewardClassifier
from hilreward.models.preprocessing import to_float_chw
from hilreward.training import features as F
from hilreward.training.augment import ColorJitter, random_shift

DRAWER4 = Path(__file__).parent / "fixtures" / "drawer4"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """drawer4 at 32x32: every 4th frame (149 rows, both classes, all 4 episodes)."""
    full = load_frame_data(DatasetConfig(root=str(DRAWER4)), LabelConfig(), (32, 32),
                           cache_dir=str(tmp_path_factory.mktemp("frames")))
    return full.subset(np.arange(0, len(full), 4))


def make_model(encoder: str = "tiny", size=(32, 32), seed: int = 0, cameras=None) -> RewardClassifier:
    torch.manual_seed(seed)
    cfg = compose([f"model.encoder={encoder}", "model.pretrained=false", f"model.image_size=[{size[0]},{size[1]}]"])
    return RewardClassifier.from_train_config(cfg, cameras or ["front", "wrist"]).eval()


def cached_logits(model, feats, rows) -> torch.Tensor:
    with torch.inference_mode():
        return model.head({c: torch.from_numpy(np.asarray(f[rows], dtype=np.float32)) for c, f in feats.items()})


def pixel_logits(model, data, rows, view: int = 0, pad: int = 4, color: ColorJitter | None = None) -> torch.Tensor:
    pixels = {}
    for i, cam in enumerate(data.camera_keys):
        x = to_float_chw(np.asarray(data.images[cam][rows]), cam)
        offsets = F.view_offsets(view, i, len(data), pad)
        factors = F.view_color(view, i, len(data), color)
        x = random_shift(x, pad, offsets[rows]) if offsets is not None else x
        pixels[cam] = color(x, factors[rows]) if factors is not None else x
    with torch.inference_mode():
        return model(model.preprocess(pixels))


@pytest.mark.parametrize("encoder", ["tiny", "small_cnn", "resnet10"])
def test_cached_path_gives_the_pixel_path_logits(encoder, data, tmp_path):
    model = make_model(encoder)
    rows = np.arange(len(data))
    exact = F.compute_features(model, data, batch_size=50, cache_dir=str(tmp_path), dtype="float32")
    assert all(f.dtype == np.float32 and f.shape[0] == len(data) for f in exact.values())
    reference = pixel_logits(model, data, rows)
    assert torch.allclose(cached_logits(model, exact, rows), reference, atol=1e-4, rtol=0)
    # float16 storage (the default) halves the cache; its rounding costs about 1e-3 in the logits.
    half = F.compute_features(model, data, batch_size=50, cache_dir=str(tmp_path))
    assert all(f.dtype == np.float16 for f in half.values())
    assert torch.allclose(cached_logits(model, half, rows), reference, atol=2e-3, rtol=0)


def test_features_of_selected_rows_are_those_rows_of_the_full_cache(data, tmp_path):
    model = make_model()
    rows = np.array([3, 4, 10, 57, 100])
    full = F.compute_features(model, data, cache_dir=str(tmp_path), dtype="float32")
    part = F.compute_features(model, data, cache_dir=str(tmp_path), dtype="float32", rows=rows)
    for cam in data.camera_keys:
        assert part[cam].shape[0] == len(rows)
        np.testing.assert_allclose(part[cam], full[cam][rows], atol=1e-6, rtol=0)
    assert F.feature_key(model, data, rows=rows) != F.feature_key(model, data)


def test_features_go_through_onnx_runtime_or_fall_back_to_torch(data):
    model = make_model("resnet10")
    sample = model.preprocess({c: to_float_chw(np.asarray(data.images[c][:8]), c) for c in data.camera_keys})
    x = sample[model.config.camera_keys[0]]
    runner = F.encoder_runner(model.encoder, x)
    assert runner is not None  # resnet10 exports: ONNX Runtime computes the cache
    with torch.inference_mode():
        assert torch.allclose(runner(x), model.encoder(x), atol=1e-4, rtol=0)

    class NoExport(torch.nn.Module):  # stands for a backbone the ONNX exporter cannot trace
        def forward(self, x):
            if torch.onnx.is_in_onnx_export():
                raise RuntimeError("unsupported operator")
            return x.mean(dim=1, keepdim=True)

    assert F.encoder_runner(NoExport(), x) is None


def test_augmented_views_are_the_shifted_frames_and_reproducible(data, tmp_path):
    model = make_model()
    rows = np.arange(len(data))
    view0 = F.compute_features(model, data, cache_dir=str(tmp_path), view=0, dtype="float32")
    view2 = F.compute_features(model, data, cache_dir=str(tmp_path), view=2, pad=4, dtype="float32")
    shifted = pixel_logits(model, data, rows, view=2)
    assert torch.allclose(cached_logits(model, view2, rows), shifted, atol=1e-4, rtol=0)
    assert not torch.allclose(cached_logits(model, view0, rows), shifted, atol=1e-3)
    again = F.compute_features(make_model(), data, cache_dir=str(tmp_path), view=2, pad=4, dtype="float32")
    assert all(np.array_equal(again[c], view2[c]) for c in view2)
    # with colour jitter: shifted, then jittered; its own cache entry (the shift-only view is unchanged)
    color = ColorJitter(0.2, 0.2, 0.5, 0.05)
    jittered = F.compute_features(model, data, cache_dir=str(tmp_path), view=2, pad=4, dtype="float32", color=color)
    expected = pixel_logits(model, data, rows, view=2, color=color)
    assert torch.allclose(cached_logits(model, jittered, rows), expected, atol=1e-4, rtol=0)
    assert not torch.allclose(expected, shifted, atol=1e-3)
    assert F.feature_key(model, data, view=2, color=color) != F.feature_key(model, data, view=2)
    assert F.feature_key(model, data, view=0, color=color) == F.feature_key(model, data, view=0)  # never augmented


def test_cache_is_reused_and_invalidated_by_weights_dataset_and_size(data, tmp_path, monkeypatch):
    cache = str(tmp_path)
    model = make_model()
    first = F.compute_features(model, data, cache_dir=cache)
    entries = lambda: sorted(p.name for p in (tmp_path / "features").iterdir())  # noqa: E731
    assert len(entries()) == 1
    files = sorted(p.name for p in (tmp_path / "features" / entries()[0]).iterdir())
    assert files == ["done.json", "observation.images.front.npy", "observation.images.wrist.npy"]  # no temp left

    # Same encoder weights, rows and size: read back from disk, the encoder does not run.
    with monkeypatch.context() as m:
        m.setattr(RewardClassifier, "encode", lambda *a, **k: pytest.fail("encoder ran on a cache hit"))
        hit = F.compute_features(make_model(), data, cache_dir=cache)
    assert all(np.array_equal(hit[c], first[c]) for c in first) and len(entries()) == 1

    with torch.no_grad():  # changed encoder weights -> new entry, holding the new encoder's features
        next(model.encoder.parameters()).add_(0.05)
    changed = F.compute_features(model, data, cache_dir=cache)
    assert len(entries()) == 2 and not np.array_equal(changed["observation.images.front"],
                                                      first["observation.images.front"])
    rows = np.arange(len(data))
    assert torch.allclose(cached_logits(model, changed, rows), pixel_logits(model, data, rows), atol=2e-3)

    other = dataclasses.replace(data, fingerprint="another-dataset")  # dataset files changed
    F.compute_features(model, other, cache_dir=cache)
    assert len(entries()) == 3

    fewer = data.subset(np.arange(10))  # other rows of the same dataset
    assert F.compute_features(model, fewer, cache_dir=cache)["observation.images.front"].shape[0] == 10
    assert len(entries()) == 4

    bigger = make_model(size=(40, 40))  # other model input size (same weights)
    bigger.encoder.load_state_dict(model.encoder.state_dict())
    F.compute_features(bigger, data, cache_dir=cache)
    assert len(entries()) == 5


def test_fit_head_trains_the_head_only_and_learns(data, tmp_path):
    model = make_model()
    feats = F.compute_features(model, data, cache_dir=str(tmp_path))
    train = np.flatnonzero(data.episode_index != 2)
    held = np.flatnonzero(data.episode_index == 2)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.reward_head.state_dict().items()}
    result = F.fit_head(model, {c: np.asarray(f[train]) for c, f in feats.items()}, data.labels[train],
                        steps=40, batch_size=32, lr=3e-3, seed=0)
    assert set(result) >= {"loss", "accuracy", "steps", "seconds"} and result["accuracy"] > 0.9
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert any(not torch.equal(v, model.reward_head.state_dict()[k]) for k, v in head_before.items())
    model.eval()
    accuracy = ((torch.sigmoid(cached_logits(model, feats, held)) >= 0.5).numpy() == data.labels[held]).mean()
    majority = max(data.labels[held].mean(), 1 - data.labels[held].mean())
    assert accuracy >= max(0.85, majority + 0.15), (accuracy, majority)
    with pytest.raises(ValueError, match="one label"):
        F.fit_head(model, feats, data.labels[:3], steps=1)
