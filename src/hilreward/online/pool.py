"""The retrainer's feature pool: every frame it trains or judges on, encoded once.

- **Offline rows**: the offline dataset's training episodes (features from the feature cache), then one row per
  correction (encoded when first seen, in one batch), grown as needed; their labels (offline labels as recorded,
  plus the relabels reviews accepted).
- **Held-out rows**: the offline episodes the gate judges (:mod:`.gate`).
- **Live rows**: the newest live episodes the server recorded (:mod:`.live`), each encoded once.
- **Trunk outputs** of each (the inputs of the encoder's last stage) when that stage may adapt (:mod:`.adapt`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import FrameData
from . import gate
from .live import LiveEpisodes
from .model import RetrainModel, State
from .neighbours import pooled
from .store import StoredCorrection

GROW = 256
"""Correction rows added at least when the pool is full."""


def _grow(arrays: dict[str, np.ndarray], extra: int) -> dict[str, np.ndarray]:
    return {c: np.concatenate([f, np.zeros((extra, *f.shape[1:]), f.dtype)]) for c, f in arrays.items()}


class FeaturePool:
    """Features (and trunk outputs) of the offline, held-out, correction and live rows, and their labels."""

    def __init__(self, net: RetrainModel, data: FrameData, features: dict[str, Any], val_rows: np.ndarray,
                 train_rows: np.ndarray) -> None:
        self.net = net
        self.val_rows, self.train_rows = val_rows, train_rows
        self.val_features = {c: np.asarray(f[val_rows]) for c, f in features.items()}
        self.train_at = (np.asarray(data.episode_index[train_rows]), np.asarray(data.frame_index[train_rows]))
        """(episode, frame) of each offline training row."""
        self.recorded = (np.asarray(data.labels[train_rows], dtype=np.int64),
                         np.asarray(data.labels[val_rows], dtype=np.int64))
        """The offline labels as recorded: (training rows, held-out rows)."""
        self.val_labels = self.recorded[1].copy()
        self.n_offline = len(train_rows)
        self.features = _grow({c: np.asarray(f[train_rows]) for c, f in features.items()}, GROW)
        self.labels = np.concatenate([self.recorded[0], np.zeros(GROW, np.int64)])
        self.used = self.n_offline
        """Rows in use: the offline ones, then the corrections'."""
        self.row_of: dict[int, int] = {}
        self.unusable: dict[int, str] = {}
        """Corrections that cannot train this model (missing cameras, blank frames) -> why."""
        self.vector_of: dict[int, np.ndarray] = {}
        """A correction's pooled features (what :mod:`.neighbours` compares)."""
        self.support_vector_of: dict[int, np.ndarray] = {}
        """A correction's vector under the support bank's own encoder (when it has one)."""
        self.trunk: dict[str, np.ndarray] | None = None
        self.val_trunk: dict[str, np.ndarray] | None = None
        self.live = gate.LiveEvidence(np.zeros(0, np.int64), np.zeros(0, np.int64))
        self.live_features: dict[str, np.ndarray] = {}
        self.live_trunk: dict[str, np.ndarray] | None = None
        self._live_cache: dict[tuple[int, float], tuple] = {}
        self._served_features: tuple[dict, dict[str, np.ndarray]] | None = None
        self._weigh_offline()

    def add_trunk(self, trunk: dict[str, Any]) -> None:
        """The trunk's outputs of the offline rows (when the last stage may adapt)."""
        self.val_trunk = {c: np.asarray(f[self.val_rows]) for c, f in trunk.items()}
        self.trunk = _grow({c: np.asarray(f[self.train_rows]) for c, f in trunk.items()}, GROW)

    def offline_vectors(self) -> np.ndarray:
        """Pooled features of the offline training rows."""
        return pooled({c: f[:self.n_offline] for c, f in self.features.items()}, self.net.keys)

    def source(self, where: str, adapted: bool) -> dict[str, np.ndarray]:
        """The rows a run reads: ``pool`` (offline training and corrections), ``val`` (held out) or ``live``; the
        trunk's outputs for a state whose last stage adapted."""
        if where == "val":
            source = self.val_trunk if adapted else self.val_features
        elif where == "live":
            source = self.live_trunk if adapted else self.live_features
        else:
            source = self.trunk if adapted else self.features
        assert source is not None
        return source

    # ---- offline labels
    @property
    def offline_labels(self) -> np.ndarray:
        return self.labels[:self.n_offline]

    def _weigh_offline(self) -> None:
        classes, counts = np.unique(self.offline_labels, return_counts=True)
        self.per_class = dict(zip(classes.tolist(), counts.tolist()))
        """Offline training rows per class."""
        self.offline_weights = 1.0 / np.array([self.per_class[int(y)] for y in self.offline_labels], dtype=np.float64)
        """Class-balanced sampling weight of each offline training row."""

    def relabel(self, train: np.ndarray, val: np.ndarray) -> bool:
        """Take new offline labels (training rows, held-out rows); False when nothing changed."""
        if np.array_equal(train, self.offline_labels) and np.array_equal(val, self.val_labels):
            return False
        self.labels[:self.n_offline] = train
        self.val_labels = val
        self._weigh_offline()
        return True

    # ---- corrections
    def add(self, corrections: list[StoredCorrection]) -> None:
        """Give each new correction a row with its features (encoded once, in one batch), or note why it cannot
        train this model."""
        fresh = [c for c in corrections if c.id not in self.row_of and c.id not in self.unusable and self._usable(c)]
        if not fresh:
            return
        encoded = self.net.encode([{k: c.correction.frames[k][None] for k in self.net.keys} for c in fresh],
                                  support=True)
        if encoded.support is not None:
            for c, v in zip(fresh, encoded.support):
                self.support_vector_of[c.id] = v
        while self.used + len(fresh) > len(self.labels):
            extra = max(GROW, self.used - self.n_offline)
            self.features = _grow(self.features, extra)
            if self.trunk is not None:
                self.trunk = _grow(self.trunk, extra)
            self.labels = np.concatenate([self.labels, np.zeros(extra, np.int64)])
        rows = slice(self.used, self.used + len(fresh))
        for c, f in encoded.features.items():
            self.features[c][rows] = f
        if encoded.trunk is not None and self.trunk is not None:
            for c, f in encoded.trunk.items():
                self.trunk[c][rows] = f
        self.labels[rows] = [int(c.correction.label) for c in fresh]
        vectors = pooled(encoded.features, self.net.keys)
        for i, c in enumerate(fresh):
            self.row_of[c.id] = self.used + i
            self.vector_of[c.id] = vectors[i]
        self.used += len(fresh)
        self._served_features = None

    def _usable(self, c: StoredCorrection) -> bool:
        """Whether ``c`` has a frame of every camera of this model, none of them blank (else noted why not)."""
        frames, keys = c.correction.frames, self.net.keys
        missing = [k for k in keys if k not in frames]
        blank = [k for k in keys if k in frames and np.ptp(np.asarray(frames[k])) <= 2]
        if missing or blank:
            self.unusable[c.id] = (f"has no frame of camera(s) {', '.join(missing)} of this model" if missing else
                                   f"the frame of {', '.join(blank)} is blank (one colour): nothing to learn from")
        return not (missing or blank)

    def features_of(self, state: State) -> dict[str, np.ndarray]:
        """Pool features under ``state``'s encoder: the offline ones, or (an adapted last stage) computed once per
        state (the serving version's) from the trunk's."""
        if state.last is None:
            return self.features
        if self._served_features is None or self._served_features[0] is not state.last:
            assert self.trunk is not None
            out = {c: np.zeros((len(f), *self.net.model.config.feature_shape), np.float16)
                   for c, f in self.features.items()}
            self.net.load_last(state.last)
            for c, f in self.trunk.items():
                for s in range(0, self.used, 512):
                    x = self.net.last_stage(f[s:s + 512])
                    out[c][s:s + len(x)] = x
            self._served_features = (state.last, out)
        return self._served_features[1]

    # ---- live traffic
    def load_live(self, store: LiveEpisodes, count: int, consecutive: int) -> None:
        """The newest ``count`` live episodes of ``store`` with every camera of this model, each encoded once (an
        episode not written since keeps its rows)."""
        keys = self.net.keys
        episodes = [e for e in store.newest(count) if all(k in e.frames for k in keys) and len(e)] if count > 0 else []
        cache = {}
        for e in episodes:
            key = (e.episode_id, e.updated)
            if key not in self._live_cache:
                encoded = self.net.encode([{k: e.frames[k] for k in keys}])
                self._live_cache[key] = (e.steps, encoded.features, encoded.trunk)
            cache[key] = self._live_cache[key]
        self._live_cache = cache
        parts = list(cache.items())
        ids = [np.full(len(steps), ep, np.int64) for (ep, _), (steps, _, _) in parts]
        self.live = gate.LiveEvidence(np.concatenate(ids) if ids else np.zeros(0, np.int64),
                                      np.concatenate([v[0] for _, v in parts]) if parts else np.zeros(0, np.int64),
                                      int(consecutive))
        self.live_features = self._stack(parts, 1, self.val_features)
        self.live_trunk = self._stack(parts, 2, self.val_trunk) if self.net.stage is not None and \
            self.val_trunk is not None else None

    def _stack(self, parts: list, which: int, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = self.net.keys
        shape = tuple(like[keys[0]].shape[1:])
        return {k: np.concatenate([v[which][k] for _, v in parts]) if parts else np.zeros((0, *shape), np.float32)
                for k in keys}
