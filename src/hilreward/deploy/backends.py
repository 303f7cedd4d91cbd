"""Inference backends of the reward function: PyTorch (in-process) and ONNX Runtime.

Both take a dict camera -> batched frames (B, H, W, 3) uint8 (numpy or torch; short or full
camera keys) and return success probabilities: (B,) for binary, (B, K) for multi-class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, InputError
from ..models.preprocessing import resize_uint8

CAMERA_PREFIX = "observation.images."


def full_key(name: str) -> str:
    return name if name.startswith(CAMERA_PREFIX) else CAMERA_PREFIX + name


class TorchBackend:
    """Runs a RewardClassifier (or an imported LeRobot classifier) under ``torch.inference_mode``.

    The model's ``encode`` sends all cameras through the encoder in one batched call when their
    shapes match. ``channels_last`` converts weights and pixels to NHWC memory layout;
    ``compile`` wraps the forward in ``torch.compile``.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, compile: bool = False, channels_last: bool = False) -> None:
        self.model = model.eval()
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._forward = torch.compile(self._logits, dynamic=False) if compile else self._logits
        self.camera_keys: list[str] = list(model.config.camera_keys)

    def _logits(self, pixels: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.channels_last:
            pixels = {k: v.contiguous(memory_format=torch.channels_last) for k, v in pixels.items()}
        return self.model(pixels)

    def predict(self, images: dict[str, Any]) -> np.ndarray:
        with torch.inference_mode():
            pixels = self.model.preprocess(images)
            probs = self.model.probabilities(self._forward(pixels))
        return probs.float().cpu().numpy()


class OnnxBackend:
    """Runs ``model.onnx`` (uint8 NHWC frames per camera at the checkpoint's image size in,
    probability out) with ONNX Runtime.

    Frames of another size are resized on the Python side with the same resize function as
    the torch model (the graph itself takes frames already at ``image_size``).
    """

    name = "onnx"

    def __init__(self, onnx_path: str | Path, model: torch.nn.Module, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("backend='onnx' needs onnxruntime: `pip install onnxruntime`") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep: between reward calls the actor's env step needs the cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise CheckpointError(f"cannot load {onnx_path}: {exc}; re-export it with "
                                  f"`hilreward export checkpoint={Path(onnx_path).parent} format=onnx`") from None
        self.model = model
        self.camera_keys: list[str] = list(model.config.camera_keys)
        self.image_size = tuple(model.config.image_size)
        self.input_names = [i.name for i in self.session.get_inputs()]
        expected = [onnx_input_name(k) for k in self.camera_keys]
        if self.input_names != expected:
            raise CheckpointError(f"{onnx_path} has inputs {self.input_names}, the checkpoint expects {expected}; "
                                  "re-export it")

    def predict(self, images: dict[str, Any]) -> np.ndarray:
        feeds = {}
        for key, name in zip(self.camera_keys, self.input_names):
            feeds[name] = self._frames(images, key)
        return self.session.run(None, feeds)[0]

    def _frames(self, images: dict[str, Any], key: str) -> np.ndarray:
        frames = pick_camera(images, key)
        if isinstance(frames, torch.Tensor):
            frames = frames.cpu().numpy()
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InputError(f"camera {key!r}: the ONNX backend takes uint8 (H, W, 3) or (B, H, W, 3) frames, "
                             f"got {frames.dtype} {tuple(frames.shape)}")
        if tuple(frames.shape[1:3]) != self.image_size:
            frames = resize_uint8(frames, self.image_size)
        return np.ascontiguousarray(frames)


def onnx_input_name(camera_key: str) -> str:
    return full_key(camera_key).replace(".", "_")


def pick_camera(images: dict[str, Any], key: str) -> Any:
    """``images[key]`` accepting the short name (``front``) for ``observation.images.front``."""
    if key in images:
        return images[key]
    short = key[len(CAMERA_PREFIX):] if key.startswith(CAMERA_PREFIX) else key
    if short in images:
        return images[short]
    raise InputError(f"missing camera {key!r}: got {sorted(images)}; pass every camera of the checkpoint "
                     f"({short!r} or {key!r})")
