"""HIL-SERL's ResNet-10 in plain torch, loading the two published weight layouts.

Architecture: stem (conv7x7 stride 2 -> norm -> act -> maxpool 3x3 stride 2), then four
stages of one basic block each (widths 64-128-256-512, stride 1, 2, 2, 2). Output (512, H/32, W/32).

Weight layouts read (safetensors only, detected from the key names):
- ``transformers``: a transformers ``ResNetModel`` folder (``embedder.embedder.convolution.weight``,
  ``encoder.stages.N.layers.0.layer.M...``): BatchNorm, symmetric padding.
- ``hilserl``: the Hub repos ``helper2424/resnet10`` and ``lerobot/resnet10`` (``embedder.0.weight``,
  ``encoder.stages.N.conv1.conv.weight`` ...): GroupNorm(4), JAX "SAME" padding, as HIL-SERL's JAX model.
The activation comes from the folder's ``config.json`` (``hidden_act``). A hilreward checkpoint
directory also works (its encoder is reused as saved). Without weights
(``pretrained=False``) the ``hilserl`` layout is built, so a scratch ResNet-10 matches the published one.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EncoderError
from .registry import IMAGENET_MEAN, IMAGENET_STD, Encoder
from .weights import (checkpoint_encoder_state, load_into, read_json, read_state_dict, resolve_weights,
                      safetensors_file)
from ..constants import CONFIG_NAME

DEFAULT_REPO = "helper2424/resnet10"
LAYOUTS = ("hilserl", "transformers")
_ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.SiLU, "silu": nn.SiLU, "gelu": nn.GELU}
_FIX = ("set model.weights=<local folder with model.safetensors> (e.g. a copy of helper2424/resnet10), "
        "or model.pretrained=false to use random weights (or model=scratch, a small CNN trained from scratch)")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """JAX/TF "SAME" padding (before, after): output ceil(size/stride), the extra pixel after."""
    total = max(0, (math.ceil(size / stride) - 1) * stride + kernel - size)
    return total // 2, total - total // 2


class Conv(nn.Conv2d):
    """Bias-free conv with symmetric (``k//2``) or JAX "SAME" (asymmetric) padding."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, same: bool = False):
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0 if same else kernel // 2, bias=False)
        self.same = same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            k, s = self.kernel_size[0], self.stride[0]
            # int(): plain numbers when traced for ONNX export too (fixed image size), so the pads are constants
            top, bottom = same_padding(int(x.shape[-2]), k, s)
            left, right = same_padding(int(x.shape[-1]), k, s)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def max_pool_3x3_s2(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """3x3 stride-2 max pooling after -inf padding ``pads`` = (left, right, top, bottom).

    Written as the maximum of nine strided views: the same numbers as ``F.max_pool2d``, about
    3x faster on CPU for NCHW tensors (which the conv layers prefer); ONNX export uses MaxPool.
    """
    if torch.onnx.is_in_onnx_export():
        left, right, top, bottom = pads
        if left == right and top == bottom and left == top:
            return F.max_pool2d(x, 3, 2, left)
        return F.max_pool2d(F.pad(x, pads, value=-math.inf), 3, 2)
    x = F.pad(x, pads, value=-math.inf)
    oh, ow = (x.shape[-2] - 3) // 2 + 1, (x.shape[-1] - 3) // 2 + 1
    out = None
    for i in range(3):
        for j in range(3):
            view = x[..., i:i + 2 * oh - 1:2, j:j + 2 * ow - 1:2]
            out = view if out is None else torch.maximum(out, view)
    return out


class MaxPool(nn.Module):
    """3x3 stride-2 max pooling with symmetric padding 1 or JAX "SAME" padding."""

    def __init__(self, same: bool):
        super().__init__()
        self.same = same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.same:
            return max_pool_3x3_s2(x, (1, 1, 1, 1))
        top, bottom = same_padding(x.shape[-2], 3, 2)
        left, right = same_padding(x.shape[-1], 3, 2)
        return max_pool_3x3_s2(x, (left, right, top, bottom))


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.GroupNorm(4, channels, eps=1e-5) if kind == "group" else nn.BatchNorm2d(channels)


class BasicBlock(nn.Module):
    """conv3x3 -> norm -> act -> conv3x3 -> norm, plus (projected) input, -> act."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str, act: str, block_act: str, same: bool):
        super().__init__()
        self.conv1 = Conv(in_ch, out_ch, 3, stride, same)
        self.norm1 = _norm(norm, out_ch)
        self.act1 = _ACTIVATIONS[block_act]()
        self.conv2 = Conv(out_ch, out_ch, 3, 1, same)
        self.norm2 = _norm(norm, out_ch)
        self.shortcut = (nn.Sequential(Conv(in_ch, out_ch, 1, stride, same), _norm(norm, out_ch))
                         if in_ch != out_ch or stride != 1 else None)
        self.act2 = _ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        return self.act2(out + (x if self.shortcut is None else self.shortcut(x)))


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for :class:`ResNet10` when its layout and activations are known, else EncoderError."""
    if options.get("layout", "hilserl") not in LAYOUTS:
        raise EncoderError(f"unknown resnet10 layout {options.get('layout')!r}; known: {', '.join(LAYOUTS)}")
    act = options.get("act", "relu")
    for a in (act, options.get("block_act") or act):
        if a not in _ACTIVATIONS:
            raise EncoderError(f"resnet10: unsupported activation {a!r}; known: {', '.join(_ACTIVATIONS)}")
    return options


class ResNet10(nn.Module):
    """Stem + four one-block stages. Keys: ``stem.{0,1}.*``, ``stages.N.{conv1,norm1,conv2,norm2,shortcut}.*``."""

    def __init__(self, layout: str = "hilserl", act: str = "relu", block_act: Optional[str] = None,
                 stem_width: int = 64, widths: Sequence[int] = (64, 128, 256, 512)):
        """``layout``, ``act`` and ``block_act`` are checked by :func:`check_options` (this class imports nothing
        from hilreward, so an exported LeRobot checkpoint can carry its source)."""
        super().__init__()
        norm, same = ("group", True) if layout == "hilserl" else ("batch", False)
        self.stem = nn.Sequential(Conv(3, stem_width, 7, 2, same=False), _norm(norm, stem_width),
                                  _ACTIVATIONS[act](), MaxPool(same))
        chans = [stem_width, *widths]
        self.stages = nn.ModuleList(
            BasicBlock(chans[i], chans[i + 1], 1 if i == 0 else 2, norm, act, block_act or act, same)
            for i in range(len(widths))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


# --- key mapping from the published layouts to ResNet10's names -------------------------------

_TRANSFORMERS_RULES = [
    (r"^embedder\.embedder\.convolution\.(.+)$", r"stem.0.\1"),
    (r"^embedder\.embedder\.normalization\.(.+)$", r"stem.1.\1"),
    (r"^encoder\.stages\.(\d+)\.layers\.0\.layer\.0\.convolution\.(.+)$", r"stages.\1.conv1.\2"),
    (r"^encoder\.stages\.(\d+)\.layers\.0\.layer\.0\.normalization\.(.+)$", r"stages.\1.norm1.\2"),
    (r"^encoder\.stages\.(\d+)\.layers\.0\.layer\.1\.convolution\.(.+)$", r"stages.\1.conv2.\2"),
    (r"^encoder\.stages\.(\d+)\.layers\.0\.layer\.1\.normalization\.(.+)$", r"stages.\1.norm2.\2"),
    (r"^encoder\.stages\.(\d+)\.layers\.0\.shortcut\.convolution\.(.+)$", r"stages.\1.shortcut.0.\2"),
    (r"^encoder\.stages\.(\d+)\.layers\.0\.shortcut\.normalization\.(.+)$", r"stages.\1.shortcut.1.\2"),
]
_HILSERL_RULES = [
    (r"^embedder\.0\.(.+)$", r"stem.0.\1"),
    (r"^embedder\.1\.(.+)$", r"stem.1.\1"),
    (r"^encoder\.stages\.(\d+)\.(conv1|conv2)\.conv\.(.+)$", r"stages.\1.\2.\3"),
    (r"^encoder\.stages\.(\d+)\.(norm1|norm2)\.(.+)$", r"stages.\1.\2.\3"),
    (r"^encoder\.stages\.(\d+)\.shortcut\.0\.conv\.(.+)$", r"stages.\1.shortcut.0.\2"),
    (r"^encoder\.stages\.(\d+)\.shortcut\.1\.(.+)$", r"stages.\1.shortcut.1.\2"),
]


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    keys = {k.removeprefix("resnet.") for k in state}
    if "embedder.embedder.convolution.weight" in keys:
        return "transformers"
    if "embedder.0.weight" in keys:
        return "hilserl"
    raise EncoderError(
        f"resnet10: unrecognised weight layout (first keys {sorted(keys)[:3]}); expected a transformers "
        "ResNetModel folder or helper2424/resnet10"
    )


def map_keys(state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Rename a published state dict to ResNet10's names; heads (classifier, pooler) are dropped."""
    rules = [(re.compile(p), r) for p, r in (_TRANSFORMERS_RULES if layout == "transformers" else _HILSERL_RULES)]
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        key = key.removeprefix("resnet.")
        if key.startswith(("classifier.", "pooler.")):
            continue
        if re.match(r"^encoder\.stages\.\d+\.layers\.[1-9]", key):
            raise EncoderError("resnet10: these weights have more than one block per stage (not a ResNet-10)")
        for pattern, repl in rules:
            if pattern.match(key):
                out[pattern.sub(repl, key)] = tensor
                break
        else:
            out[key] = tensor  # left unmapped: the strict load names it
    return out


def options_from_config(config: dict[str, Any], layout: str) -> dict[str, Any]:
    act = str(config.get("hidden_act", "relu"))
    depths = list(config.get("depths", [1, 1, 1, 1]))
    if any(int(d) != 1 for d in depths):
        raise EncoderError(f"resnet10: config.json has depths {depths}; a ResNet-10 has one block per stage")
    return {
        "layout": layout,
        "act": act,
        # transformers' basic layer always uses ReLU between its two convs.
        "block_act": "relu" if layout == "transformers" else act,
        "stem_width": int(config.get("embedding_size", 64)),
        "widths": [int(w) for w in config.get("hidden_sizes", [64, 128, 256, 512])],
    }


def resnet10(arg=None, pretrained=True, weights=None, options=None) -> Encoder:
    options = dict(options or {"layout": "hilserl"})
    what = "encoder 'resnet10'"
    mean, std, state, source = IMAGENET_MEAN, IMAGENET_STD, None, None
    if pretrained:
        source = weights or DEFAULT_REPO
        folder = resolve_weights(source, what, _FIX)
        state = read_state_dict(safetensors_file(folder, what), what)
        base = folder if folder.is_dir() else folder.parent
        from_checkpoint = checkpoint_encoder_state(state)
        if from_checkpoint is not None:  # a hilreward checkpoint: reuse its encoder as it was
            config = read_json(base / CONFIG_NAME)
            state, options = from_checkpoint, dict(config.get("encoder_options", {"layout": "hilserl"}))
            mean, std = config.get("mean") or mean, config.get("std") or std
        else:
            layout = detect_layout(state)
            options = options_from_config(read_json(base / CONFIG_NAME), layout)
            prep = read_json(base / "preprocessor_config.json")
            mean, std = prep.get("image_mean", mean), prep.get("image_std", std)
            state = map_keys(state, layout)
    model = ResNet10(**check_options(options))
    if state is not None:
        load_into(model, state, what, source)
    return Encoder("resnet10", model, [model.stem, *model.stages], mean, std,
                   default_size=(128, 128), options=options, weights_source=source)
