"""Support: what the labelled frames say about a new frame, next to what the head says.

A head extrapolates: on a state no labelled frame resembles it can call success with any confidence, and an RL
policy finds exactly those states (reward hacking). The support bank keeps the labelled frames the model was
trained on (the offline training frames, and a retrained version's corrections) as pooled encoder features
(:func:`pool`: each camera's feature map averaged to at most 2x2, concatenated), with their labels. For each new
frame it gives two numbers (:meth:`Support.forward`):

- **support**: the share of successes among its ``k`` nearest labelled frames (the labelled data's own vote, which
  does not extrapolate); the cautious reward (``cautious=true``, :mod:`hilreward.deploy.rule`) pays success only
  where the head calls success *and* the support is at least one half;
- **novelty**: the distance to the nearest labelled success, in units of ``radius``: the distance within which
  the training successes find a success of another episode (their 95th percentile). Above 1 the frame is
  *unfamiliar* as a success: the hacking monitor and the operator console's queue look there first.

The bank is stored in the checkpoint (``support.*`` tensors in ``model.safetensors``, its sizes in
``config.json``), so every backend computes the same numbers (the ONNX graph has it as a second output).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

POOL = 2
"""Feature maps are averaged to at most POOL x POOL per camera before they are compared."""


def pool(features: Mapping[str, torch.Tensor], keys: Sequence[str]) -> torch.Tensor:
    """(B, D) float32: each camera's (B, C, h, w) features average-pooled to <= POOL x POOL, concatenated."""
    parts = []
    for key in keys:
        x = features[key].float()
        x = nn.functional.adaptive_avg_pool2d(x, (min(POOL, x.shape[-2]), min(POOL, x.shape[-1])))
        parts.append(x.flatten(1))
    return torch.cat(parts, dim=1)


def pool_numpy(features: Mapping[str, np.ndarray], keys: Sequence[str], batch: int = 2048) -> np.ndarray:
    """:func:`pool` over memory-mapped arrays, in batches: (N, D) float32."""
    n = len(features[keys[0]])
    out = []
    for s in range(0, n, batch):
        out.append(pool({k: torch.from_numpy(np.asarray(features[k][s:s + batch], dtype=np.float32)) for k in keys},
                        keys).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class Support(nn.Module):
    """The support bank (see the module docstring): pooled features ``(M, D)`` and success labels ``(M,)``."""

    def __init__(self, frames: int, dims: int, k: int = 5, radius: float = 1.0) -> None:
        super().__init__()
        self.k = int(k)
        self.register_buffer("vectors", torch.zeros(frames, dims))
        self.register_buffer("success", torch.zeros(frames))
        self.register_buffer("radius", torch.tensor(float(radius)))

    @classmethod
    def build(cls, vectors: np.ndarray, success: np.ndarray, episodes: np.ndarray, k: int = 5,
              quantile: float = 0.95) -> "Support":
        """A bank of ``vectors`` with their ``success`` labels; the radius from the successes of each episode to
        the nearest success of another (``episodes``), their ``quantile`` (the nearest success within the episode
        is a near-duplicate, so it would say nothing)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        success = np.asarray(success, dtype=bool)
        episodes = np.asarray(episodes)
        module = cls(len(vectors), vectors.shape[1], k)
        module.vectors.copy_(torch.from_numpy(vectors))
        module.success.copy_(torch.from_numpy(success.astype(np.float32)))
        pos = np.flatnonzero(success)
        radius = 1.0
        if len(pos) and len(np.unique(episodes[pos])) > 1:
            d = _distances(vectors[pos], vectors[pos])
            d[episodes[pos][:, None] == episodes[pos][None, :]] = np.inf
            nearest = d.min(1)
            nearest = nearest[np.isfinite(nearest)]
            if len(nearest):
                radius = float(np.quantile(nearest, quantile))
        module.radius.fill_(max(radius, 1e-6))
        return module

    @property
    def size(self) -> dict:
        """What config.json records to rebuild it."""
        return {"frames": int(self.vectors.shape[0]), "dims": int(self.vectors.shape[1]), "k": self.k}

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, D) pooled features -> (B, 2): [support, novelty] (see the module docstring)."""
        d2 = (pooled * pooled).sum(1, keepdim=True) - 2.0 * pooled @ self.vectors.T \
            + (self.vectors * self.vectors).sum(1)[None]
        d2 = d2.clamp_min(0.0)
        k = min(self.k, int(self.vectors.shape[0]))
        nearest = torch.topk(d2, k, dim=1, largest=False).indices
        support = self.success[nearest].mean(1)
        far = torch.full_like(d2, float("inf"))
        to_success = torch.where(self.success[None] > 0.5, d2, far).min(1).values
        novelty = to_success.sqrt() / self.radius
        return torch.stack([support, novelty], dim=1)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))
