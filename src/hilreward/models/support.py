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

The space frames are compared in must not share the head's blind spots. A frozen encoder's features are generic:
with one (``resnet10``, frozen), the bank uses the classifier's own encoder features. An encoder trained with the
head (``model=scratch``) learns what the head needs and is fooled where it is (measured on coffee-button under a
lighting change: a policy that fooled the scratch classifier in 18 of 20 episodes fooled a support vote in its own
features as often); the bank then has its own frozen encoder, :func:`support_encoder` (a randomly initialised
ResNet-10), where the same vote let 9 of the 20 through.

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
    """(B, D) float32: each camera's (B, C, h, w) features average-pooled to <= POOL x POOL, concatenated (what
    ``adaptive_avg_pool2d`` gives, written out so the ONNX exporter sees a fixed grid)."""
    parts = []
    for key in keys:
        x = features[key].float()
        h, w = int(x.shape[-2]), int(x.shape[-1])  # a model's feature map size is fixed
        out_h, out_w = min(POOL, h), min(POOL, w)
        cells = [x[:, :, (i * h) // out_h:-(-((i + 1) * h) // out_h), (j * w) // out_w:-(-((j + 1) * w) // out_w)]
                 .mean(dim=(2, 3)) for i in range(out_h) for j in range(out_w)]
        parts.append(torch.stack(cells, dim=2).flatten(1))
    return torch.cat(parts, dim=1)


def pool_numpy(features: Mapping[str, np.ndarray], keys: Sequence[str], batch: int = 2048) -> np.ndarray:
    """:func:`pool` over memory-mapped arrays, in batches: (N, D) float32."""
    n = len(features[keys[0]])
    out = []
    for s in range(0, n, batch):
        out.append(pool({k: torch.from_numpy(np.asarray(features[k][s:s + batch], dtype=np.float32)) for k in keys},
                        keys).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


SUPPORT_ENCODER = "resnet10"
"""The architecture of :func:`support_encoder`."""


def support_encoder(seed: int = 0) -> nn.Module:
    """A frozen ResNet-10 (BatchNorm layout) with random He-initialised weights (``seed``): a generic description of
    a frame, for models whose own encoder trained with the head. Its weights are stored in the checkpoint.

    Measured on coffee-button under a lighting change (frames of a policy that fooled ``model=scratch`` in 18 of 20
    episodes; a 5-nearest vote): this encoder let 9 through, the GroupNorm layout (hilreward's default for a
    random ResNet-10) 13, the LeRobot peer's random ResNet-10 weights 1 to 2, the scratch model's own features
    18 (``studies/support``)."""
    from .registry import build_encoder

    encoder = build_encoder(SUPPORT_ENCODER, pretrained=False, options={"layout": "transformers"}, freeze="all")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in encoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()
    return encoder.eval()


class Support(nn.Module):
    """The support bank (see the module docstring): pooled features ``(M, D)`` and success labels ``(M,)``, and
    its own frozen ``encoder`` when the classifier's is not frozen (None: the classifier's features)."""

    def __init__(self, frames: int, dims: int, k: int = 5, radius: float = 1.0,
                 encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.k = int(k)
        self.encoder = encoder
        if encoder is not None:
            for p in encoder.parameters():
                p.requires_grad_(False)
        self.register_buffer("vectors", torch.zeros(frames, dims))
        self.register_buffer("success", torch.zeros(frames))
        self.register_buffer("radius", torch.tensor(float(radius)))

    def train(self, mode: bool = True) -> "Support":
        super().train(mode)
        if self.encoder is not None:
            self.encoder.eval()  # frozen: never batch statistics
        return self

    def describe(self, features: Mapping[str, torch.Tensor], pixels: Mapping[str, torch.Tensor],
                 keys: Sequence[str]) -> torch.Tensor:
        """(B, D) pooled vectors of a batch: the classifier's ``features``, or its own encoder's on ``pixels``."""
        if self.encoder is None:
            return pool(features, keys)
        maps = self.encoder(torch.cat([pixels[k] for k in keys]))
        maps = maps.reshape(len(keys), -1, *maps.shape[1:])  # reshape, not split: the ONNX batch stays symbolic
        return pool({k: maps[i] for i, k in enumerate(keys)}, keys)

    @classmethod
    def build(cls, vectors: np.ndarray, success: np.ndarray, episodes: np.ndarray, k: int = 5,
              quantile: float = 0.95, encoder: nn.Module | None = None) -> "Support":
        """A bank of ``vectors`` with their ``success`` labels; the radius from the successes of each episode to
        the nearest success of another (``episodes``), their ``quantile`` (the nearest success within the episode
        is a near-duplicate, so it would say nothing)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        success = np.asarray(success, dtype=bool)
        episodes = np.asarray(episodes)
        module = cls(len(vectors), vectors.shape[1], k, encoder=encoder)
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

    def extended(self, vectors: np.ndarray, success: np.ndarray) -> "Support":
        """This bank with more labelled frames (a version's corrections), in the same space and radius."""
        more = np.concatenate([self.vectors.numpy(), np.asarray(vectors, np.float32).reshape(-1, self.vectors.shape[1])])
        labels = np.concatenate([self.success.numpy() > 0.5, np.asarray(success, bool)])
        module = type(self)(len(more), more.shape[1], self.k, float(self.radius), self.encoder)
        module.vectors.copy_(torch.from_numpy(more))
        module.success.copy_(torch.from_numpy(labels.astype(np.float32)))
        return module

    @property
    def size(self) -> dict:
        """What config.json records to rebuild it."""
        return {"frames": int(self.vectors.shape[0]), "dims": int(self.vectors.shape[1]), "k": self.k,
                "encoder": None if self.encoder is None else SUPPORT_ENCODER}

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, D) pooled features -> (B, 2): [support, novelty] (see the module docstring)."""
        d2 = (pooled * pooled).sum(1, keepdim=True) - 2.0 * pooled @ self.vectors.transpose(0, 1) \
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
