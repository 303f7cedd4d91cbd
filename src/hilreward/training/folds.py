"""k folds by episode: the split, one training run per fold, and each fold model's logits on the episodes it never saw.

Shared by calibration by folds (``training.calibrate=cv``, :mod:`hilreward.training.calibrate`) and ``hilreward
suspects``. Fold runs use the same trainer and so the same frame and feature caches as the run they serve (a
frozen encoder's unaugmented features are computed once for all of them); each resumes on its own.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data import FrameData
from ..errors import ConfigError
from ..evaluation.inference import batched_logits
from ..models.classifier import RewardClassifier
from ..models.head import RewardHead
from .features import compute_features, encoder_is_frozen
from .step import make_optimizer
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


def fold_of_row(episode_index: np.ndarray, folds: list[list[int]]) -> np.ndarray:
    """The fold each row (by its ``episode_index``) is in: its position in ``folds``, -1 in none (a held-out row)."""
    out = np.full(len(episode_index), -1, dtype=np.int64)
    for i, held in enumerate(folds):
        out[np.isin(episode_index, held)] = i
    return out


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


def fold_heads(model, views: list[dict[str, np.ndarray]], rows: np.ndarray, labels: np.ndarray,
               fold_of_row: np.ndarray, folds: int, steps: int, *, batch_size: int, lr: float, weight_decay: float,
               grad_clip_norm: float, seed: int, balanced: bool = True, progress=None) -> list[torch.nn.Module]:
    """``folds`` heads like ``model.reward_head``, trained together in one pass on cached encoder features: head
    ``i`` on the training ``rows`` whose ``fold_of_row`` is not ``i`` (the fold it holds out).

    Every step draws one batch of the training rows as the run does (one of the precomputed ``views`` per sample,
    class-balanced), ``folds / (folds - 1)`` times the run's batch so that each head sees about the run's batch of
    its own rows; each head trains on its rows of it with its own AdamW, gradient clip and the run's cosine schedule
    (to 10 %). The features are read once per step for all heads. Returns the heads, in eval mode."""
    from .batches import FeatureBatches
    from .losses import classification_loss
    from ..data import balanced_weights

    num_classes = model.config.num_classes
    cfg = model.config
    heads = []
    for i in range(folds):
        with torch.random.fork_rng():  # a fresh initialisation of the run's head, seeded per fold
            torch.manual_seed(seed * 7919 + i + 1)
            heads.append(RewardHead(len(cfg.camera_keys), cfg.feature_shape, cfg.num_classes, cfg.spatial_features,
                                    cfg.latent_dim, cfg.hidden_dim, cfg.dropout).train())
    big = int(math.ceil(batch_size * folds / (folds - 1)))
    source = FeatureBatches(views, rows, labels, big, seed + 1, balanced, balanced_weights(labels))
    optimizers = [make_optimizer(list(h.parameters()), lr, weight_decay) for h in heads]
    schedule = lambda s: 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / max(steps, 1)))  # noqa: E731
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, schedule) for o in optimizers]
    cameras = list(model.config.camera_keys)
    for step in range(1, steps + 1):
        inputs, y, pos = source.batch(step)
        maps = [inputs[c] for c in cameras]
        fold = fold_of_row[pos]
        for i, (head, opt, sched) in enumerate(zip(heads, optimizers, schedulers)):
            mine = torch.from_numpy(np.flatnonzero(fold != i))
            if not len(mine):
                continue
            loss = classification_loss(head([m[mine] for m in maps]), y[mine], num_classes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(head.parameters(), grad_clip_norm)
            opt.step()
            sched.step()
        if progress is not None:
            progress.update(1)
    return [h.eval() for h in heads]
