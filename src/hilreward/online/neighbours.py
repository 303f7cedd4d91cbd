"""Contradicted corrections: near-identical frames that carry the other label.

Frames are compared in the space the head sees: the frozen encoder's feature maps, average-
pooled to at most 2x2 per camera and concatenated. "Near-identical" is relative to the data:
closer than ``radius`` times the median distance between two consecutive frames of an offline
episode. No head can classify two such frames both as labelled, so:

- of two corrections labelled otherwise that close, *the newest word wins* (:func:`newest_word`): the newer
  trains and the older is ``superseded`` (never trained; reversible by a review that accepts it, which makes
  it the newest word);
- a correction that close to an offline training frame labelled otherwise is *contradicted*: reported for
  review instead of holding the gate (the recorded data is not overruled by one keypress).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.support import pool_numpy


def pooled(features: dict[str, np.ndarray], keys: list[str], batch: int = 2048) -> np.ndarray:
    """(N, D) float32: each camera's (N, C, h, w) features average-pooled to <= 2x2, concatenated (the support
    bank's pooling, :func:`hilreward.models.support.pool`)."""
    return pool_numpy(features, keys, batch)


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
        """The corrections (``ids``, their pooled ``vectors`` and ``labels``) an offline training frame labelled
        otherwise contradicts (within the radius)."""
        out: dict[int, Contradiction] = {}
        limit = self.radius * self.scale
        vectors = np.asarray(vectors, dtype=np.float32)
        for i, cid in enumerate(ids):
            d, row = self._nearest_offline(cid, vectors[i], int(labels[i]))
            if d > limit:
                continue
            out[cid] = Contradiction(d / self.scale, f"near-identical to offline frame (episode {int(self.episodes[row])}, "
                                                     f"frame {int(self.frames[row])}) labelled {int(self.labels[row])} "
                                                     f"({d / self.scale:.2f} x the distance between consecutive frames)")
        return out

    def pairs(self, vectors: np.ndarray, labels: np.ndarray) -> list[tuple[int, int, float]]:
        """Pairs ``(i, j, distance)`` (indices into ``vectors``, ``i < j``) of corrections labelled otherwise that
        are near-identical (within the radius; distance in units of the consecutive-frame median)."""
        vectors, labels = np.asarray(vectors, dtype=np.float32), np.asarray(labels)
        if len(vectors) < 2 or self.radius <= 0:
            return []
        sq = (vectors ** 2).sum(1)
        between = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * vectors @ vectors.T, 0.0))
        close = (between <= self.radius * self.scale) & (labels[:, None] != labels[None, :])
        i, j = np.nonzero(np.triu(close, 1))
        return [(int(a), int(b), float(between[a, b] / self.scale)) for a, b in zip(i, j)]


def newest_word(pairs: list[tuple[int, int, float]], word: list[tuple]) -> dict[int, int]:
    """Of each pair of contradicting corrections, the older word is superseded by the newer, unless the newer is
    itself superseded (a chain A=1, B=0, C=1 leaves A and C training). ``word[i]`` orders the corrections' words
    (the greater is newer). Returns superseded index -> the index of the correction that supersedes it."""
    against: dict[int, list[int]] = {}
    for i, j, _ in pairs:
        against.setdefault(i, []).append(j)
        against.setdefault(j, []).append(i)
    out: dict[int, int] = {}
    for i in sorted(against, key=lambda k: word[k], reverse=True):  # newest first: its fate is settled first
        newer = [j for j in against[i] if word[j] > word[i] and j not in out]
        if newer:
            out[i] = max(newer, key=lambda k: word[k])
    return out
