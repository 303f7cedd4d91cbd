"""The support bank a trained checkpoint keeps (:mod:`hilreward.models.support`): its training frames' pooled
encoder features and labels, computed with the final model's encoder, at most ``training.support_frames`` of them.

The frames are spread evenly: half the bank for the successes and half for the failures (each subsampled evenly
along the data when there are more; the other half takes what one side leaves). Consecutive frames are
near-duplicates, so an even subsample keeps every state the data shows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from ..data import FrameData
from ..models import RewardClassifier
from ..models.checkpoint import CONFIG_NAME, WEIGHTS_NAME, read_config, save_weights, write_json
from ..models.support import Support, pool_numpy, support_encoder
from ..success import success_label
from ..utils import replace_dir
from .features import cached_features, encoder_is_frozen


def pick_rows(labels: np.ndarray, success: np.ndarray, limit: int) -> np.ndarray:
    """Indices into ``labels`` of at most ``limit`` frames, half successes and half failures, evenly spaced."""
    pos, neg = np.flatnonzero(success), np.flatnonzero(~success)
    take_pos = min(len(pos), max(limit // 2, limit - len(neg)))
    take_neg = min(len(neg), limit - take_pos)

    def even(idx: np.ndarray, k: int) -> np.ndarray:
        return idx if k >= len(idx) else idx[np.linspace(0, len(idx) - 1, k).round().astype(int)]

    return np.sort(np.concatenate([even(pos, take_pos), even(neg, take_neg)]))


def build_support(model: RewardClassifier, data: FrameData, rows: np.ndarray, limit: int,
                  success_class: int = -1, cache_dir: str | None = None,
                  dtype: str = "float16") -> Support | None:
    """The support bank of ``model`` from ``data``'s ``rows`` (its training frames); None when ``limit`` is 0 or
    there are no labelled frames."""
    if limit <= 0 or not len(rows) or data.labels is None:
        return None
    target = success_label(model.config.num_classes, success_class)
    success = np.asarray(data.labels[rows]) == target
    picked = rows[pick_rows(data.labels[rows], success, limit)]
    keys = list(model.config.camera_keys)
    cached = cached_features(model, data, cache_dir, dtype) if encoder_is_frozen(model) else None
    if cached is not None:  # training's own features of every frame: no encoder pass, no new cache entry
        vectors = pool_numpy({k: np.asarray(cached[k][picked]) for k in keys}, keys)
        encoder = None
    else:  # a frozen encoder without cached features runs once here; a trained one shares the head's blind
        encoder = None if encoder_is_frozen(model) else support_encoder()  # spots: the bank's own frozen one
        probe = Support(0, 0, encoder=encoder)  # pools the classifier's features, or encodes with its own
        parts = []
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(picked), 128):
                chunk = picked[start:start + 128]
                pixels = model.preprocess({k: np.asarray(data.images[k][chunk]) for k in keys})
                features = model.encode(pixels) if encoder is None else {}
                parts.append(probe.describe(features, pixels, keys).float().numpy())
        vectors = np.concatenate(parts)
    return Support.build(vectors, np.asarray(data.labels[picked]) == target, np.asarray(data.episode_index[picked]),
                         encoder=encoder)


def attach_support(checkpoint: Path, data: FrameData, rows: np.ndarray, limit: int,
                   cache_dir: str | None = None, dtype: str = "float16") -> Support | None:
    """Build the support bank of the checkpoint in ``checkpoint`` and save it there: the folder is rewritten as a
    whole (its other files copied), then swapped in, so it never holds weights and a config that disagree."""
    folder = Path(checkpoint)
    if limit <= 0 or not (folder / CONFIG_NAME).is_file():  # no best checkpoint (a resumed run that never beat it)
        return None
    model = RewardClassifier.from_pretrained(folder)
    support = build_support(model, data, rows, limit, cache_dir=cache_dir, dtype=dtype)
    if support is None:
        return None
    model.set_support(support)

    def fill(tmp: Path) -> None:
        for item in folder.iterdir():
            if item.is_file() and item.name not in (CONFIG_NAME, WEIGHTS_NAME):
                shutil.copy2(item, tmp / item.name)
        config = {**read_config(folder), "support": model.config.support}
        write_json(tmp / CONFIG_NAME, config)
        save_weights(tmp / WEIGHTS_NAME, model.state_dict(),
                     metadata={"format": "pt", "hilreward_version": model.config.version})

    replace_dir(folder, fill)
    return support
