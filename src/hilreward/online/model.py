"""The retrainer's model: the served checkpoint, the part of it that retrains, and the weights a version changes.

A version differs from the checkpoint in its head, and (``retrain.scope=last|auto``) in its encoder's last stage
(:mod:`.adapt`): a :class:`State`. :class:`RetrainModel` loads a state into the one model it holds, runs it over
stored features (through the last stage first when the state adapted it), and encodes new frames once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import HilrewardError
from ..evaluation.inference import batched_logits
from ..models import RewardClassifier
from ..models.checkpoint import read_weights
from ..models.support import Support
from ..success import decided_classes, success_label, success_probabilities
from .adapt import LastStage

RUN_BATCH = 512
"""Feature rows per forward pass over stored features."""
ENCODE_BATCH = 256
"""Frames per forward pass of the encoder."""


@dataclass
class State:
    """Weights that differ between versions: the head, and the encoder's last stage when it was adapted."""

    head: dict
    last: dict | None = None
    """None: the checkpoint's own last stage (head-only versions)."""


@dataclass
class Encoded:
    """New frames under the checkpoint's encoder."""

    features: dict[str, np.ndarray]
    trunk: dict[str, np.ndarray] | None = None
    """The outputs of the stages before the last (when the last stage may adapt)."""
    support: np.ndarray | None = None
    """Their vectors under the support bank's own encoder (when asked for and the bank has one)."""


class RetrainModel:
    """The served checkpoint (version 0) as the retrainer trains and judges it.

    ``scope`` is ``retrain.scope``: with ``last`` or ``auto`` the encoder's last stage is split off
    (:class:`.adapt.LastStage`); ``auto`` on an encoder whose last stage cannot adapt alone falls back to ``head``.
    ``threshold`` and ``success_class`` are the served reward's: the success decision is :mod:`hilreward.success`'s.
    """

    def __init__(self, folder: Path, scope: str, threshold: float, success_class: int = -1) -> None:
        self.model = RewardClassifier.from_pretrained(folder).eval()
        self.threshold, self.success_class = float(threshold), int(success_class)
        self.keys = list(self.model.camera_keys)
        self.base = State(self.head_state())
        self.support: Support | None = self.model.support
        """The checkpoint's support bank (None: it has none; its versions then have none either)."""
        self.scope = scope
        self.stage: LastStage | None = None

    def split_last_stage(self) -> None:
        """Split off the encoder's last stage when ``scope`` lets it adapt."""
        if self.scope == "head":
            return
        try:
            self.stage = LastStage(self.model)
        except HilrewardError:
            if self.scope == "last":
                raise
            self.scope = "head"  # auto on an encoder whose last stage cannot adapt alone: head only

    # ---- the success decision (hilreward.success)
    @property
    def success_label(self) -> int:
        return success_label(self.model.config.num_classes, self.success_class)

    def is_success(self, labels: Any) -> np.ndarray:
        """0/1 of each label: whether it means success."""
        return (np.asarray(labels, dtype=np.int64) == self.success_label).astype(np.int64)

    def success(self, probs: np.ndarray) -> np.ndarray:
        """Success probability of class probabilities (the binary probability itself)."""
        return success_probabilities(probs, self.success_class)

    def classes(self, probs: np.ndarray) -> np.ndarray:
        """The class of each frame by the served reward's success decision."""
        return decided_classes(probs, self.threshold, self.success_class)

    # ---- weights
    def head_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.reward_head.state_dict().items()}

    def current(self, adapted: bool, start: State) -> State:
        """The weights the model holds now (``adapted``: its last stage's too, else ``start``'s)."""
        return State(self.head_state(), self.stage.state() if adapted and self.stage is not None else start.last)

    def load(self, state: State) -> None:
        self.model.reward_head.load_state_dict(state.head)
        if self.stage is not None:
            self.stage.load(state.last)
        self.model.eval()

    def state_of_version(self, folder: Path) -> State:
        """The weights of the version stored in ``folder``."""
        last = None
        if self.stage is not None:
            prefix = next(name for name, m in self.model.named_modules() if m is self.stage.module) + "."
            stored = read_weights(folder, prefix=prefix)
            base = self.stage.base
            if any(not torch.equal(stored[k], base[k]) for k in base if k in stored):
                last = stored
        return State(read_weights(folder, prefix="reward_head."), last)

    # ---- running it
    def run(self, state: State, source: dict[str, np.ndarray], rows: np.ndarray | None = None,
            penultimate: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, penultimate features or None) of ``state`` on ``rows`` (default: all) of ``source``: the
        stored features, or the trunk's outputs when ``state`` adapted the last stage."""
        self.load(state)
        grabbed: list = []
        hook = self.model.reward_head.mlp[-1].register_forward_pre_hook(
            lambda _m, inputs: grabbed.append(inputs[0].numpy().copy())) if penultimate else None
        try:
            stage = self.stage.module if state.last is not None and self.stage is not None else None
            logits = batched_logits(self.model, rows, features=source, batch_size=RUN_BATCH, stage=stage)
        finally:
            if hook is not None:
                hook.remove()
        with torch.inference_mode():
            probs = self.model.probabilities(torch.from_numpy(logits)).numpy() if len(logits) else \
                np.zeros(0, dtype=np.float32)
        return probs, (np.concatenate(grabbed) if grabbed else None) if penultimate else None

    def load_last(self, last: dict | None) -> None:
        """Load the last stage's weights ``last`` alone (None: the checkpoint's)."""
        assert self.stage is not None
        self.stage.load(last)

    def last_stage(self, trunk: np.ndarray) -> np.ndarray:
        """Features of trunk outputs under the last stage's weights loaded now (one pass)."""
        assert self.stage is not None
        with torch.inference_mode():
            return self.stage.module(torch.from_numpy(np.asarray(trunk, dtype=np.float32))).numpy()

    def encode(self, frames: list[dict[str, np.ndarray]], support: bool = False) -> Encoded:
        """New frames (each a dict camera -> uint8 (B, H, W, 3)) under the checkpoint's encoder, in batches; with
        ``support`` and a support bank that has its own encoder, their support vectors too."""
        feats: dict[str, list] = {k: [] for k in self.keys}
        trunk: dict[str, list] = {k: [] for k in self.keys}
        described: list = []
        self.load(self.base)
        with torch.inference_mode():
            for start in range(0, len(frames), ENCODE_BATCH):
                each = [self.model.preprocess(f) for f in frames[start:start + ENCODE_BATCH]]
                pixels = {k: torch.cat([p[k] for p in each]) for k in self.keys}
                if support and self.support is not None and self.support.encoder is not None:
                    described.append(self.support.describe({}, pixels, self.keys).numpy())
                if self.stage is not None:  # the trunk once; the checkpoint's last stage on it gives the features
                    trunk_t = {k: self.stage.trunk(v) for k, v in pixels.items()}
                    for k, v in trunk_t.items():
                        feats[k].append(self.stage.module(v).float().numpy())
                        trunk[k].append(v.float().numpy())
                else:
                    for k, v in self.model.encode(pixels).items():
                        feats[k].append(v.float().numpy())
        cat = lambda parts: {k: np.concatenate(v) for k, v in parts.items()}  # noqa: E731
        return Encoded(cat(feats), cat(trunk) if self.stage is not None else None,
                       np.concatenate(described) if described else None)
