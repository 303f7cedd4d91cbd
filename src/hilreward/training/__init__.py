"""hilreward.training: ``train(cfg)``, ``train_step``, the frozen-feature cache and head-only fitting."""

from __future__ import annotations

from .features import compute_features, fit_head
from .train import evaluate, train, train_step

__all__ = ["compute_features", "evaluate", "fit_head", "train", "train_step"]
