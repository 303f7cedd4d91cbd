"""A pure-PyTorch twin of ``transformers.ResNetModel`` (up to ``last_hidden_state``).

LeRobot's reward classifier wraps a transformers ResNet; its checkpoints hold that encoder's
weights under the transformers parameter names. This module has the same names and the same
arithmetic, so those weights load without installing transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import CheckpointError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU, "tanh": nn.Tanh}


@dataclass
class ResNetSpec:
    """The subset of ``transformers.ResNetConfig`` that shapes the network."""

    num_channels: int = 3
    """Input channels."""
    embedding_size: int = 64
    """Channels of the stem convolution."""
    embedding_kernel: int = 7
    """Kernel of the stem convolution."""
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])
    """Output channels of each stage."""
    depths: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    """Layers per stage."""
    layer_type: str = "bottleneck"
    """``basic`` (two 3x3 convolutions) or ``bottleneck`` (1x1, 3x3, 1x1)."""
    hidden_act: str = "relu"
    """Activation name."""
    downsample_in_first_stage: bool = False
    """Stride 2 in the first stage."""
    downsample_in_bottleneck: bool = False
    """Bottleneck layers stride in their first 1x1 convolution instead of the 3x3."""


def _act(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    if name not in ACTIVATIONS:
        raise CheckpointError(f"ResNet activation {name!r} is not supported; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, act: str | None = "relu") -> None:
        super().__init__()
        self.convolution = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.normalization = nn.BatchNorm2d(cout)
        self.activation = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.normalization(self.convolution(x)))


class ShortCut(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.convolution = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
        self.normalization = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalization(self.convolution(x))


class ResidualLayer(nn.Module):
    def __init__(self, spec: ResNetSpec, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.shortcut = ShortCut(cin, cout, stride) if (cin != cout or stride != 1) else nn.Identity()
        # As in transformers, the convolutions inside a layer always use ReLU; hidden_act is the layer's output.
        if spec.layer_type == "basic":
            self.layer = nn.Sequential(ConvLayer(cin, cout, stride=stride), ConvLayer(cout, cout, act=None))
        elif spec.layer_type == "bottleneck":
            mid = cout // 4
            s1, s3 = (stride, 1) if spec.downsample_in_bottleneck else (1, stride)
            self.layer = nn.Sequential(ConvLayer(cin, mid, kernel=1, stride=s1),
                                       ConvLayer(mid, mid, stride=s3),
                                       ConvLayer(mid, cout, kernel=1, act=None))
        else:
            raise CheckpointError(f"ResNet layer_type {spec.layer_type!r} is not supported (basic, bottleneck)")
        self.activation = _act(spec.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.layer(x) + self.shortcut(x))


class Stage(nn.Module):
    def __init__(self, spec: ResNetSpec, cin: int, cout: int, stride: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(ResidualLayer(spec, cin, cout, stride),
                                    *[ResidualLayer(spec, cout, cout, 1) for _ in range(depth - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Embeddings(nn.Module):
    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.embedder = ConvLayer(spec.num_channels, spec.embedding_size, kernel=spec.embedding_kernel, stride=2,
                                  act=spec.hidden_act)
        self.pooler = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooler(self.embedder(x))


class Encoder(nn.Module):
    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        sizes = [spec.embedding_size, *spec.hidden_sizes]
        self.stages = nn.ModuleList(
            Stage(spec, sizes[i], sizes[i + 1], 2 if (i > 0 or spec.downsample_in_first_stage) else 1, depth)
            for i, depth in enumerate(spec.depths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


class ResNetTrunk(nn.Module):
    """``ResNetModel(x).last_hidden_state``: (B, C, H/32, W/32) with the stock strides."""

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embedder = Embeddings(spec)
        self.encoder = Encoder(spec)
        self.out_channels = spec.hidden_sizes[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embedder(x))


def infer_spec(state: dict[str, torch.Tensor], prefix: str, known: dict | None = None) -> ResNetSpec:
    """Read a ResNetSpec off transformers-named weights under ``prefix`` (``known``: the encoder's
    own config.json, when at hand, for what weights cannot tell: activation and strides)."""
    known = known or {}
    stem = state.get(f"{prefix}embedder.embedder.convolution.weight")
    if stem is None:
        raise CheckpointError(f"no transformers ResNet weights under {prefix!r} (missing "
                              f"{prefix}embedder.embedder.convolution.weight): only LeRobot classifiers with a "
                              "transformers ResNet encoder can be imported")
    depths, hidden, layer_type = [], [], None
    while any(k.startswith(f"{prefix}encoder.stages.{len(depths)}.") for k in state):
        s = len(depths)
        depth = 0
        while any(k.startswith(f"{prefix}encoder.stages.{s}.layers.{depth}.") for k in state):
            depth += 1
        convs = sorted({int(k.split(".layer.")[1].split(".")[0]) for k in state
                        if k.startswith(f"{prefix}encoder.stages.{s}.layers.0.layer.")})
        layer_type = "basic" if len(convs) == 2 else "bottleneck"
        last = state[f"{prefix}encoder.stages.{s}.layers.0.layer.{convs[-1]}.convolution.weight"]
        depths.append(depth)
        hidden.append(int(last.shape[0]))
    if not depths:
        raise CheckpointError(f"no ResNet stages under {prefix}encoder.stages")
    return ResNetSpec(
        num_channels=int(stem.shape[1]), embedding_size=int(stem.shape[0]), embedding_kernel=int(stem.shape[-1]),
        hidden_sizes=hidden, depths=depths, layer_type=known.get("layer_type", layer_type),
        hidden_act=known.get("hidden_act", "relu"),
        downsample_in_first_stage=bool(known.get("downsample_in_first_stage", False)),
        downsample_in_bottleneck=bool(known.get("downsample_in_bottleneck", False)))
