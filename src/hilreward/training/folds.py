"""k folds by episode: the split, one training run per fold, and each fold model's logits on the episodes it never saw.

Shared by calibration by folds (``training.calibrate=cv``, :mod:`hilreward.training.calibrate`) and ``hilreward
suspects``. Fold runs use the same trainer and so the same frame and feature caches as the run they serve (a
frozen encoder's unaugmented features are computed once for all of them); each resumes on its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import TrainConfig
from ..data import FrameData
from ..errors import ConfigError
from ..evaluation.inference import batched_logits
from ..models.classifier import RewardClassifier
from .features import compute_features, encoder_is_frozen
from ..constants import STATE_JSON


def episode_folds(episodes: list[int], episode_index: np.ndarray, labels: np.ndarray, k: int,
                  seed: int) -> list[list[int]]:
    """``k`` groups of episodes: a seeded shuffle, episodes with a success first, dealt round robin (so every
    fold holds out both kinds and every model trains on both)."""
    if not 2 <= k <= len(episodes):
        raise ConfigError(f"folds={k} must be between 2 and the number of episodes ({len(episodes)})")
    rng = np.random.default_rng(seed)
    order = [episodes[i] for i in rng.permutation(len(episodes))]
    succeeds = {int(e) for e in np.unique(episode_index[labels > 0])}
    order.sort(key=lambda e: e not in succeeds)  # stable: shuffled within each kind
    return [sorted(order[i::k]) for i in range(k)]


def fold_config(cfg: TrainConfig, episodes: list[int], held: list[int], directory: Path, steps: int,
                **training) -> TrainConfig:
    """The run of one fold: ``held`` held out, ``steps`` steps, no calibration (its held-out episodes are what it
    scores), no support bank, W&B off, resumed when it was cut short; ``training`` overrides more training keys."""
    resume = (directory / "checkpoints" / "last" / STATE_JSON).is_file()
    return replace(cfg, output_dir=str(directory), split=replace(cfg.split, val_episodes=list(held)), resume=resume,
                   dataset=replace(cfg.dataset, episodes=list(episodes)), wandb=replace(cfg.wandb, enable=False),
                   training=replace(cfg.training, **{"calibrate": "off", "steps": steps, "epochs": None,
                                                     "support_frames": 0, **training}))


def fold_logits(cfg: TrainConfig, checkpoint: Path, data: FrameData, rows: np.ndarray) -> np.ndarray:
    """Raw logits of ``rows`` under a fold's checkpoint: from the cached unaugmented features when its encoder is
    frozen and the feature cache is on, from pixels otherwise."""
    model = RewardClassifier.from_pretrained(checkpoint)
    features = None
    if encoder_is_frozen(model) and cfg.training.feature_cache != "off":
        features = compute_features(model, data, batch_size=64, cache_dir=cfg.cache_dir, view=0,
                                    dtype=cfg.training.feature_dtype)
    return batched_logits(model, rows, data.images, features)
