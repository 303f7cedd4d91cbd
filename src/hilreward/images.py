"""The one resize: frames on the 8-bit grid, resized with one filter and rounded back to it.

Training's frame cache stores every frame resized to the model's input size as uint8
(:func:`resize_uint8`). Every deployment path gives the model exactly those pixels: the torch
model's preprocessing (:func:`model_pixels`, for uint8 or float frames of any size), the ONNX
backend (:func:`resize_uint8` before its uint8 graph) and the LeRobot adapter (float frames in
[0, 1] go back to the 8-bit grid first, :func:`to_uint8_hwc`). Below ``data`` and ``models``:
it imports neither.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError


def resize(batch: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Antialiased bilinear resize of float (B,C,H,W) to ``size`` = (H, W); a no-op at the right size."""
    h, w = int(size[0]), int(size[1])
    if batch.shape[-2:] == (h, w):
        return batch
    return F.interpolate(batch, size=(h, w), mode="bilinear", antialias=True, align_corners=False)


def _resize_levels(levels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Float (B,3,H,W) holding integer levels 0..255 -> the same at ``size``, rounded to integer levels.

    On the CPU the levels are resized as uint8 by torch's own antialiased bilinear kernel for 8-bit images, which
    rounds as it goes: 16x faster than the float path on 480x640 frames (0.18 against 2.9 ms a frame, one thread),
    within one level of it. Elsewhere (a GPU) the float path, rounded."""
    h, w = int(size[0]), int(size[1])
    if levels.shape[-2:] == (h, w):
        return levels
    if levels.device.type == "cpu":
        return _resize_8bit(levels.to(torch.uint8), (h, w)).float()
    return resize(levels, size).round_().clamp_(0, 255)


def _resize_8bit(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (B,3,H,W), any memory layout -> uint8 at ``size``: torch's antialiased bilinear kernel for 8-bit images
    (channels-last, the layout it is fastest in)."""
    return F.interpolate(frames.contiguous(memory_format=torch.channels_last), size=size, mode="bilinear",
                         antialias=True, align_corners=False)


def resize_uint8(frames: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """uint8 (N,H,W,3) or (H,W,3) -> the same at ``size`` = (H, W), resized and rounded.

    The frame cache, the ONNX backend and the correction export call it; :func:`model_pixels` does
    the same arithmetic on tensors, so a cached frame has exactly the pixels a deployed model sees.
    """
    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise InputError(f"resize_uint8 expects uint8 (N,H,W,3) or (H,W,3) frames, got {arr.dtype} {arr.shape}")
    if arr.shape[-3:-1] == (int(size[0]), int(size[1])):
        return arr
    batch = arr[None] if arr.ndim == 3 else arr
    levels = torch.from_numpy(writable(batch)).permute(0, 3, 1, 2)  # a channels-last view of the frames
    out = _resize_8bit(levels, (int(size[0]), int(size[1]))).permute(0, 2, 3, 1).contiguous().numpy()
    return out[0] if arr.ndim == 3 else out


def model_pixels(batch: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Float (B,3,H,W) in [0, 1] -> what the model sees: on the 8-bit grid, at ``size``.

    Equals ``resize_uint8(uint8 frames) / 255`` bit for bit on the CPU: values are rounded to the
    nearest of the 256 levels (a no-op for frames that came from uint8, as training's do), resized
    and rounded again. So uint8 frames and their float copies, at any size, give the pixels
    training gave the model.
    """
    levels = _resize_levels(batch.mul(255.0).round_().clamp_(0, 255), size)
    return levels.div_(255.0)


def to_uint8_hwc(frames: Any, key: str = "image") -> np.ndarray:
    """uint8 (..., H, W, 3) as numpy; float CHW (..., 3, H, W) in [0, 1] (numpy or torch) rounded to uint8 HWC."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.dtype == np.uint8:
        if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
            raise InputError(f"camera {key!r}: uint8 frames must be (H, W, 3) or (B, H, W, 3), got {arr.shape}")
        return arr
    if not np.issubdtype(arr.dtype, np.floating) or arr.ndim not in (3, 4) or arr.shape[-3] != 3:
        raise InputError(f"camera {key!r}: expected uint8 (H, W, 3) / (B, H, W, 3) or float (3, H, W) / "
                         f"(B, 3, H, W) in [0, 1], got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < -1e-3 or arr.max() > 1.0 + 1e-3):
        raise InputError(f"camera {key!r}: float frames must be in [0, 1], got values in [{arr.min():.3g}, "
                         f"{arr.max():.3g}]; pass uint8 frames, or divide by 255")
    levels = np.clip(np.rint(arr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(levels, -3, -1))


def writable(arr: np.ndarray) -> np.ndarray:
    """``arr`` as contiguous writable memory for ``torch.from_numpy``; a read-only array (e.g. a
    memory-mapped frame cache) is copied, a writable one only when it is not contiguous."""
    return np.ascontiguousarray(arr) if arr.flags.writeable else np.array(arr)
