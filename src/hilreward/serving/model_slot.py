"""The model version a server is serving, swapped atomically between requests.

A request reads :attr:`ModelSlot.current` once and uses that :class:`ServedModel` to the end,
so a swap never mixes two versions inside one response and every response names the
version that produced it. A request may name an earlier version (:meth:`ModelSlot.get`), as
RewardFunction does for every step of an episode that started on it: the slot judges with that
version for as long as requests keep naming it (:attr:`PinOptions.idle_s` between two of them at most),
holding up to ``max_loaded`` versions in memory and loading an unloaded one again from disk; retention
never removes them (:meth:`ModelSlot.pinned`). A version named after that, or removed from disk, gets the
serving version, which the response names. Watchers block on :meth:`ModelSlot.wait_change`.
:class:`EnsemblePredictor` adds the uncertainty of a version that has ensemble heads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import numpy as np
import torch

from ..deploy.backends import score
from ..deploy.rule import success_probabilities
from ..online.ensemble import member_success, spread


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
        scores = score(self.predictor, images, support=True)  # the monitor and the queue look at every claim
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
        with torch.inference_mode():
            pixels = self.model.preprocess(images)
            features = self.model.encode(pixels)
            probs = self.model.probabilities(self.model.head(features))
            success = success_probabilities(probs, self.success_class)
            uncertainty = spread(success, member_success(self.model, self.members, features, self.success_class))
            support = self.model.support_of(features, pixels)
        return (probs.float().cpu().numpy(), uncertainty.float().cpu().numpy(),
                None if support is None else support.float().cpu().numpy())


@dataclass
class PinOptions:
    """How long a server keeps a version that requests name (``hilreward serve pins.<key>=...``)."""

    idle_s: float = 600.0
    """A version stays usable while requests name it (or it answers them) at most this many seconds apart: an
    episode keeps the version it started with as long as its steps come that often. Retention never removes it
    meanwhile."""
    max_loaded: int = 8
    """Versions held in memory at most (the serving one included); past it the least recently used one is unloaded
    and loaded again from disk when a request names it."""


class ModelSlot:
    """Holds the current :class:`ServedModel` and the versions requests use; ``swap`` replaces the current one
    and wakes watchers. ``load(version)`` loads a version by name (None when there is no such version any more)."""

    def __init__(self, model: ServedModel, pins: PinOptions | None = None,
                 load: Callable[[str], Optional[ServedModel]] | None = None) -> None:
        self._model = model
        self._pins = pins or PinOptions()
        self._load = load
        self._loaded: OrderedDict[str, ServedModel] = OrderedDict({model.version: model})  # least recent first
        self._used: dict[str, tuple[int, float]] = {}
        """Version -> (number, when it last answered a request): an episode may have started on it."""
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
        """The version named ``version`` (loaded again from disk when it was unloaded), else the current one."""
        model = None
        if version:
            with self._cond:
                model = self._loaded.get(version)
                if model is not None:
                    self._loaded.move_to_end(version)
            if model is None and self._load is not None:
                model = self._load(version)
                if model is not None:
                    with self._cond:
                        self._hold(model)
        model = model or self._model
        with self._cond:
            self._used[model.version] = (model.number, time.monotonic())
        return model

    def pinned(self) -> set[int]:
        """Numbers of the versions that answered a request within ``idle_s`` (an episode may use them), and the
        current one."""
        now = time.monotonic()
        with self._cond:
            for version, (_, when) in list(self._used.items()):
                if now - when > self._pins.idle_s and version != self._model.version:
                    del self._used[version]
            return {number for number, _ in self._used.values()} | {self._model.number}

    def swap(self, model: ServedModel) -> None:
        with self._cond:
            self._model = model
            self._hold(model)
            self._generation += 1
            self._cond.notify_all()

    def _hold(self, model: ServedModel) -> None:
        """Keep ``model`` loaded (the same version with a fresher ensemble replaces it); unload the least recently
        used ones past ``max_loaded``, never the current one."""
        self._loaded.pop(model.version, None)
        self._loaded[model.version] = model
        for version in list(self._loaded):
            if len(self._loaded) <= max(1, self._pins.max_loaded):
                break
            if version != self._model.version:
                del self._loaded[version]

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
