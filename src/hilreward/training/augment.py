"""Training-time augmentation: a random shift (as HIL-SERL / DrQ) and colour jitter (brightness, contrast,
saturation, hue), drawn per sample and per camera.

Both work on float (B,3,H,W) in [0, 1] or uint8 batches and take their randomness from an explicit
``torch.Generator`` (or precomputed offsets / factors), so training and the feature cache reproduce the same
views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

GRAY = (0.299, 0.587, 0.114)
"""ITU-R 601 luma weights (as torchvision's ``rgb_to_grayscale``)."""
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                           dtype=torch.float64)


def shift_offsets(n: int, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample (dy, dx) crop offsets in ``[0, 2*pad]``, int64 (n, 2); ``(pad, pad)`` is the identity."""
    return torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)


def random_shift(x: torch.Tensor, pad: int, offsets: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image of ``x`` (B,C,H,W) by up to ``pad`` pixels, replicating the border."""
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    if offsets is None:
        offsets = shift_offsets(b, pad, generator)
    dtype = x.dtype
    padded = F.pad(x.float() if dtype == torch.uint8 else x, (pad, pad, pad, pad), mode="replicate")
    out = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])
    return out.to(dtype) if dtype == torch.uint8 else out


@dataclass(frozen=True)
class ColorJitter:
    """Random photometric change per image: brightness, contrast and saturation factors drawn uniformly from
    ``[1 - s, 1 + s]`` for strength ``s``, and a hue rotation by up to ``hue`` of a full turn (``hue`` <= 0.5).

    Applied in that order, each clamped to the valid range, as torchvision's ``ColorJitter`` does (in a fixed
    order). Hue turns the chroma plane of YIQ, a linear stand-in for HSV's hue that needs no colour-space round
    trip. A strength of 0 leaves that property alone; all 0 is the identity.
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.brightness, self.contrast, self.saturation, self.hue))

    def factors(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 4) float64: brightness, contrast and saturation factors and the hue turn in [-hue, hue]."""
        u = torch.rand((n, 4), generator=generator, dtype=torch.float64) * 2 - 1  # [-1, 1)
        spread = torch.tensor([self.brightness, self.contrast, self.saturation, self.hue], dtype=torch.float64)
        return u * spread + torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)

    def __call__(self, x: torch.Tensor, factors: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` (B,3,H,W), float in [0, 1] or uint8, with each image changed by its row of ``factors``."""
        if not self.active:
            return x
        if factors is None:
            factors = self.factors(len(x), generator)
        dtype = x.dtype
        y = x.float() / 255.0 if dtype == torch.uint8 else x
        f = factors.to(torch.float32).view(-1, 4, 1, 1, 1).unbind(1)  # each (B,1,1,1)
        gray = torch.tensor(GRAY, dtype=torch.float32).view(1, 3, 1, 1)
        if self.brightness > 0:
            y = (y * f[0]).clamp(0, 1)
        if self.contrast > 0:
            mean = (y * gray).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            y = (mean + (y - mean) * f[1]).clamp(0, 1)
        if self.saturation > 0:
            luma = (y * gray).sum(1, keepdim=True)
            y = (luma + (y - luma) * f[2]).clamp(0, 1)
        if self.hue > 0:
            y = torch.einsum("bij,bjhw->bihw", hue_matrices(factors[:, 3]), y).clamp(0, 1)
        return (y * 255.0).round().to(torch.uint8) if dtype == torch.uint8 else y


def hue_matrices(turns: torch.Tensor) -> torch.Tensor:
    """(B,3,3) float32 RGB -> RGB matrices that rotate the YIQ chroma plane by ``turns`` of a full circle."""
    angle = turns.to(torch.float64) * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros((len(turns), 3, 3), dtype=torch.float64)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    return (torch.linalg.inv(_RGB_TO_YIQ) @ rot @ _RGB_TO_YIQ).to(torch.float32)
