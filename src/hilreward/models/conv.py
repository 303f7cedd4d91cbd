"""Small convolutional encoders trained from scratch: ``small_cnn`` (the ``model=scratch`` preset) and ``tiny`` (tests).

Each stage is conv3x3 (stride 2, no bias) -> GroupNorm -> ReLU. They have no published
weights: ``pretrained=True`` without ``weights`` builds them randomly initialised (seeded by
the caller); ``pretrained=True, weights=<folder or file>`` loads a safetensors state dict of the
backbone, or the encoder of a hilreward checkpoint directory.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from torch import nn

from .registry import Encoder
from .weights import checkpoint_encoder_state, load_into, read_json, read_state_dict, resolve_weights, safetensors_file
from ..constants import CONFIG_NAME


def conv_stack(widths: Sequence[int], groups: int = 8) -> nn.Sequential:
    """Stride-2 conv3x3 -> GroupNorm -> ReLU stages, one per width."""
    stages, in_ch = [], 3
    for width in widths:
        stages.append(nn.Sequential(
            nn.Conv2d(in_ch, width, kernel_size=3, stride=2, padding=1, bias=False),
            nn.GroupNorm(min(groups, width), width),
            nn.ReLU(inplace=True),
        ))
        in_ch = width
    return nn.Sequential(*stages)


def build_conv_encoder(
    name: str, widths: Sequence[int], default_size: Sequence[int], weights: Optional[str], options: dict[str, Any]
) -> Encoder:
    """Shared builder of the small encoders; ``options["widths"]`` overrides ``widths``."""
    state = None
    if weights:
        what = f"encoder {name!r}"
        fix = f"pass model.weights=<folder with a {name} model.safetensors> or model.pretrained=false"
        path = safetensors_file(resolve_weights(weights, what, fix), what)
        state = read_state_dict(path, what)
        from_checkpoint = checkpoint_encoder_state(state)  # a hilreward checkpoint: reuse its encoder
        if from_checkpoint is not None:
            state = from_checkpoint
            options = read_json(path.parent / CONFIG_NAME).get("encoder_options", options)
    widths = [int(w) for w in options.get("widths", widths)]
    backbone = conv_stack(widths)
    if state is not None:
        load_into(backbone, state, what, str(weights))
    return Encoder(name, backbone, list(backbone), default_size=default_size,
                   options={"widths": widths}, weights_source=weights)


def small_cnn(arg=None, pretrained=True, weights=None, options=None) -> Encoder:
    return build_conv_encoder("small_cnn", (16, 32, 64, 64), (96, 96), weights if pretrained else None, options or {})


def tiny(arg=None, pretrained=True, weights=None, options=None) -> Encoder:
    return build_conv_encoder("tiny", (8, 16), (32, 32), weights if pretrained else None, options or {})
