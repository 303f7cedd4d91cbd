"""Frames in, model pixels out: the one preprocessing path of training, evaluation and deployment.

Accepted per camera: uint8 HWC ``(H,W,3)`` / ``(B,H,W,3)`` or float CHW ``(3,H,W)`` / ``(B,3,H,W)``
in [0, 1], numpy or torch. Both go through :func:`hilreward.images.model_pixels` (the 8-bit grid and
the frame cache's resize, so every input size gives the pixels training gave the model), then are
normalised with the encoder's mean/std.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..images import writable
from ..utils import full_key as full_camera_key, short_key as short_camera_key  # noqa: F401 (models API)



def pick_cameras(images: Mapping[str, Any], camera_keys: Sequence[str]) -> dict[str, Any]:
    """Each expected full key's image from ``images`` keyed by full or short names; InputError if one is missing."""
    out = {}
    for key in camera_keys:
        if key in images:
            out[key] = images[key]
        elif short_camera_key(key) in images:
            out[key] = images[short_camera_key(key)]
        else:
            raise InputError(
                f"missing camera {key!r}: the model expects cameras {list(camera_keys)} "
                f"(short names {[short_camera_key(k) for k in camera_keys]} work too), got {sorted(images)}"
            )
    return out


def to_float_chw(image: Any, key: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """One camera's frames as float32 (B,3,H,W) in [0, 1] on ``device``."""
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8 or np.issubdtype(image.dtype, np.floating):
            tensor = torch.from_numpy(writable(image))
        else:
            raise _dtype_error(key, str(image.dtype))
    elif isinstance(image, torch.Tensor):
        tensor = image
    else:
        raise InputError(f"camera {key!r}: expected a numpy array or torch tensor, got {type(image).__name__}")
    if tensor.dtype == torch.uint8:
        if tensor.ndim not in (3, 4) or tensor.shape[-1] != 3:
            raise InputError(
                f"camera {key!r}: uint8 frames must be HWC (H,W,3) or (B,H,W,3) RGB, got shape {tuple(tensor.shape)}"
            )
        batch = tensor if tensor.ndim == 4 else tensor.unsqueeze(0)
        return batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    if tensor.is_floating_point():
        if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
            raise InputError(
                f"camera {key!r}: float frames must be CHW (3,H,W) or (B,3,H,W) RGB in [0, 1], "
                f"got shape {tuple(tensor.shape)}"
            )
        batch = (tensor if tensor.ndim == 4 else tensor.unsqueeze(0)).to(device=device, dtype=torch.float32)
        lo, hi = batch.aminmax() if batch.numel() else (torch.tensor(0.0), torch.tensor(0.0))
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise InputError(
                f"camera {key!r}: float frames must be in [0, 1], got values in [{float(lo):.3g}, {float(hi):.3g}]; "
                "pass uint8 frames, or divide by 255 (the model normalises them itself)"
            )
        return batch
    raise _dtype_error(key, str(tensor.dtype))


def _dtype_error(key: str, dtype: str) -> InputError:
    return InputError(f"camera {key!r}: dtype {dtype} is not supported; pass uint8 HWC frames or float CHW in [0, 1]")


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    return (batch - m) / s
