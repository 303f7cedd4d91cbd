"""Contradicted corrections: near-identical frames that carry the other label.

Frames are compared in the space the head sees: the frozen encoder's feature maps, average-
pooled to at most 2x2 per camera and concatenated. "Near-identical" is relative to the data:
closer than ``radius`` times the median distance between two consecutive frames of an offline
episode. A correction is contradicted when an offline training frame or another (not rejected)
correction with a different label is that close: no head can then classify both as labelled,
so the correction is reported for review instead of holding the gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def pooled(features: dict[str, np.ndarray], keys: list[str], batch: int = 2048) -> np.ndarray:
    """(N, D) float32: each camera's (N, C, h, w) features average-pooled to <= 2x2, concatenated."""
    n = len(features[keys[0]])
    parts = []
    for key in keys:
        f = features[key]
        out = []
        for s in range(0, n, batch):
            x = torch.from_numpy(np.asarray(f[s:s + batch], dtype=np.float32))
            x = torch.nn.functional.adaptive_avg_pool2d(x, (min(2, x.shape[-2]), min(2, x.shape[-1])))
            out.append(x.flatten(1).numpy())
        parts.append(np.concatenate(out) if out else np.zeros((0, 0), np.float32))
    return np.concatenate(parts, axis=1)


@dataclass
class Contradiction:
    distance: float
    """Distance to the nearest frame with another label, in units of the consecutive-frame median."""
    detail: str
    """What that frame is."""


class NearDuplicates:
    """Nearest frames with another label among the offline training rows and the corrections."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray, episodes: np.ndarray, frames: np.ndarray,
                 radius: float) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.norms = (self.vectors ** 2).sum(1)
        self.labels = np.asarray(labels)
        self.episodes, self.frames = np.asarray(episodes), np.asarray(frames)
        self.radius = float(radius)
        same = (self.episodes[1:] == self.episodes[:-1]) & (self.frames[1:] == self.frames[:-1] + 1)
        steps = np.linalg.norm(self.vectors[1:][same] - self.vectors[:-1][same], axis=1)
        steps = steps[steps > 0]
        self.scale = float(np.median(steps)) if len(steps) else 1.0
        """Median distance between consecutive offline frames (the unit of ``radius``)."""
        self._offline: dict[int, tuple[float, int]] = {}

    def relabel(self, labels: np.ndarray) -> None:
        """New labels of the offline rows (a review's relabels); forgets what was found with the old ones."""
        self.labels = np.asarray(labels)
        self._offline.clear()

    def _nearest_offline(self, key: int, vector: np.ndarray, label: int) -> tuple[float, int]:
        """(distance, row) of the nearest offline frame labelled otherwise (cached per correction id)."""
        if key not in self._offline:
            other = np.flatnonzero(self.labels != label)
            if len(other) == 0:
                self._offline[key] = (np.inf, -1)
            else:
                d2 = self.norms[other] - 2.0 * (self.vectors[other] @ vector) + float(vector @ vector)
                i = int(np.argmin(d2))
                self._offline[key] = (float(np.sqrt(max(d2[i], 0.0))), int(other[i]))
        return self._offline[key]

    def find(self, ids: list[int], vectors: np.ndarray, labels: np.ndarray) -> dict[int, Contradiction]:
        """The corrections (``ids``, their pooled ``vectors`` and ``labels``) that are contradicted."""
        out: dict[int, Contradiction] = {}
        limit = self.radius * self.scale
        labels = np.asarray(labels)
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(ids):
            sq = (vectors ** 2).sum(1)
            between = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * vectors @ vectors.T, 0.0))
            between[labels[:, None] == labels[None, :]] = np.inf
        for i, cid in enumerate(ids):
            d_off, row = self._nearest_offline(cid, vectors[i], int(labels[i]))
            j = int(np.argmin(between[i]))
            d_corr = float(between[i, j])
            if min(d_off, d_corr) > limit:
                continue
            if d_off <= d_corr:
                what = (f"offline frame (episode {int(self.episodes[row])}, frame {int(self.frames[row])}) "
                        f"labelled {int(self.labels[row])}")
                d = d_off
            else:
                what = f"correction {ids[j]} labelled {int(labels[j])}"
                d = d_corr
            out[cid] = Contradiction(d / self.scale, f"near-identical to {what} ({d / self.scale:.2f} x the "
                                                     "distance between consecutive frames)")
        return out
