"""hilreward.training: ``train(cfg)`` (the run, :mod:`.loop`), ``train_step`` and its optimiser (:mod:`.step`), the
frozen-feature cache and head-only fitting (:mod:`.features`), ``validate`` on held-out rows."""

from __future__ import annotations

from .features import compute_features, fit_head
from .loop import train, validate
from .step import train_step

__all__ = ["compute_features", "fit_head", "train", "train_step", "validate"]
