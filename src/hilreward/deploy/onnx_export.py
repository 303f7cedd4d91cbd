"""A checkpoint as one ONNX graph, preprocessing included (``hilreward export format=onnx``, :mod:`.export`).

The graph takes one input per camera, named like the camera key with dots as underscores
(``observation_images_front``): uint8 (B, H, W, 3) frames already at the checkpoint's
``image_size``; it converts to float, normalises exactly as the torch model does and outputs
``probability`` ((B,) binary, (B, K) multi-class) and, when the checkpoint has a support bank,
``support`` ((B, 2): support and novelty, :mod:`hilreward.models.support`). Frames of another size must be resized first
with :func:`hilreward.images.resize_uint8` (``RewardFunction(backend="onnx")`` does), because the
antialiased resize has no exact ONNX counterpart; the torch model rounds to the same pixels.

Every export is checked against torch with ONNX Runtime on random frames; a max absolute
difference in probability above ``atol`` (1e-4) fails the export and leaves no file.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..models.preprocessing import normalize
from ..models.lerobot_import import LeRobotRewardClassifier
from ..utils import full_key, write_file


def onnx_input_name(camera_key: str) -> str:
    """The graph input of a camera (``observation_images_front``)."""
    return full_key(camera_key).replace(".", "_")

class _UInt8Graph(nn.Module):
    """uint8 NHWC frames (one tensor per camera, in camera order) -> probability."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.keys = list(model.config.camera_keys)

    def forward(self, *frames: torch.Tensor) -> torch.Tensor:
        # The same arithmetic as model.preprocess for frames already at image_size (preprocess itself
        # holds Python-side checks that do not trace with a symbolic batch size).
        unit = {k: f.permute(0, 3, 1, 2).float().div(255.0) for k, f in zip(self.keys, frames)}
        if isinstance(self.model, LeRobotRewardClassifier):
            pixels = self.model.normalise(unit)
        else:
            pixels = {k: normalize(x, self.model.config.mean, self.model.config.std) for k, x in unit.items()}
        # All cameras through the encoder at once; reshape (not split) keeps the batch size symbolic.
        maps = self.model.encoder(torch.cat([pixels[k] for k in self.keys]))
        maps = maps.reshape(len(self.keys), -1, *maps.shape[1:])
        features = {k: maps[i] for i, k in enumerate(self.keys)}
        probs = self.model.probabilities(self.model.head(features))
        if getattr(self.model, "support", None) is not None:
            return probs, self.model.support_of(features, pixels)
        return probs


def export_onnx(model: nn.Module, path: str | Path, opset: int = 18, atol: float = 1e-4,
                check_batch: int = 4) -> float:
    """Write ``path`` atomically after checking it against torch; returns the max abs difference."""
    path = Path(path)
    model = model.eval()
    h, w = (int(s) for s in model.config.image_size)
    keys = list(model.config.camera_keys)
    names = [onnx_input_name(k) for k in keys]
    graph = _UInt8Graph(model).eval()
    dummy = tuple(torch.zeros(2, h, w, 3, dtype=torch.uint8) for _ in keys)
    outputs = ["probability", "support"] if getattr(model, "support", None) is not None else ["probability"]
    found: list[float] = []

    def write(tmp: Path) -> None:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), _quiet_exporter():
            warnings.simplefilter("ignore")
            # The TorchScript exporter first: it needs only torch and onnx, and takes 3-5 s where the dynamo
            # exporter (which needs onnxscript) took 30-60 s for ResNet-10 on a busy 2-core machine.
            try:
                torch.onnx.export(graph, dummy, str(tmp), input_names=names, output_names=outputs,
                                  opset_version=opset, dynamo=False,
                                  dynamic_axes={n: {0: "batch"} for n in [*names, *outputs]})
            except Exception:  # a model (or a torch) it cannot handle: the dynamo exporter
                batch = torch.export.Dim("batch", min=1, max=4096)
                torch.onnx.export(graph, dummy, str(tmp), input_names=names, output_names=outputs,
                                  opset_version=opset, dynamo=True, external_data=False,
                                  dynamic_shapes=(tuple({0: batch} for _ in keys),), verbose=False)
        found.append(check_parity(model, tmp, check_batch))
        if not found[0] <= atol:
            raise CheckpointError(f"ONNX export of {model.config.camera_keys} differs from torch by {found[0]:.3g} "
                                  f"in probability (allowed {atol:g}); the export was not written")

    try:
        write_file(path, write)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"ONNX export failed ({type(exc).__name__}: {str(exc).strip().splitlines()[0]})") from None
    return found[0]


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs a warning per optional op library it does not find (e.g. torchvision)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_parity(model: nn.Module, onnx_path: str | Path, batch: int = 4, seed: int = 0) -> float:
    """Max |p_onnx - p_torch| on ``batch`` random uint8 frames per camera (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    h, w = (int(s) for s in model.config.image_size)
    rng = np.random.default_rng(seed)
    frames = {k: rng.integers(0, 256, size=(batch, h, w, 3), dtype=np.uint8) for k in model.config.camera_keys}
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {onnx_input_name(k): v for k, v in frames.items()})
    got = outputs[0]
    with torch.inference_mode():
        pixels = model.preprocess(frames)
        features = model.encode(pixels)
        want = model.probabilities(model.head(features)).float().numpy()
        support = model.support_of(features, pixels) if getattr(model, "support", None) is not None else None
    if got.shape != want.shape:
        raise CheckpointError(f"ONNX output shape {got.shape} differs from torch {want.shape}")
    if (support is None) != (len(outputs) < 2):
        raise CheckpointError("the ONNX graph and the checkpoint disagree on the support output; re-export it")
    diff = float(np.max(np.abs(got - want)))
    if support is not None:  # support is a share of k neighbours and a distance ratio: compare it relatively
        s = support.float().numpy()
        diff = max(diff, float(np.max(np.abs(outputs[1] - s) / np.maximum(1.0, np.abs(s)))))
    return diff
