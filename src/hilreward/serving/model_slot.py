"""The model version a server is serving, swapped atomically between requests.

A request reads :attr:`ModelSlot.current` once and uses that :class:`ServedModel` to the end,
so a swap never mixes two versions inside one response and every response names the
version that produced it. The slot also holds the last few versions it served
(:meth:`ModelSlot.get`), so a client can keep one version for a whole episode across a swap.
Watchers block on :meth:`ModelSlot.wait_change`.
:class:`EnsemblePredictor` adds the uncertainty of a version that has ensemble heads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..deploy.backends import score
from ..deploy.rule import success_probabilities


class Predictor(Protocol):
    """What the server needs from a model: the deploy backends (TorchBackend, OnnxBackend) fit."""

    camera_keys: list[str]

    def predict(self, images: dict[str, np.ndarray]) -> np.ndarray:
        """camera key -> uint8 (B, H, W, 3) -> success probabilities (B,) or class probabilities (B, K)."""
        ...


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version (immutable)."""

    version: str
    """model_version string of every response it produces."""
    predictor: Predictor
    """Runs the model (the same backend RewardFunction uses in-process)."""
    threshold: float
    """Success threshold the server applies to its probabilities."""
    image_size: tuple[int, int] = (0, 0)
    """Model input size (height, width); frames of other sizes are resized by the model."""
    num_classes: int = 2
    """2 for binary (one success probability), K > 2 for multi-class."""
    number: int = 0
    """Version directory number (0 = the checkpoint the server started with)."""
    created_unix: float = 0.0
    """When the version was published."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Held-out metrics of the version."""
    corrections_used: int = 0
    """Corrections the version was trained with."""
    ensemble_number: int = -1
    """Version whose ensemble heads give the uncertainty (-1: none)."""

    @property
    def camera_keys(self) -> list[str]:
        return list(self.predictor.camera_keys)

    @property
    def ensemble_size(self) -> int:
        return len(getattr(self.predictor, "members", ()))

    def predict(self, images: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(probabilities, uncertainty (B,) or None without an ensemble, support (B, 2) or None without a support
        bank) of a batch."""
        uncertain = getattr(self.predictor, "predict_uncertain", None)
        if uncertain is not None:
            return uncertain(images)
        scores = score(self.predictor, images)
        return np.asarray(scores.probabilities), None, scores.support


class EnsemblePredictor:
    """The served model's forward (as deploy's TorchBackend runs it) plus its ensemble heads on the
    same encoder features: uncertainty = std of the success probability over the heads and the model."""

    def __init__(self, model, members: list, success_class: int = -1) -> None:
        self.model = model.eval()
        self.members = list(members)
        self.success_class = success_class
        self.camera_keys: list[str] = list(model.config.camera_keys)

    def predict(self, images: dict[str, np.ndarray]) -> np.ndarray:
        return self.predict_uncertain(images)[0]

    def predict_uncertain(self, images: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(probabilities, uncertainty, support or None) from one encoder pass."""
        import torch

        from ..online.ensemble import member_success, spread

        with torch.inference_mode():
            pixels = self.model.preprocess(images)
            features = self.model.encode(pixels)
            probs = self.model.probabilities(self.model.head(features))
            success = success_probabilities(probs, self.success_class)
            uncertainty = spread(success, member_success(self.model, self.members, features, self.success_class))
            support = self.model.support_of(features, pixels)
        return (probs.float().cpu().numpy(), uncertainty.float().cpu().numpy(),
                None if support is None else support.float().cpu().numpy())


RETAINED_VERSIONS = 4
"""Versions a slot keeps for pinned requests (the serving one included)."""


class ModelSlot:
    """Holds the current :class:`ServedModel` and the last ``retain`` served; ``swap`` replaces it and wakes watchers."""

    def __init__(self, model: ServedModel, retain: int = RETAINED_VERSIONS) -> None:
        self._model = model
        self._retain = max(1, retain)
        self._recent: OrderedDict[str, ServedModel] = OrderedDict({model.version: model})
        self._generation = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def current(self) -> ServedModel:
        return self._model  # one attribute read: atomic

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, version: str = "") -> ServedModel:
        """The served version named ``version`` when the slot still holds it, else the current one."""
        if not version:
            return self._model
        with self._cond:
            return self._recent.get(version, self._model)

    def swap(self, model: ServedModel) -> None:
        with self._cond:
            self._model = model
            self._recent.pop(model.version, None)  # the same version with a fresher ensemble replaces it
            self._recent[model.version] = model
            while len(self._recent) > self._retain:
                self._recent.popitem(last=False)
            self._generation += 1
            self._cond.notify_all()

    def wait_change(self, seen: int, timeout: float) -> tuple[int, ServedModel] | None:
        """Wait until the generation differs from ``seen``; None on timeout or when closed."""
        with self._cond:
            if self._generation == seen and not self._closed:
                self._cond.wait(timeout)
            if self._closed or self._generation == seen:
                return None
            return self._generation, self._model

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
