"""Random shift augmentation, as HIL-SERL / DrQ: replicate-pad by ``pad`` pixels, then crop back at a random offset.

Works on float (B,3,H,W) or uint8 batches; each sample gets its own offset. Offsets come from an explicit
``torch.Generator`` so training and the feature cache can reproduce the same views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
