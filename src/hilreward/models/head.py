"""HIL-SERL's classifier head: per-camera spatial learned embeddings, then an MLP over all cameras.

Every parameter here trains (no ``torch.no_grad()`` anywhere, unlike LeRobot's classifier,
where the spatial embedding and projection never receive gradients).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class SpatialLearnedEmbeddings(nn.Module):
    """``features[b, c, f] = sum_{h,w} x[b, c, h, w] * kernel[c, h, w, f]``, flattened to (B, C*F).

    A learned, per-channel spatial weighting (HIL-SERL's pooling): keeps *where* things are,
    unlike global average pooling. The grid (h, w) is fixed at build time from the encoder's
    output for the model's image size, so any image size works.
    """

    def __init__(self, channels: int, height: int, width: int, num_features: int = 8):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(channels, height, width, num_features) / math.sqrt(height * width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != self.kernel.shape[:3]:
            raise ValueError(f"feature map {tuple(x.shape[1:])} does not fit the head's {tuple(self.kernel.shape[:3])}")
        return torch.einsum("bchw,chwf->bcf", x, self.kernel).flatten(1)


class CameraProjection(nn.Module):
    """SpatialLearnedEmbeddings -> Dropout -> Linear(latent_dim) -> LayerNorm -> Tanh."""

    def __init__(self, feature_shape: Sequence[int], num_features: int, latent_dim: int, dropout: float):
        super().__init__()
        c, h, w = (int(s) for s in feature_shape)
        self.spatial = SpatialLearnedEmbeddings(c, h, w, num_features)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(c * num_features, latent_dim)
        self.norm = nn.LayerNorm(latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.norm(self.linear(self.dropout(self.spatial(x)))))


class RewardHead(nn.Module):
    """One CameraProjection per camera; concatenated -> Linear -> Dropout -> LayerNorm -> ReLU -> Linear.

    Output: (B,) logits when ``num_classes == 2`` (binary, one logit), else (B, num_classes).
    """

    def __init__(self, num_cameras: int, feature_shape: Sequence[int], num_classes: int = 2,
                 num_features: int = 8, latent_dim: int = 256, hidden_dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.cameras = nn.ModuleList(
            CameraProjection(feature_shape, num_features, latent_dim, dropout) for _ in range(num_cameras)
        )
        self.binary = num_classes == 2
        self.mlp = nn.Sequential(
            nn.Linear(num_cameras * latent_dim, hidden_dim),
            nn.Dropout(dropout),
            nn.LayerNorm(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 1 if self.binary else num_classes),
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features``: one (B,C,h,w) map per camera, in the order the head was built with."""
        z = torch.cat([proj(f) for proj, f in zip(self.cameras, features)], dim=-1)
        out = self.mlp(z)
        return out.squeeze(-1) if self.binary else out
